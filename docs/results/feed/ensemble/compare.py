"""Feed-eval JSONs of the same dataset and seeds side by side: each run's page HR@10, per-seed
ratios against that seed's best baseline, stage HR@10, every model's HR@10 per seed (the
baselines should agree), and the paired page difference B - A with its 95% t-interval.

``python3 docs/results/feed/ensemble/compare.py A.json B.json``; either side may be several
JSONs joined by commas (one seed each, say), whose seeds are pooled.
"""
import json, sys
import numpy as np
from scipy import stats

STAGES = ("stage.recall.hit@10", "stage.coarse.hit@10", "stage.fine.hit@10", "stage.page.hit@10")


def rows(arg):
    per = {}
    for f in arg.split(","):
        for r in json.load(open(f))["rows"]:
            s = r.get("seed")
            if isinstance(s, int):
                per.setdefault(s, {})[r["model"]] = r
    return per


def ratio(seed_rows, k):
    best = max(r[k] for m, r in seed_rows.items() if m != "pipeline")
    return seed_rows["pipeline"][k] / best


a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert sorted(a) == sorted(b), f"seeds differ: {sorted(a)} vs {sorted(b)}"
seeds = sorted(a)
for name, per in (("A", a), ("B", b)):
    hr = [per[s]["pipeline"]["hit@10"] for s in seeds]
    print(name, "HR", round(float(np.mean(hr)), 4), "per-seed", [round(x, 4) for x in hr],
          "x best", [round(ratio(per[s], "hit@10"), 3) for s in seeds],
          "ndcg x", [round(ratio(per[s], "ndcg@10"), 3) for s in seeds],
          "stages", [round(float(np.mean([per[s]["pipeline"][k] for s in seeds])), 4) for k in STAGES])
for s in seeds:
    print(s, {m: (round(a[s][m]["hit@10"], 4), round(b[s][m]["hit@10"], 4)) for m in a[s]},
          "fit_s", round(a[s]["pipeline"]["fit_s"]), round(b[s]["pipeline"]["fit_s"]))
for k in ("hit@10", "ndcg@10"):
    d = np.array([b[s]["pipeline"][k] - a[s]["pipeline"][k] for s in seeds])
    h = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    print(k, "diff", round(float(d.mean()), 4), [round(float(d.mean() - h), 4), round(float(d.mean() + h), 4)], [round(float(x), 4) for x in d])
