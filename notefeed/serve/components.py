"""Built-in pipeline components the server always has, and adapters for the stage contracts.

Built-ins keep a feed working on an empty or brand-new workspace (``fresh/recent``,
``non-personalized/popular``, ``builtin/seen``, ``builtin/popularity``, ``builtin/linear``,
``builtin/author-cap``); configured names from the ``CHANNELS`` / ``SCORERS`` / ``RERANKERS``
registries take precedence over them where both exist (see ``engine.build_pipeline``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from notefeed.online.state import UserSnapshot
from notefeed.recall.base import Candidates, UserContext
from notefeed.recall.merge import channel_counts
from notefeed.rerank.base import ReRanker, RerankInput
from notefeed.serve.catalog import Catalog
from notefeed.serve.itemvectors import LEARNED_WEIGHT, blend_unit, learned_vectors, vector_source
from notefeed.serve.models import FEATURES, LinearModel, ModelVersion
from notefeed.serve.pipeline import CandidateSet, FilterResult

__all__ = [
    "ServeContext",
    "FreshSource",
    "PopularSource",
    "SeenFilter",
    "RemovedFilter",
    "BlockedFilter",
    "PopularityScorer",
    "POPULARITY_WEIGHTS",
    "ModelScorer",
    "RankScorerAdapter",
    "Fusion",
    "TopK",
    "ReRankSelector",
    "AuthorCapReRanker",
    "features",
]


@dataclass
class ServeContext(UserContext):
    """A :class:`UserContext` plus what only the server knows: the online snapshot, the
    model version this request uses (fixed at request start), the note ids of ``seen``."""

    snapshot: UserSnapshot | None = None
    model: ModelVersion | None = None
    seen_ids: set[str] = field(default_factory=set)


class FreshSource:
    """``fresh/recent``: the newest notes (published through the API or newest in the
    workspace), newest first. Makes a published note recallable immediately."""

    name = "fresh/recent"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def fit(self, ds: Any) -> FreshSource:
        return self

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        items = np.fromiter(reversed(list(self.catalog.fresh)[-k:]), np.int64)
        return Candidates(self.name, items, np.linspace(1.0, 0.0, len(items), dtype=np.float32))


class PopularSource:
    """``non-personalized/popular``: most engaged notes, including online engagement."""

    name = "non-personalized/popular"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def fit(self, ds: Any) -> PopularSource:
        return self

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        items = self.catalog.top_popular(k)
        return Candidates(self.name, items, self.catalog.popularity()[items])


class SeenFilter:
    """``builtin/seen``: drops notes the user already saw, acted on or hid (online state and
    dataset history, in ``ctx.seen`` / ``ctx.hidden``) and notes of blocked authors."""

    name = "builtin/seen"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def apply(self, ctx: UserContext, cs: CandidateSet) -> FilterResult:
        # ctx.seen holds dataset history and online seen notes (Engine.context)
        drop = np.isin(cs.items, ctx.seen) | np.isin(cs.items, ctx.hidden) | _by_blocked(self.catalog, ctx, cs.items)
        return FilterResult(np.flatnonzero(~drop), np.flatnonzero(drop))


def _by_blocked(catalog: Catalog, ctx: UserContext, items: np.ndarray) -> np.ndarray:
    """(len(items),) bool: which ``items`` are notes of a creator the user blocked."""
    if not len(ctx.blocked_authors) or not len(items):
        return np.zeros(len(items), bool)
    return np.isin(catalog.authors()[items], ctx.blocked_authors)


class RemovedFilter:
    """``builtin/removed``: drops notes taken down (``DELETE /v1/notes/{id}``), main and side
    candidates alike. Every pipeline has it first among its filters, whatever the config's
    ``filters`` say: a takedown is not a ranking choice."""

    name = "builtin/removed"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def apply(self, ctx: UserContext, cs: CandidateSet) -> FilterResult:
        drop = self.catalog.is_removed(cs.items)
        return FilterResult(np.flatnonzero(~drop), np.flatnonzero(drop))


class BlockedFilter:
    """``builtin/blocked``: drops notes of the creators the user blocked
    (``PUT /v1/users/{id}/blocks/{author_id}``; ``ctx.blocked_authors``), main and side
    candidates alike. Like ``builtin/removed``, every pipeline has it whatever ``filters`` say."""

    name = "builtin/blocked"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def apply(self, ctx: UserContext, cs: CandidateSet) -> FilterResult:
        drop = _by_blocked(self.catalog, ctx, cs.items)
        return FilterResult(np.flatnonzero(~drop), np.flatnonzero(drop))


def features(catalog: Catalog, ctx: UserContext, cs: CandidateSet) -> np.ndarray:
    """(n, len(FEATURES)) float32 features of the candidates for this user."""
    it = cs.items
    n = len(it)
    x = np.zeros((n, len(FEATURES)), np.float32)
    x[:, 0] = 1.0
    x[:, 1] = np.log1p(catalog.popularity()[it])
    age_days = np.maximum(0, ctx.ts - catalog.created_at()[it]) / 86400.0
    x[:, 2] = np.exp(-age_days / 7.0)
    cats = catalog.category_codes()[it]
    snap = getattr(ctx, "snapshot", None)
    if snap is not None and snap.counts.get("1h"):
        by_code = {catalog.category_index.get(c, -1): v for c, v in snap.counts["1h"].items()}
        x[:, 3] = np.log1p(np.array([by_code.get(int(c), 0) for c in cats], np.float32))
    if len(ctx.history):
        hist = ctx.history[-50:]
        hist = hist[hist < catalog.n_items]
        if len(hist):
            hc = np.bincount(catalog.category_codes()[hist], minlength=int(cats.max(initial=0)) + 1)
            x[:, 4] = hc[np.minimum(cats, len(hc) - 1)] / len(hist) * (cats < len(hc))
    x[:, 5] = catalog.small_creator(it)
    x[:, 6] = channel_counts(cs.channels)
    x[:, 7] = cs.columns.get("recall", np.zeros(n, np.float32))
    return x


#: ``builtin/popularity``'s hand-set weights on :data:`FEATURES` (the untrained coarse stage,
#: and the score a trained coarse ranker must beat to be served: ``notefeed.models.train``)
POPULARITY_WEIGHTS: dict[str, float] = {"log_pop": 1.0, "recency": 1.5, "cat_1h": 0.5, "cat_seq": 2.0, "recall": 0.3}


class PopularityScorer:
    """``builtin/popularity`` coarse scorer: log popularity + freshness + topical match
    (:data:`POPULARITY_WEIGHTS`)."""

    name = "builtin/popularity"

    def __init__(self, catalog: Catalog, column: str = "coarse") -> None:
        self.catalog, self.column = catalog, column
        self._terms = [(FEATURES.index(f), np.float32(w)) for f, w in POPULARITY_WEIGHTS.items()]

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        x = features(self.catalog, ctx, cs)
        out = np.zeros(len(cs), np.float32)
        for j, w in self._terms:  # term by term, in order
            out = out + w * x[:, j]
        return {self.column: out}


class ModelScorer:
    """The fine-ranking step: scores with the request's model version (``ctx.model``: the
    ``builtin/linear`` model or a rank-stage scorer), which the hot-swap holder fixed at
    request start. The response's ``model_version`` says which one served."""

    name = "fine/model"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        mv: ModelVersion | None = getattr(ctx, "model", None)
        if mv is None:
            raise RuntimeError("no model version in the request context")
        model = mv.model
        from notefeed.serve.learned import request_matrix, uses_features

        if uses_features(model):  # rank/ltr: one listwise score from the named features
            x = request_matrix(model, self.catalog, ctx, cs)
            log = getattr(ctx, "feature_log", None)  # the online trainer's feature logging
            if log is not None:
                log(ctx.user_id, ctx.ts, cs.items, x)
            return {"fine.score": model.predict(x)}
        if isinstance(model, LinearModel):
            out = model.predict(features(self.catalog, ctx, cs))
        elif hasattr(model, "score"):  # a rank-stage Scorer (fitted at start-up or loaded)
            out = _score_known(model, ctx, cs.items)
        else:
            raise TypeError(f"model {mv.version!r} ({type(model).__name__}) has no score(ctx, items)")
        return {f"fine.{k}": v for k, v in out.items()}


