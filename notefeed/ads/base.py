"""The ads contracts: a recall channel returns ad candidates with scores for a request; an
efficiency model returns pCTR in input order; a pacer says whether a campaign may bid now.

Ads are addressed by their integer ``ad_id`` (row order of :class:`~notefeed.ads.recall.AdCorpus`).
Channels are named ``family/name`` (``keyword/exact``, ``semantic/text``, ``keyword/rewrite``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from notefeed.registry import Registry

__all__ = ["AdRequest", "AdCandidates", "AdRecallChannel", "EfficiencyModel", "Pacer", "AD_CHANNELS", "QueryMemo"]

T = TypeVar("T")


class QueryMemo(Generic[T]):
    """Per-query results computed once (a simulated day asks every auction about the same
    queries: the same numbers), all forgotten at once when ``cap`` entries are held."""

    def __init__(self, cap: int = 100_000) -> None:
        self.cap = cap
        self._d: dict[Hashable, T] = {}

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        v = self._d.get(key)
        if v is None:
            if len(self._d) >= self.cap:
                self._d.clear()
            v = self._d[key] = compute()
        return v

    def __len__(self) -> int:
        return len(self._d)


@dataclass
class AdRequest:
    """A search-ads request (``query`` set) or a feed-ads request (``query`` None).

    ``user_vec`` (d,) is the user's interest vector in the ad text space (feed ads);
    ``user`` the dense user index or -1; ``age`` in years or None.
    """

    query: str | None = None
    user: int = -1
    user_vec: np.ndarray | None = None
    age: int | None = None
    interests: tuple[str, ...] = ()


@dataclass
class AdCandidates:
    """Recalled ads: ``ids`` (n,) int64 and ``scores`` (n,) float32, best first, plus the
    channel each came from (``channels[i]``)."""

    ids: np.ndarray
    scores: np.ndarray
    channels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def empty() -> AdCandidates:
        return AdCandidates(np.zeros(0, np.int64), np.zeros(0, np.float32), [])


@runtime_checkable
class AdRecallChannel(Protocol):
    name: str

    def retrieve(self, request: AdRequest, k: int) -> AdCandidates: ...


@runtime_checkable
class EfficiencyModel(Protocol):
    name: str

    def pctr(self, features: np.ndarray) -> np.ndarray:
        """pCTR (n,) in (0, 1) for feature rows (n, f), in input order."""
        ...


@runtime_checkable
class Pacer(Protocol):
    name: str

    def allow(self, campaign_id: str, now_s: float, rng: np.random.Generator) -> bool: ...

    def record(self, campaign_id: str, cost: float, now_s: float) -> None: ...


AD_CHANNELS: Registry[AdRecallChannel] = Registry("ad recall channel")
