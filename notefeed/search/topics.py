"""Each note's category (topic) mixture, folded in from its words with the category model.

The naive-Bayes :class:`~notefeed.search.intent.CategoryModel` gives ``P(token | category)``.
A note's mixture ``theta`` (over the model's categories) maximises
``sum_t log sum_c theta_c P(t | c)`` over its title, text and tag tokens: a few EM steps from
the uniform mixture (the token-level posterior average after one step). A note that mixes
topics gets weight on each, which its single category label cannot say. Only the ``top``
largest weights are kept (renormalised), as (n, top) category ids and weights.

Search uses it twice (:mod:`notefeed.search.fusion`): ``topic_match``, the query's category
posterior dotted with the note's mixture (how much of the note is about what was asked), and
``user_topic``, the mean mixture of the user's positive notes dotted with the note's mixture.

The naive-Bayes likelihoods count every token of a note for its one labelled category, so words
of a note's other topics leak into it. :func:`refine_topics` re-estimates ``P(token | category)``
from the notes' mixtures instead (EM over the catalogue, as in PLSA with the naive-Bayes model
as the start; the labels are used only there): each token counts for each category by its
posterior ``theta_c P(t | c) / sum_c' theta_c' P(t | c')``. A few rounds bring the simulator's
estimated mixtures closer to the true ones (``docs/results/search/topic_refine/``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import repeat

import numpy as np
import scipy.sparse as sp

from notefeed.search.intent import CategoryModel
from notefeed.search.tokens import FieldIds, NoteTokens

__all__ = ["note_topics", "note_counts", "topics_of_counts",
           "refine_log_lik", "with_log_lik", "topics_of_ids", "counts_of_ids", "model_ids", "TOPIC_FIELDS", "refine_topics", "topic_rows", "TopicTable"]

# torch says once per process that its sparse CSR tensors (_entry_dots) are in beta
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)

#: stored tokens per EM chunk (the unit the two threads share; bounds the chunk's (rows, categories) arrays)
_CHUNK_NNZ = 200_000


def note_topics(docs: Sequence[Mapping[str, list[str]]], model: CategoryModel, iters: int = 5,
                top: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """((n, top) int32 category ids, (n, top) float32 weights) of analysed notes ``docs``
    (:func:`notefeed.search.lexical.analyze_notes`); a note with no known token gets weight 0
    everywhere (ids 0)."""
    if not model.categories:
        return topics_of_counts(sp.csr_matrix((len(docs), 0), dtype=np.float32), np.zeros((0, 0), np.float32),
                                iters, top)
    return topics_of_counts(note_counts(docs, model), model.log_lik, iters, top)


def note_counts(docs: Sequence[Mapping[str, list[str]]], model: CategoryModel) -> sp.csr_matrix:
    """(n, len(model.vocab)) float32 counts of the model's tokens in each note's title, text
    and tags: the input of :func:`topics_of_counts`."""
    return _counts(docs, model.vocab)


def topics_of_counts(counts: sp.csr_matrix, log_lik: np.ndarray, iters: int = 5,
                     top: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """:func:`note_topics` from the notes' :func:`note_counts` and the model's (V, C)
    ``log_lik``: arrays in, arrays out (what a worker process is given)."""
    lik = np.exp(np.asarray(log_lik, np.float32))  # (V, C) P(t | c)
    n, n_c = counts.shape[0], lik.shape[1]
    k = max(1, min(top, n_c)) if n_c else 1
    ids, wts = np.zeros((n, k), np.int32), np.zeros((n, k), np.float32)
    if not n or not n_c:
        return ids, wts
    chunks = _row_chunks(counts)
    for (a, b), theta in zip(chunks, _each_chunk(lambda a, b: _em(counts[a:b], lik, iters), chunks), strict=True):
        order = np.argsort(-theta, axis=1, kind="stable")[:, :k]
        w = np.take_along_axis(theta, order, axis=1)
        s = w.sum(axis=1, keepdims=True)
        ids[a:b] = order
        wts[a:b] = np.where(s > 0, w / np.where(s > 0, s, 1.0), 0.0)
    return ids, wts


def _row_chunks(counts: sp.csr_matrix) -> list[tuple[int, int]]:
    """[(a, b)] row ranges of about :data:`_CHUNK_NNZ` stored tokens each (at least one row)."""
    n, out, a = counts.shape[0], [], 0
    while a < n:
        b = int(np.searchsorted(counts.indptr, counts.indptr[a] + _CHUNK_NNZ, side="right")) - 1
        b = min(max(b, a + 1), n)
        out.append((a, b))
        a = b
    return out


def _each_chunk(fn: Callable[[int, int], np.ndarray], chunks: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    """``fn(a, b)`` of every chunk, in order; on two threads when there are several chunks and
    cores (the EM's NumPy and SciPy products release the GIL; every chunk is its own
    computation, so the results are those of one thread)."""
    threads = min(2, os.cpu_count() or 1, len(chunks))
    if threads < 2:
        yield from (fn(a, b) for a, b in chunks)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        yield from pool.map(lambda ab: fn(*ab), chunks)


#: the fields a note's topic mixture reads, in this order
TOPIC_FIELDS = ("title", "text", "tags")


def _counts(docs: Sequence[Mapping[str, list[str]]] | NoteTokens, vocab: Mapping[str, int]) -> sp.csr_matrix:
    """(n, len(vocab)) float32 counts of the vocabulary's tokens in each note's title, text and tags."""
    n = len(docs)
    if isinstance(docs, NoteTokens):  # the catalogue's ids mapped to the model's
        return counts_of_ids(*docs.fields(TOPIC_FIELDS), model_ids(docs.vocab, vocab), len(vocab))
    flat: list[str] = []
    lens = np.empty(n, np.int64)
    for j, d in enumerate(docs):
        k0 = len(flat)
        flat += d.get("title", ())
        flat += d.get("text", ())
        flat += d.get("tags", ())
        lens[j] = len(flat) - k0
    at = np.fromiter(map(vocab.get, flat, repeat(-1)), np.int64, len(flat))  # map: no generator frame per token
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=ptr[1:])
    return _counts_of(at, ptr, len(vocab))


def model_ids(words: Sequence[str], vocab: Mapping[str, int]) -> np.ndarray:
    """(len(words),) int32 each word's id in the model's ``vocab`` (-1: not in it)."""
    return np.fromiter(map(vocab.get, words, repeat(-1)), np.int32, len(words))


def counts_of_ids(codes: np.ndarray, ptr: np.ndarray, ids: np.ndarray, n_vocab: int) -> sp.csr_matrix:
    """:func:`note_counts` of notes given as their :data:`TOPIC_FIELDS`' token ids in order
    (``codes``, rows ``ptr``: :meth:`~notefeed.search.tokens.NoteTokens.fields`), ``ids``
    mapping those tokens to the model's vocabulary of ``n_vocab`` (:func:`model_ids`)."""
    return _counts_of(ids[codes], ptr, n_vocab)


