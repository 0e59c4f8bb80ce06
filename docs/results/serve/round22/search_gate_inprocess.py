"""Search queries from two clients at once in one process, with and without a first-come-
first-served gate of one place (:class:`notefeed.threads.FifoGate`): is the search endpoint
worth gating as the feed is? The hybrid + personalised search pipeline (``SearchConfig()``)
built on the search bench's simulated notes (``notefeed bench search``'s corpus), each query
with a 30-note history, one BLAS/torch thread as a serving process; clients send back to back
from threads started after that, as a server's worker threads are (so OpenMP, per thread, has
its default of every core there: FAISS's IVF search may use both, and the CPU per query of one
client is about twice its latency).

Arms, alternating twice: ``one_client``, ``two_free``, ``two_gated``. Latency includes the
wait at the gate; CPU is this process's per query (all its threads, tantivy's included).

    python3 docs/results/serve/round22/search_gate_inprocess.py [notes] [queries]   # -> search_gate_inprocess.json
"""
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from notefeed.eval.timing import latency_stats, machine_info
from notefeed.search.config import SearchConfig
from notefeed.search.pipeline import SearchPipeline
from notefeed.sim.search_data import bench_corpus
from notefeed.threads import FifoGate, one_thread_for_process

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
per = int(sys.argv[2]) if len(sys.argv) > 2 else 600
one_thread_for_process()
corpus = bench_corpus(n, 2000, 0)
pipe = SearchPipeline.build(corpus.notes, SearchConfig(), seed=0)
rng = np.random.default_rng(0)
queries = corpus.queries
hist = [rng.choice(n, 30, replace=False) for _ in queries]
for i in range(50):
    pipe.search(queries[i], 10, history=hist[i])


def run(arm: str) -> dict:
    gate, lat = FifoGate(1 if arm == "two_gated" else 0), []
    chosen = rng.choice(len(queries), per, replace=False)

    def client(ix: np.ndarray) -> None:
        for i in ix:
            t = time.perf_counter()
            with gate.held():
                pipe.search(queries[i], 10, history=hist[i])
            lat.append(time.perf_counter() - t)

    k = 1 if arm == "one_client" else 2
    c, t = time.process_time(), time.perf_counter()
    ts = [threading.Thread(target=client, args=(chosen[j::k],)) for j in range(k)]
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    wall = time.perf_counter() - t
    return {"latency": latency_stats(lat), "cpu_ms_per_query": (time.process_time() - c) / per * 1e3,
            "queries_per_s": per / wall}


arms = ("one_client", "two_free", "two_gated")
out = {"notes": n, "queries_per_arm_and_round": per, "rounds": [], "machine": machine_info(),
       "command": f"python3 docs/results/serve/round22/search_gate_inprocess.py {n} {per}"}
for order in (arms, arms[::-1]):
    res = {}
    for arm in order:
        res[arm] = s = run(arm)
        print(arm, f"p50 {s['latency']['median_ms']:.2f} p99 {s['latency']['p99_ms']:.2f} ms, "
              f"cpu {s['cpu_ms_per_query']:.2f} ms/query, {s['queries_per_s']:.0f} queries/s", flush=True)
    out["rounds"].append(res)
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
