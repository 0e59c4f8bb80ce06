"""Ad recall channels and the multi-objective merge.

- ``keyword/match``: bid keywords by match type (:class:`~notefeed.ads.keywords.KeywordIndex`);
- ``keyword/rewrite``: the query rewritten by a search :class:`~notefeed.search.base.RewriteBackend`
  (whole query, else token by token when the backend is ``token_level``), then keyword-matched;
- ``semantic/text``: ad text vectors (the project's text encoder) in an
  :class:`~notefeed.recall.ann.AnnIndex` (FAISS HNSW at scale), queried by the query's vector
  (search ads) or the user's interest vector (feed ads).

:func:`merge_quotas` takes each channel's quota first (in channel order), then fills up by the
fused score ``relevance_w x relevance + (1 - relevance_w) x pCTR / max pCTR``. A failing channel
is skipped and reported (fail open).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from notefeed.ads.base import AD_CHANNELS, AdCandidates, AdRecallChannel, AdRequest
from notefeed.ads.keywords import KeywordIndex
from notefeed.recall.ann import AnnIndex

log = logging.getLogger(__name__)

__all__ = ["KeywordChannel", "RewriteChannel", "SemanticChannel", "LogisticPCTR", "merge_quotas", "AdRecall",
           "pctr_features", "evidence_features", "interest_shares", "category_candidates", "best_scores",
           "at_least", "SERVING_DEFAULTS"]

#: ad recall and page settings that serving (``serve.adslots.AdSlotsConfig``) and the ad
#: simulators (``sim.ads_feed``, ``sim.ads_search``) share: one place, so the simulators measure what
#: serving runs (``tests/sim/test_ads_search.py`` checks that AdSlotsConfig's defaults agree)
SERVING_DEFAULTS: dict = {
    "recall_k": 100,
    "relevance_floor": 0.05,
    # least cosine of a search query to an ad for ``semantic/text`` to recall it for search ads
    # (feed ads' user vectors are averages, on another scale: not applied there). On the search
    # simulator off-topic ads' cosines have median 0.53 and on-topic ones 0.80; without the floor
    # 7% of the semantic ads served were off-topic and cost more organic clicks when users punish
    # off-topic ads hard (docs/ads.md, "Organic cost of search ads"; chosen on seeds 0-3, measured on 10-19)
    "search_semantic_floor": 0.7,
    "history_len": 30,  # recent history notes behind a feed-ad user vector
    # placement (first 0-based position, organic results between ads, most ads share of the page),
    # least cost per click, and the prior behind an ad's smoothed CTR (pCTR = that x (0.5 + relevance))
    "first": 2, "spacing": 4, "load_cap": 0.2, "reserve": 0.05, "prior_ctr": 0.02, "prior_weight": 50.0,
    "quotas": {"keyword/match": 60, "keyword/rewrite": 30, "semantic/text": 40, "semantic/twotower": 40,
               "category/interest": 60},
}


@AD_CHANNELS.register("keyword/match")
class KeywordChannel:
    name = "keyword/match"

    def __init__(self, index: KeywordIndex) -> None:
        self.index = index

    def retrieve(self, request: AdRequest, k: int) -> AdCandidates:
        if not request.query:
            return AdCandidates.empty()
        ids, sc = self.index.match(request.query)
        return AdCandidates(ids[:k], sc[:k], [self.name] * min(k, len(ids)))


@AD_CHANNELS.register("keyword/rewrite")
class RewriteChannel:
    """Keyword match of the rewrites of the query; scores discounted by ``discount``."""

    name = "keyword/rewrite"

    def __init__(self, index: KeywordIndex, backend: object, discount: float = 0.9, max_rewrites: int = 5) -> None:
        self.index, self.backend = index, backend
        self.discount, self.max_rewrites = discount, max_rewrites

    def rewrites(self, query: str) -> list[str]:
        out = list(self.backend.rewrite(query))  # type: ignore[attr-defined]
        if not out and getattr(self.backend, "token_level", False):
            words = query.split()
            alt = [(self.backend.rewrite(w) or [w])[0] for w in words]  # type: ignore[attr-defined]
            if alt != words:
                out = [" ".join(alt)]
        return out[: self.max_rewrites]

    def retrieve(self, request: AdRequest, k: int) -> AdCandidates:
        if not request.query:
            return AdCandidates.empty()
        best: dict[int, float] = {}
        for rw in self.rewrites(request.query):
            ids, sc = self.index.match(rw)
            for a, s in zip(ids.tolist(), sc.tolist(), strict=True):
                best[a] = max(best.get(a, 0.0), s * self.discount)
        if not best:
            return AdCandidates.empty()
        ids = np.fromiter(best, np.int64, len(best))
        sc = np.fromiter(best.values(), np.float32, len(best))
        o = np.argsort(-sc, kind="stable")[:k]
        return AdCandidates(ids[o], sc[o], [self.name] * len(o))


@AD_CHANNELS.register("semantic/text")
class SemanticChannel:
    """``encode(texts) -> (n, d)`` unit vectors; ``ad_vecs`` (n_ads, d); cosine >= ``min_score``."""

    name = "semantic/text"

    def __init__(self, encode: Callable[[list[str]], np.ndarray], ad_vecs: np.ndarray, kind: str = "auto",
                 min_score: float = 0.0) -> None:
        self.encode = encode
        self.index = AnnIndex(ad_vecs.shape[1], kind=kind, expected=len(ad_vecs))
        self.index.add(ad_vecs, np.arange(len(ad_vecs), dtype=np.int64))
        self.min_score = min_score

    def vector(self, request: AdRequest) -> np.ndarray | None:
        if request.query:
            return self.encode([request.query])[0]
        return request.user_vec

    def retrieve(self, request: AdRequest, k: int) -> AdCandidates:
        v = self.vector(request)
        if v is None or not np.any(v):
            return AdCandidates.empty()
        sc, ids = self.index.search(v[None, :], k)
        keep = (ids[0] >= 0) & (sc[0] >= self.min_score)
        return AdCandidates(ids[0][keep], sc[0][keep].astype(np.float32), [self.name] * int(keep.sum()))


def pctr_features(relevance: np.ndarray, kw_score: np.ndarray, ad_ctr: np.ndarray) -> np.ndarray:
    """Efficiency-model features (n, 4): semantic relevance, keyword match score, keyword hit
    flag, logit of the ad's smoothed historical CTR."""
    c = np.clip(np.asarray(ad_ctr, np.float64), 1e-4, 1 - 1e-4)
    kw = np.asarray(kw_score, np.float64)
    return np.column_stack([relevance, kw, (kw > 0).astype(np.float64), np.log(c / (1 - c))])


