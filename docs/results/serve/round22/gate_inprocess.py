"""Two feed requests at once in one process, with and without ``api.feed_concurrency``'s gate:
the served default pipeline of a trained workspace (the promoted version, built as ``notefeed
serve`` builds it: one BLAS/torch thread, the heap frozen), each request a page of 20 with its
notes' JSON, from two threads that send their next request as soon as the last is answered.

Arms, alternating twice over fresh samples of the workspace's users: ``one_thread`` (one
client thread: the pipeline alone), ``two_free`` (two threads, no gate: the behaviour before
session 22), ``two_gated`` (two threads through :class:`notefeed.threads.FifoGate` (1): each
request waits for the other's page). Latency counts from the request's start, so it includes
the wait at the gate. CPU is this process's per request.

    python3 docs/results/serve/round22/gate_inprocess.py WORKSPACE [requests]   # -> gate_inprocess.json
"""
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from notefeed.eval.timing import latency_stats, machine_info
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.config import ServeConfig
from notefeed.serve.versions import engine_from_store
from notefeed.threads import FifoGate, one_thread_for_process

workspace = Path(sys.argv[1])
per = int(sys.argv[2]) if len(sys.argv) > 2 else 300
one_thread_for_process()  # as a serving process (the engine then freezes its heap)
ds = load_workspace_dataset(workspace)
eng = engine_from_store(ds, ServeConfig(), workspace)
ids = ds.users["user_id"].astype(str).to_numpy()
rng = np.random.default_rng(0)


def page(uid: str) -> list[dict]:
    _, res = eng.feed(uid, 20, "default")
    return [eng.catalog.note_json(i) for i in res.items.tolist()]


for uid in rng.choice(ids, 50, replace=False):  # warm-up
    page(str(uid))


def run(arm: str, users: np.ndarray) -> dict:
    gate = FifoGate(1 if arm == "two_gated" else 0)
    lat: list[float] = []

    def client(chunk: np.ndarray) -> None:
        for uid in chunk:
            t = time.perf_counter()
            with gate.held():
                page(str(uid))
            lat.append(time.perf_counter() - t)

    c, t = time.process_time(), time.perf_counter()
    if arm == "one_thread":
        client(users)
    else:
        ts = [threading.Thread(target=client, args=(users[i::2],)) for i in range(2)]
        for x in ts:
            x.start()
        for x in ts:
            x.join()
    wall = time.perf_counter() - t
    return {"latency": latency_stats(lat), "cpu_ms_per_request": (time.process_time() - c) / len(users) * 1e3,
            "wall_s": wall, "pages_per_s": len(users) / wall}


arms = ("one_thread", "two_free", "two_gated")
out = {"workspace": str(workspace), "requests_per_arm_and_round": per, "model_version": eng.served.version,
       "fallback": list(eng.served.fallback), "rounds": [], "machine": machine_info(),
       "command": f"python3 docs/results/serve/round22/gate_inprocess.py {workspace} {per}"}
for rnd, order in enumerate((arms, arms[::-1])):
    res = {}
    for arm in order:
        res[arm] = run(arm, rng.choice(ids, per, replace=False))
        s = res[arm]
        print(rnd, arm, f"p50 {s['latency']['median_ms']:.1f} p99 {s['latency']['p99_ms']:.1f} ms, "
              f"cpu {s['cpu_ms_per_request']:.2f} ms/request, {s['pages_per_s']:.0f} pages/s", flush=True)
    out["rounds"].append(res)
eng.close()
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
