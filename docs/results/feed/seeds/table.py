"""The README's feed-quality table from the multi-seed feed-eval JSONs in this folder.

``python3 docs/results/feed/seeds/table.py [movielens-100k movielens-small beauty lastfm-s3rec]``;
``table.py --steps [...]`` prints the per-seed stage steps, page-logic cost, seconds and coarse gate;
``--dir FOLDER`` (first) reads the JSONs from FOLDER instead (the same runs on another machine,
e.g. ``amd-epyc/``); ``--pattern GLOB`` (after ``--dir``) reads each log's seeds from every file
matching GLOB with ``{name}`` the log's name (default ``{name}.json``; e.g.
``--dir docs/results/feed/bag --pattern '{name}*_bag.json'``, where some logs ran one seed a file).

One row per log: test users (left out), the best baseline's mean HR@10, the page's mean HR@10
with the 95% t-interval over seeds, the per-seed ratios to that seed's best baseline (HR@10 and
NDCG@10), their lowest, the stage means (recall / coarse / fine / page), the lowest per-seed
stage step after recall (coarse - recall, fine - coarse; the page's change is the reported
re-ranking trade, ``rerank_cost``), how often the coarse gate passed (round 24 on) with its z
range, whether the fine gate passed per seed, and fitting seconds.
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).parent
PATTERN = "{name}.json"
NAMES = {"movielens-100k": "ml-100k", "movielens-small": "ml-latest-small", "beauty": "Beauty",
         "lastfm-s3rec": "LastFM (S3Rec)"}
STAGES = ("recall", "coarse", "fine", "page")


def per_seed(name):
    """{seed: {model: row}} from every file of ``name`` (a seed in two files is an error)."""
    per, source = {}, {}
    paths = sorted(HERE.glob(PATTERN.format(name=name)))
    if not paths:
        raise SystemExit(f"no file {HERE / PATTERN.format(name=name)}")
    for path in paths:
        for r in json.load(open(path))["rows"]:
            if isinstance(r.get("seed"), int):
                if source.setdefault(r["seed"], path) != path:
                    raise SystemExit(f"seed {r['seed']} of {name} in both {source[r['seed']]} and {path}")
                per.setdefault(r["seed"], {})[r["model"]] = r
    return per


def ratio(rows, k):
    return rows["pipeline"][k] / max(r[k] for m, r in rows.items() if m != "pipeline")


def half(x):
    x = np.asarray(x, float)
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def row(name):
    per = per_seed(name)
    seeds = sorted(per)
    p = [per[s]["pipeline"] for s in seeds]
    base = {m for m in per[seeds[0]] if m != "pipeline"}
    best = max(base, key=lambda m: np.mean([per[s][m]["hit@10"] for s in seeds]))
    best_ndcg = max(base, key=lambda m: np.mean([per[s][m]["ndcg@10"] for s in seeds]))
    hr = [r["hit@10"] for r in p]
    xh = [ratio(per[s], "hit@10") for s in seeds]
    xn = [ratio(per[s], "ndcg@10") for s in seeds]
    st = {k: [r[f"stage.{k}.hit@10"] for r in p] for k in STAGES}
    steps = [min(st["coarse"][i] - st["recall"][i], st["fine"][i] - st["coarse"][i]) for i in range(len(seeds))]
    gate = ["pass" if r["train_report"]["fine"].get("gate_passed") else "coarse" for r in p]
    cz = [r["train_report"]["coarse"].get("gate_z") for r in p]  # absent before round 24
    cpass = [r["train_report"]["coarse"].get("gate_passed") for r in p]
    coarse_gate = ("-" if None in cz else f"{sum(bool(c) for c in cpass)} of {len(p)} pass (z {min(cz):.1f}-{max(cz):.1f})")
    return (f"| {NAMES.get(name, name)} | {p[0]['test_users']:,} ({p[0]['unseen_targets_dropped']}) | {len(seeds)} "
            f"| {best} {np.mean([per[s][best]['hit@10'] for s in seeds]):.3f} "
            f"| **{np.mean(hr):.3f}** (±{half(hr):.3f}) "
            f"| {', '.join(f'{x:.2f}x' for x in xh)} | **{min(xh):.2f}x** "
            f"| {best_ndcg} {np.mean([per[s][best_ndcg]['ndcg@10'] for s in seeds]):.4f} / {np.mean([r['ndcg@10'] for r in p]):.4f}; per seed {', '.join(f'{x:.2f}x' for x in xn)} "
            f"| {' / '.join(f'{np.mean(st[k]):.3f}' for k in STAGES)} | {min(steps):+.4f} | {coarse_gate} | {', '.join(gate)} "
            f"| {min(r['fit_s'] for r in p):.0f}-{max(r['fit_s'] for r in p):.0f} |")


def steps(name):
    """Per seed: the fine stage's step over the coarse order, the page logic's cost
    (``rerank_cost.hit@10``), fitting and feed seconds, and the coarse gate's figures."""
    per = per_seed(name)
    p = [per[s]["pipeline"] for s in sorted(per)]
    fine = " / ".join(f"{r['stage.fine.hit@10'] - r['stage.coarse.hit@10']:+.3f}" for r in p)
    cost = [r.get("rerank_cost.hit@10", float("nan")) for r in p]
    cg = [r["train_report"]["coarse"] for r in p]
    gate = ", ".join(f"{c['gate_oof_hr10']:.3f} vs {c['gate_oof_base_hr10']:.3f}" for c in cg if "gate_z" in c)
    return (f"{NAMES.get(name, name)}: fine - coarse per seed {fine}; page logic cost mean {np.nanmean(cost):.4f}, "
            f"max {np.nanmax(cost):.4f}; fit {min(r['fit_s'] for r in p):,.0f}-{max(r['fit_s'] for r in p):,.0f} s + "
            f"feeds {min(r['recommend_s'] for r in p):.0f}-{max(r['recommend_s'] for r in p):.0f} s; "
            f"coarse gate out-of-fold HR@10 model vs formula: {gate or '-'}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--dir"]:
        HERE = Path(sys.argv[2])
        del sys.argv[1:3]
    if sys.argv[1:2] == ["--pattern"]:
        PATTERN = sys.argv[2]
        del sys.argv[1:3]
    if sys.argv[1:2] == ["--steps"]:
        for name in sys.argv[2:] or list(NAMES):
            print(steps(name))
        sys.exit(0)
    print("| dataset | test users (left out) | seeds | best baseline HR@10 (mean) | page HR@10 (mean ± seeds' 95%) "
          "| x best HR@10, per seed | lowest | NDCG@10 best baseline / page (means); x best per seed "
          "| HR@10 recall / coarse / fine / page (means) | lowest stage step after recall | coarse gate "
          "| fine gate "
          "| fit s a seed |")
    print("|" + "---|" * 13)
    for name in sys.argv[1:] or list(NAMES):
        print(row(name))