def _score_known(scorer: Any, ctx: UserContext, items: np.ndarray) -> dict[str, np.ndarray]:
    """Call a stage scorer on the items it was fitted on; items published later (index past
    its ``n_items``) get the median score of the others, a neutral cold-start value."""
    n_fit = getattr(scorer, "n_items", None)
    if n_fit is None:
        return scorer.score(ctx, items)
    known = items < n_fit
    if known.all():
        return scorer.score(ctx, items)
    res = scorer.score(ctx, items[known]) if known.any() else {}
    out = {}
    for k, v in res.items():
        full = np.full(len(items), float(np.median(v)) if len(v) else 0.0, np.float32)
        full[known] = v
        out[k] = full
    return out


class RankScorerAdapter:
    """Wraps a :class:`~notefeed.rank.base.Scorer` as a pipeline scorer. Multi-task output
    goes to ``{column}.{task}``; a single ``score`` to ``column``."""

    def __init__(self, scorer: Any, column: str) -> None:
        self.scorer, self.column = scorer, column
        self.name = str(getattr(scorer, "name", type(scorer).__name__))

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        out = _score_known(self.scorer, ctx, cs.items)
        if set(out) == {"score"}:
            return {self.column: out["score"]}
        if self.column == "coarse":  # a coarse ranker answers one number per item
            return {"coarse": np.mean(np.stack(list(out.values())), axis=0)}
        return {f"{self.column}.{k}": v for k, v in out.items()}