def _counts_of(at: np.ndarray, ptr: np.ndarray, n_vocab: int) -> sp.csr_matrix:
    """The counts' CSR from each note's model ids in order (``at``, -1 unknown; rows ``ptr``)."""
    known = np.flatnonzero(at >= 0)
    # the rows are in token order already: CSR directly (each row's known tokens), then summed;
    # a row starts after the known tokens before its first
    indptr = np.searchsorted(known, ptr).astype(np.int64)
    counts = sp.csr_matrix((np.ones(len(known), np.float32), at[known], indptr), shape=(len(ptr) - 1, n_vocab))
    counts.sum_duplicates()
    return counts


def refine_topics(model: CategoryModel, docs: Sequence[Mapping[str, list[str]]], rounds: int = 3,
                  iters: int = 5) -> CategoryModel:
    """``model`` with ``P(token | category)`` re-estimated from the mixtures of ``docs`` (module
    docstring), ``rounds`` times: fold every note in (``iters`` EM steps from uniform), then
    ``P(t | c) ~ alpha + sum_notes count(t) x posterior(c | note, t)``, the model's add-``alpha``
    smoothing over its vocabulary. A new model; the vocabulary, categories and prior stay."""
    if rounds <= 0 or not docs or not model.categories or not model.vocab:
        return model
    return with_log_lik(model, refine_log_lik(_counts(docs, model.vocab), model.log_lik, model.alpha, rounds, iters))


