"""``social/follow``: recent notes of the creators a user follows (empty without a graph)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset, type_mask
from notefeed.recall._common import candidates_from_scores
from notefeed.recall.base import CHANNELS, Candidates, UserContext
from notefeed.recall.fresh import note_times

__all__ = ["FollowChannel"]


@CHANNELS.register("social/follow")
class FollowChannel:
    """Score = ``0.5 ** (age / half_life_hours)`` of each of the ``per_creator`` newest notes
    of every followed creator.

    Whom a user follows: the ``ds.social`` rows whose ``target_id`` is a creator id, and every
    ``follow`` event of the log (a follow is posted on a note and follows its author), as of
    the fit, less the pairs whose newest statement is an ``unfollow`` edge (the store's copy of
    the server's relation log; ``block`` edges are not follows); plus ``ctx.followed``, the creator ids the server saw the user follow
    (:attr:`~notefeed.recall.base.UserContext.followed`), so a follow reaches the next feed;
    less ``ctx.unfollowed``, those they unfollowed through the server's API.
    Notes published after the fit join their creator's newest (:meth:`add_items`, the hook the
    server calls on every publish), so a followed creator's new note is recalled at once.
    """

    name = "social/follow"

    def __init__(self, per_creator: int = 20, half_life_hours: float = 72.0) -> None:
        self.per_creator, self.half_life_hours = int(per_creator), float(half_life_hours)
        self.follows: dict[int, np.ndarray] = {}
        #: creator ids by this channel's creator index (``None``: a version stored before they
        #: were kept; online follows and published notes are then not added)
        self.creator_ids: list[str] | None = None
        self._creator_of: dict[str, int] = {}
        self._add_lock = threading.Lock()

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
        self._set_creators(ds.creators["creator_id"].astype(str).tolist())
        # (user, creator, time, follows) statements; for each pair the newest decides
        users, creators, times, on = [], [], [], []
        if ds.social is not None and len(ds.social):
            soc = ds.social[ds.social["kind"].astype(str) != "block"]
            cidx = pd.Index(ds.creators["creator_id"]).get_indexer(soc["target_id"].astype(str))
            users.append(soc["user"].to_numpy(np.int64))
            creators.append(cidx.astype(np.int64))
            at = soc["at"].to_numpy(np.float64) if "at" in soc else np.full(len(soc), np.nan)
            times.append(np.where(np.isnan(at), -np.inf, at))  # the imported graph: older than anything
            on.append(soc["kind"].astype(str).to_numpy() != "unfollow")
        if len(ds.events):
            fol = ds.events[type_mask(ds.events, "follow")]
            users.append(fol["user"].to_numpy(np.int64))
            creators.append(author[fol["item"].to_numpy(np.int64)])
            times.append(fol["ts"].to_numpy(np.float64))
            on.append(np.ones(len(fol), bool))
        if users:
            u, c, t, a = (np.concatenate(x) for x in (users, creators, times, on))
            ok = c >= 0
            u, c, t, a = u[ok], c[ok], t[ok], a[ok]
            order = np.lexsort((~a, t, c, u))  # at equal times an unfollow is the newer
            u, c, a = u[order], c[order], a[order]
            last = np.ones(len(u), bool)
            last[:-1] = (u[1:] != u[:-1]) | (c[1:] != c[:-1])
            keep = last & a
            u, c = u[keep], c[keep]
            cuts = np.flatnonzero(np.diff(u)) + 1
            for gu, gc in zip(np.split(u, cuts), np.split(c, cuts), strict=True):
                if len(gu):
                    self.follows[int(gu[0])] = gc.copy()
        return self

    def _set_creators(self, ids: list[str] | None) -> None:
        self.creator_ids = ids
        self._creator_of = {} if ids is None else {c: i for i, c in enumerate(ids)}

    # ------------------------------------------------------------------ published notes
    @property
    def n_indexed(self) -> int:
        """Notes this channel knows (the fitted ones and those added since)."""
        return len(self.t) if hasattr(self, "t") else 0

    def add_items(self, notes: pd.DataFrame) -> np.ndarray:
        """Notes published after the fit (``author_id``, ``created_at``) under the next item
        indices, returned; each joins its creator's ``per_creator`` newest (a new creator is
        added). Readers see a creator's list replaced whole, after the note's time is known."""
        if not hasattr(self, "t"):
            raise RuntimeError(f"{self.name}: add_items() before fit()")
        with self._add_lock:
            n0 = len(self.t)
            items = np.arange(n0, n0 + len(notes), dtype=np.int64)
            if not len(notes):
                return items
            created = (notes["created_at"].fillna(0).to_numpy(np.int64) if "created_at" in notes
                       else np.zeros(len(notes), np.int64))
            created = np.where(created > 0, created, max(self.t_max, int(time.time())))
            self.t = np.concatenate([self.t, created])  # before any list names the new items
            self.t_max = max(self.t_max, int(created.max()))
            if self.creator_ids is None:  # a channel loaded from an older version: times only
                return items
            for i, a in zip(items.tolist(), notes["author_id"].astype(str).tolist(), strict=True):
                c = self._creator_of.get(a)
                if c is None:
                    c = self._creator_of[a] = len(self.creator_ids)
                    self.creator_ids.append(a)
                    self.creator_notes.append(np.empty(0, np.int64))
                have = np.append(self.creator_notes[c], i)
                self.creator_notes[c] = have[np.argsort(-self.t[have], kind="stable")][: self.per_creator]
            return items

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Note times, each creator's newest notes, the creator ids and each user's followed
        creators (ragged lists as ``offsets`` + flat values)."""
        if not hasattr(self, "t"):
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        users = np.fromiter(sorted(self.follows), np.int64, len(self.follows))
        params = {"per_creator": self.per_creator, "half_life_hours": self.half_life_hours, "t_max": self.t_max}
        if self.creator_ids is not None:
            params["creator_ids"] = list(self.creator_ids)
        return (params,
                {"t": np.asarray(self.t, np.int64),
                 **_ragged("creator_notes", self.creator_notes),
                 "follow_users": users, **_ragged("follows", [self.follows[int(u)] for u in users])})

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> FollowChannel:
        p = dict(params)
        t_max = int(p.pop("t_max"))
        ids = p.pop("creator_ids", None)
        ch = cls(**p)
        ch.t_max, ch.t = t_max, arrays["t"]
        ch.creator_notes = _unragged(arrays, "creator_notes")
        if ids is not None:
            if not isinstance(ids, list) or len(ids) != len(ch.creator_notes):
                raise ValueError(f"{cls.name}: creator_ids do not match the {len(ch.creator_notes)} creators")
            ch._set_creators([str(c) for c in ids])
        follows = _unragged(arrays, "follows")
        users = arrays["follow_users"]
        if len(users) != len(follows):
            raise ValueError(f"{cls.name}: {len(users)} users for {len(follows)} follow lists")
        ch.follows = {int(u): f for u, f in zip(users, follows, strict=True)}
        return ch

    def followed(self, ctx: UserContext) -> np.ndarray:
        """The creator indices ``ctx``'s user follows: fitted and followed online, less those
        unfollowed online."""
        fitted = self.follows.get(ctx.user, _NONE) if ctx.user is not None else _NONE
        online = [c for c in (self._creator_of.get(x) for x in ctx.followed) if c is not None]
        out = np.unique(np.concatenate([fitted, np.asarray(online, np.int64)])) if online else fitted
        gone = [c for c in (self._creator_of.get(x) for x in ctx.unfollowed) if c is not None]
        return out[~np.isin(out, gone)] if gone and len(out) else out

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        creators = self.followed(ctx)
        if creators.size == 0:
            return Candidates.empty(self.name)
        notes = self.creator_notes  # the list object: a creator added meanwhile is past the end
        items = np.concatenate([notes[c] for c in creators.tolist() if c < len(notes)] or [_NONE])
        if items.size == 0:
            return Candidates.empty(self.name)
        now = max(self.t_max, int(ctx.ts))
        score = 0.5 ** ((now - self.t[items]) / 3600.0 / self.half_life_hours)
        return candidates_from_scores(self.name, items, score + 1e-12, ctx, k)


_NONE = np.empty(0, np.int64)


def _ragged(prefix: str, rows: list[np.ndarray]) -> dict[str, np.ndarray]:
    lens = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    flat = np.concatenate(rows).astype(np.int64) if rows else np.empty(0, np.int64)
    return {f"{prefix}.offsets": np.r_[0, np.cumsum(lens)].astype(np.int64), f"{prefix}.values": flat}


def _unragged(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    off, val = arrays[f"{prefix}.offsets"], arrays[f"{prefix}.values"]
    return [val[a:b] for a, b in zip(off[:-1], off[1:], strict=True)]
