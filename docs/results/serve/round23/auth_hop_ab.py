"""The token check as an ``async`` dependency against the same check in a worker thread: two
live servers side by side, the old code (a git worktree at OLD_REV, where ``read_auth`` and
``write_auth`` were plain functions, which FastAPI runs in its thread pool: one more thread hop
per request) and the working tree, each on its own copy of WORKSPACE, one client alternating
between them round by round.

A minimal HTTP/1.1 client on one keep-alive socket each (the client's own cost is small and
the same for both). Per round and server: ``popular`` feed pages alone, event posts alone,
and event posts while a second client sends full (``default``) pages back to back to the same
server; 5 ms between measured requests.

    python3 docs/results/serve/round23/auth_hop_ab.py WORKSPACE OLD_REV [requests] [rounds]   # -> auth_hop_ab.json

``auth_hop_ab.json`` was written from a checkout of 8f6900e (the async checks) with OLD_REV
b83c11d, ``ws100k/ b83c11d 200 4``. The change was not kept (reverted in 4e49821): popular
pages were 0.04-0.16 ms faster at p50, event posts alone the same, and event posts beside
full pages 0.17 ms slower to 0.40 ms faster at p50 with a higher p99 in all four rounds.
"""
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from notefeed.eval.timing import latency_stats, machine_info
from notefeed.serve.bench import TOKEN, free_port, start_server, stop_server

source, old_rev = Path(sys.argv[1]), sys.argv[2]
per = int(sys.argv[3]) if len(sys.argv) > 3 else 200
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 4
repo = Path(__file__).resolve().parents[3]


def conn(port: int) -> tuple[socket.socket, object]:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, s.makefile("rb")


def call(c: tuple, method: str, path: str, body: bytes = b"") -> str:
    s, f = c
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
    if body:
        head += (f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n")
    s.sendall((head + "\r\n").encode() + body)
    status = f.readline().decode()
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    f.read(length)
    return status


def measure(port: int, what: str) -> dict:
    stop = threading.Event()

    def background() -> None:
        c, i = conn(port), 0
        while not stop.is_set():
            call(c, "GET", f"/v1/feed?user_id=u{i % 997}&n=20&pipeline=default")
            i += 1

    th = threading.Thread(target=background)
    if what == "events_beside_pages":
        th.start()
        time.sleep(0.3)
    c, lat = conn(port), []
    for j in range(per):
        if what == "popular_pages":
            t = time.perf_counter()
            st = call(c, "GET", f"/v1/feed?user_id=u{j % 1000}&n=20&pipeline=popular")
        else:
            ev = {"events": [{"user_id": f"e{j}", "note_id": f"n{j}", "ts": int(time.time()), "type": "impression"}]}
            body = json.dumps(ev).encode()
            t = time.perf_counter()
            st = call(c, "POST", "/v1/events", body)
        lat.append(time.perf_counter() - t)
        if " 200 " not in st:
            raise RuntimeError(f"{what}: {st.strip()}")
        time.sleep(0.005)
    stop.set()
    if th.is_alive():
        th.join()
    return latency_stats(lat)


tmp = Path(tempfile.mkdtemp(prefix="auth-ab-"))
old_tree = tmp / "old"
subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(old_tree), old_rev], check=True)
procs = {}
try:
    ports = {}
    for arm in ("old", "new"):
        ws = tmp / f"ws_{arm}"
        shutil.copytree(source, ws)
        ports[arm] = free_port()
        env = {"PYTHONPATH": str(old_tree if arm == "old" else repo)}
        procs[arm] = start_server(ws, ports[arm], env=env, timeout=600)
    for port in ports.values():  # warm-up
        c = conn(port)
        for j in range(50):
            call(c, "GET", f"/v1/feed?user_id=u{j}&n=20&pipeline=default")
            call(c, "GET", f"/v1/feed?user_id=u{j}&n=20&pipeline=popular")
    kinds = ("popular_pages", "events_alone", "events_beside_pages")
    out = {"workspace": str(source), "old_rev": old_rev, "requests_per_round": per, "rounds": rounds,
           "machine": machine_info(), "command": f"python3 docs/results/serve/round23/auth_hop_ab.py {source} "
                                                 f"{old_rev} {per} {rounds}",
           "runs": {k: {"old": [], "new": []} for k in kinds}}
    for r in range(rounds):
        for kind in kinds:
            for arm in (("old", "new") if r % 2 == 0 else ("new", "old")):
                s = measure(ports[arm], kind)
                out["runs"][kind][arm].append(s)
                print(r, kind, arm, f"p50 {s['median_ms']:.2f} p90 {s['p90_ms']:.2f} p99 {s['p99_ms']:.2f} ms",
                      flush=True)
    out["summary"] = {k: {arm: {q: [round(s[q], 2) for s in v[arm]] for q in ("median_ms", "p90_ms", "p99_ms")}
                          for arm in ("old", "new")} for k, v in out["runs"].items()}
    out["paired_median_diff_ms"] = {k: [round(a["median_ms"] - b["median_ms"], 2)
                                        for a, b in zip(v["old"], v["new"], strict=True)]
                                    for k, v in out["runs"].items()}
    Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["summary"], indent=1))
finally:
    for p in procs.values():
        stop_server(p)
    subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(old_tree)], check=False)
    shutil.rmtree(tmp, ignore_errors=True)
