"""``tag/interest``: an inverted index tag -> notes, queried with the user's decayed tag interests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from notefeed.data.dataset import Dataset
from notefeed.recall._common import (
    candidates_from_scores,
    csr_from_state,
    csr_state,
    positive_log,
    recency_weights,
    weighted_row_sum,
)
from notefeed.recall.base import CHANNELS, Candidates, UserContext

__all__ = ["TagInterestChannel", "item_terms"]


def item_terms(ds: Dataset) -> tuple[sp.csr_matrix, list[str]]:
    """(n_items, n_terms) binary CSR of each note's tags plus ``cat:<category>``; the term names."""
    rows, terms = [], []
    for i, (tags, cat) in enumerate(zip(ds.notes["tags"], ds.notes["category"], strict=True)):
        # sorted: term ids (and so tie order downstream) must not depend on the process's hash seed
        for t in sorted({str(x).strip().lower() for x in tags} | ({f"cat:{cat}"} if cat else set())):
            if t:
                rows.append(i)
                terms.append(t)
    codes, names = pd.factorize(pd.Series(terms, dtype=object), sort=True)
    m = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (np.asarray(rows, np.int64), codes.astype(np.int64))),
        shape=(ds.n_items, len(names)),
    )
    return m, [str(x) for x in names]


@CHANNELS.register("tag/interest")
class TagInterestChannel:
    """User interests = recency-decayed term counts of the history (top ``n_interests`` terms);
    each term's postings are its ``postings`` most popular notes. Score of a note = sum over the
    user's terms of ``interest * popularity share of the note within the term``.
    """

    name = "tag/interest"

    def __init__(self, n_recent: int = 50, decay: float = 0.95, n_interests: int = 10, postings: int = 1000) -> None:
        if not 0 < decay <= 1:
            raise ValueError(f"{self.name}: 'decay' must be in (0, 1], got {decay}")
        self.n_recent, self.decay = int(n_recent), float(decay)
        self.n_interests, self.postings = int(n_interests), int(postings)
        self.terms: sp.csr_matrix | None = None
        self.index: sp.csr_matrix | None = None

    def fit(self, ds: Dataset) -> TagInterestChannel:
        self.terms, self.term_names = item_terms(ds)
        pop = np.bincount(positive_log(ds)["item"].to_numpy(), minlength=ds.n_items).astype(np.float64)
        # postings: per term, top notes by popularity (+1 so unseen notes still appear)
        tc = self.terms.tocsc().tocoo()
        score = np.log1p(pop[tc.row]) + 1.0
        order = np.lexsort((-score, tc.col))
        col, row, score = tc.col[order], tc.row[order], score[order]
        start = np.searchsorted(col, np.arange(self.terms.shape[1]))
        rank = np.arange(col.size) - start[col]
        keep = rank < self.postings
        col, row, score = col[keep], row[keep], score[keep]
        total = np.bincount(col, weights=score, minlength=self.terms.shape[1])
        self.index = sp.csr_matrix(
            (score / np.maximum(total[col], 1e-12), (col, row)), shape=(self.terms.shape[1], ds.n_items)
        )
        return self

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Note -> term table, term -> note postings and the term names."""
        if self.terms is None or self.index is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        params = {"n_recent": self.n_recent, "decay": self.decay, "n_interests": self.n_interests,
                  "postings": self.postings, "term_names": list(self.term_names)}
        return params, {**csr_state("terms", self.terms), **csr_state("index", self.index)}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> TagInterestChannel:
        p = dict(params)
        names = [str(x) for x in p.pop("term_names")]
        ch = cls(**p)
        ch.terms, ch.index, ch.term_names = csr_from_state(arrays, "terms"), csr_from_state(arrays, "index"), names
        if ch.terms.shape[1] != len(names) or ch.index.shape[0] != len(names):
            raise ValueError(f"{cls.name}: {len(names)} term names for tables {ch.terms.shape}, {ch.index.shape}")
        return ch

    def interests(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top term ids and weights of a history (oldest first)."""
        assert self.terms is not None
        h = np.asarray(history, np.int64)[-self.n_recent :]
        h = h[(h >= 0) & (h < self.terms.shape[0])]
        if h.size == 0:
            return np.empty(0, np.int64), np.empty(0)
        w = sp.csr_matrix((recency_weights(h.size, self.decay), (np.zeros(h.size, np.int64), h)),
                          shape=(1, self.terms.shape[0]))
        # w @ terms over only the columns the history's notes have (renumbered): the same product,
        # the same order of sums and of output entries, without SciPy's work arrays as long as
        # every term (milliseconds at a million notes)
        sub = self.terms[w.indices]
        cols, inv = np.unique(sub.indices, return_inverse=True)
        sub = sp.csr_matrix((sub.data, inv.reshape(-1), sub.indptr), shape=(sub.shape[0], cols.size))
        t = (sp.csr_matrix((w.data, np.arange(w.nnz), [0, w.nnz]), shape=(1, w.nnz)) @ sub).tocsr()
        order = np.argsort(-t.data, kind="stable")[: self.n_interests]
        return cols[t.indices[order]].astype(np.int64), t.data[order] / max(t.data.sum(), 1e-12)

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if self.index is None:
            raise RuntimeError(f"{self.name}: recall() before fit()")
        terms, w = self.interests(ctx.history)
        if terms.size == 0:
            return Candidates.empty(self.name)
        cols, vals = weighted_row_sum(self.index, terms, w)
        return candidates_from_scores(self.name, cols, vals, ctx, k)
