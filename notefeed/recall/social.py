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

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Note times, each creator's newest notes and each user's followed creators (ragged
        lists as ``offsets`` + flat values)."""
        if not hasattr(self, "t"):
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        users = np.fromiter(sorted(self.follows), np.int64, len(self.follows))
        return ({"per_creator": self.per_creator, "half_life_hours": self.half_life_hours, "t_max": self.t_max},
                {"t": np.asarray(self.t, np.int64),
                 **_ragged("creator_notes", self.creator_notes),
                 "follow_users": users, **_ragged("follows", [self.follows[int(u)] for u in users])})

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> FollowChannel:
        p = dict(params)
        t_max = int(p.pop("t_max"))
        ch = cls(**p)
        ch.t_max, ch.t = t_max, arrays["t"]
        ch.creator_notes = _unragged(arrays, "creator_notes")
        follows = _unragged(arrays, "follows")
        users = arrays["follow_users"]
        if len(users) != len(follows):
            raise ValueError(f"{cls.name}: {len(users)} users for {len(follows)} follow lists")
        ch.follows = {int(u): f for u, f in zip(users, follows, strict=True)}
        return ch

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if ctx.user is None or ctx.user not in self.follows:
            return Candidates.empty(self.name)
        items = np.concatenate([self.creator_notes[c] for c in self.follows[ctx.user]])
        if items.size == 0:
            return Candidates.empty(self.name)
        now = max(self.t_max, int(ctx.ts))
        score = 0.5 ** ((now - self.t[items]) / 3600.0 / self.half_life_hours)
        return candidates_from_scores(self.name, items, score + 1e-12, ctx, k)


def _ragged(prefix: str, rows: list[np.ndarray]) -> dict[str, np.ndarray]:
    lens = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    flat = np.concatenate(rows).astype(np.int64) if rows else np.empty(0, np.int64)
    return {f"{prefix}.offsets": np.r_[0, np.cumsum(lens)].astype(np.int64), f"{prefix}.values": flat}


def _unragged(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    off, val = arrays[f"{prefix}.offsets"], arrays[f"{prefix}.values"]
    return [val[a:b] for a, b in zip(off[:-1], off[1:], strict=True)]
