"""Side by side, per seed: the default config against the bagged coarse ranker
(``coarse.params.bag: true``, ``bag.yaml`` here), from two ``notefeed eval --stage feed --seeds``
JSONs of the same dataset and seeds.

``python3 docs/results/feed/bag/compare.py DEFAULT.json BAG.json`` prints, per seed, page HR@10
and NDCG@10, the coarse and fine stages' HR@10, the ratio to the best baseline and the coarse
stage's time per request, with the mean difference over seeds and its 95% t-interval.
"""
import json
import sys

import numpy as np
from scipy import stats

KEYS = ["hit@10", "ndcg@10", "stage.coarse.hit@10", "stage.fine.hit@10", "hit@10_vs_best", "ms.coarse/ltr"]


def pipeline_rows(path: str) -> dict[int, dict]:
    doc = json.load(open(path))
    return {r["seed"]: r for r in doc["rows"] if r["model"] == "pipeline" and r.get("seed") is not None}


def main(a_path: str, b_path: str) -> None:
    a, b = pipeline_rows(a_path), pipeline_rows(b_path)
    seeds = sorted(set(a) & set(b))
    print(f"{len(seeds)} seeds: {seeds}; default -> bag")
    for k in KEYS:
        x = np.array([a[s][k] for s in seeds], float)
        y = np.array([b[s][k] for s in seeds], float)
        d = y - x
        cells = ", ".join(f"{p:.4f}->{q:.4f}" for p, q in zip(x, y, strict=True))
        if len(d) > 1:
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            interval = f"[{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]"
        else:
            interval = "(one seed: no interval)"
        print(f"{k:22s} {cells}  | mean diff {d.mean():+.4f} {interval}")
    for name, rows in (("default", a), ("bag", b)):
        gates = [(rows[s]["train_report"]["coarse"].get("gate_passed"),
                  rows[s]["train_report"]["coarse"].get("bag_networks"),
                  rows[s]["train_report"].get("fine", {}).get("gate_passed")) for s in seeds]
        print(f"{name}: (coarse gate passed, bag networks, fine gate passed) per seed {gates}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
