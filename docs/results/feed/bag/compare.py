"""Side by side, per seed: the default config against the bagged coarse ranker
(``coarse.params.bag: true``, ``bag.yaml`` here), from two ``notefeed eval --stage feed --seeds``
JSONs of the same dataset and seeds.

``python3 docs/results/feed/bag/compare.py DEFAULT.json BAG.json`` prints, per seed, page HR@10
and NDCG@10, the coarse and fine stages' HR@10, the ratio to the best baseline and the coarse
stage's time per request, with the mean difference over seeds and its 95% t-interval. Either
argument may be a quoted glob (``'movielens-small_seed*_default.json'``): the seeds of every
file it matches, for logs run one seed a file.

Runs that carry ``page_rank`` (each test user's held-out note's page position; evaluations
from round 27 on) are also compared user by user, the seeds pooled: how many users only one
config's page hits in its top 10 (an exact binomial test of those, McNemar's) and the mean
per-user NDCG@10 difference with its 95% interval. That treats each seed's fitted models as
given: it says whether these runs' pages differ, not how much another seed's would.
"""
import glob
import json
import sys

import numpy as np
from scipy import stats

KEYS = ["hit@10", "ndcg@10", "stage.coarse.hit@10", "stage.fine.hit@10", "hit@10_vs_best", "ms.coarse/ltr"]


def pipeline_rows(pattern: str) -> dict[int, dict]:
    rows: dict[int, dict] = {}
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"no file matches {pattern}")
    for path in paths:
        for r in json.load(open(path))["rows"]:
            if r["model"] == "pipeline" and r.get("seed") is not None:
                if r["seed"] in rows:
                    raise SystemExit(f"seed {r['seed']} twice in {pattern}")
                rows[r["seed"]] = r
    return rows


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
    paired(a, b, seeds)
    for name, rows in (("default", a), ("bag", b)):
        gates = [(rows[s]["train_report"]["coarse"].get("gate_passed"),
                  rows[s]["train_report"]["coarse"].get("bag_networks"),
                  rows[s]["train_report"].get("fine", {}).get("gate_passed")) for s in seeds]
        print(f"{name}: (coarse gate passed, bag networks, fine gate passed) per seed {gates}")


def paired(a: dict[int, dict], b: dict[int, dict], seeds: list[int]) -> None:
    both = [s for s in seeds if "page_rank" in a[s] and "page_rank" in b[s]]
    if not both:
        print("user by user: the runs have no page_rank (evaluations before round 27)")
        return
    for s in both:
        if a[s]["test_users_sha1"] != b[s]["test_users_sha1"]:
            raise SystemExit(f"seed {s}: the two runs' test users differ")
    ra = np.concatenate([np.asarray(a[s]["page_rank"]) for s in both])
    rb = np.concatenate([np.asarray(b[s]["page_rank"]) for s in both])
    ha, hb = (ra >= 0) & (ra < 10), (rb >= 0) & (rb < 10)
    only_a, only_b = int((ha & ~hb).sum()), int((hb & ~ha).sum())
    p = stats.binomtest(only_b, only_a + only_b).pvalue if only_a + only_b else 1.0
    gain = lambda r: np.where((r >= 0) & (r < 10), 1 / np.log2(np.maximum(r, 0) + 2), 0.0)  # noqa: E731
    d = gain(rb) - gain(ra)
    half = 1.96 * d.std(ddof=1) / np.sqrt(d.size)
    print(f"user by user, seeds {both} pooled ({d.size} user runs): top 10 hit only by default {only_a}, "
          f"only by bag {only_b} (exact binomial p {p:.3f}); NDCG@10 mean difference {d.mean():+.4f} "
          f"[{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]")


if __name__ == "__main__":
    main(*sys.argv[1:3])
