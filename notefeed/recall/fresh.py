"""``fresh/pool``: the newest notes, favouring small creators (cold-start exposure)."""

from __future__ import annotations

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.recall._common import candidates_from_scores, request_seed, restore_ranked_list
from notefeed.recall.base import CHANNELS, Candidates, UserContext

__all__ = ["FreshChannel", "note_times"]


def note_times(ds: Dataset) -> np.ndarray:
    """(n_items,) int64 creation time; notes without ``created_at`` use their first event's ts."""
    created = ds.notes["created_at"].to_numpy(np.int64).copy()
    missing = created <= 0
    if missing.any():
        first = np.full(ds.n_items, np.iinfo(np.int64).max)
        ev = ds.events
        if len(ev):
            np.minimum.at(first, ev["item"].to_numpy(np.int64), ev["ts"].to_numpy(np.int64))
        first[first == np.iinfo(np.int64).max] = 0
        created[missing] = first[missing]
    return created


@CHANNELS.register("fresh/pool")
class FreshChannel:
    """Score = recency ``0.5 ** (age / half_life_hours)`` times ``small_boost`` for small creators.

    The pool is the ``pool`` newest notes; a user-seeded hash breaks ties so users with an
    identical context still see different fresh notes.
    """

    name = "fresh/pool"

    def __init__(self, pool: int = 20_000, half_life_hours: float = 72.0, small_boost: float = 2.0) -> None:
        if half_life_hours <= 0 or small_boost <= 0:
            raise ValueError(f"{self.name}: 'half_life_hours' and 'small_boost' must be positive")
        self.pool, self.half_life_hours, self.small_boost = int(pool), float(half_life_hours), float(small_boost)
        self.items: np.ndarray | None = None
        self.scores: np.ndarray | None = None

    def fit(self, ds: Dataset) -> FreshChannel:
        t = note_times(ds)
        order = np.argsort(-t, kind="stable")[: self.pool]
        age_h = (t.max() - t[order]) / 3600.0 if t.size else np.empty(0)
        score = 0.5 ** (age_h / self.half_life_hours)
        score = score * np.where(ds.item_is_small_creator[order], self.small_boost, 1.0)
        self.items, self.scores = order.astype(np.int64), score
        return self

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        if self.items is None or self.scores is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        return {"pool": self.pool, "half_life_hours": self.half_life_hours, "small_boost": self.small_boost}, {"items": self.items, "scores": np.asarray(self.scores)}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> FreshChannel:
        return restore_ranked_list(cls(**params), arrays)

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if self.items is None or self.scores is None:
            raise RuntimeError(f"{self.name}: recall() before fit()")
        salt = (self.items * 2654435761 + request_seed(ctx) % 1_000_003) % 1000 / 1e7  # varies per request
        return candidates_from_scores(self.name, self.items, self.scores + salt, ctx, k)
