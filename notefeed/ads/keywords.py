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

import numpy as np

from notefeed.search.text import analyze

__all__ = ["KeywordIndex", "MATCH_SCORE"]

#: the relevance a match of each type stands for (exact is the advertiser's own query)
MATCH_SCORE = {"exact": 1.0, "phrase": 0.8, "broad": 0.6}


class KeywordIndex:
    """Keywords ``(ad, text, match)``; :meth:`match` returns the ads a query triggers."""

    def __init__(self, keywords: Iterable[tuple[int, str, str]] = (), max_phrase: int = 8) -> None:
        self.exact: dict[tuple[str, ...], set[int]] = defaultdict(set)
        self.phrase: dict[tuple[str, ...], set[int]] = defaultdict(set)
        self.broad_by_token: dict[str, list[int]] = defaultdict(list)  # token -> broad keyword rows
        self.broad: list[tuple[int, frozenset[str]]] = []
        self.max_phrase = max_phrase
        for ad, text, match in keywords:
            self.add(ad, text, match)

    def add(self, ad: int, text: str, match: str) -> None:
        toks = tuple(analyze(text))
        if not toks:
            return
        if match == "exact":
            self.exact[toks].add(ad)
        elif match == "phrase":
            self.phrase[toks[: self.max_phrase]].add(ad)
        elif match == "broad":
            row = len(self.broad)
            s = frozenset(toks)
            self.broad.append((ad, s))
            rare = min(s)  # any one token indexes the row; subset check below
            self.broad_by_token[rare].append(row)
        else:
            raise ValueError(f"match: expected exact/phrase/broad, got {match!r}")

    def match(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(ads (n,) int64, scores (n,) float32): the best match type per ad, best first."""
        return self.match_tokens(analyze(query))

    def match_tokens(self, toks: list[str]) -> tuple[np.ndarray, np.ndarray]:
        best: dict[int, float] = {}

        def hit(ads: Iterable[int], s: float) -> None:
            for a in ads:
                if best.get(a, 0.0) < s:
                    best[a] = s

        t = tuple(toks)
        if t in self.exact:
            hit(self.exact[t], MATCH_SCORE["exact"])
        for n in range(1, min(len(t), self.max_phrase) + 1):
            for i in range(len(t) - n + 1):
                ads = self.phrase.get(t[i: i + n])
                if ads:
                    hit(ads, MATCH_SCORE["phrase"])
        qs = set(t)
        for tok in qs:
            for row in self.broad_by_token.get(tok, ()):
                ad, s = self.broad[row]
                if s <= qs:
                    hit((ad,), MATCH_SCORE["broad"])
        if not best:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids = np.fromiter(best.keys(), np.int64, len(best))
        sc = np.fromiter(best.values(), np.float32, len(best))
        o = np.lexsort((ids, -sc))
        return ids[o], sc[o]
