"""Query understanding: normalise, segment, correct, weight, predict the category, rewrite.

``parse(raw)`` runs the steps in order and returns a :class:`~notefeed.search.base.ParsedQuery`:

1. :func:`~notefeed.search.text.check_query` (bad queries raise, naming ``q``) and NFKC/case/
   whitespace normalisation;
2. segmentation with the index's own analyser;
3. spelling: an alphabetic token missing from the index vocabulary is replaced by the most
   frequent vocabulary word within one or two edits (:class:`SpellCorrector`); a Chinese
   token missing from it (jieba cut the query differently from the notes) is split into its
   characters, which the index holds as ``grams``;
4. term weights: BM25 IDF over the index (tokens nowhere in the index are dropped);
5. category prediction (:class:`~notefeed.search.intent.CategoryModel`);
6. rewrites from each configured backend (mined table, HTTP), de-duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from notefeed.content.text import has_cjk
from notefeed.search.base import ParsedQuery, RewriteBackend
from notefeed.search.intent import CategoryModel
from notefeed.search.spelling import SpellCorrector
from notefeed.search.text import MAX_QUERY_CHARS, analyze, check_query

log = logging.getLogger(__name__)

__all__ = ["QueryUnderstanding"]


class QueryUnderstanding:
    """``df``/``n_docs`` are the index vocabulary (see :class:`~notefeed.search.lexical.LexicalIndex`)."""

    def __init__(self, df: dict[str, int], n_docs: Callable[[], int], categories: CategoryModel | None = None,
                 rewriters: Sequence[RewriteBackend] = (), spelling: bool = True,
                 max_chars: int = MAX_QUERY_CHARS, max_terms: int = 32) -> None:
        self.df, self.n_docs = df, n_docs
        self.spell = SpellCorrector(df) if spelling else None
        self.categories = categories
        self.rewriters = list(rewriters)
        self.max_chars, self.max_terms = max_chars, max_terms

    def idf(self, terms: Sequence[str]) -> np.ndarray:
        n = self.n_docs()
        df = np.array([self.df.get(t, 0) for t in terms], np.float64)
        return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)

    def terms_of(self, text: str) -> tuple[list[str], dict[str, str]]:
        """Index-vocabulary terms of normalised ``text`` and the corrections made."""
        terms: list[str] = []
        fixes: dict[str, str] = {}
        for tok in analyze(text):
            if tok in self.df:
                terms.append(tok)
            elif has_cjk(tok) and len(tok) > 1:
                terms.extend(ch for ch in tok if has_cjk(ch))  # found through the grams field
            elif self.spell is not None and (fix := self.spell.correct(tok)) is not None:
                fixes[tok] = fix
                terms.append(fix)
            elif has_cjk(tok):
                terms.append(tok)
        seen: set[str] = set()
        uniq = [t for t in terms if not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]
        return uniq[: self.max_terms], fixes

    def parse(self, raw: object, rewrite: bool = True) -> ParsedQuery:
        text = check_query(raw, self.max_chars)
        terms, fixes = self.terms_of(text)
        pq = ParsedQuery(raw=str(raw), text=text, terms=terms, weights=self.idf(terms), corrections=fixes)
        if self.categories is not None and terms:
            pq.categories = self.categories.predict(terms)
        if rewrite:
            pq.rewrites = self.rewrites(text, pq)
        return pq

    def rewrites(self, text: str, pq: ParsedQuery) -> list[str]:
        out: list[str] = []
        corrected = " ".join(pq.terms)
        for rw in self.rewriters:
            try:
                cands = rw.rewrite(text)
            except Exception:  # a rewrite backend never fails a search
                log.exception("rewrite backend %s failed", getattr(rw, "name", rw))
                continue
            if not cands and getattr(rw, "token_level", False):  # substitute word by word
                toks = text.split()
                subs = [(rw.rewrite(t) or [t])[0] for t in toks]
                if subs != toks:
                    cands = [" ".join(subs)]
            out.extend(c for c in cands if c and c != text and c != corrected and c not in out)
        return out