def with_log_lik(model: CategoryModel, log_lik: np.ndarray) -> CategoryModel:
    """A new model: ``model``'s vocabulary, categories and prior with these likelihoods."""
    if log_lik is model.log_lik:
        return model
    out = CategoryModel(model.alpha)
    out.categories, out.vocab, out.log_prior = model.categories, model.vocab, model.log_prior
    out.log_lik = log_lik
    return out


def refine_log_lik(x: sp.csr_matrix, log_lik: np.ndarray, alpha: float, rounds: int = 3,
                   iters: int = 5) -> np.ndarray:
    """:func:`refine_topics` on arrays: the fitting notes' counts ``x`` (:func:`note_counts`)
    and the model's (V, C) ``log_lik`` -> the refined (V, C) float32 log-likelihoods
    (``log_lik`` itself when there is nothing to refine)."""
    if rounds <= 0 or x.nnz == 0 or not log_lik.size:
        return log_lik
    lik = np.exp(np.asarray(log_lik, np.float64))
    for _ in range(rounds):
        lik32 = lik.astype(np.float32)
        acc = np.zeros(lik.shape, np.float64)  # sum over notes of count / P(t | note) x theta

        def chunk(a: int, b: int, lik32: np.ndarray = lik32) -> np.ndarray:
            part = x[a:b]
            theta = _em(part, lik32, iters)
            den = _entry_dots(part, theta, lik32)
            m = sp.csr_matrix((part.data / np.maximum(den, 1e-30), part.indices, part.indptr), shape=part.shape)
            return m.T @ theta

        for term in _each_chunk(chunk, _row_chunks(x)):  # float32 (nnz, C) work arrays of about _CHUNK_NNZ tokens
            acc += term  # in chunk order, as on one thread
        soft = lik * acc  # (V, C) expected token counts per category
        lik = (soft + alpha) / (soft.sum(axis=0, keepdims=True) + alpha * soft.shape[0])
    return np.log(lik).astype(np.float32)


