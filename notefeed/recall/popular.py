"""``non-personalized/popular``: time-decayed popularity, the floor every user gets."""

from __future__ import annotations

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.recall._common import candidates_from_scores, positive_log, restore_ranked_list
from notefeed.recall.base import CHANNELS, Candidates, UserContext

__all__ = ["PopularChannel"]


@CHANNELS.register("non-personalized/popular")
class PopularChannel:
    """Positive events per note, each weighted ``0.5 ** (age / half_life_days)`` at the log's end."""

    name = "non-personalized/popular"

    def __init__(self, half_life_days: float = 7.0, pool: int = 20_000) -> None:
        if half_life_days <= 0:
            raise ValueError(f"{self.name}: 'half_life_days' must be positive, got {half_life_days}")
        self.half_life_days, self.pool = float(half_life_days), int(pool)
        self.items: np.ndarray | None = None
        self.scores: np.ndarray | None = None

    def fit(self, ds: Dataset) -> PopularChannel:
        log = positive_log(ds)
        score = np.zeros(ds.n_items)
        if len(log):
            age_days = (log["ts"].max() - log["ts"].to_numpy()) / 86400.0
            np.add.at(score, log["item"].to_numpy(), 0.5 ** (age_days / self.half_life_days))
        order = np.argsort(-score, kind="stable")[: self.pool]
        order = order[score[order] > 0]
        self.items, self.scores = order.astype(np.int64), score[order]
        return self

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        if self.items is None or self.scores is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        return {"half_life_days": self.half_life_days, "pool": self.pool}, {"items": self.items, "scores": np.asarray(self.scores)}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> PopularChannel:
        return restore_ranked_list(cls(**params), arrays)

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if self.items is None or self.scores is None:
            raise RuntimeError(f"{self.name}: recall() before fit()")
        return candidates_from_scores(self.name, self.items, self.scores, ctx, k)
