"""All channels + merge at 1M notes (the ``notefeed bench recall --parts stage`` setting), side by
side in one process on one fitted stage: the code before this round and after, with the
two-tower index (which the explore channels share) as HNSW or IVF. 200 users; the arms run in
turn, then again in the reverse order.

- ``before``: user-to-user's full stable sort of every co-user, the tag channel's product over
  the whole term table, ``weighted_row_sum`` always sorting, HNSW (efSearch 128, widened to k).
- ``now``: the exact top neighbours (``stable_topk``), the product over the history's own
  terms and ``weighted_row_sum``'s column-long sums for many entries (the same candidates: ``same_candidates_as_before`` counts requests whose merged
  candidates and scores are equal), HNSW.
- ``ivf-<nprobe>[/e<nprobe>]``: ``now`` with the two-tower vectors in IVF (``ivf_lists``: 1,000
  lists), ``nprobe`` lists searched by the two-tower channel and (after ``/e``) by the two
  explore channels, which search the same index (without ``/e``: the same as the tower).

``recall_vs_exact``: per channel on that index, the share of the channel's candidates with an
exact index (every note scored, ``IndexFlatIP``) that it also returns (mean over the requests).

    python3 docs/results/recall/stage_1m_ab.py [notes]   # -> stage_1m_ab.json
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import round21_before  # this folder's: the code before this round's speed-ups

from notefeed.eval.timing import machine_info
from notefeed.recall import bench as b
from notefeed.recall.ann import AnnIndex

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
t0 = time.time()
ds, stage, _, fit_s = b.stage_setup(n, 2 * n)
requests = b.stage_requests(ds, 200)
tower = stage.channels["embedding/two-tower"]
hnsw = tower.index
t1 = time.time()
ivf = AnnIndex.of_rows(tower.item_vectors, kind="ivf", nprobe=64)
ivf_build_s = time.time() - t1
def use(arm):
    round21_before.use(arm == "before")
    tower.index = hnsw if not arm.startswith("ivf") else ivf
    explore = None
    if arm.startswith("ivf"):
        nprobe, _, explore = arm[4:].partition("/e")
        ivf._base.nprobe = int(nprobe)
    for name in ON_TOWER[1:]:
        stage.channels[name].nprobe = int(explore) if explore else None


ON_TOWER = ("embedding/two-tower", "explore/es-noise", "explore/multi-interest")


def channel_sets(ctx):
    lists, _ = stage.run_channels(ctx, False)
    return {c.channel: set(c.items.tolist()) for c in lists if c.channel in ON_TOWER}


# each tower channel's candidates with every note scored exactly, for recall
tower.index = AnnIndex.of_rows(tower.item_vectors, kind="flat")
truth = [channel_sets(ctx) for ctx in requests]
tower.index = hnsw

arms = ["before", "now", "ivf-64", "ivf-32", "ivf-32/e16", "ivf-32/e8"]
runs = {a: {"s": [], "cand": [], "per": {}, "recall": {}, "same": 0} for a in arms}
ref = {}
for order in (arms, arms[::-1]):
    for arm in order:
        use(arm)
        r = runs[arm]
        for j, ctx in enumerate(requests):
            t1 = time.perf_counter()
            m = stage.retrieve(ctx, 10_000)
            r["s"].append(time.perf_counter() - t1)
            r["cand"].append(len(m))
            for name, ms in m.timings_ms.items():
                r["per"].setdefault(name, []).append(ms)
            if order is arms:  # recall once per arm (the same answers the second time)
                for name, got in channel_sets(ctx).items():
                    r["recall"].setdefault(name, []).append(len(truth[j][name] & got) / max(1, len(truth[j][name])))
            key = (m.items.tobytes(), np.asarray(m.scores).tobytes())
            if arm == "before":
                ref[j] = key
            elif j in ref:
                r["same"] += int(ref[j] == key)
use("now")
out = {"notes": n, "events": 2 * n, "requests_per_arm": 2 * len(requests), "fit_s": fit_s,
       "ivf_build_s": ivf_build_s, "hnsw_ef_search": int(hnsw._base.hnsw.efSearch)}
for arm, r in runs.items():
    ms = np.array(r["s"]) * 1e3
    out[arm] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                "mean_candidates": float(np.mean(r["cand"])),
                "recall_vs_exact": {k: round(float(np.mean(v)), 4) for k, v in r["recall"].items()},
                "same_candidates_as_before": None if arm == "before" else r["same"],
                "per_channel_p50_p99_ms": {k: [round(float(np.percentile(v, 50)), 3), round(float(np.percentile(v, 99)), 3)]
                                           for k, v in r["per"].items()}}
    print(arm, {k: v for k, v in out[arm].items() if k != "per_channel_p50_p99_ms"}, flush=True)
out["wall_s"] = time.time() - t0
out["machine"] = machine_info()
out["command"] = "python3 docs/results/recall/stage_1m_ab.py" + (f" {n}" if n != 1_000_000 else "")
Path(__file__).with_suffix(".json" if n == 1_000_000 else f".{n}.json").write_text(json.dumps(out, indent=1) + "\n")
