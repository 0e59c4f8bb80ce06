"""All channels + merge at 1M notes (the ``notefeed bench recall --parts stage`` setting), with an
HNSW search for k results looking at ``max(efSearch, k)`` candidates (``widen``, the code now) and
at efSearch only (``old``, FAISS's plain search, what the code did before), side by side in one
process on the same fitted stage: 200 users, each mode twice in alternating order.

Before, the two-tower channel (quota 2,000, efSearch 128) asked HNSW for 2,000 + history notes
and got far fewer: the candidate count shows it.

    python3 docs/results/recall/hnsw_widen_ab.py   # -> hnsw_widen_ab.json
"""
import json
import time
from pathlib import Path

import numpy as np

from notefeed.recall import bench as b
from notefeed.recall.ann import AnnIndex

widen_search = AnnIndex.search


def old_search(self, queries, k):
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    return self.index.search(q, max(1, min(int(k), max(self.ntotal, 1))))


t0 = time.time()
ds, stage, _, _ = b.stage_setup(1_000_000, 2_000_000)
requests = b.stage_requests(ds, 200)
runs = {m: {"s": [], "candidates": [], "two_tower_ms": []} for m in ("widen", "old")}
for order in (("widen", "old"), ("old", "widen")):
    for mode in order:
        AnnIndex.search = widen_search if mode == "widen" else old_search
        for ctx in requests:
            t1 = time.perf_counter()
            m = stage.retrieve(ctx, 10_000)
            runs[mode]["s"].append(time.perf_counter() - t1)
            runs[mode]["candidates"].append(len(m))
            runs[mode]["two_tower_ms"].append(m.timings_ms.get("embedding/two-tower", 0.0))
AnnIndex.search = widen_search
out = {"notes": 1_000_000, "events": 2_000_000, "requests_per_mode": 2 * len(requests)}
for mode, r in runs.items():
    ms = np.array(r["s"]) * 1e3
    out[mode] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                 "mean_candidates": float(np.mean(r["candidates"])),
                 "two_tower_p50_ms": float(np.percentile(r["two_tower_ms"], 50)),
                 "two_tower_p99_ms": float(np.percentile(r["two_tower_ms"], 99))}
    print(mode, out[mode])
out["wall_s"] = time.time() - t0
out["command"] = "python3 docs/results/recall/hnsw_widen_ab.py"
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
