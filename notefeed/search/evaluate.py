"""``notefeed eval --stage search``: MRR@10, NDCG@10 and Recall@100 of BM25 alone, dense alone,
hybrid (RRF), hybrid + personalisation, learned fusion (with and without personalisation) and
the full stack with query rewriting; separately on reformulated (alias) queries. The learned
fusion is ``config.learned_model`` (boosted trees by default); ``hybrid-linear*`` rows are the
logistic fusion on the same features, for comparison.

Datasets: ``movielens-small`` (user tags as queries, :func:`movielens_tag_queries`) and the
simulator (``sim`` / ``sim-tiny`` / ``sim-demo``: :func:`notefeed.sim.search_data.sim_queries`,
named in :data:`~notefeed.search.queries.QUERY_SETS` once :mod:`notefeed.sim.search_data` is
imported). Queries are split in half by ``seed``: the learned fusion is fitted on one half, every row is scored on the other.
NDCG uses gains ``2^grade - 1``; MRR and Recall count grades ``>= rel_min`` as relevant (2 on
the simulator, where grade 1 is "the topic is somewhere in the note's mixture", 1 on MovieLens).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from notefeed.eval.metrics import mean_ci
from notefeed.eval.stages import EVAL_STAGES
from notefeed.search.config import SearchConfig
from notefeed.search.fusion import LearnedFusion, without_personal
from notefeed.search.pipeline import SearchPipeline
from notefeed.search.queries import QUERY_SETS, QuerySet, movielens_tag_queries

__all__ = ["graded_metrics", "evaluate_search", "load_queries", "METHODS"]

METHODS = ("bm25", "dense", "hybrid-rrf", "hybrid-rrf+personal", "hybrid-learned", "hybrid-learned+personal",
           "hybrid-learned+personal+rewrite", "hybrid-linear", "hybrid-linear+personal")


def graded_metrics(ranked: list[np.ndarray], relevance: list[dict[int, int]], rel_min: int = 1) -> dict[str, float]:
    """Mean MRR@10, NDCG@10 (gain 2^g - 1, ideal from all graded items) and Recall@100
    (relevant: grade >= ``rel_min``) over queries; ``ranked`` item ids best first."""
    mrr, ndcg, rec = [], [], []
    disc = 1.0 / np.log2(np.arange(2, 12))
    for items, rel in zip(ranked, relevance, strict=True):
        g = np.array([rel.get(int(i), 0) for i in items[:100]], np.float64)
        hit = np.flatnonzero(g[:10] >= rel_min)
        mrr.append(1.0 / (hit[0] + 1) if len(hit) else 0.0)
        ideal = np.sort(np.fromiter(rel.values(), np.float64))[::-1][:10]
        idcg = float(((2 ** ideal - 1) * disc[: len(ideal)]).sum())
        dcg = float(((2 ** g[:10] - 1) * disc[: len(g[:10])]).sum())
        ndcg.append(dcg / idcg if idcg > 0 else 0.0)
        n_rel = sum(1 for v in rel.values() if v >= rel_min)
        rec.append(float((g >= rel_min).sum()) / min(n_rel, 100) if n_rel else 0.0)
    return {"mrr@10": float(np.mean(mrr)), "ndcg@10": float(np.mean(ndcg)), "recall@100": float(np.mean(rec))}


def load_queries(name: str, seed: int, quick: bool, n_queries: int | None = None) -> tuple[QuerySet, int]:
    """(queries, rel_min) for dataset ``name``."""
    if name.startswith("movielens"):
        from notefeed.data.loaders import load_dataset

        return movielens_tag_queries(load_dataset("movielens-small"), seed,
                                     max_queries=200 if quick else n_queries), 1
    if name in QUERY_SETS:
        return QUERY_SETS.get(name)(seed, quick, n_queries)
    hint = "" if "sim" in QUERY_SETS else " (the sim* query sets: import notefeed.sim.search_data)"
    raise ValueError(f"search eval: unknown dataset {name!r}; known: movielens-small, sim, sim-tiny, "
                     f"sim-demo{hint}")


def _run(pipe: SearchPipeline, qs: QuerySet, rewrite: bool) -> list[dict[str, object]]:
    """Per query: retrieved lists and candidate features (with and without the user)."""
    out = []
    for j, q in enumerate(qs.texts):
        pq = pipe.understanding.parse(q, rewrite=rewrite)
        lex, dense = pipe.retrieve(pq)
        prof = pipe.profile(qs.history[j]) if qs.users[j] >= 0 else None
        items, x = pipe.features(pq, lex, dense, prof)
        out.append({"lex": lex, "dense": dense, "items": items, "x": x})
    return out


def _rank(pipe: SearchPipeline, r: dict, method: str) -> np.ndarray:
    if method == "bm25":
        return r["lex"].items
    if method == "dense":
        return r["dense"].items
    fusion = "learned" if ("learned" in method or "linear" in method) else "rrf"
    s = pipe.score(r["x"], r["lex"], r["dense"], personal="personal" in method, fusion=fusion)
    return r["items"][np.argsort(-s, kind="stable")][:100]


def _top_grade(qs: QuerySet) -> int:
    return max(max(r.values(), default=1) for r in qs.relevance) or 1


def _labels(runs: list[dict], qs: QuerySet, personal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(candidate features, grade / top grade) of every query's candidates, queries in order."""
    xs, ys = [], []
    top = _top_grade(qs)
    for r, rel in zip(runs, qs.relevance, strict=True):
        x = r["x"] if personal else without_personal(r["x"])
        xs.append(x)
        ys.append(np.array([rel.get(int(i), 0) / top for i in r["items"]], np.float64))
    return np.concatenate(xs), np.concatenate(ys)


