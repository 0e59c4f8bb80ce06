"""``tag/interest``: an inverted index tag -> notes, queried with the user's decayed tag interests.

Notes published after the fit (:meth:`TagInterestChannel.add_items`), edited notes
(:meth:`TagInterestChannel.replace_items`) and, with ``follow_engagement``, the positive events
served since (:meth:`TagInterestChannel.observe_positives`,
:meth:`TagInterestChannel.sync_positives`) change the channel at once, as a refit on the
catalogue with those notes and events would: their terms count in the interests of a user who
engaged with them, and the postings of each changed term are recomputed by the fit's rule (a
new note has no engagement yet, so it enters a full posting list once its positives beat the
list's last note's). The fitted tables stay as they are; the changes are kept beside them,
each replaced whole so that a concurrent :meth:`~TagInterestChannel.recall` sees either the
old or the new value.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import scipy.sparse as sp

from notefeed.data.dataset import Dataset
from notefeed.recall._common import (
    candidates_from_scores,
    csr_from_state,
    csr_state,
    edited_items,
    positive_log,
    recency_weights,
    weighted_row_sum,
)
from notefeed.recall.base import CHANNELS, Candidates, UserContext

__all__ = ["TagInterestChannel", "item_terms", "note_terms"]


def note_terms(tags: object, category: object) -> list[str]:
    """A note's terms: its tags (stripped, lower case) plus ``cat:<category>``, sorted, distinct."""
    if not isinstance(tags, list | tuple | np.ndarray):  # as a dataset reads a note's tags
        tags = []
    cat = "" if category is None or (isinstance(category, float) and category != category) else str(category)
    # sorted: term ids (and so tie order downstream) must not depend on the process's hash seed
    return [t for t in sorted({str(x).strip().lower() for x in tags} | ({f"cat:{cat}"} if cat else set())) if t]


