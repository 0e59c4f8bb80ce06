"""Range counts and "last k before t" lookups over an event log, vectorised with searchsorted.

Events are grouped by an int64 segment (a user, a note, a user x category pair...) and sorted by
time inside each segment. A query ``(segment, t)`` only ever sees events with ``ts < t``: that is
what keeps real-time features free of leakage (events at or after the request time are invisible).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TimeIndex"]

_MAX_KEY = 2**62


class TimeIndex:
    """Sorted ``(segment, ts)`` keys. ``seg`` and ``ts`` are (n,) int64 arrays.

    Keys are ``seg * R + rank(ts)`` where ``rank`` is the position of ``ts`` among the sorted
    unique timestamps, so any time range maps to a contiguous slice of one segment.
    """

    def __init__(self, seg: np.ndarray, ts: np.ndarray) -> None:
        seg = np.asarray(seg, np.int64)
        ts = np.asarray(ts, np.int64)
        if seg.shape != ts.shape or seg.ndim != 1:
            raise ValueError(f"TimeIndex: seg {seg.shape} and ts {ts.shape} must be equal 1-d shapes")
        if len(seg) and seg.min() < 0:
            raise ValueError("TimeIndex: negative segment id")
        self.order = np.lexsort((ts, seg))  # positions into the caller's arrays
        self.uts = np.unique(ts)
        self.R = len(self.uts) + 1
        top = int(seg.max()) + 1 if len(seg) else 1
        if top * self.R >= _MAX_KEY:
            raise ValueError(f"TimeIndex: {top} segments x {self.R} timestamps overflow int64 keys")
        self.seg = seg[self.order]
        self.ts = ts[self.order]
        self.key = self.seg * self.R + np.searchsorted(self.uts, self.ts, "left")

    def __len__(self) -> int:
        return len(self.key)

    def end(self, seg: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(m,) position one past the last event of ``seg`` with ``ts < t`` (sorted order)."""
        seg = np.asarray(seg, np.int64)
        q = seg * self.R + np.searchsorted(self.uts, np.asarray(t, np.int64), "left")
        return np.searchsorted(self.key, q, "left")

    def start(self, seg: np.ndarray) -> np.ndarray:
        """(m,) position of the first event of ``seg`` (sorted order)."""
        return np.searchsorted(self.key, np.asarray(seg, np.int64) * self.R, "left")

    def count(self, seg: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        """(m,) number of events of ``seg`` with ``t0 <= ts < t1``."""
        return self.end(seg, t1) - self.end(seg, t0)

    def last_k(self, seg: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
        """(m, k) sorted positions of the last ``k`` events of ``seg`` before ``t``, oldest first,
        -1 where the segment has fewer events (left padding)."""
        end = self.end(seg, t)
        start = self.start(seg)
        pos = end[:, None] - k + np.arange(k)[None, :]
        return np.where(pos >= start[:, None], pos, -1)
