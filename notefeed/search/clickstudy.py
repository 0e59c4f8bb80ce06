"""Does a fusion learned from *clicks* beat RRF on graded relevance? (``notefeed
search-fusion-study``)

On the simulator's queries (:func:`notefeed.sim.search_data.sim_queries`, through
:func:`notefeed.search.evaluate.load_queries`) the index is built as the search eval builds it
(rewrites mined from the simulator's query log). A fixed random set of ``test_queries`` is held
out; the other queries, in a random order that stands for time, are *served* the way serving
ranks by default (RRF, personalised by the query's user history, rewrites on, a 10-result page)
and *clicked* by a simulated user, the cascade of the search-ads simulator
(:mod:`notefeed.sim.ads_search`) without ads: position ``p`` is examined with probability
``(1 + p) ** -eta`` (the feed simulator's position bias, ``BehaviourParams.position_eta``), an
examined result is clicked with probability ``R(g) = (2^g - 1) / 8`` (``g`` its grade for the
query and user) and a click ends the scan with probability ``R(g)``. Those pages and clicks go
through a real :class:`~notefeed.search.querylog.SearchLog` into
:func:`~notefeed.search.clickfusion.train_click_fusion`, the code serving uses.

Reported on the held-out queries (graded metrics of the search eval, rewrites on, personalised):
RRF, the click-trained fusion, and the fusion trained on the same log queries' *graded* relevance
(the search eval's learned fusion: what the clicks could at best teach), for the whole log and
for its first 1/8, 1/4 and 1/2 (the learning curve); with the per-query NDCG@10 difference to
RRF and its 95% interval (normal approximation).

With ``interleave`` (``--interleave N``) each fusion trained, and the graded one, is then
interleaved with RRF (team draft, :mod:`notefeed.search.interleave`) on ``N`` further searches
of the log's queries, clicked by the same simulated user: the verdict serving's ``fusion: auto``
would reach (:func:`interleave_searches`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from notefeed.search.clickfusion import train_click_fusion
from notefeed.search.config import SearchConfig
from notefeed.search.evaluate import _labels, _run, graded_metrics, load_queries
from notefeed.search.fusion import LearnedFusion
from notefeed.search.pipeline import SearchPipeline
from notefeed.search.querylog import SearchLog

__all__ = ["simulate_clicks", "click_fusion_study", "POSITION_ETA"]

#: the feed simulator's position bias exponent (``notefeed.sim.config.BehaviourParams.position_eta``;
#: a test keeps the two equal: search does not import the simulator)
POSITION_ETA = 0.35
G_MAX = 3
PAGE = 10


def simulate_clicks(grades: np.ndarray, u: np.ndarray, eta: float = POSITION_ETA) -> np.ndarray:
    """(n,) bool clicks of one cascade pass over a page with ``grades`` (n,), uniforms ``u`` (n, 3)."""
    g = np.clip(np.asarray(grades, np.float64), 0, G_MAX)
    r = (2.0 ** g - 1.0) / 2.0 ** G_MAX
    clicks = np.zeros(len(g), bool)
    for p in range(len(g)):
        if u[p, 0] >= (1.0 + p) ** -eta:
            continue
        if u[p, 1] < r[p]:
            clicks[p] = True
            if u[p, 2] < r[p]:
                break
    return clicks


def _diff(a: list[float], b: list[float]) -> dict[str, float]:
    d = np.asarray(a) - np.asarray(b)
    half = 1.96 * float(d.std(ddof=1)) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)]}  # type: ignore[dict-item]


def _per_query_ndcg(ranked: list[np.ndarray], rel: list[dict[int, int]], rel_min: int) -> list[float]:
    return [graded_metrics([r], [g], rel_min)["ndcg@10"] for r, g in zip(ranked, rel, strict=True)]


def interleave_searches(pipe: SearchPipeline, qs: Any, fusion: LearnedFusion, n: int, seed: int,
                        eta: float = POSITION_ETA, pages_needed: int | None = None) -> dict[str, Any]:
    """``n`` searches of queries drawn from ``qs`` (with their users' histories) served as
    team-draft interleavings of RRF and ``fusion`` and clicked by the simulated user: the
    interleaving verdict serving would reach (:func:`~notefeed.search.interleave.interleaving_verdict`
    on the first ``pages_needed`` pages with a click, default ``SearchConfig.interleave_pages``)
    and the tally over all ``n``."""
    import random

    from notefeed.search.interleave import interleaving_verdict

    rng = np.random.default_rng(seed)
    old, pipe.fusion, pipe._rand = pipe.fusion, fusion, random.Random(seed)
    pages = []
    try:
        for k, j in enumerate(rng.integers(0, len(qs), n).tolist()):
            res = pipe.search(qs.texts[j], PAGE, history=qs.history[j], fusion="interleave")
            items = res.items.tolist()
            c = simulate_clicks(np.array([qs.relevance[j].get(int(i), 0) for i in items]), rng.random((len(items), 3)), eta)
            pages.append({"ts": float(k), "items": [str(i) for i in items], "teams": res.teams,
                          "clicked": [str(items[p]) for p in np.flatnonzero(c)]})
    finally:
        pipe.fusion = old
    need = pages_needed or pipe.config.interleave_pages
    return {"searches": n, "verdict": interleaving_verdict(pages, need),
            "all_searches": interleaving_verdict(pages, max(1, sum(1 for p in pages if p["clicked"])))}


def click_fusion_study(dataset: str = "sim-demo", seed: int = 0, n_queries: int = 3500, test_queries: int = 500,
                       eta: float = POSITION_ETA, sampled: int = 0, interleave: int = 0) -> dict[str, Any]:
    t0 = time.perf_counter()
    qs, rel_min = load_queries(dataset, seed, False, n_queries)
    cfg = SearchConfig()
    pipe = SearchPipeline.build(qs.notes, cfg, query_log=qs.query_log, seed=seed)
    rng = np.random.default_rng(seed + 7)
    perm = rng.permutation(len(qs))
    test, logq = qs.subset(np.sort(perm[:test_queries])), qs.subset(perm[test_queries:])
    # serve and click the log queries (serving's default ranking), into a real search log
    urng = np.random.default_rng(seed + 8)
    tmp = tempfile.TemporaryDirectory()
    log = SearchLog(Path(tmp.name) / "search_log.sqlite")
    hist: dict[str, np.ndarray] = {}
    n_clicks, shown_grades = 0, []
    for j, q in enumerate(logq.texts):
        h = logq.history[j]
        res = pipe.search(q, PAGE, history=h, fusion="rrf")
        items = res.items.tolist()
        g = np.array([logq.relevance[j].get(int(i), 0) for i in items])
        shown_grades.append(g)
        c = simulate_clicks(g, urng.random((len(items), 3)), eta)
        rid = f"q{j}"
        hist[rid] = h
        ids = [pipe.note_ids[i] for i in items]
        log.log_query(rid, str(int(logq.users[j])), res.query.text, ids, ts=float(j))
        log.log_clicks([(rid, ids[p], str(int(logq.users[j])), j + 0.5, "click", p) for p in np.flatnonzero(c)])
        n_clicks += int(c.sum())
    pages = log.pages()
    log.close()
    tmp.cleanup()
    serve_s = time.perf_counter() - t0

    def history(page: dict) -> np.ndarray:
        return hist[str(page["request_id"])]

    # the test queries' candidates, and the graded reference fitted on the log queries
    runs = _run(pipe, test, rewrite=True)
    ranked_rrf = [r["items"][np.argsort(-pipe.score(r["x"], r["lex"], r["dense"], True, "rrf"),
                                        kind="stable")][:100] for r in runs]
    subsets = {"all": np.arange(len(test))}
    if test.reformulated.any():
        subsets["original"] = np.flatnonzero(~test.reformulated)
        subsets["reformulated"] = np.flatnonzero(test.reformulated)

    def rows(ranked: list[np.ndarray]) -> dict[str, dict[str, float]]:
        return {k: graded_metrics([ranked[i] for i in idx], [test.relevance[i] for i in idx], rel_min)
                for k, idx in subsets.items()}

    def rank_with(f: LearnedFusion) -> list[np.ndarray]:
        return [r["items"][np.argsort(-f.score(r["x"]), kind="stable")][:100] for r in runs]

    base_q = _per_query_ndcg(ranked_rrf, test.relevance, rel_min)
    out: dict[str, Any] = {"rrf+personal": {"metrics": rows(ranked_rrf)}}
    sizes = sorted({max(1, len(pages) // 8), max(1, len(pages) // 4), max(1, len(pages) // 2), len(pages)})
    curve = []
    for n in sizes:
        sub = pages[:n]  # the oldest n: a log that had only run that long
        rep = train_click_fusion(pipe, sub, history, min_clicked_pages=50, sampled=sampled, seed=seed)
        entry: dict[str, Any] = {"log_searches": n, "report": rep.to_json()}
        if rep.fusion is not None:
            ranked = rank_with(rep.fusion)
            entry["metrics"] = rows(ranked)
            entry["ndcg@10_minus_rrf"] = _diff(_per_query_ndcg(ranked, test.relevance, rel_min), base_q)
        curve.append(entry)
        if rep.fusion is not None and interleave > 0:
            entry["interleaving"] = interleave_searches(pipe, logq, rep.fusion, interleave, seed + 9, eta)
    out["learned-from-clicks+personal"] = curve[-1]
    out["learning_curve"] = curve
    tr = _run(pipe, logq, rewrite=False)  # as the search eval fits it (no rewrites), graded labels
    graded = LearnedFusion(model=cfg.learned_model).fit(*_labels(tr, logq, True))
    ranked_g = rank_with(graded)
    out["learned-from-grades+personal"] = {"metrics": rows(ranked_g), "ndcg@10_minus_rrf": _diff(
        _per_query_ndcg(ranked_g, test.relevance, rel_min), base_q)}
    if interleave > 0:
        out["learned-from-grades+personal"]["interleaving"] = interleave_searches(pipe, logq, graded, interleave,
                                                                                 seed + 9, eta)
    pipe.close()
    sg = np.concatenate(shown_grades) if shown_grades else np.zeros(0)
    return {"dataset": dataset, "seed": seed, "n_queries": len(qs), "test_queries": len(test),
            "log_searches": len(pages), "log_clicks": n_clicks,
            "log_searches_with_click": sum(1 for p in pages if p["clicked"]),
            "shown_grade_share": {str(k): float((sg == k).mean()) for k in range(G_MAX + 1)},
            "eta": eta, "sampled_negatives": sampled, "rel_min": rel_min, "interleaved_searches": interleave,
            "results": out,
            "serve_s": round(serve_s, 1), "total_s": round(time.perf_counter() - t0, 1)}
