"""The default config against a data window, per seed and user by user, from two
``notefeed eval --stage feed --seeds`` JSONs of the same dataset and seeds.

``python3 docs/results/data/window/compare.py WHOLE.json WINDOW.json OUT.json`` writes, per
seed, page HR@10 and NDCG@10 of each, the events the pipeline was fitted on and served from,
and the mean difference over seeds with its 95% t-interval; pooled over seeds, user by user:
how many test users only one config's top 10 hits (an exact binomial test of those, McNemar's).
"""
import json
import sys

import numpy as np
from scipy import stats


def rows(path: str) -> dict[int, dict]:
    return {r["seed"]: r for r in json.load(open(path))["rows"] if r["model"] == "pipeline" and "seed" in r
            and r.get("seed") is not None}


a_path, b_path, out_path = sys.argv[1:4]
a, b = rows(a_path), rows(b_path)
seeds = sorted(set(a) & set(b))
out: dict = {"command": f"python3 docs/results/data/window/compare.py {a_path} {b_path} {out_path}",
             "whole": a_path, "window": b_path, "seeds": seeds, "per_seed": {}, "mean_diff": {}}
for s in seeds:
    if a[s]["test_users_sha1"] != b[s]["test_users_sha1"]:
        raise SystemExit(f"seed {s}: the two runs' test users differ")
    out["per_seed"][s] = {k: [a[s][k], b[s][k]] for k in ("hit@10", "ndcg@10", "hit@10_vs_best", "served_events",
                                                          "fit_s")}
for k in ("hit@10", "ndcg@10"):
    d = np.array([b[s][k] - a[s][k] for s in seeds])
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    out["mean_diff"][k] = {"mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)]}
ra = np.concatenate([np.asarray(a[s]["page_rank"]) for s in seeds])
rb = np.concatenate([np.asarray(b[s]["page_rank"]) for s in seeds])
ha, hb = (ra >= 0) & (ra < 10), (rb >= 0) & (rb < 10)
only_a, only_b = int((ha & ~hb).sum()), int((hb & ~ha).sum())
out["user_by_user"] = {"user_runs": int(ra.size), "hit_only_whole": only_a, "hit_only_window": only_b,
                       "p_exact_binomial": float(stats.binomtest(only_b, only_a + only_b).pvalue)
                       if only_a + only_b else 1.0}
print(json.dumps(out, indent=1))
open(out_path, "w").write(json.dumps(out, indent=1))