def topics_of_ids(fields: FieldIds, ids: np.ndarray, log_lik: np.ndarray, iters: int = 5,
                  top: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topics_of_counts` of the notes whose :data:`TOPIC_FIELDS`' token ids these are,
    counted here (:func:`counts_of_ids`): a piece of a build's mixtures, in whichever of its
    processes takes it."""
    return topics_of_counts(counts_of_ids(*fields.joined(TOPIC_FIELDS), ids, log_lik.shape[0]), log_lik, iters, top)


def _entry_dots(counts: sp.csr_matrix, theta: np.ndarray, lik: np.ndarray) -> np.ndarray:
    """(nnz,) float32 ``theta[i] . lik[j]`` for each stored entry ``(i, j)`` of ``counts``
    (CSR), in its order: ``P(t | note)`` of every (note, token) under the mixtures ``theta``
    (n, C) and the likelihoods ``lik`` (V, C). One sampled dense-dense product (torch's
    ``sampled_addmm``) instead of gathering an (nnz, C) array of the notes' mixtures and the
    tokens' likelihoods and summing its rows: about 12x less time at a catalogue's sizes. Each
    entry is one dot product of the two rows, whatever the number of threads or the chunking
    (tested to the bit)."""
    import torch

    indptr, indices = counts.indptr, counts.indices
    if indptr.dtype != indices.dtype:
        indptr, indices = indptr.astype(np.int64), indices.astype(np.int64)
    # the structure is a canonical SciPy CSR's: torch need not check it
    pattern = torch.sparse_csr_tensor(torch.from_numpy(indptr), torch.from_numpy(indices),
                                      torch.zeros(len(indices), dtype=torch.float32), size=counts.shape,
                                      check_invariants=False)
    th = torch.from_numpy(np.ascontiguousarray(theta, np.float32))
    lk = torch.from_numpy(np.ascontiguousarray(lik, np.float32))
    return torch.sparse.sampled_addmm(pattern, th, lk.T, beta=0.0).values().numpy()


def _em(counts: sp.csr_matrix, lik: np.ndarray, iters: int) -> np.ndarray:
    counts = counts.tocsr()
    counts.sum_duplicates()  # canonical: the structure below is the one a COO build would give
    c, v = counts.indices, counts.data
    lik = np.ascontiguousarray(lik, np.float32)
    theta = np.full((counts.shape[0], lik.shape[1]), 1.0 / lik.shape[1], np.float32)
    has = np.diff(counts.indptr) > 0
    for _ in range(max(1, iters)):
        den = _entry_dots(counts, theta, lik)
        m = sp.csr_matrix((v / np.maximum(den, 1e-30), c, counts.indptr), shape=counts.shape)
        theta = theta * (m @ lik)
        theta /= np.maximum(theta.sum(axis=1, keepdims=True), 1e-30)
    theta[~has] = 0.0
    return theta


def topic_rows(ids: np.ndarray, wts: np.ndarray, n_categories: int) -> np.ndarray:
    """(n, n_categories) float64 dense mixtures of sparse ``ids`` / ``wts`` rows."""
    out = np.zeros((len(ids), n_categories), np.float64)
    if len(ids) and n_categories:
        np.add.at(out, (np.repeat(np.arange(len(ids)), ids.shape[1]), ids.ravel()), wts.ravel())
    return out


class TopicTable:
    """The notes' mixtures as two growing arrays (item ``i`` = row ``i``), replaced whole on
    :meth:`extend` so a reader sees one consistent pair."""

    def __init__(self, ids: np.ndarray | None = None, wts: np.ndarray | None = None, top: int = 4) -> None:
        ids = np.zeros((0, top), np.int32) if ids is None else np.asarray(ids, np.int32)
        wts = np.zeros(ids.shape, np.float32) if wts is None else np.asarray(wts, np.float32)
        if ids.shape != wts.shape or ids.ndim != 2:
            raise ValueError(f"topics: ids {ids.shape} and weights {wts.shape} must be equal (n, top) shapes")
        self.arrays = (ids, wts)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def extend(self, ids: np.ndarray, wts: np.ndarray) -> None:
        old_i, old_w = self.arrays
        k = max(old_i.shape[1], ids.shape[1])
        pad = lambda a, dt: np.pad(np.asarray(a, dt), ((0, 0), (0, k - a.shape[1])))  # noqa: E731
        self.arrays = (np.concatenate([pad(old_i, np.int32), pad(ids, np.int32)]),
                       np.concatenate([pad(old_w, np.float32), pad(wts, np.float32)]))

    def set_rows(self, items: np.ndarray, ids: np.ndarray, wts: np.ndarray) -> None:
        """Replace the mixtures of ``items`` (edited notes), as a new pair of arrays."""
        old_i, old_w = self.arrays
        k = max(old_i.shape[1], ids.shape[1])
        pad = lambda a, dt: np.pad(np.asarray(a, dt), ((0, 0), (0, k - a.shape[1])))  # noqa: E731
        new_i, new_w = pad(old_i, np.int32), pad(old_w, np.float32)
        new_i[items], new_w[items] = pad(ids, np.int32), pad(wts, np.float32)
        self.arrays = (new_i, new_w)

    def dense(self, items: np.ndarray, n_categories: int) -> np.ndarray:
        """(len(items), n_categories) mixtures; zeros for items outside the table."""
        ids, wts = self.arrays
        items = np.asarray(items, np.int64)
        ok = (items >= 0) & (items < len(ids))
        out = np.zeros((len(items), n_categories), np.float64)
        if ok.any():
            out[ok] = topic_rows(ids[items[ok]], wts[items[ok]], n_categories)
        return out