def item_terms(ds: Dataset) -> tuple[sp.csr_matrix, list[str]]:
    """(n_items, n_terms) binary CSR of each note's tags plus ``cat:<category>``; the term names."""
    rows, terms = [], []
    for i, (tags, cat) in enumerate(zip(ds.notes["tags"], ds.notes["category"], strict=True)):
        for t in note_terms(tags, cat):
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

    Notes published or edited after the fit change it at once (module docstring).
    """

    name = "tag/interest"

    def __init__(self, n_recent: int = 50, decay: float = 0.95, n_interests: int = 10, postings: int = 1000,
                 follow_engagement: bool = True) -> None:
        if not 0 < decay <= 1:
            raise ValueError(f"{self.name}: 'decay' must be in (0, 1], got {decay}")
        if not isinstance(follow_engagement, bool):
            raise ValueError(f"{self.name}: 'follow_engagement' must be true or false, got {follow_engagement!r}")
        self.n_recent, self.decay = int(n_recent), float(decay)
        self.n_interests, self.postings = int(n_interests), int(postings)
        #: the postings follow the positive events served since the fit (else the fit's counts)
        self.follow_engagement = follow_engagement
        self.terms: sp.csr_matrix | None = None
        self.index: sp.csr_matrix | None = None
        #: positive events per note, the fitted ones' then the added ones' (room to grow past
        #: ``_n``): the postings' ``log1p(positives) + 1`` (None: a state saved before they were
        #: kept; notes added then change the interests, not the postings)
        self._pop: np.ndarray | None = None
        self._live()

    @property
    def item_pop(self) -> np.ndarray | None:
        """(n_indexed,) positive events per note as the channel counts them now (None: a state
        saved before they were kept)."""
        return None if self._pop is None else self._pop[: self._n]

    def _live(self) -> None:
        """Forget the changes since the fit (a fit or a load starts from its tables and counts)."""
        self._write = threading.Lock()
        #: item -> its sorted term ids, for the notes added or edited since the fit
        self._rows: dict[int, np.ndarray] = {}
        #: term -> (items ascending, shares), for the terms whose postings changed since the fit
        self._postings: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._term_of: dict[str, int] | None = None  # term name -> id, built at the first change
        self._added = 0  # notes added since the fit (items from ``terms.shape[0]`` on)
        #: term -> the items in ``_rows`` that hold it now (an edit's recomputed postings read it)
        self._holders: dict[int, set[int]] = {}
        self._edited: set[int] = set()  # fitted items in ``_rows`` (their fitted row no longer holds)
        self._by_term: sp.csc_matrix | None = None  # the fitted terms by column, built at the first edit

    @property
    def _n(self) -> int:
        """Notes known: the fitted ones and those added since."""
        return (0 if self.terms is None else int(self.terms.shape[0])) + self._added

    def fit(self, ds: Dataset) -> TagInterestChannel:
        self.terms, self.term_names = item_terms(ds)
        pop = np.bincount(positive_log(ds)["item"].to_numpy(), minlength=ds.n_items).astype(np.float64)
        self._pop = pop
        # postings: per term, top notes by popularity (+1 so unseen notes still appear)
        tc = self.terms.tocsc().tocoo()
        score = _score(pop[tc.row])
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
        self._live()
        return self

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Note -> term table, term -> note postings, the notes' positives and the term names
        (the notes added and edited, and the positives observed, since the fit included)."""
        if self.terms is None or self.index is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        terms, index, pop = self._tables()
        params = {"n_recent": self.n_recent, "decay": self.decay, "n_interests": self.n_interests,
                  "postings": self.postings, "follow_engagement": self.follow_engagement,
                  "term_names": list(self.term_names)}
        arrays = {**csr_state("terms", terms), **csr_state("index", index)}
        if pop is not None:
            arrays["item_pop"] = pop
        return params, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> TagInterestChannel:
        p = dict(params)
        names = [str(x) for x in p.pop("term_names")]
        ch = cls(**p)
        ch.terms, ch.index, ch.term_names = csr_from_state(arrays, "terms"), csr_from_state(arrays, "index"), names
        if ch.terms.shape[1] != len(names) or ch.index.shape[0] != len(names):
            raise ValueError(f"{cls.name}: {len(names)} term names for tables {ch.terms.shape}, {ch.index.shape}")
        pop = arrays.get("item_pop")
        if pop is not None and pop.shape != (ch.terms.shape[0],):
            raise ValueError(f"{cls.name}: item_pop {pop.shape} for {ch.terms.shape[0]} notes")
        ch._pop = None if pop is None else np.array(pop, np.float64)
        ch._live()
        return ch

    # ------------------------------------------------------------------ published and edited notes
    @property
    def n_indexed(self) -> int | None:
        """Notes the channel knows (items ``0 .. n_indexed - 1``: the fitted ones and those added
        since); None before :meth:`fit`."""
        return None if self.terms is None else self._n

    def add_items(self, notes: pd.DataFrame) -> np.ndarray:
        """Index notes published after the fit (``tags``, ``category``) under the next item
        indices, returned: their terms count in the interests of a user who engages with them,
        and each joins the postings of its terms that hold fewer than ``postings`` notes (a
        new note has no engagement, so it ranks below every note a full posting list keeps)."""
        if self.terms is None:
            raise RuntimeError(f"{self.name}: add_items() before fit()")
        with self._write:
            n0 = self._n
            items = np.arange(n0, n0 + len(notes), dtype=np.int64)
            rows = [self._term_ids(note_terms(t, c), create=True) for t, c in _tags_and_categories(notes)]
            for i, ids in zip(items.tolist(), rows, strict=True):
                self._set_row(i, ids)
            self._added += len(notes)  # readers see the new items from here on
            if self._pop is not None:
                self._grow_pop(self._n)
                for i, ids in zip(items.tolist(), rows, strict=True):
                    for t in ids.tolist():
                        got, _ = self._posting(t)
                        if len(got) < self.postings:  # all of the term's notes are in it: add this one
                            self._set_posting(t, np.append(got, i))
            return items

    def replace_items(self, items: np.ndarray, notes: pd.DataFrame) -> None:
        """Take the ``tags`` and ``category`` of ``notes`` (edited) as those of ``items``: the
        interests read the new terms, and the postings of every term the notes left or joined
        are recomputed by the fit's rule."""
        if self.terms is None:
            raise RuntimeError(f"{self.name}: replace_items() before fit()")
        with self._write:
            items = edited_items(self.name, items, notes, self._n)
            changed: set[int] = set()
            for i, (t, c) in zip(items.tolist(), _tags_and_categories(notes), strict=True):
                new = self._term_ids(note_terms(t, c), create=True)
                old = self._row(i)
                self._set_row(i, new)
                changed.update(set(old.tolist()) ^ set(new.tolist()))
            if self._pop is not None:
                for t in sorted(changed):
                    self._set_posting(t, self._members(t))

    def observe_positives(self, items: np.ndarray) -> None:
        """Count positive events on ``items`` (repeats count; items the channel does not know are
        skipped): with ``follow_engagement`` each note's terms' postings take its new count, as a
        refit would (a note whose count beats a full list's last note's enters it)."""
        if not self.follow_engagement or self._pop is None:
            return
        items = np.asarray(items, np.int64)
        with self._write:
            items = items[(items >= 0) & (items < self._n)]
            if items.size:
                np.add.at(self._pop, items, 1.0)
                self._raised(np.unique(items))

    def sync_positives(self, counts: np.ndarray) -> None:
        """Take ``counts`` (positive events per note, item ``i`` = row ``i``: the serving
        catalogue's, which a version trained earlier lacks the newer of) as the notes' counts
        and recompute the postings that change, as a refit would. With ``follow_engagement``."""
        if not self.follow_engagement or self._pop is None:
            return
        with self._write:
            n = min(self._n, len(counts))
            new = np.asarray(counts[:n], np.float64)
            cur = self._pop[:n]
            diff = np.flatnonzero(new != cur)
            if not diff.size:
                return
            down, up = diff[new[diff] < cur[diff]], diff[new[diff] > cur[diff]]
            self._pop[diff] = new[diff]  # (``cur`` is a view: compared before this)
            redo = {t for i in down.tolist() for t in self._row(i).tolist()}
            for t in sorted(redo):  # a note with fewer positives may leave a full list: every member again
                self._set_posting(t, self._members(t))
            self._raised(up, skip=redo)

    def _raised(self, items: np.ndarray, skip: set[int] | frozenset[int] = frozenset()) -> None:
        """Recompute the postings of the terms of ``items``, whose counts went up: the new top
        ``postings`` of a term are among its old ones and these. Under ``_write``."""
        by_term: dict[int, list[int]] = {}
        for i in items.tolist():
            for t in self._row(i).tolist():
                if t not in skip:
                    by_term.setdefault(t, []).append(i)
        for t in sorted(by_term):
            got, raised = self._posting(t)[0], np.asarray(by_term[t], np.int64)  # ``got`` ascending
            at = np.minimum(np.searchsorted(got, raised), max(len(got) - 1, 0))
            inside = (got[at] == raised) if len(got) else np.zeros(len(raised), bool)
            if inside.all():  # the same notes (their counts only went up): the shares again
                score = _score(self._pop[got])
                self._postings[t] = (got, score / max(float(score.sum()), 1e-12))
                continue
            if len(got) >= self.postings and not inside.any():  # a full list none of them is in:
                score = _score(self._pop[got])                   # unchanged unless one beats its last
                low = score.min()
                last = got[score == low].max()
                mine = _score(self._pop[raised])
                if not ((mine > low) | ((mine == low) & (raised < last))).any():
                    continue
            self._set_posting(t, np.concatenate([got, raised[~inside]]))

    def _grow_pop(self, n: int) -> None:
        """Room for ``n`` notes' counts (new ones 0). Under ``_write``."""
        assert self._pop is not None
        if len(self._pop) < n:
            grown = np.zeros(max(n, len(self._pop) + len(self._pop) // 4 + 16), np.float64)
            grown[: len(self._pop)] = self._pop
            self._pop = grown

    def _term_ids(self, names: list[str], create: bool) -> np.ndarray:
        """Sorted ids of the term ``names`` (new names get the next ids). Under ``_write``."""
        if self._term_of is None:
            self._term_of = {t: j for j, t in enumerate(self.term_names)}
        out = []
        for t in names:
            j = self._term_of.get(t)
            if j is None and create:
                j = self._term_of[t] = len(self.term_names)
                self.term_names.append(t)
            if j is not None:
                out.append(j)
        return np.asarray(sorted(out), np.int64)

    def _set_row(self, item: int, ids: np.ndarray) -> None:
        """Note ``item``'s terms are ``ids`` from now on. Under ``_write``."""
        old = self._rows.get(item)
        for t in () if old is None else old.tolist():
            self._holders[t].discard(item)
        for t in ids.tolist():
            self._holders.setdefault(t, set()).add(item)
        if self.terms is not None and item < self.terms.shape[0]:
            self._edited.add(item)
        self._rows[item] = ids

    def _row(self, item: int) -> np.ndarray:
        """Note ``item``'s term ids as they are now."""
        got = self._rows.get(item)
        if got is not None:
            return got
        assert self.terms is not None
        ip = self.terms.indptr
        return self.terms.indices[ip[item]:ip[item + 1]].astype(np.int64)

    def _posting(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(items ascending, shares) of term ``t`` as it is now."""
        got = self._postings.get(t)
        if got is not None:
            return got
        assert self.index is not None
        if t >= self.index.shape[0]:
            return np.empty(0, np.int64), np.empty(0)
        ip = self.index.indptr
        return self.index.indices[ip[t]:ip[t + 1]].astype(np.int64), self.index.data[ip[t]:ip[t + 1]]

    def _members(self, t: int) -> np.ndarray:
        """Every note holding term ``t`` now: the fitted notes with it that were not edited since,
        then the added and edited ones that hold it. Under ``_write``."""
        assert self.terms is not None
        if self._by_term is None:
            self._by_term = self.terms.tocsc()
        fitted = np.empty(0, np.int64)
        if t < self._by_term.shape[1]:
            ip = self._by_term.indptr
            fitted = self._by_term.indices[ip[t]:ip[t + 1]].astype(np.int64)
            if self._edited:
                fitted = fitted[~np.isin(fitted, np.fromiter(self._edited, np.int64, len(self._edited)))]
        live = sorted(self._holders.get(t, ()))
        return np.concatenate([fitted, np.asarray(live, np.int64)])

    def _set_posting(self, t: int, members: np.ndarray) -> None:
        """Term ``t``'s postings from the notes holding it, by the fit's rule: the ``postings``
        best by score (ties: the lower item), each the share of their total."""
        assert self._pop is not None
        members = np.asarray(members, np.int64)
        score = _score(self._pop[members])  # as the fit scores them
        if len(members) > self.postings:  # only those at or above the cut's score can be kept
            cut = np.partition(score, len(score) - self.postings)[len(score) - self.postings]
            members, score = members[score >= cut], score[score >= cut]
        order = np.lexsort((members, -score))[: self.postings]
        members, score = members[order], score[order]
        total = np.bincount(np.zeros(len(score), np.int64), weights=score, minlength=1)[0]  # summed in order, as fit
        shares = score / max(total, 1e-12)
        back = np.argsort(members)
        self._postings[t] = (members[back], shares[back])

    def _tables(self) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray | None]:
        """(terms, index, positives per note) with the changes since the fit folded in."""
        assert self.terms is not None and self.index is not None
        pop = None if self.item_pop is None else self.item_pop.copy()
        if not self._rows and not self._postings:
            return self.terms, self.index, pop
        n, n_t = self._n, len(self.term_names)
        terms = _stacked([self._row(i) for i in range(n)], n_t)
        posts = [self._posting(t) for t in range(n_t)]
        index = _stacked([p[0] for p in posts], n, [p[1] for p in posts])
        return terms, index, pop

    # ------------------------------------------------------------------ serving
    def interests(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top term ids and weights of a history (oldest first)."""
        assert self.terms is not None
        rows = self._rows  # this call's reference: a writer only adds keys to it
        h = np.asarray(history, np.int64)[-self.n_recent :]
        h = h[(h >= 0) & (h < self._n)]
        if h.size == 0:
            return np.empty(0, np.int64), np.empty(0)
        w = sp.csr_matrix((recency_weights(h.size, self.decay), (np.zeros(h.size, np.int64), h)),
                          shape=(1, self._n))
        if rows and any(i in rows for i in w.indices.tolist()):  # a note added or edited since the fit
            sub = _stacked([self._row(i) for i in w.indices.tolist()], len(self.term_names))
        else:
            sub = self.terms[w.indices]
        # w @ terms over only the columns the history's notes have (renumbered): the same product,
        # the same order of sums and of output entries, without SciPy's work arrays as long as
        # every term (milliseconds at a million notes)
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
        live = self._postings  # this call's reference: a writer only sets keys of it
        changed = np.fromiter((int(t) in live for t in terms.tolist()), bool, terms.size) if live else None
        fitted = terms < self.index.shape[0]  # (a term new since the fit has postings only in ``live``)
        if changed is None or not changed.any():
            cols, vals = weighted_row_sum(self.index, terms[fitted], w[fitted])
        else:  # the fitted rows of the terms that did not change, then the changed ones
            fitted &= ~changed
            cols, vals = weighted_row_sum(self.index, terms[fitted], w[fitted])
            posts = [live[int(t)] for t in terms[changed].tolist()]
            items = np.concatenate([cols, *(p[0] for p in posts)])
            vals = np.concatenate([vals, *(p[1] * x for p, x in zip(posts, w[changed].tolist(), strict=True))])
            cols, inv = np.unique(items, return_inverse=True)
            vals = np.bincount(inv.reshape(-1), weights=vals, minlength=cols.size)
        return candidates_from_scores(self.name, cols, vals, ctx, k)


def _tags_and_categories(notes: pd.DataFrame) -> list[tuple[object, object]]:
    """(tags, category) of each row of a notes frame (missing columns: none)."""
    n = len(notes)
    tags = notes["tags"].tolist() if "tags" in notes.columns else [[]] * n
    cats = notes["category"].tolist() if "category" in notes.columns else [""] * n
    return list(zip(tags, cats, strict=True))


def _score(pop: np.ndarray) -> np.ndarray:
    """Notes' posting scores from their positive events: ``log1p(positives) + 1`` (so a note
    with none still has one)."""
    return np.log1p(pop) + 1.0


def _stacked(rows: list[np.ndarray], n_cols: int, data: list[np.ndarray] | None = None) -> sp.csr_matrix:
    """CSR whose row ``i`` holds the columns ``rows[i]`` with values ``data[i]`` (ones, float32,
    without ``data``)."""
    lens = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    indices = np.concatenate(rows) if rows else np.empty(0, np.int64)
    if data is None:
        vals = np.ones(int(lens.sum()), np.float32)
    else:
        vals = np.concatenate(data) if data else np.empty(0)
    return sp.csr_matrix((vals, indices, np.r_[0, np.cumsum(lens)]), shape=(len(rows), n_cols))