class Fusion:
    """``fusion/weighted``: fused = sum of task weights x fine scores (dwell as log1p
    seconds so it cannot dominate); a single-score ranker's ``fine.score`` (a listwise logit,
    ``rank/ltr``) times the ``score`` weight (default 1); falls back to the coarse score when
    fine ranking failed.
    Also writes ``fused_rank`` (0 = best) so the trace shows what re-ranking changed."""

    name = "fusion/weighted"

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = dict(weights)

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        fused = np.zeros(len(cs), np.float32)
        used = 0
        single = cs.columns.get("fine.score", cs.columns.get("fine"))
        if single is not None:
            # a single-score ranker (rank/ltr: a listwise logit) has no task heads to weigh
            fused, used = self.weights.get("score", 1.0) * single.astype(np.float32), 1
        for task, w in self.weights.items() if single is None else ():
            col = cs.columns.get(f"fine.{task}")
            if col is None:
                continue
            fused += w * (np.log1p(np.maximum(col, 0)) if task == "dwell" else col)
            used += 1
        if used == 0:
            fused = cs.columns.get("coarse", cs.columns["recall"]).astype(np.float32).copy()
        rank = np.empty(len(cs), np.float32)
        rank[np.argsort(-fused, kind="stable")] = np.arange(len(cs))
        return {"fused": fused, "fused_rank": rank}


class TopK:
    """Keep the ``keep`` best by ``column`` (descending).

    With ``reserve`` > 0 and a ``catalog``, at least ``ceil(reserve * keep)`` of the kept rows
    are small-creator notes (the best of them by the same column) when that many exist. Every
    truncation before the re-ranker needs this: a page-level exposure guarantee cannot be met
    from a window that popularity or a learned ranker has already emptied of small creators.
    """

    def __init__(self, column: str, keep: int, name: str | None = None, reserve: float = 0.0,
                 catalog: Catalog | None = None) -> None:
        if not 0.0 <= reserve <= 1.0:
            raise ValueError(f"TopK: reserve must be in [0, 1], got {reserve}")
        self.column, self.keep, self.reserve, self.catalog = column, keep, reserve, catalog
        self.name = name or f"top/{column}"

    def select(self, ctx: UserContext, cs: CandidateSet, n: int) -> np.ndarray:
        col = cs.columns.get(self.column)
        order = np.arange(len(cs)) if col is None else np.argsort(-col, kind="stable")
        if len(order) <= self.keep:  # an upstream scorer failed -> current order (above)
            return order
        top = order[: self.keep]
        if self.reserve <= 0 or self.catalog is None:
            return top
        small = self.catalog.small_creator(cs.items[order])
        want = int(np.ceil(self.reserve * self.keep))
        have = int(small[: self.keep].sum())
        if have >= want:
            return top
        extra = order[self.keep:][small[self.keep:]][: want - have]  # best small creators left out
        drop = order[: self.keep][~small[: self.keep]][::-1][: len(extra)]  # weakest big ones
        kept = np.setdiff1d(top, drop, assume_unique=True)
        merged = np.concatenate([kept, extra])
        return merged[np.argsort(_rank_of(order, merged))]  # kept rows stay in score order


