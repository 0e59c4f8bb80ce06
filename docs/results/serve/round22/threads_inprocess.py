"""Feed pages built in threads started after the serving process set its one-thread limits,
as an HTTP server's worker threads are: with the OpenMP runtimes' per-thread default (every
core: OpenMP keeps its thread count per thread, and faiss's OpenBLAS follows it) and with
``threadpool_limits(1)`` called first in the thread (one BLAS/OpenMP thread, as the serving
process; the per-thread limit tried in session 22 and not kept: ``thread_limit.patch``), one
client and two, through the feed gate (``api.feed_concurrency`` 1) and without it.

The served default pipeline of a trained workspace, built as ``notefeed serve`` builds it;
each request a page of 20 with its notes' JSON; clients send back to back; every arm in fresh
threads; the arms alternate twice over fresh user samples. Latency counts from the request's
start (the wait at the gate included); CPU is this process's per request (all its threads).
Also reports the thread counts threadpoolctl sees inside each arm's first thread.

    python3 docs/results/serve/round22/threads_inprocess.py WORKSPACE [requests]   # -> threads_inprocess.json
"""
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import notefeed.threads as T
from notefeed.eval.timing import latency_stats, machine_info
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.config import ServeConfig
from notefeed.serve.versions import engine_from_store

workspace = Path(sys.argv[1])
per = int(sys.argv[2]) if len(sys.argv) > 2 else 300
T.one_thread_for_process()
ds = load_workspace_dataset(workspace)
eng = engine_from_store(ds, ServeConfig(), workspace)
ids = ds.users["user_id"].astype(str).to_numpy()
rng = np.random.default_rng(0)


def page(uid: str) -> None:
    _, res = eng.feed(uid, 20, "default")
    [eng.catalog.note_json(i) for i in res.items.tolist()]


for uid in rng.choice(ids, 50, replace=False):
    page(str(uid))


def run(arm: str, users: np.ndarray) -> dict:
    limited, clients, gated = arm.startswith("limited"), 1 if "one" in arm else 2, arm.endswith("gated")
    gate = T.FifoGate(1 if gated else 0)
    lat: list[float] = []
    seen: dict = {}

    def client(chunk: np.ndarray) -> None:
        if limited:
            threadpool_limits(1)  # kept for the rest of this thread
        if not seen:
            seen["threads"] = sorted({(p["internal_api"], p["filepath"].rsplit("/", 1)[-1], p["num_threads"])
                                      for p in threadpool_info()})
        for uid in chunk:
            t = time.perf_counter()
            with gate.held():
                page(str(uid))
            lat.append(time.perf_counter() - t)

    c, t = time.process_time(), time.perf_counter()
    ts = [threading.Thread(target=client, args=(users[i::clients],)) for i in range(clients)]
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    wall = time.perf_counter() - t
    return {"latency": latency_stats(lat), "cpu_ms_per_request": (time.process_time() - c) / len(users) * 1e3,
            "pages_per_s": len(users) / wall, "thread_pools": seen["threads"]}


arms = ("default_one", "limited_one", "default_two_free", "limited_two_free", "default_two_gated",
        "limited_two_gated")
out = {"workspace": str(workspace), "requests_per_arm_and_round": per, "model_version": eng.served.version,
       "rounds": [], "machine": machine_info(),
       "command": f"python3 docs/results/serve/round22/threads_inprocess.py {workspace} {per}"}
for rnd, order in enumerate((arms, arms[::-1])):
    res = {}
    for arm in order:
        res[arm] = s = run(arm, rng.choice(ids, per, replace=False))
        print(rnd, arm, f"p50 {s['latency']['median_ms']:.1f} p99 {s['latency']['p99_ms']:.1f} ms, "
              f"cpu {s['cpu_ms_per_request']:.2f} ms/request, {s['pages_per_s']:.0f} pages/s", flush=True)
    out["rounds"].append(res)
eng.close()
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