def evidence_features(base: np.ndarray, tower_cos: np.ndarray, rewrite_score: np.ndarray) -> np.ndarray:
    """Efficiency-model features (n, 7): :func:`pctr_features` ``base`` (n, 4) and the evidence of
    the recall channels it lacks, each channel's own score for the (query, ad) pair: the two-tower
    cosine, the keyword match score of the query's rewrites and its hit flag. Together with the
    text cosine and the keyword score in ``base`` every channel's score is a feature, whichever
    channels recalled the ad (so one model serves every recall setting, and a log recalled
    without the towers still teaches it the tower's weight)."""
    rw = np.asarray(rewrite_score, np.float64)
    return np.column_stack([np.asarray(base, np.float64), np.asarray(tower_cos, np.float64), rw,
                            (rw > 0).astype(np.float64)])


class LogisticPCTR:
    """pCTR by logistic regression on :func:`pctr_features` (fitted on logged impressions)."""

    name = "efficiency/logistic"

    def __init__(self, c: float = 1.0) -> None:
        from sklearn.linear_model import LogisticRegression  # here: sklearn is ~1 s of serve start-up

        self.model = LogisticRegression(C=c, max_iter=200)
        self.fitted = False

    def fit(self, x: np.ndarray, clicks: np.ndarray) -> LogisticPCTR:
        if len(np.unique(clicks)) < 2:
            raise ValueError("LogisticPCTR.fit: 'clicks' needs both clicks and non-clicks")
        self.model.fit(x, clicks)
        self.fitted = True
        return self

    def pctr(self, features: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("LogisticPCTR: call fit first")
        return self.model.predict_proba(features)[:, 1]


def interest_shares(categories: Sequence[object], top: int = 5) -> dict[object, float]:
    """A feed request's interests: the ``top`` most frequent categories of the user's recent
    notes, each with its share of them (insertion order: most frequent first)."""
    from collections import Counter

    n = len(categories)
    return {c: k / n for c, k in Counter(categories).most_common(top)} if n else {}


def category_candidates(by_category: dict, shares: dict, k: int) -> AdCandidates:
    """``category/interest`` feed-ad recall: the first ``k`` ads of each interest category
    (``by_category[c]``: ad rows in the category's ad order), scored by the category's share,
    best ``k`` overall (ties: category order)."""
    parts = [(by_category[c][:k], s) for c, s in shares.items() if c in by_category]
    if not parts:
        return AdCandidates.empty()
    ids = np.concatenate([p[0] for p in parts])
    sc = np.concatenate([np.full(len(p[0]), p[1], np.float32) for p in parts])
    o = np.argsort(-sc, kind="stable")[:k]
    return AdCandidates(ids[o], sc[o], ["category/interest"] * len(o))


def best_scores(results: Sequence[AdCandidates], ids: np.ndarray) -> np.ndarray:
    """(len(ids),) float64: the best score any of ``results`` gave each of ``ids`` (every id
    must be in some result: the merged candidates' relevance)."""
    all_ids = np.concatenate([r.ids for r in results])
    all_sc = np.concatenate([r.scores for r in results]).astype(np.float64)
    o = np.lexsort((-all_sc, all_ids))
    uniq, start = np.unique(all_ids[o], return_index=True)
    return all_sc[o][start][np.searchsorted(uniq, ids)]


def at_least(c: AdCandidates, floor: float) -> AdCandidates:
    """The candidates of ``c`` whose score is at least ``floor``, in order."""
    keep = np.asarray(c.scores) >= floor
    if keep.all():
        return c
    names = [n for n, k in zip(c.channels, keep.tolist(), strict=True) if k] if len(c.channels) == len(keep) else []
    return AdCandidates(c.ids[keep], c.scores[keep], names)


def merge_quotas(results: Sequence[AdCandidates], quotas: Sequence[int], k: int,
                 fused: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> AdCandidates:
    """Each channel's first ``quotas[i]`` ads (channel order), then the rest by ``fused(ids,
    best_channel_score)`` (default: the channel score), de-duplicated, at most ``k``.

    Array operations throughout (this runs per ad request): an ad's entry in the rest is its
    best score (the first channel giving it), ranked by key, ties by first appearance."""
    n = [len(r) for r in results]
    if not sum(n):
        return AdCandidates.empty()
    ids = np.concatenate([r.ids for r in results]).astype(np.int64)
    sc = np.concatenate([r.scores for r in results]).astype(np.float64)
    ch = np.repeat(np.arange(len(results)), n)
    rank = np.concatenate([np.arange(m) for m in n])
    names = [c for r in results for c in r.channels]
    entry = np.arange(len(ids))
    # quota phase: entries within their channel's quota, in channel order; first of each ad
    q = np.flatnonzero(rank < np.asarray(quotas, np.int64)[ch])
    _, first = np.unique(ids[q], return_index=True)
    taken = q[np.sort(first)][:k]
    if len(taken) < k:
        rest = np.flatnonzero(~np.isin(ids, ids[taken]))
        if len(rest):
            # per ad: its best score (first entry among equals) and where it first appeared
            o = rest[np.lexsort((entry[rest], -sc[rest], ids[rest]))]
            ads_sorted, start = np.unique(ids[o], return_index=True)
            best = o[start]
            appear = np.minimum.reduceat(entry[o], start)
            key = fused(ids[best], sc[best]) if fused is not None else sc[best]
            pick = best[np.lexsort((appear, -np.asarray(key, np.float64)))][: k - len(taken)]
            taken = np.concatenate([taken, pick])
    return AdCandidates(ids[taken], sc[taken].astype(np.float32), [names[i] for i in taken.tolist()])


class AdRecall:
    """Runs ``channels`` (each with its quota) and merges; ``trace`` records per-channel counts and errors."""

    def __init__(self, channels: Sequence[AdRecallChannel], quotas: Sequence[int], k: int = 100,
                 fused: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> None:
        if len(channels) != len(quotas):
            raise ValueError("AdRecall: one quota per channel")
        self.channels, self.quotas, self.k, self.fused = list(channels), list(quotas), k, fused
        self.trace: dict[str, object] = {}

    def retrieve(self, request: AdRequest) -> AdCandidates:
        results, trace = [], {}
        for ch in self.channels:
            try:
                r = ch.retrieve(request, self.k)
            except Exception as e:  # fail open: the other channels still serve ads
                log.warning("ad channel %s failed: %s", ch.name, e)
                trace[ch.name] = f"error: {e}"
                r = AdCandidates.empty()
            else:
                trace[ch.name] = len(r)
            results.append(r)
        self.trace = trace
        return merge_quotas(results, self.quotas, self.k, self.fused)