def _rank_of(order: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Position of each of ``rows`` in the permutation ``order``."""
    pos = np.empty(len(order), np.int64)
    pos[order] = np.arange(len(order))
    return pos[rows]


class ReRankSelector:
    """Runs a :class:`~notefeed.rerank.base.ReRanker` over the fused-order candidates."""

    def __init__(self, reranker: ReRanker, catalog: Catalog, embedder: Any = None) -> None:
        self.reranker, self.catalog, self.embedder = reranker, catalog, embedder
        self.name = str(getattr(reranker, "name", type(reranker).__name__))
        #: the embedder's vectors prepared for cosine (centred, unit rows); None: catalogue's
        self.learned = learned_vectors(vector_source([embedder]), catalog)
        if self.learned is not None:
            self.learned.warm()
        #: the learned share of the similarity (see :meth:`vectors`)
        self.learned_weight = LEARNED_WEIGHT

    def vectors(self, items: np.ndarray) -> np.ndarray:
        """Unit item vectors whose cosine is ``learned_weight`` x the learned vectors' cosine
        (``embedder.item_vectors``: the sequence model or two-tower channel, centred, notes
        newer than the model at their category's centroid; :mod:`notefeed.serve.itemvectors`)
        plus the rest x the catalogue's category/author cosine. Both: a briefly trained model's
        embeddings carry little topic signal, and the catalogue's carry no behaviour; with no
        embedder, the catalogue's alone."""
        cat = self.catalog.vectors()[items]
        if self.learned is None:
            return cat
        return blend_unit(self.learned.rows(items), cat, self.learned_weight)

    def select(self, ctx: UserContext, cs: CandidateSet, n: int) -> np.ndarray:
        it = cs.items
        scores = cs.columns.get("fused", cs.columns.get("coarse", cs.columns["recall"]))
        inp = RerankInput(
            scores=scores.astype(np.float32),
            vectors=self.vectors(it),
            authors=self.catalog.authors()[it],
            categories=self.catalog.category_codes()[it],
            small_creator=self.catalog.small_creator(it),
        )
        return np.asarray(self.reranker.select(inp, min(n, len(cs))), np.int64)


class AuthorCapReRanker:
    """``builtin/author-cap``: greedy by score with at most ``max_per_author`` notes per
    creator and ``max_per_category`` per category in a page; fills up by score if the caps
    leave the page short."""

    name = "builtin/author-cap"

    def __init__(self, max_per_author: int = 1, max_per_category: int = 4) -> None:
        self.max_per_author, self.max_per_category = max_per_author, max_per_category

    def select(self, inp: RerankInput, k: int) -> np.ndarray:
        order = np.argsort(-inp.scores, kind="stable")
        picked: list[int] = []
        per_a: dict[int, int] = {}
        per_c: dict[int, int] = {}
        for j in order.tolist():
            if len(picked) == k:
                break
            a = int(inp.authors[j]) if inp.authors is not None else j
            c = int(inp.categories[j]) if inp.categories is not None else -1
            if per_a.get(a, 0) >= self.max_per_author or per_c.get(c, 0) >= self.max_per_category:
                continue
            picked.append(j)
            per_a[a] = per_a.get(a, 0) + 1
            per_c[c] = per_c.get(c, 0) + 1
        if len(picked) < k:
            chosen = set(picked)
            picked += [j for j in order.tolist() if j not in chosen][: k - len(picked)]
        return np.asarray(picked, np.int64)
