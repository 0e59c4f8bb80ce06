"""Bid-keyword matching by type over normalised, segmented text.

Query and keywords go through the search package's analyser
(:func:`notefeed.search.text.analyze`: NFKC, lower case, jieba for CJK, word tokens otherwise),
so a keyword matches the query the way a note's text matches it in search.

- **exact**: the query's token sequence equals the keyword's;
- **phrase**: the keyword's tokens occur contiguously, in order, in the query;
- **broad**: every keyword token occurs somewhere in the query (any order).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from itertools import combinations

import numpy as np

from notefeed.search.text import analyze

__all__ = ["KeywordIndex", "MATCH_SCORE"]

#: the relevance a match of each type stands for (exact is the advertiser's own query)
MATCH_SCORE = {"exact": 1.0, "phrase": 0.8, "broad": 0.6}


class KeywordIndex:
    """Keywords ``(ad, text, match)``; :meth:`match` returns the ads a query triggers.

    Lookups are dictionary hits, never scans: exact by the whole token sequence, phrase by every
    contiguous n-gram of the query, broad by every subset of the query's tokens (a broad keyword
    matches when its token set is a subset of the query's). A query with more than
    ``max_subset_tokens`` distinct tokens checks broad keywords token by token instead.
    """

    def __init__(self, keywords: Iterable[tuple[int, str, str]] = (), max_phrase: int = 8,
                 max_subset_tokens: int = 8) -> None:
        self.exact: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.phrase: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.broad: dict[frozenset[str], list[int]] = defaultdict(list)
        self.broad_by_token: dict[str, list[frozenset[str]]] = defaultdict(list)  # token -> broad keys with it
        self.max_phrase, self.max_subset_tokens = max_phrase, max_subset_tokens
        self.max_broad = 0  # tokens of the longest broad keyword
        self._arrays: dict[tuple[str, object], np.ndarray] = {}
        for ad, text, match in keywords:
            self.add(ad, text, match)

    def add(self, ad: int, text: str, match: str) -> None:
        toks = tuple(analyze(text))
        if match not in MATCH_SCORE:
            raise ValueError(f"match: expected exact/phrase/broad, got {match!r}")
        if not toks:
            return
        if match == "exact":
            key: object = toks
            self.exact[toks].append(ad)
        elif match == "phrase":
            key = toks[: self.max_phrase]
            self.phrase[key].append(ad)  # type: ignore[index]
        else:
            key = frozenset(toks)
            if key not in self.broad:
                for t in key:
                    self.broad_by_token[t].append(key)
            self.broad[key].append(ad)
            self.max_broad = max(self.max_broad, len(key))
        self._arrays.pop((match, key), None)

    def _ads(self, match: str, key: object) -> np.ndarray | None:
        table = {"exact": self.exact, "phrase": self.phrase, "broad": self.broad}[match]
        ads = table.get(key)  # type: ignore[call-overload]
        if not ads:
            return None
        arr = self._arrays.get((match, key))
        if arr is None:
            arr = self._arrays[(match, key)] = np.unique(np.asarray(ads, np.int64))
        return arr

    def match(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(ads (n,) int64, scores (n,) float32): the best match type per ad, best first."""
        return self.match_tokens(analyze(query))

    def _broad_keys(self, t: tuple[str, ...]) -> Iterable[frozenset[str]]:
        qs = sorted(set(t))
        if len(qs) <= self.max_subset_tokens:
            for n in range(1, min(len(qs), self.max_broad) + 1):
                for sub in combinations(qs, n):
                    yield frozenset(sub)
        else:
            q = set(qs)
            seen: set[frozenset[str]] = set()
            for tok in qs:
                for key in self.broad_by_token.get(tok, ()):
                    if key not in seen and key <= q:
                        seen.add(key)
                        yield key

    def match_tokens(self, toks: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts: list[tuple[np.ndarray, float]] = []
        t = tuple(toks)
        a = self._ads("exact", t)
        if a is not None:
            parts.append((a, MATCH_SCORE["exact"]))
        for n in range(1, min(len(t), self.max_phrase) + 1):
            for i in range(len(t) - n + 1):
                a = self._ads("phrase", t[i: i + n])
                if a is not None:
                    parts.append((a, MATCH_SCORE["phrase"]))
        if self.broad:
            for key in self._broad_keys(t):
                a = self._ads("broad", key)
                if a is not None:
                    parts.append((a, MATCH_SCORE["broad"]))
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids = np.concatenate([p[0] for p in parts])
        sc = np.concatenate([np.full(len(p[0]), p[1], np.float32) for p in parts])
        o = np.lexsort((ids, -sc))  # best score first, then id
        ids, sc = ids[o], sc[o]
        _, first = np.unique(ids, return_index=True)  # each ad's best match
        first.sort()
        return ids[first], sc[first]
