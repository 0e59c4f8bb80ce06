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

The fused methods' lists are cut as :meth:`SearchPipeline.search` cuts a page (the configured
re-ranker and, where the notes have creators, the small-creator rule); ``small_creator@10`` is
the small creators' share of the top 10. ``notefeed eval --stage search-page`` compares the
page's settings (the rule's share and depth, SSD) on the same rankings
(:func:`evaluate_page_settings`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from notefeed.eval.metrics import mean_ci
from notefeed.eval.stages import EVAL_STAGES
from notefeed.schema import SMALL_CREATOR_FOLLOWERS
from notefeed.search.config import SearchConfig
from notefeed.search.fusion import LearnedFusion, without_personal
from notefeed.search.pipeline import SearchPipeline, SmallCreatorOf, small_creator_lookup
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


def _rank(pipe: SearchPipeline, r: dict, method: str, small: SmallCreatorOf | None = None) -> np.ndarray:
    """The top 100 of ``method``; a fused method's page as :meth:`SearchPipeline.search` picks
    it (the re-ranker and, given ``small``, the small-creator rule of ``pipe.config``)."""
    if method == "bm25":
        return r["lex"].items
    if method == "dense":
        return r["dense"].items
    fusion = "learned" if ("learned" in method or "linear" in method) else "rrf"
    s = pipe.score(r["x"], r["lex"], r["dense"], personal="personal" in method, fusion=fusion)
    return pipe._ranked(r["items"], s, None, 100, {}, small)[0][:100]


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


@dataclass
class _Prepared:
    """One dataset and seed made ready: the index, the test queries' retrieval and features
    (``runs[rewrite]``), the four fitted fusions, and the small-creator flags (if any)."""

    pipe: SearchPipeline
    qs: QuerySet
    rel_min: int
    train: QuerySet
    test: QuerySet
    fusions: dict[tuple[str, bool], LearnedFusion]
    runs: dict[bool, list[dict]]
    #: (n_notes,) bool: the note's creator is small (under 1,000 followers, or the study's threshold)
    flags: np.ndarray | None
    build_s: float

    @property
    def small(self) -> SmallCreatorOf | None:
        return small_creator_lookup(self.flags) if self.flags is not None else None

    def ranked(self, method: str) -> list[np.ndarray]:
        """Every test query's top 100 by ``method`` (the pipeline's config as it is now)."""
        self.pipe.fusion = self.fusions["linear" if "linear" in method else "learned", "personal" in method]
        return [_rank(self.pipe, r, method, self.small) for r in self.runs[method.endswith("+rewrite")]]


def _prepare(name: str, seed: int, quick: bool, cfg: SearchConfig, n_queries: int | None) -> _Prepared:
    qs, rel_min = load_queries(name, seed, quick, n_queries)
    build_t = time.perf_counter()
    pipe = SearchPipeline.build(qs.notes, cfg, query_log=qs.query_log, seed=seed)
    build_s = time.perf_counter() - build_t
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(qs))
    train, test = qs.subset(np.sort(perm[: len(qs) // 2])), qs.subset(np.sort(perm[len(qs) // 2:]))
    tr = _run(pipe, train, rewrite=False)
    fus = {(m, p): fit_graded(cfg.learned_model if m == "learned" else "linear", cfg.learned_objective, tr, train, p)
           for m in ("learned", "linear") for p in (False, True)}
    runs = {False: _run(pipe, test, rewrite=False), True: _run(pipe, test, rewrite=True)}
    flags = qs.note_followers < SMALL_CREATOR_FOLLOWERS if qs.note_followers is not None else None
    return _Prepared(pipe, qs, rel_min, train, test, fus, runs, flags, build_s)


def _small_at(ranked: list[np.ndarray], flags: np.ndarray | None, k: int = 10) -> float:
    """Mean share of small creators' notes in the top ``k`` (NaN without creators)."""
    if flags is None:
        return float("nan")
    return float(np.mean([flags[r[:k]].mean() if len(r) else 0.0 for r in ranked]))


def _floor_met(ranked: list[np.ndarray], flags: np.ndarray, share: float = 0.5, k: int = 10) -> float:
    """Share of pages whose every first ``t <= k`` notes hold at least ``floor(share * t)``
    small creators' notes (the rule's guarantee where the candidates allow it)."""
    need = np.floor(share * np.arange(1, k + 1) + 1e-9)
    return float(np.mean([bool((np.cumsum(flags[r[:k]]) >= need[: len(r[:k])]).all()) for r in ranked]))


def evaluate_search(name: str, seed: int = 0, quick: bool = False, config: SearchConfig | None = None,
                    n_queries: int | None = None) -> list[dict]:
    t0 = time.perf_counter()
    cfg = config or SearchConfig()
    prep = _prepare(name, seed, quick, cfg, n_queries)
    test = prep.test
    rows = []
    subsets = {"all": np.arange(len(test))}
    if test.reformulated.any():
        subsets["original"] = np.flatnonzero(~test.reformulated)
        subsets["reformulated"] = np.flatnonzero(test.reformulated)
    for method in METHODS:
        ranked = prep.ranked(method)
        for sub, idx in subsets.items():
            m = graded_metrics([ranked[i] for i in idx], [test.relevance[i] for i in idx], prep.rel_min)
            rows.append({"dataset": name, "method": method, "queries": sub, "n_queries": len(idx), **m,
                         "small_creator@10": _small_at([ranked[i] for i in idx], prep.flags)})
    base = {(r["queries"]): r["ndcg@10"] for r in rows if r["method"] == "bm25"}
    for r in rows:
        r["ndcg@10_vs_bm25"] = r["ndcg@10"] / base[r["queries"]] if base[r["queries"]] > 0 else float("nan")
        r["notes"], r["build_s"] = len(prep.qs.notes), round(prep.build_s, 2)
        r["total_s"] = round(time.perf_counter() - t0, 2)
        r["rel_min"], r["seed"], r["train_queries"] = prep.rel_min, seed, len(prep.train)
        r["small_creator_rule"] = _rule_label(cfg, prep.small)
    prep.pipe.close()
    return rows


def _rule_label(cfg: SearchConfig, small: SmallCreatorOf | None) -> str:
    if small is None:
        return "n/a (no creators)"
    if cfg.small_creator_share <= 0:
        return "off"
    return f"share {cfg.small_creator_share:g}, depth {cfg.small_creator_depth}"


#: the page settings the study compares: (re-ranker, small-creator share, depth); a grid holds
#: the rule off without a re-ranker (the first here), the baseline of every paired change
PAGE_GRID: tuple[tuple[str | None, float, int], ...] = (
    (None, 0.0, 0), (None, 0.3, 10), (None, 0.3, 20), (None, 0.3, 50), (None, 0.5, 10), (None, 0.5, 20),
    (None, 0.5, 50), (None, 0.5, 100), ("rerank/ssd", 0.0, 0), ("rerank/ssd", 0.5, 50))
#: who counts as small in the study: the rule's threshold, and a stress test where small
#: creators' notes are about a quarter of the simulator's catalogue instead of three quarters
RULE_SMALL_BELOW = (SMALL_CREATOR_FOLLOWERS, 100)
#: the served rankings the study applies each setting to (RRF before a fusion is trained)
RULE_METHODS = ("hybrid-rrf+personal+rewrite", "hybrid-learned+personal+rewrite")


def _is_base(row: dict) -> bool:
    """A row of the page study's baseline: no re-ranker, the rule off."""
    return row["rerank"] == "none" and row["share"] == 0


def _categories_at(ranked: list[np.ndarray], cats: np.ndarray, k: int = 10) -> float:
    """Mean number of distinct categories among the top ``k`` (the page's topical diversity)."""
    return float(np.mean([len(np.unique(cats[r[:k]])) for r in ranked]))


def evaluate_page_settings(name: str, seed: int = 0, quick: bool = False, config: SearchConfig | None = None,
                           n_queries: int | None = None,
                           grid: tuple[tuple[str | None, float, int], ...] = PAGE_GRID,
                           small_below: tuple[int, ...] = RULE_SMALL_BELOW) -> list[dict]:
    """Per page setting in ``grid`` (re-ranker, small-creator share and depth) and method of
    :data:`RULE_METHODS`: MRR@10, NDCG@10, Recall@100, the distinct categories of the top 10,
    the small creators' share of the top 10 and the share of pages whose every prefix is at
    least half small creators' notes, on the test queries of ``name`` (one index and the same
    fitted fusions for every setting; the re-ranker with its default parameters). Each
    follower count in ``small_below`` is a separate run of the grid: a creator under it counts
    as small (the rule's is 1,000; a lower one makes small creators scarce, a stress test of
    what the rule costs where it binds)."""
    t0 = time.perf_counter()
    cfg = config or SearchConfig()
    prep = _prepare(name, seed, quick, cfg, n_queries)
    if prep.qs.note_followers is None:
        prep.pipe.close()
        raise ValueError(f"search page eval: {name!r} has no creators (use a simulator query set)")
    rows = []
    for below in small_below:
        prep.flags = prep.qs.note_followers < below
        for rerank, share, depth in grid:
            prep.pipe.config = cfg.with_overrides(rerank=rerank, small_creator_share=share,
                                                  small_creator_depth=max(depth, 1))
            for method in RULE_METHODS:
                ranked = prep.ranked(method)
                m = graded_metrics(ranked, prep.test.relevance, prep.rel_min)
                rows.append({"dataset": name, "method": method, "small_below": below, "rerank": rerank or "none",
                             "share": share, "depth": depth if share > 0 else 0, "n_queries": len(prep.test), **m,
                             "categories@10": _categories_at(ranked, prep.pipe._cat_arr),
                             "small_creator@10": _small_at(ranked, prep.flags),
                             "pages_half_small@10": _floor_met(ranked, prep.flags),
                             "small_notes": float(prep.flags.mean()), "seed": seed})
    prep.pipe.close()
    off = {(r["method"], r["small_below"]): r["ndcg@10"] for r in rows if _is_base(r)}
    for r in rows:
        r["ndcg@10_vs_base"] = r["ndcg@10"] / off[r["method"], r["small_below"]]
        r["total_s"] = round(time.perf_counter() - t0, 2)
    return rows


def summarize_page(rows: list[dict]) -> list[dict]:
    """Per (dataset, method, small_below, rerank, share, depth) over seeds: means and 95%
    t-intervals of every figure of :func:`evaluate_page_settings`, and the paired per-seed
    NDCG@10 change from the baseline (no re-ranker, the rule off)."""
    runs = [r for r in rows if "summary" not in r]
    off = {(r["dataset"], r["method"], r["small_below"], r["seed"]): r["ndcg@10"] for r in runs if _is_base(r)}
    groups: dict[tuple[str, str, int, str, float, int], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["method"], r["small_below"], r["rerank"], r["share"], r["depth"]),
                          []).append(r)
    out = []
    for (ds, method, below, rerank, share, depth), rs in groups.items():
        seeds = sorted(int(r["seed"]) for r in rs)
        row: dict = {"dataset": ds, "method": method, "small_below": below, "rerank": rerank, "share": share,
                     "depth": depth, "seeds": seeds, "n_seeds": len(seeds),
                     "summary": f"mean and 95% t-interval over seeds {seeds}"}
        for k in ("ndcg@10", "mrr@10", "recall@100", "categories@10", "small_creator@10", "pages_half_small@10",
                  "small_notes"):
            row[k], row[f"{k}_ci95_seeds"] = mean_ci([float(r[k]) for r in rs])
        diff = [float(r["ndcg@10"]) - off[ds, method, below, r["seed"]] for r in rs]
        row["ndcg@10_change"], row["ndcg@10_change_ci95_seeds"] = mean_ci(diff)
        out.append(row)
    return out


#: the per-query-set figures a seed summary averages
_SUMMARY_KEYS = ("mrr@10", "ndcg@10", "recall@100", "ndcg@10_vs_bm25", "small_creator@10")


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
            vals = [float(per_seed[s].get(k, np.nan)) for s in seeds]  # rows of older runs lack a newer figure
            row[k], row[f"{k}_ci95_seeds"] = mean_ci(vals)
            if k in ("ndcg@10", "ndcg@10_vs_bm25"):
                row[f"{k}_per_seed"] = vals
        out.append(row)
    return out


@EVAL_STAGES.register("search-page")
def eval_page_stage(datasets: list[str], models: list[str] | None, seed: int, quick: bool,
                    report_dir: Path | None, seeds: list[int] | None = None) -> list[dict]:
    """The search page's settings (:data:`PAGE_GRID`: the small-creator rule, SSD) on simulator
    query sets: rows per (dataset, seed, method, setting); with ``--seeds``,
    :func:`summarize_page` rows follow. ``models`` filters the methods."""
    rows = []
    for name in datasets:
        for s in (seeds if seeds else [seed]):
            rows.extend(r for r in evaluate_page_settings(name, s, quick) if not models or r["method"] in models)
    return rows + summarize_page(rows) if seeds else rows


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
