"""``social/follow``: recent notes of the creators a user follows (empty without a graph)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.recall._common import candidates_from_scores
from notefeed.recall.base import CHANNELS, Candidates, UserContext
from notefeed.recall.fresh import note_times

__all__ = ["FollowChannel"]


@CHANNELS.register("social/follow")
class FollowChannel:
    """Score = ``0.5 ** (age / half_life_hours)`` of each of the ``per_creator`` newest notes
    of every followed creator (``ds.social`` rows whose ``target_id`` is a creator id)."""

    name = "social/follow"

    def __init__(self, per_creator: int = 20, half_life_hours: float = 72.0) -> None:
        self.per_creator, self.half_life_hours = int(per_creator), float(half_life_hours)
        self.follows: dict[int, np.ndarray] = {}

    def fit(self, ds: Dataset) -> FollowChannel:
        self.follows = {}
        t = note_times(ds)
        self.t_max = int(t.max()) if t.size else 0
        self.t = t
        author = ds.item_author.astype(np.int64)
        order = np.lexsort((-t, author))
        a_sorted = author[order]
        start = np.searchsorted(a_sorted, np.arange(len(ds.creators) + 1))
        self.creator_notes = [order[s : min(e, s + self.per_creator)] for s, e in zip(start[:-1], start[1:], strict=True)]
        if ds.social is None or not len(ds.social):
            return self
        cidx = pd.Index(ds.creators["creator_id"]).get_indexer(ds.social["target_id"].astype(str))
        soc = pd.DataFrame({"user": ds.social["user"].to_numpy(np.int64), "creator": cidx})
        soc = soc[soc["creator"] >= 0]
        for u, grp in soc.groupby("user"):
            self.follows[int(u)] = grp["creator"].to_numpy(np.int64)
        return self

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if ctx.user is None or ctx.user not in self.follows:
            return Candidates.empty(self.name)
        items = np.concatenate([self.creator_notes[c] for c in self.follows[ctx.user]])
        if items.size == 0:
            return Candidates.empty(self.name)
        now = max(self.t_max, int(ctx.ts))
        score = 0.5 ** ((now - self.t[items]) / 3600.0 / self.half_life_hours)
        return candidates_from_scores(self.name, items, score + 1e-12, ctx, k)
