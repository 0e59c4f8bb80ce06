"""The recall contract: a channel retrieves candidates with scores and says its name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.registry import Registry

__all__ = ["UserContext", "Candidates", "SideCandidates", "RecallChannel", "CHANNELS"]


@dataclass
class UserContext:
    """What a channel may know about the requesting user at request time.

    ``user`` is the dense user index, or ``None`` for a user the model has never seen
    (channels must then fall back, never raise). ``history`` holds item indices of the
    user's positive actions, oldest first; ``seen`` the items already exposed;
    ``hidden`` items the user hid; ``blocked_authors`` creator indices (rows of
    ``Dataset.creators``) the user blocked. Channels never return seen, history or hidden
    items; the merge also drops blocked authors. ``followed`` holds the creator ids the
    server saw the user follow (``follow`` events of its log, follows through its API; oldest
    first), ``unfollowed`` those they unfollowed since: ``social/follow`` adds the first to the
    follows it was fitted with and takes the second out.
    """

    user_id: str
    user: int | None = None
    history: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    seen: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ts: int = 0
    surface: str = "feed"
    hidden: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    blocked_authors: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    followed: tuple[str, ...] = ()
    unfollowed: tuple[str, ...] = ()


@dataclass
class Candidates:
    """One channel's answer: item indices, scores (higher is better), the channel name.

    ``items`` and ``scores`` have the same length and are ordered by descending score.
    ``error`` is set when the channel failed and the pipeline degraded around it.
    """

    channel: str
    items: np.ndarray
    scores: np.ndarray
    error: str | None = None

    def __post_init__(self) -> None:
        self.items = np.asarray(self.items, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        if self.items.shape != self.scores.shape or self.items.ndim != 1:
            raise ValueError(f"{self.channel}: items {self.items.shape} and scores {self.scores.shape} differ")

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def empty(cls, channel: str, error: str | None = None) -> Candidates:
        return cls(channel, np.empty(0, np.int64), np.empty(0, np.float32), error)


@dataclass
class SideCandidates(Candidates):
    """A side source's answer (one that bypasses ranking for a page mixer, e.g.
    ``coldstart/bandit``): a channel answer with extra per-item float ``columns`` (copied
    into the candidate set)."""

    columns: dict[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class RecallChannel(Protocol):
    """A candidate source, addressed as ``family/name`` (``item-to-item/swing``)."""

    name: str

    def fit(self, ds: Dataset) -> RecallChannel: ...

    def recall(self, ctx: UserContext, k: int) -> Candidates: ...


CHANNELS: Registry[RecallChannel] = Registry("recall channel")
