"""The dense part of a 1M search index build on its own, with the encoder's sublinear TF per
feature (the encoder before session 39) and per term (the default since), alternately in one
process: ``encode_catalogue`` on the bench's simulated notes (fit on the 50k sample, every note
transformed 200k at a time, two projection threads), wall, user and system CPU seconds; and
how much the dense neighbours change: for 1,000 sampled notes, the share of each note's exact
top 10 by inner product (itself excluded) that the other vectors also give, between the two
scopes and, for scale, between the per-feature encoder fitted with SVD seed 0 and seed 1.
(Per-note cosines between two fits mean nothing: each SVD has its own basis.)

``python3 docs/results/search/round39/dense_ab.py [notes]`` writes ``dense_ab_<notes>.json`` here.
"""
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from notefeed.eval.timing import machine_info
from notefeed.search.dense import encode_catalogue, note_texts
from notefeed.sim.search_data import bench_corpus
from notefeed.threads import gc_paused


def usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    texts = note_texts(bench_corpus(n, 10, 0).notes)
    runs, vecs = [], {}
    for tf in ("feature", "term", "feature", "term"):
        with gc_paused():  # as in a build
            w, (u, s) = time.perf_counter(), usage()
            _, v = encode_catalogue(texts, tf_scope=tf)
            u2, s2 = usage()
        runs.append({"tf_scope": tf, "wall_s": round(time.perf_counter() - w, 1), "user_s": round(u2 - u, 1),
                     "sys_s": round(s2 - s, 1)})
        vecs[tf] = v
        print(runs[-1], flush=True)
    with gc_paused():
        _, vecs["feature_seed1"] = encode_catalogue(texts, seed=1, tf_scope="feature")
    rows = np.random.default_rng(0).choice(n, 1000, replace=False)

    def top10(v: np.ndarray) -> np.ndarray:
        out = []
        for block in np.array_split(rows, 20):  # 50 x n scores at a time
            s = v[block] @ v.T
            s[np.arange(len(block)), block] = -np.inf  # not the note itself
            out.append(np.argpartition(-s, 10, axis=1)[:, :10])
        return np.concatenate(out)

    tops = {k: top10(v) for k, v in vecs.items()}

    def overlap(a: str, b: str) -> float:
        return round(float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(tops[a], tops[b], strict=True)])), 4)

    out = {"notes": n, "runs": runs,
           "top10_overlap": {"feature_vs_term": overlap("feature", "term"),
                             "feature_seed0_vs_seed1": overlap("feature", "feature_seed1")},
           "machine": machine_info(), "command": f"python3 docs/results/search/round39/dense_ab.py {n}"}
    path = Path(__file__).parent / f"dense_ab_{n}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
