"""What the console charts over time: served pages in time buckets (engine clock).

Every page the engine serves (all pipelines, experiment arms included) adds its items to the
current bucket; a bucket keeps at most ``cap`` items (later pages of a busy bucket are counted
but their items not kept, and the bucket says ``sampled``). From the buckets: impressions,
small-creator share and creator Gini per bucket, and one note's exposure over time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from notefeed.serve.catalog import Catalog

__all__ = ["ExposureTracker", "gini", "quantile_from_buckets"]


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (n,): 0 equal, -> 1 concentrated."""
    x = np.sort(np.asarray(counts, np.float64))
    n, total = len(x), float(x.sum())
    if n == 0 or total <= 0:
        return float("nan")
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * total))


def quantile_from_buckets(bounds: Sequence[float], counts: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of a histogram: per-bucket ``counts`` (len(bounds) + 1, the last the
    +Inf bucket) with upper ``bounds``, linear within the bucket (Prometheus' estimate)."""
    total = float(sum(counts))
    if total <= 0:
        return None
    rank, acc, lo = q * total, 0.0, 0.0
    for j, c in enumerate(counts):
        if acc + c >= rank and c > 0:
            if j >= len(bounds):
                return float(bounds[-1])  # in the +Inf bucket: the largest finite bound
            return float(lo + (bounds[j] - lo) * (rank - acc) / c)
        acc += c
        lo = bounds[j] if j < len(bounds) else lo
    return float(bounds[-1])


@dataclass
class _Bucket:
    t: int
    pages: int = 0
    impressions: int = 0
    small: int = 0
    items: list[np.ndarray] = field(default_factory=list)
    kept: int = 0
    sampled: bool = False


class ExposureTracker:
    """Served pages by time bucket; ``page`` is an :attr:`Engine.page_observers` callback."""

    def __init__(self, catalog: Catalog, clock: Callable[[], float], bucket_s: int = 10, keep: int = 360,
                 cap: int = 200_000) -> None:
        self.catalog, self.clock = catalog, clock
        self.bucket_s, self.cap = int(bucket_s), int(cap)
        self._buckets: deque[_Bucket] = deque(maxlen=keep)
        self._lock = threading.Lock()
        #: engine-clock time of the last accepted event (the console's event lag)
        self.last_event_at: float | None = None

    def page(self, user_id: str, pipeline: str, result: Any) -> None:
        items = np.asarray(result.items, np.int64)
        small = int(self.catalog.small_creator(items).sum()) if len(items) else 0
        t = int(self.clock() // self.bucket_s) * self.bucket_s
        with self._lock:
            if not self._buckets or self._buckets[-1].t != t:
                self._buckets.append(_Bucket(t))
            b = self._buckets[-1]
            b.pages += 1
            b.impressions += len(items)
            b.small += small
            if b.kept + len(items) <= self.cap:
                b.items.append(items)
                b.kept += len(items)
            else:
                b.sampled = True

    def events(self, recs: Sequence[Any]) -> None:
        if recs:
            self.last_event_at = max(float(r.received_at) for r in recs)

    def series(self) -> list[dict[str, Any]]:
        """Per bucket: time, pages, impressions, small-creator share, creator Gini (over every
        creator in the catalogue, unexposed ones at 0)."""
        with self._lock:
            buckets = [(b.t, b.pages, b.impressions, b.small, list(b.items), b.sampled) for b in self._buckets]
        authors = self.catalog.authors()
        n_creators = len(self.catalog.creator_ids)
        out = []
        for t, pages, impr, small, items, sampled in buckets:
            it = np.concatenate(items) if items else np.zeros(0, np.int64)
            counts = np.bincount(authors[it], minlength=n_creators) if len(it) else np.zeros(n_creators)
            g = gini(counts)
            out.append({"t": t, "pages": pages, "impressions": impr,
                        "small_creator_share": small / impr if impr else None,
                        "creator_gini": None if g != g else g, "sampled": sampled})
        return out

    def exposure(self, item: int) -> list[dict[str, Any]]:
        """One note's impressions per bucket (of the items kept)."""
        with self._lock:
            buckets = [(b.t, list(b.items)) for b in self._buckets]
        return [{"t": t, "impressions": int(sum(int((a == item).sum()) for a in items))} for t, items in buckets]

    def top_creators(self, k: int = 10) -> list[tuple[int, int]]:
        """The ``k`` most exposed creators over the kept buckets: (creator index, impressions)."""
        with self._lock:
            items = [a for b in self._buckets for a in b.items]
        if not items:
            return []
        counts = np.bincount(self.catalog.authors()[np.concatenate(items)])
        top = np.argsort(-counts, kind="stable")[:k]
        return [(int(c), int(counts[c])) for c in top if counts[c] > 0]
