"""Personalisation features: how well a candidate note fits the user's history.

A :class:`UserProfile` is built from the user's positive notes: the share of each category,
the share of each tag and the mean note vector (unit). :func:`personal_features` gives, per
candidate, (category share, mean share of its tags, cosine with the mean vector).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["UserProfile", "personal_features"]


@dataclass
class UserProfile:
    """``category`` (n_categories,) shares; ``tags`` tag -> share; ``vector`` (dim,) unit or zeros."""

    category: np.ndarray
    tags: dict[int, float] = field(default_factory=dict)
    vector: np.ndarray | None = None
    n_history: int = 0

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
                      item_tags: Sequence[Sequence[int]], vectors: np.ndarray | None) -> np.ndarray:
    """(len(items), 3) float32: category share, mean tag share, cosine with the profile vector.

    ``vectors`` (len(items), dim) are the candidates' note vectors (None: that column is 0).
    """
    out = np.zeros((len(items), 3), np.float32)
    if profile is None or profile.n_history == 0 or not len(items):
        return out
    cats = item_category[items]
    ok = cats < len(profile.category)
    out[ok, 0] = profile.category[cats[ok]]
    if profile.tags:
        for j, i in enumerate(items.tolist()):
            ts = item_tags[i] if i < len(item_tags) else ()
            if ts:
                out[j, 1] = sum(profile.tags.get(t, 0.0) for t in ts) / len(ts)
    if profile.vector is not None and vectors is not None:
        out[:, 2] = vectors @ profile.vector
    return out
