"""Personalisation features: how well a candidate note fits the user's history.

A :class:`UserProfile` is built from the user's positive notes: the share of each category,
the share of each tag and the mean note vector (unit). :func:`personal_features` gives, per
candidate, (category share, mean share of its tags, cosine with the mean vector).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["UserProfile", "personal_features", "TagTable"]


class TagTable:
    """Per-item tag ids as CSR arrays (``ptr`` (n+1,), ``ids``), grown from the item tag lists
    as items are added (:meth:`sync`), so tag features are array operations per query."""

    def __init__(self) -> None:
        self.arrays = (np.zeros(1, np.int64), np.zeros(0, np.int64))  # replaced whole: readers see one pair
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.arrays[0]) - 1

    def sync(self, item_tags: Sequence[Sequence[int]]) -> TagTable:
        if len(item_tags) > len(self):
            with self._lock:
                ptr, ids = self.arrays
                new = item_tags[len(ptr) - 1:]
                lens = np.fromiter((len(t) for t in new), np.int64, len(new))
                flat = np.fromiter((int(t) for ts in new for t in ts), np.int64, int(lens.sum()))
                self.arrays = (np.concatenate([ptr, ptr[-1] + np.cumsum(lens)]), np.concatenate([ids, flat]))
        return self


@dataclass
class UserProfile:
    """``category`` (n_categories,) shares; ``tags`` tag -> share; ``vector`` (dim,) unit or zeros;
    ``topics`` the mean topic mixture of the history (over the category model's categories,
    :mod:`notefeed.search.topics`), ``None`` when unknown."""

    category: np.ndarray
    tags: dict[int, float] = field(default_factory=dict)
    vector: np.ndarray | None = None
    n_history: int = 0
    topics: np.ndarray | None = None

    @classmethod
    def from_history(cls, history: np.ndarray, item_category: np.ndarray, n_categories: int,
                     item_tags: Sequence[Sequence[int]], vectors: np.ndarray | None) -> UserProfile:
        """``history`` (h,) item indices (repeats count), ``item_category`` (n_items,) codes,
        ``item_tags`` per-item tag ids, ``vectors`` (h, dim) the history's note vectors."""
        h = np.asarray(history, np.int64)
        h = h[(h >= 0) & (h < len(item_category))]
        cat = np.bincount(item_category[h], minlength=n_categories).astype(np.float32)
        if len(h):
            cat /= len(h)
        tags: Counter[int] = Counter()
        for i in h.tolist():
            tags.update(item_tags[i])
        total = max(1, len(h))
        vec = None
        if vectors is not None and len(vectors):
            m = vectors.mean(axis=0)
            nrm = float(np.linalg.norm(m))
            vec = (m / nrm).astype(np.float32) if nrm > 1e-9 else None
        return cls(cat, {t: c / total for t, c in tags.items()}, vec, len(h))


def personal_features(profile: UserProfile | None, items: np.ndarray, item_category: np.ndarray,
                      item_tags: Sequence[Sequence[int]], vectors: np.ndarray | None,
                      table: TagTable | None = None) -> np.ndarray:
    """(len(items), 3) float32: category share, mean tag share, cosine with the profile vector.

    ``vectors`` (len(items), dim) are the candidates' note vectors (None: that column is 0).
    ``table``: ``item_tags`` as a :class:`TagTable` (the same numbers, computed with arrays).
    """
    out = np.zeros((len(items), 3), np.float32)
    if profile is None or profile.n_history == 0 or not len(items):
        return out
    cats = item_category[items]
    ok = cats < len(profile.category)
    out[ok, 0] = profile.category[cats[ok]]
    if profile.tags and table is not None and len(table) >= len(item_tags):
        out[:, 1] = _tag_share(profile, np.asarray(items, np.int64), table)
    elif profile.tags:
        for j, i in enumerate(items.tolist()):
            ts = item_tags[i] if i < len(item_tags) else ()
            if ts:
                out[j, 1] = sum(profile.tags.get(t, 0.0) for t in ts) / len(ts)
    if profile.vector is not None and vectors is not None:
        out[:, 2] = vectors @ profile.vector
    return out


def _tag_share(profile: UserProfile, items: np.ndarray, table: TagTable) -> np.ndarray:
    """Mean profile share of each item's tags, summed tag by tag in the tags' order from 0.0
    (as ``sum(...) / len(tags)`` does, so the float64 results are the same)."""
    keys = np.fromiter(profile.tags.keys(), np.int64, len(profile.tags))
    order = np.argsort(keys)
    keys = keys[order]
    shares = np.fromiter(profile.tags.values(), np.float64, len(profile.tags))[order]
    ptr, ids = table.arrays
    n = len(ptr) - 1
    ok = (items >= 0) & (items < n)
    at = np.clip(items, 0, max(n - 1, 0))
    start = np.where(ok, ptr[at] if n else 0, 0)
    lens = np.where(ok, (ptr[at + 1] if n else 0) - start, 0)
    acc = np.zeros(len(items), np.float64)
    for j in range(int(lens.max(initial=0))):
        has = lens > j
        tag = ids[start[has] + j]
        pos = np.minimum(np.searchsorted(keys, tag), len(keys) - 1)
        acc[has] += np.where(keys[pos] == tag, shares[pos], 0.0)
    return np.where(lens > 0, acc / np.maximum(lens, 1), 0.0)
