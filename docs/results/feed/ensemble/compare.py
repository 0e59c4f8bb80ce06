"""Two feed-eval JSONs of the same dataset and seeds side by side: each run's page HR@10,
per-seed ratios against that seed's best baseline, stage HR@10, every model's HR@10 per seed
(the baselines should agree), and the paired page difference B - A with its 95% t-interval.

``python3 docs/results/feed/ensemble/compare.py A.json B.json``
"""
import json, sys
import numpy as np
from scipy import stats
def rows(f):
    d = json.load(open(f)); per = {}; summ = None
    for r in d["rows"]:
        if r["model"] == "pipeline" and "hit@10_vs_best_per_seed" in r: summ = r
        s = r.get("seed")
        if isinstance(s, int): per.setdefault(s, {})[r["model"]] = r
    return per, summ
a, sa = rows(sys.argv[1]); b, sb = rows(sys.argv[2])
for name, sm in (("A", sa), ("B", sb)):
    print(name, "HR", round(sm["hit@10"], 4), "per-seed x", [round(x, 3) for x in sm["hit@10_vs_best_per_seed"]], "ndcg x", [round(x, 3) for x in sm["ndcg@10_vs_best_per_seed"]],
          "mean x", round(sm["hit@10_vs_best_mean"], 3), round(sm["ndcg@10_vs_best_mean"], 3),
          "stages", [round(sm[k], 4) for k in ("stage.recall.hit@10", "stage.coarse.hit@10", "stage.fine.hit@10", "stage.page.hit@10")])
for s in sorted(a):
    print(s, {m: (round(a[s][m]["hit@10"], 4), round(b[s][m]["hit@10"], 4)) for m in a[s]}, "fit_s", round(a[s]["pipeline"]["fit_s"]), round(b[s]["pipeline"]["fit_s"]))
for k in ("hit@10", "ndcg@10"):
    d = np.array([b[s]["pipeline"][k] - a[s]["pipeline"][k] for s in sorted(a)])
    h = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    print(k, "diff", round(d.mean(), 4), [round(d.mean() - h, 4), round(d.mean() + h, 4)], [round(x, 4) for x in d])
