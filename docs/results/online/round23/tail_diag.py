"""Where the two-worker tail goes: every request of an open-loop run timed apart.

The worker-scaling bench (``notefeed bench workers --scaling --pin``) with two workers and the
feed gate had a client p99 of 165-188 ms at 20 requests/s a worker, where the server's own total
p99 was 25-30 ms and the gate's wait 29-37 ms (round22). This script runs the same load on the
same kind of server (``serve --workers N``, the online state in Redis, each worker pinned to a
core, 100 unmeasured requests per pipeline and worker first) and keeps every request: arrival,
send and answer times, which worker answered (by the connection's port, mapped to a worker pid
with ``ss``), and the server's ``total`` and ``queue``. A request's time splits into

  late   = send - arrival          (no free client thread)
  server = queue + total           (what the server times)
  rest   = answer - send - server  (socket to handler and back, the JSON, the client)

Usage: python3 docs/results/online/round23/tail_diag.py WORKSPACE OUT_PREFIX [gate] [workers] [clock]
(gate: api.feed_concurrency, default 1; workers default 2; clock: ``early``, the default, starts
the arrivals before the client threads build their HTTP clients, as the bench did before
commit cd7f71b; ``ready`` starts them once every thread has its client and connection, as the
bench does now). Writes OUT_PREFIX.json (summary) and OUT_PREFIX.csv (one row a request).
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from notefeed.eval.timing import latency_stats, machine_info
from notefeed.serve.bench import (
    TOKEN,
    _load,
    _served,
    _workspace_users,
    free_port,
    parse_server_timing,
    process_cpu_s,
    start_server,
    stop_server,
)
from notefeed.serve.bench_online import _pin, _worker_pids, redis_server
from notefeed.serve.config import ServeConfig

RATE_PER_WORKER, REQUESTS_PER_WORKER, THREADS_PER_WORKER, WARMUP = 20.0, 600, 8, 100


def conn_owners(port: int) -> dict[int, int]:
    """client port -> server pid, for the established connections to ``port``."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    owners = {}
    for line in out.splitlines():
        parts = line.split()
        # Recv-Q Send-Q Local Peer Process
        if len(parts) < 5 or "pid=" not in parts[-1]:
            continue
        peer = int(parts[3].rsplit(":", 1)[1])
        owners[peer] = int(parts[-1].split("pid=")[1].split(",")[0])
    return owners


