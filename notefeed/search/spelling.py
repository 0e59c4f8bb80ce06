"""Spelling tolerance: an unknown query token is replaced by the most frequent index token
within a small edit distance.

Candidates come from a symmetric-delete map (every vocabulary word under each of its
one-character deletions), which finds all words within one edit and most within two
(a substitution is a shared deletion); each candidate is then checked with the exact
optimal-string-alignment distance. Only alphabetic tokens of ``min_len`` or more characters
are corrected: short tokens and Chinese words have too many neighbours to guess safely.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

__all__ = ["osa_distance", "SpellCorrector"]


def osa_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal string alignment distance (Levenshtein + adjacent transposition), capped at
    ``limit`` (returns ``limit`` as soon as the distance is known to reach it)."""
    if abs(len(a) - len(b)) >= limit:
        return limit
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        if min(cur) >= limit:
            return limit
        prev2, prev = prev, cur
    return min(prev[-1], limit)


def _deletes(w: str) -> set[str]:
    return {w[:i] + w[i + 1:] for i in range(len(w))}


class SpellCorrector:
    """Vocabulary-backed correction. ``df`` maps each index token to its document frequency;
    the delete map is built on first use and grows with :meth:`add_words`."""

    def __init__(self, df: Mapping[str, int], min_len: int = 4, min_df: int = 2) -> None:
        self.df = df
        self.min_len, self.min_df = min_len, min_df
        self._map: dict[str, list[str]] | None = None
        self._lock = threading.Lock()

    def _eligible(self, w: str) -> bool:
        return len(w) >= self.min_len - 1 and w.isascii() and w.isalpha()

    def _build(self) -> dict[str, list[str]]:
        m: dict[str, list[str]] = {}
        for w, c in self.df.items():
            if c >= self.min_df and self._eligible(w):
                for d in _deletes(w) | {w}:
                    m.setdefault(d, []).append(w)
        return m

    def add_words(self, words: list[str]) -> None:
        """Index words that reached ``min_df`` since the map was built."""
        with self._lock:
            if self._map is None:
                return
            for w in words:
                if self.df.get(w, 0) == self.min_df and self._eligible(w):
                    for d in _deletes(w) | {w}:
                        self._map.setdefault(d, []).append(w)

    def max_edits(self, word: str) -> int:
        return 1 if len(word) < 7 else 2

    def correct(self, word: str) -> str | None:
        """The vocabulary word to use for the unknown ``word``, or ``None`` (no safe guess)."""
        if word in self.df or len(word) < self.min_len or not (word.isascii() and word.isalpha()):
            return None
        with self._lock:
            if self._map is None:
                self._map = self._build()
            m = self._map
            cands = set(m.get(word, ()))
            for d in _deletes(word):
                cands.update(m.get(d, ()))
        limit = self.max_edits(word)
        best: tuple[int, int, str] | None = None
        for c in cands:
            d = osa_distance(word, c, limit + 1)
            if d <= limit:
                key = (d, -self.df.get(c, 0), c)
                if best is None or key < best:
                    best = key
        return None if best is None else best[2]