def fit_graded(model: str, objective: str, runs: list[dict], qs: QuerySet, personal: bool) -> LearnedFusion:
    """A learned fusion fitted on the graded relevance of ``qs`` (``runs``: :func:`_run`'s):
    trees with ``objective="lambdarank"`` rank each query's candidates by their grades; else
    it is fitted to grade / top grade."""
    x, y = _labels(runs, qs, personal)
    if model == "trees" and objective == "lambdarank":
        return LearnedFusion(model=model).fit(x, y * _top_grade(qs), groups=np.array([len(r["items"]) for r in runs]),
                                              objective=objective)
    return LearnedFusion(model=model).fit(x, y, **({"objective": objective} if model == "trees" else {}))


def evaluate_search(name: str, seed: int = 0, quick: bool = False, config: SearchConfig | None = None,
                    n_queries: int | None = None) -> list[dict]:
    t0 = time.perf_counter()
    qs, rel_min = load_queries(name, seed, quick, n_queries)
    build_t = time.perf_counter()
    cfg = config or SearchConfig()
    pipe = SearchPipeline.build(qs.notes, cfg, query_log=qs.query_log, seed=seed)
    build_s = time.perf_counter() - build_t
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(qs))
    train, test = qs.subset(np.sort(perm[: len(qs) // 2])), qs.subset(np.sort(perm[len(qs) // 2:]))
    tr = _run(pipe, train, rewrite=False)
    fus = {(m, p): fit_graded(cfg.learned_model if m == "learned" else "linear", cfg.learned_objective, tr, train, p)
           for m in ("learned", "linear") for p in (False, True)}
    runs = {False: _run(pipe, test, rewrite=False), True: _run(pipe, test, rewrite=True)}
    rows = []
    subsets = {"all": np.arange(len(test))}
    if test.reformulated.any():
        subsets["original"] = np.flatnonzero(~test.reformulated)
        subsets["reformulated"] = np.flatnonzero(test.reformulated)
    for method in METHODS:
        rw = method.endswith("+rewrite")
        pipe.fusion = fus["linear" if "linear" in method else "learned", "personal" in method]
        ranked = [_rank(pipe, r, method) for r in runs[rw]]
        for sub, idx in subsets.items():
            m = graded_metrics([ranked[i] for i in idx], [test.relevance[i] for i in idx], rel_min)
            rows.append({"dataset": name, "method": method, "queries": sub, "n_queries": len(idx), **m})
    base = {(r["queries"]): r["ndcg@10"] for r in rows if r["method"] == "bm25"}
    for r in rows:
        r["ndcg@10_vs_bm25"] = r["ndcg@10"] / base[r["queries"]] if base[r["queries"]] > 0 else float("nan")
        r["notes"], r["build_s"], r["total_s"] = len(qs.notes), round(build_s, 2), round(time.perf_counter() - t0, 2)
        r["rel_min"], r["seed"], r["train_queries"] = rel_min, seed, len(train)
    pipe.close()
    return rows


#: the per-query-set figures a seed summary averages
_SUMMARY_KEYS = ("mrr@10", "ndcg@10", "recall@100", "ndcg@10_vs_bm25")


def summarize_seeds(rows: list[dict]) -> list[dict]:
    """Per (dataset, method, query subset) over the seeds' rows: the mean and 95% t-interval
    (half-width, ``*_ci95_seeds``) of MRR@10, NDCG@10, Recall@100 and of each seed's NDCG@10
    ratio to that seed's BM25 (``ndcg@10_vs_bm25``), and the per-seed values of the last two
    and of the query count (a seed draws its own queries)."""
    runs = [r for r in rows if "summary" not in r]
    groups: dict[tuple[str, str, str], dict[int, dict]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["method"], r["queries"]), {})[int(r["seed"])] = r
    out = []
    for (ds, method, queries), per_seed in groups.items():
        seeds = sorted(per_seed)
        row: dict = {"dataset": ds, "method": method, "queries": queries,
                     "n_queries_per_seed": [per_seed[x]["n_queries"] for x in seeds],
                     "summary": f"mean and 95% t-interval over seeds {seeds}", "seeds": seeds, "n_seeds": len(seeds)}
        for k in _SUMMARY_KEYS:
            vals = [float(per_seed[s][k]) for s in seeds]
            row[k], row[f"{k}_ci95_seeds"] = mean_ci(vals)
            if k in ("ndcg@10", "ndcg@10_vs_bm25"):
                row[f"{k}_per_seed"] = vals
        out.append(row)
    return out


@EVAL_STAGES.register("search")
def eval_stage(datasets: list[str], models: list[str] | None, seed: int, quick: bool,
               report_dir: Path | None, seeds: list[int] | None = None) -> list[dict]:
    """Rows per (dataset, method, query subset); ``models`` filters the methods. With
    ``seeds`` (``--seeds``) every dataset is evaluated once per seed (queries, split and
    fusions drawn anew), then :func:`summarize_seeds` rows follow."""
    rows = []
    for name in datasets:
        for s in (seeds if seeds else [seed]):
            rows.extend(r for r in evaluate_search(name, s, quick) if not models or r["method"] in models)
    return rows + summarize_seeds(rows) if seeds else rows
