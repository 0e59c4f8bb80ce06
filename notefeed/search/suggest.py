"""Query suggestions by prefix: from a query log (phrases weighted by how often they were
searched) or, without one, from note titles (weighted by how many notes share the title).

Phrases are kept sorted, so a prefix is a binary search; the matches are ranked by weight.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable

from notefeed.search.text import normalise, normalise_many

__all__ = ["Suggester"]


class Suggester:
    """Prefix completion over weighted phrases; ``source`` says where they came from."""

    def __init__(self, phrases: Iterable[str] = (), source: str = "titles", max_len: int = 80,
                 scan: int = 2000) -> None:
        self.source, self.max_len, self.scan = source, max_len, scan
        self._weight: Counter[str] = Counter()
        self._sorted: list[str] = []
        self._lock = threading.Lock()
        self.add(phrases)

    def add(self, phrases: Iterable[str]) -> None:
        texts = [str(p) for p in phrases]
        # many phrases (a catalogue's titles): normalised a chunk at a time
        norm = normalise_many(texts) if len(texts) > 64 else [normalise(t) for t in texts]
        counts = Counter(p[: self.max_len] for p in norm if p)
        with self._lock:
            new = [p for p in counts if p not in self._weight]
            self._weight.update(counts)
            if new:
                if not self._sorted:
                    self._sorted = sorted(new)
                elif len(new) > 64:
                    self._sorted = sorted(set(self._sorted).union(new))
                else:
                    for p in set(new):
                        bisect.insort(self._sorted, p)

    def remove(self, phrases: Iterable[str]) -> None:
        """Take one count of each phrase back (a note taken down: its title); a phrase whose
        weight reaches 0 is no longer suggested."""
        with self._lock:
            for p in phrases:
                p = normalise(str(p))[: self.max_len]
                if self._weight.get(p, 0) <= 0:
                    continue
                self._weight[p] -= 1
                if self._weight[p] <= 0:
                    del self._weight[p]
                    at = bisect.bisect_left(self._sorted, p)
                    if at < len(self._sorted) and self._sorted[at] == p:
                        del self._sorted[at]

    def __len__(self) -> int:
        return len(self._sorted)

    def suggest(self, prefix: str, n: int = 10) -> list[tuple[str, int]]:
        """Up to ``n`` (phrase, weight) starting with the normalised ``prefix``, heaviest first
        (among the first ``scan`` matches in order)."""
        p = normalise(prefix)
        if not p:
            return []
        with self._lock:
            lo = bisect.bisect_left(self._sorted, p)
            hits = []
            for s in self._sorted[lo: lo + self.scan]:
                if not s.startswith(p):
                    break
                hits.append((s, self._weight[s]))
        hits.sort(key=lambda x: (-x[1], x[0]))
        return hits[:n]