def run(base: str, port: int, user_ids: list[str], n_workers: int,
        clock: str = "early") -> tuple[list[dict], list[dict], dict]:
    import httpx

    requests = n_workers * REQUESTS_PER_WORKER
    rate = n_workers * RATE_PER_WORKER
    arrivals = np.cumsum(np.random.default_rng(n_workers).exponential(1.0 / rate, 2 * requests))
    counter = iter(range(2 * requests))
    rows: list[dict] = []
    posts: list[dict] = []
    owners: dict[int, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            o = conn_owners(port)
            with lock:
                owners.update(o)
            stop.wait(0.5)

    def client(wid: int) -> None:
        rng = random.Random(wid)
        with httpx.Client(base_url=base, timeout=10.0) as c:
            if ready is not None:
                c.get("/healthz")
                ready.wait(timeout=300)
            for i in counter:
                p = ("default", "popular")[i % 2]
                uid = rng.choice(user_ids) if rng.random() > 0.1 else f"new{rng.randrange(10**9)}"
                t_arr = t_start + float(arrivals[i])
                wait = t_arr - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                t_send = time.perf_counter()
                r = c.get("/v1/feed", params={"user_id": uid, "n": 20, "pipeline": p})
                t_done = time.perf_counter()
                st = parse_server_timing(r.headers.get("server-timing", ""))
                cport = r.extensions["network_stream"].get_extra_info("client_addr")[1]
                row = {"i": i, "thread": wid, "pipeline": p, "status": r.status_code, "port": cport,
                       "arrival_s": t_arr - t_start, "late_ms": 1e3 * (t_send - t_arr),
                       "client_ms": 1e3 * (t_done - t_arr), "send_to_answer_ms": 1e3 * (t_done - t_send),
                       "total_ms": st.get("total", float("nan")), "queue_ms": st.get("queue", float("nan"))}
                with lock:
                    rows.append(row)
                if i % 20 == 0 and p == "default" and r.status_code == 200:
                    items = r.json()["items"]
                    if items:
                        evs = [{"user_id": uid, "note_id": it["note_id"], "ts": int(time.time()), "type": "impression"}
                               for it in items[:5]]
                        evs.append({"user_id": uid, "note_id": items[0]["note_id"], "ts": int(time.time()),
                                    "type": "click"})
                        t1 = time.perf_counter()
                        er = c.post("/v1/events", json={"events": evs}, headers={"Authorization": f"Bearer {TOKEN}"})
                        with lock:
                            posts.append({"at_s": t1 - t_start, "ms": 1e3 * (time.perf_counter() - t1),
                                          "status": er.status_code, "thread": wid})

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t_start = time.perf_counter()
    ready = None
    if clock == "ready":
        def start_clock() -> None:
            nonlocal t_start
            t_start = time.perf_counter()

        ready = threading.Barrier(n_workers * THREADS_PER_WORKER, action=start_clock)
    threads = [threading.Thread(target=client, args=(w,)) for w in range(n_workers * THREADS_PER_WORKER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    stop.set()
    watcher.join()
    o = conn_owners(port)
    owners.update(o)
    for row in rows:
        row["worker"] = owners.get(row["port"], -1)
        row["server_ms"] = row["queue_ms"] + row["total_ms"]
        row["rest_ms"] = row["send_to_answer_ms"] - row["server_ms"]
    return rows, posts, {"wall_s": wall, "rate_rps": rate}


def summarise(rows: list[dict], posts: list[dict]) -> dict:
    out: dict = {}
    for p in ("default", "popular"):
        rs = [r for r in rows if r["pipeline"] == p and r["status"] == 200]
        cl = np.array([r["client_ms"] for r in rs])
        cut = np.quantile(cl, 0.99)
        tail = [r for r in rs if r["client_ms"] >= cut]
        out[p] = {
            "requests": len(rs), "errors": sum(r["status"] != 200 for r in rows if r["pipeline"] == p),
            **{k: latency_stats([r[k] / 1e3 for r in rs]) for k in
               ("client_ms", "late_ms", "server_ms", "rest_ms", "total_ms", "queue_ms")},
            # the requests at or above the client p99: what their time was spent on
            "tail_p99": {"n": len(tail), "client_ms": [round(r["client_ms"], 1) for r in tail],
                         "late_ms": [round(r["late_ms"], 1) for r in tail],
                         "queue_ms": [round(r["queue_ms"], 1) for r in tail],
                         "total_ms": [round(r["total_ms"], 1) for r in tail],
                         "rest_ms": [round(r["rest_ms"], 1) for r in tail],
                         "worker": [r["worker"] for r in tail],
                         "arrival_s": [round(r["arrival_s"], 2) for r in tail]},
        }
    by_worker: dict = {}
    for w in sorted({r["worker"] for r in rows}):
        rs = [r for r in rows if r["worker"] == w]
        by_worker[str(w)] = {"requests": len(rs), "connections": len({r["port"] for r in rs}),
                             "client_ms": latency_stats([r["client_ms"] / 1e3 for r in rs]),
                             "rest_ms": latency_stats([r["rest_ms"] / 1e3 for r in rs])}
    out["by_worker"] = by_worker
    out["event_posts"] = {"n": len(posts), "ms": latency_stats([p["ms"] / 1e3 for p in posts]) if posts else None}
    return out


def main() -> None:
    ws_src, prefix = Path(sys.argv[1]), Path(sys.argv[2])
    gate = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    n_workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    clock = sys.argv[5] if len(sys.argv) > 5 else "early"
    if clock not in ("early", "ready"):
        raise SystemExit(f"clock: early or ready, got {clock!r}")
    n_notes, user_ids = _workspace_users(ws_src)
    cores = sorted(__import__("os").sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="tail-diag-") as tmp:
        url, rproc = redis_server(None, Path(tmp))
        try:
            ws = Path(tmp) / "ws"
            shutil.copytree(ws_src, ws)
            cfg = ServeConfig().with_overrides(online={"backend": "redis", "redis_url": url,
                                                       "redis_prefix": f"diag-{time.time_ns()}"},
                                               api={"feed_concurrency": gate})
            cfg_path = Path(tmp) / "cfg.yaml"
            cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
            port = free_port()
            proc = start_server(ws, port, ["--config", str(cfg_path), "--workers", str(n_workers)], timeout=1800)
            base = f"http://127.0.0.1:{port}"
            try:
                served = _served(base)
                pids = _worker_pids(base, proc.pid, n_workers)
                served["worker_cores"] = [_pin(pid, cores[k]) for k, pid in enumerate(pids)]
                served["worker_pids"] = pids
                _load(base, user_ids, n_workers * WARMUP, n_workers * THREADS_PER_WORKER, 900.0)
                w0 = [process_cpu_s(p) for p in pids]
                rows, posts, info = run(base, port, user_ids, n_workers, clock)
                w1 = [process_cpu_s(p) for p in pids]
            finally:
                stop_server(proc)
        finally:
            if rproc is not None:
                rproc.terminate()
                rproc.wait(10)
    out = {"script": "docs/results/online/round23/tail_diag.py", "argv": sys.argv[1:], "machine": machine_info(),
           "notes": n_notes, "feed_concurrency": gate, "clock": clock, "workers": n_workers, "served": served,
           "rate_per_worker": RATE_PER_WORKER, "requests_per_worker_and_pipeline": REQUESTS_PER_WORKER,
           "threads_per_worker": THREADS_PER_WORKER, "warmup_per_worker_and_pipeline": WARMUP, **info,
           "workers_cpu_s": [b - a for a, b in zip(w0, w1, strict=True)], **summarise(rows, posts)}
    prefix.with_suffix(".json").write_text(json.dumps(out, indent=1))
    with open(prefix.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(sorted(rows, key=lambda r: r["i"]))
    for p in ("default", "popular"):
        s = out[p]
        print(p, {k: round(s[k]["p99_ms"], 1) for k in ("client_ms", "late_ms", "server_ms", "rest_ms")},
              "tail rest", s["tail_p99"]["rest_ms"][:12])
    print({w: (v["requests"], v["connections"], round(v["client_ms"]["p99_ms"], 1)) for w, v in out["by_worker"].items()})


if __name__ == "__main__":
    main()
