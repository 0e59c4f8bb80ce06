"""The :class:`~notefeed.rank.base.Scorer` adapter of the fine ranker (``rank/cgc`` etc.)."""

from __future__ import annotations

import numpy as np

from notefeed.rank.base import SCORERS
from notefeed.rank.features import FeatureBuilder
from notefeed.rank.multitask import FineRanker
from notefeed.recall.base import UserContext
from notefeed.schema import EVENT_TYPES, SURFACES

__all__ = ["FineRankerScorer"]


class FineRankerScorer:
    """Scores candidates for one request: features at ``ctx.ts`` (default: end of the log),
    then :meth:`FineRanker.predict`. A user without logged history but with ``ctx.history``
    gets that history as the short sequence (action type ``click``)."""

    def __init__(self, ranker: FineRanker, builder: FeatureBuilder) -> None:
        if ranker.net is None:
            raise ValueError("FineRankerScorer: ranker is not fitted")
        self.ranker, self.builder = ranker, builder
        self.name = ranker.name

    def score(self, ctx: UserContext, items: np.ndarray) -> dict[str, np.ndarray]:
        items = np.asarray(items, np.int64)
        if items.ndim != 1:
            raise ValueError(f"{self.name}: field 'items' must be 1-d, got shape {items.shape}")
        n = len(items)
        if n == 0:
            return {t: np.empty(0, np.float32) for t in self.ranker.cfg.tasks}
        b = self.builder
        # users added after the builder was made have no logged history here: treat as unknown
        u = -1 if ctx.user is None or not 0 <= int(ctx.user) < b.n_users else int(ctx.user)
        t = ctx.ts if ctx.ts > 0 else b.t_now
        sur = SURFACES.index(ctx.surface) if ctx.surface in SURFACES else 0
        f = b.features(np.full(n, u), items, np.full(n, t), surface=np.full(n, sur))
        hist = np.asarray(ctx.history, np.int64)
        if u < 0 and len(hist):
            hist = hist[(hist >= 0) & (hist < b.n_items)][-b.cfg.short_len:]
            row = np.zeros(b.cfg.short_len, np.int64)
            typ = np.zeros(b.cfg.short_len, np.int64)
            if len(hist):
                row[-len(hist):] = hist + 1
                typ[-len(hist):] = EVENT_TYPES.index("click") + 1
            f["seq_items"] = np.broadcast_to(row, (n, len(row))).copy()
            f["seq_types"] = np.broadcast_to(typ, (n, len(typ))).copy()
        return self.ranker.predict(f)


def _factory(ranker: FineRanker, builder: FeatureBuilder) -> FineRankerScorer:
    return FineRankerScorer(ranker, builder)


for _arch in ("cgc", "ple", "mmoe", "single"):
    SCORERS.register(f"rank/{_arch}")(_factory)
