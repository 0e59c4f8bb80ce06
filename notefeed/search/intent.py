"""Category (intent) prediction from a query: multinomial naive Bayes over note tokens.

Fitted on the catalogue itself (each note's tokens labelled with its category), so it needs
no labelled queries: ``P(category | query) ~ P(category) * prod_t P(t | category)`` with
add-``alpha`` smoothing, over the query tokens the model knows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["CategoryModel"]


class CategoryModel:
    """Term-category counts -> naive Bayes posteriors."""

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha
        self.categories: list[str] = []
        self.vocab: dict[str, int] = {}
        self.log_prior = np.zeros(0, np.float32)  # (C,)
        self.log_lik = np.zeros((0, 0), np.float32)  # (V, C)

    def fit(self, docs: Sequence[Sequence[str]], categories: Sequence[str]) -> CategoryModel:
        """``docs`` token lists with their ``categories`` (same length); "" means no category."""
        if len(docs) != len(categories):
            raise ValueError(f"categories: expected {len(docs)} labels, got {len(categories)}")
        codes, uniq = pd.factorize(pd.Series([t for d in docs for t in d], dtype=object), sort=False)
        indptr = np.zeros(len(docs) + 1, np.int64)
        np.cumsum([len(d) for d in docs], out=indptr[1:])
        return self.fit_codes(codes, indptr, uniq.tolist(), categories)

    def fit_codes(self, codes: np.ndarray, indptr: np.ndarray, words: Sequence[str],
                  categories: Sequence[str]) -> CategoryModel:
        """:meth:`fit` of notes given as ids into ``words``: note ``j``'s tokens are
        ``words[codes[indptr[j]:indptr[j + 1]]]`` (the same model)."""
        from notefeed.search.tokens import ragged_take

        if len(indptr) - 1 != len(categories):
            raise ValueError(f"categories: expected {len(indptr) - 1} labels, got {len(categories)}")
        keep = [j for j, c in enumerate(categories) if c]
        self.categories = sorted({categories[j] for j in keep})
        cat_of = {c: i for i, c in enumerate(self.categories)}
        n_c = len(self.categories)
        # the vocabulary in first-appearance order; term-category counts by one bincount
        kept, kept_ptr = ragged_take(np.asarray(codes, np.int64), np.asarray(indptr, np.int64), np.asarray(keep, np.int64))
        codes, uniq = pd.factorize(kept, sort=False)
        self.vocab = {str(words[t]): i for i, t in enumerate(uniq.tolist())}
        if n_c == 0:
            return self
        cats = np.repeat(np.array([cat_of[categories[j]] for j in keep], np.int64), np.diff(kept_ptr))
        v = len(self.vocab)
        counts = np.bincount(codes.astype(np.int64) * n_c + cats, minlength=v * n_c).astype(np.float64).reshape(v, n_c)
        prior = np.bincount([cat_of[categories[j]] for j in keep], minlength=n_c).astype(np.float64)
        self.log_prior = np.log(prior / prior.sum()).astype(np.float32)
        lik = (counts + self.alpha) / (counts.sum(axis=0, keepdims=True) + self.alpha * v)
        self.log_lik = np.log(lik).astype(np.float32)
        return self

    def predict(self, terms: Sequence[str], top: int = 3) -> list[tuple[str, float]]:
        """Best categories with posterior probabilities; ``[]`` when no query term is known."""
        rows = [self.vocab[t] for t in terms if t in self.vocab]
        if not rows or not self.categories:
            return []
        logp = self.log_prior + self.log_lik[rows].sum(axis=0)
        p = np.exp(logp - logp.max())
        p /= p.sum()
        order = np.argsort(-p)[:top]
        return [(self.categories[i], float(p[i])) for i in order]

    def proba(self, terms: Sequence[str]) -> dict[str, float]:
        """Posterior over every category (empty when no term is known)."""
        return dict(self.predict(terms, top=len(self.categories)))
