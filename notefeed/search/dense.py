"""Dense retrieval: the project's text encoder (:class:`notefeed.content.text.TextEncoder`) over
each note's title, tags, category and text, searched by inner product in FAISS
(:class:`notefeed.recall.ann.AnnIndex`: exact below ``hnsw_min`` notes, above it IVF by
default, ``SearchConfig.dense_ann``: at 1M notes it builds in seconds, where HNSW adds tens of
seconds to the build, and it returns over 99% of the exact top 200, HNSW about 73%;
``notefeed bench search --dense-ann ivf,hnsw`` measures both). From ``dense_process_min`` notes
a build computes the vectors in a worker process (:class:`DenseJob`).

A note is encoded from its words: the index tokens of its title, tags, category and text, in
that order (:class:`CatalogueWords`, :func:`note_words`; the analysis of
:mod:`notefeed.search.text`, which the lexical index is given), through the encoder's
``transform_words``; a query from its terms. A build hands the catalogue's analysed tokens over
as arrays (:meth:`DenseJob.encode`), so the text is analysed once for both indexes. The
catalogue's words are made into terms (:func:`_terms_of`: each distinct word and word n-gram
once, the n-grams' feature columns hashed from the words' bytes) whose counts equal the
encoder's own (:func:`hashed_counts` against ``TextEncoder._counts``: the same features through
sklearn's hasher, whose columns :func:`murmur3_32` computes for all feature strings at once),
assembled with one sparse product (:class:`_CatalogueEncoder`): the encoder is fitted on a
sample of the catalogue (``fit_max`` notes, ``SearchConfig.dense_fit_max``). With the search
default ``tf_scope="term"`` (``SearchConfig.dense_tf``) the catalogue's vectors need no feature
counts at all: each distinct word's projection is computed once and every note is one (notes x
terms) @ (terms x dim) product. The worker process of a large build (:class:`DenseJob`) fits
the encoder on the sample while the build analyses the catalogue, then encodes it, and also
takes tasks queued behind the vectors (:meth:`DenseJob.share`: the notes' topic mixtures).

Persisted as the encoder artifact (``encoder/``: config.json + safetensors) and the note
vectors (``vectors.safetensors``, with the item ids); the FAISS index is rebuilt on load.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from notefeed.content.kernels import randomized_components
from notefeed.content.text import (
    TextEncoder,
    TextEncoderConfig,
    _unit_scales,
    word_features,
    words_features,
    words_term_weighted,
)
from notefeed.recall.ann import AnnIndex
from notefeed.search.base import RETRIEVERS, Hits, ParsedQuery, SearchError
from notefeed.search.text import analyze, analyze_batch, note_fields
from notefeed.search.tokens import FieldIds, NoteTokens, analyze_catalogue, ragged_take
from notefeed.search.worker import BuildWorker, Task, WorkerGone
from notefeed.threads import gc_paused, keep_freed_memory

__all__ = ["DenseIndex", "DenseJob", "CatalogueWords", "DENSE_FIELDS", "encode_catalogue", "fit_rows", "note_texts",
           "note_words", "hashed_counts"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_VECTORS = "vectors.safetensors"
#: notes counted and transformed at a time when the catalogue is larger (DenseIndex.build)
TRANSFORM_CHUNK = 200_000
#: fewer rows than this are projected on one thread (``_CatalogueEncoder._project``)
THREAD_MIN_ROWS = 8192


def note_texts(notes: pd.DataFrame) -> list[str]:
    """The text of each note's dense fields joined (title, tags, category, then body): what
    :func:`note_words` analyses field by field."""
    f = note_fields(notes)
    return [" ".join(x for x in parts if x) for parts in zip(*(f[k] for k in DENSE_FIELDS), strict=True)]


#: the note fields a dense vector is encoded from, in this order
DENSE_FIELDS = ("title", "tags", "category", "text")


@dataclass
class CatalogueWords:
    """Each note's dense words as ids: note ``j``'s words are ``vocab[codes[indptr[j]:indptr[j + 1]]]``,
    the index tokens of its :data:`DENSE_FIELDS` in that order (the search analysis,
    :func:`notefeed.search.tokens.analyze_catalogue`), so a build encodes the tokens the
    lexical index was given instead of analysing the text again."""

    codes: np.ndarray
    indptr: np.ndarray
    vocab: list[str]

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def of_tokens(cls, tokens: NoteTokens) -> CatalogueWords:
        return cls(*tokens.fields(DENSE_FIELDS), tokens.vocab)

    @classmethod
    def of_fields(cls, ids: FieldIds, vocab: list[str]) -> CatalogueWords:
        """The words of the notes whose :data:`DENSE_FIELDS` ids these are (ids into ``vocab``,
        :meth:`~notefeed.search.tokens.NoteTokens.field_ids`)."""
        return cls(*ids.joined(DENSE_FIELDS), vocab)

    @classmethod
    def of_notes(cls, notes: pd.DataFrame, workers: int = 1) -> CatalogueWords:
        return cls.of_tokens(analyze_catalogue(notes, workers))

    @classmethod
    def of_lists(cls, docs: list[list[str]]) -> CatalogueWords:
        codes, uniq = pd.factorize(pd.Series([w for d in docs for w in d], dtype=object), sort=False)
        indptr = np.zeros(len(docs) + 1, np.int64)
        np.cumsum([len(d) for d in docs], out=indptr[1:])
        return cls(codes.astype(np.int32), indptr, uniq.tolist())

    def take(self, rows: np.ndarray) -> CatalogueWords:
        """The notes ``rows``, in that order."""
        return CatalogueWords(*ragged_take(self.codes, self.indptr, rows), self.vocab)

    def slice(self, lo: int, hi: int) -> CatalogueWords:
        """The notes ``lo..hi`` (views, no copy)."""
        a, b = int(self.indptr[lo]), int(self.indptr[hi])
        return CatalogueWords(self.codes[a:b], self.indptr[lo : hi + 1] - a, self.vocab)

    def lists(self) -> list[list[str]]:
        v, c = self.vocab, self.codes.tolist()
        return [[v[i] for i in c[a:b]] for a, b in zip(self.indptr[:-1].tolist(), self.indptr[1:].tolist(), strict=True)]


def note_words(notes: pd.DataFrame) -> list[list[str]]:
    """Each note's dense words (:class:`CatalogueWords`) as lists: what
    :meth:`~notefeed.content.text.TextEncoder.transform_words` encodes."""
    return CatalogueWords.of_notes(notes).lists()


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def murmur3_32(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """MurmurHash3 (x86, 32-bit, seed 0) of the byte strings ``buf[start[i] : start[i] +
    length[i]]``, as uint32 (little-endian blocks): a pure array kernel, one step per 4-byte
    block over the strings still that long (``buf`` needs 4 bytes of padding after the last
    string)."""
    c1, c2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)
    order = np.argsort(-length, kind="stable")  # longest first: block j's strings are a prefix
    st, ln = start[order].astype(np.int64), length[order].astype(np.int64)
    h = np.zeros(len(st), np.uint32)
    # every byte offset's little-endian 4-byte word (an overlapping view: a block is one gather)
    words = np.ndarray((len(buf) - 3,), np.dtype("<u4"), buf, 0, (1,))
    nblocks = ln // 4
    with np.errstate(over="ignore"):
        for j in range(int(nblocks.max(initial=0))):
            m = int(np.searchsorted(-nblocks, -j, side="left"))  # strings with more than j blocks
            k = _rotl(words[st[:m] + 4 * j].astype(np.uint32) * c1, 15) * c2
            hh = _rotl(h[:m] ^ k, 13)
            h[:m] = hh * np.uint32(5) + np.uint32(0xE6546B64)
        tail = ln & 3  # the last 1-3 bytes: the word there, its higher bytes masked off
        k = words[st + 4 * nblocks].astype(np.uint32) & ((np.uint32(1) << (8 * tail).astype(np.uint32)) - np.uint32(1))
        sel = tail > 0
        h[sel] ^= _rotl(k[sel] * c1, 15) * c2
        h ^= ln.astype(np.uint32)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    out = np.empty_like(h)
    out[order] = h
    return out


def _hash(strings: list[str], n_features: int) -> np.ndarray:
    """(len(strings),) int64 column of each feature string: sklearn's ``FeatureHasher`` column
    (``abs`` of the signed MurmurHash3 of the UTF-8 bytes, modulo ``n_features``), computed
    for all strings at once by :func:`murmur3_32`."""
    if not strings:
        return np.zeros(0, np.int64)
    raw = "".join(strings).encode("utf-8")
    buf = np.frombuffer(raw + bytes(4), np.uint8)
    size = np.fromiter(map(len, strings), np.int64, len(strings))  # characters: an ASCII string's bytes
    if len(raw) != int(size.sum()):  # the others' bytes, encoded one at a time
        wide = np.flatnonzero(~np.fromiter(map(str.isascii, strings), bool, len(strings)))
        size[wide] = [len(strings[i].encode("utf-8")) for i in wide.tolist()]
    return _columns(buf, np.cumsum(size) - size, size, n_features)


def _columns(buf: np.ndarray, start: np.ndarray, size: np.ndarray, n_features: int) -> np.ndarray:
    """The hasher's columns of the byte strings ``buf[start : start + size]`` (``buf`` padded
    by 4 bytes)."""
    h = murmur3_32(buf, start, size).view(np.int32).astype(np.int64)
    col = np.abs(h) % n_features
    col[h == -(2**31)] = (2**31 - 1 - (n_features - 1)) % n_features  # sklearn's rule for abs(-2**31)
    return col


def _hash_grams(words: list[str], first: np.ndarray, ids: np.ndarray, k: int, n_features: int) -> np.ndarray:
    """``_hash(["w:" + " ".join(those k words) ...])`` for the word n-grams whose words are
    ``ids[first[j] : first[j] + k]`` (ids into ``words``), without building the strings: the
    UTF-8 bytes of the words are placed in one buffer by array gathers."""
    m = len(first)
    if not m:
        return np.zeros(0, np.int64)
    raw = "".join(words).encode("utf-8")
    wlen = np.fromiter(map(len, words), np.int64, len(words))
    if len(raw) != int(wlen.sum()):
        wlen = np.fromiter((len(w.encode("utf-8")) for w in words), np.int64, len(words))
    src = np.frombuffer(raw, np.uint8)
    wstart = np.cumsum(wlen) - wlen
    parts = ids[first[:, None] + np.arange(k)]  # (m, k) the words of each n-gram
    plen = wlen[parts]
    size = 2 + plen.sum(axis=1) + (k - 1)  # "w:" + the words + k-1 spaces
    start = np.cumsum(size) - size
    buf = np.full(int(size.sum()) + 4, ord(" "), np.uint8)  # the spaces (and the padding) in place
    buf[start], buf[start + 1] = ord("w"), ord(":")
    at = start + 2  # where each n-gram's next word goes
    for j in range(k):
        ln = plen[:, j]
        total = int(ln.sum())
        seg = np.repeat(np.arange(m, dtype=np.int64), ln)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(ln) - ln, ln)
        buf[at[seg] + within] = src[wstart[parts[seg, j]] + within]
        at = at + ln + 1
    buf[-4:] = 0
    return _columns(buf, start, size, n_features)


def _by_rows(blocks: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int]) -> sp.csr_matrix:
    """(rows x cols) float32 ones, from blocks of (row, col) pairs each sorted by row: the blocks'
    entries of a row side by side (one linear placement, no sort); a repeated (row, col) stays
    two entries, which a product adds up."""
    n = shape[0]
    counts = [np.bincount(r, minlength=n) for r, _ in blocks]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(sum(counts), out=indptr[1:])
    indices = np.empty(int(indptr[-1]), np.int64)
    start = indptr[:-1].copy()  # where each row's entries of the next block go
    for (r, c), k in zip(blocks, counts, strict=True):
        first = np.cumsum(k) - k  # each row's first entry within this block
        indices[start[r] + np.arange(len(r), dtype=np.int64) - first[r]] = c
        start += k
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=shape)


@dataclass
class _Terms:
    """A batch of texts as terms: ``docs`` (texts x terms) float32 ones, a term once per
    occurrence (a repeated (row, col) stays two entries, which a product adds up; columns
    unsorted); the first ``len(words)`` terms are the distinct words, the others the distinct
    word n-grams, whose hashed feature columns are ``gram_cols``."""

    docs: sp.csr_matrix
    words: list[str]
    gram_cols: np.ndarray

    def weighted(self, config: TextEncoderConfig) -> sp.csr_matrix:
        """(texts x terms) each term's count in its text, ``log1p`` with ``sublinear_tf`` (the
        ``tf_scope="term"`` weights), one entry per (text, term)."""
        d = sp.csr_matrix((self.docs.data.copy(), self.docs.indices.copy(), self.docs.indptr.copy()),
                          shape=self.docs.shape)
        d.sum_duplicates()
        if config.sublinear_tf:
            d.data = np.log1p(d.data)
        return d


def _analyse(config: TextEncoderConfig, texts: list[str], workers: int = 1) -> _Terms:
    """The texts' :class:`_Terms` (their words as :func:`notefeed.content.text.tokenize` gives
    them): what ``TextEncoder._counts`` counts."""
    return _terms_of(config, CatalogueWords.of_lists(analyze_batch(texts, workers, normalised=False)[0]))


def _terms_of(config: TextEncoderConfig, words: CatalogueWords) -> _Terms:
    """The notes' :class:`_Terms`: every word and word n-gram (``config.word_ngrams``) of each,
    as :func:`notefeed.content.text.words_features` takes them; the distinct words in the
    order they first occur (the order a factorization of the words as strings gives)."""
    c = config
    ids, uniq = pd.factorize(words.codes, sort=False)
    ids = ids.astype(np.int64)
    n = len(words)
    lens = np.diff(words.indptr).astype(np.int64)
    v = len(uniq)
    vocab = words.vocab
    word_list = [vocab[u] for u in uniq.tolist()]
    total = len(ids)
    doc = np.repeat(np.arange(n, dtype=np.int64), lens)
    d_rows, d_cols, gram_cols = [doc], [ids], [np.zeros(0, np.int64)]
    n_terms = v
    # word n-grams: codes built a word at a time, factorized to stay small
    end = np.cumsum(lens)  # one past each document's last token
    pos_end = np.repeat(end, lens)  # per token, its document's end
    codes = ids
    for k in range(2, c.word_ngrams + 1):
        m = total - k + 1
        if m <= 0:
            break
        ok = np.arange(m) + k <= pos_end[:m]  # the n-gram stays inside its document
        codes = codes[: m] * v + ids[k - 1 :]
        codes, uniq_k = pd.factorize(np.where(ok, codes, -1))
        codes = codes.astype(np.int64)
        # the words of each distinct n-gram, from its first occurrence
        first = np.full(len(uniq_k), -1, np.int64)
        first[codes[::-1]] = np.arange(m - 1, -1, -1)
        valid = uniq_k >= 0
        term = np.full(len(uniq_k), -1, np.int64)
        term[valid] = n_terms + np.arange(int(valid.sum()))
        d_rows.append(doc[:m][ok])
        d_cols.append(term[codes[ok]])
        gram_cols.append(_hash_grams(word_list, first[valid], ids, k, c.n_features))
        n_terms += int(valid.sum())
        codes = np.where(ok, codes, 0)  # the next length extends only valid n-grams (the rest are masked again)
    docs = _by_rows(list(zip(d_rows, d_cols, strict=True)), (n, n_terms))
    return _Terms(docs, word_list, np.concatenate(gram_cols))


def _word_matrix(config: TextEncoderConfig, words: list[str]) -> sp.csr_matrix:
    """(words x features) float32 ones: each word's features (itself, its character n-grams),
    a feature once per occurrence in the word (entries not summed, columns unsorted)."""
    c = config
    feats = [word_features(w, c.char_ngram_min, c.char_ngram_max) for w in words]
    flen = np.fromiter((len(f) for f in feats), np.int64, len(words))
    cols = _hash([f for fs in feats for f in fs], c.n_features)
    return _by_rows([(np.repeat(np.arange(len(words), dtype=np.int64), flen), cols)], (len(words), c.n_features))


def _term_matrix(config: TextEncoderConfig, terms: _Terms) -> sp.csr_matrix:
    """(terms x features) float32 ones: the words' features, then each n-gram's one column."""
    g = len(terms.gram_cols)
    grams = sp.csr_matrix((np.ones(g, np.float32), terms.gram_cols, np.arange(g + 1, dtype=np.int64)),
                          shape=(g, config.n_features))
    return sp.vstack([_word_matrix(config, terms.words), grams], format="csr", dtype=np.float32)


def _term_counts(config: TextEncoderConfig, terms: _Terms) -> sp.csr_matrix:
    """(texts x features) float32 counts equal to ``TextEncoder(config)._counts``: with
    ``tf_scope="feature"`` the features' counts, with ``"term"`` the per-term weighted counts;
    one product (texts x terms) @ (terms x features). csr_matmat adds each row's entries in a
    dense accumulator, so no row has a column twice; its columns are left unsorted (nothing
    downstream needs them sorted)."""
    docs = terms.docs if config.tf_scope == "feature" else terms.weighted(config)
    return sp.csr_matrix(docs @ _term_matrix(config, terms), dtype=np.float32)


def _csr_where(x: sp.csr_matrix, keep: np.ndarray, data: np.ndarray, indices: np.ndarray,
               n_cols: int) -> sp.csr_matrix:
    """The stored entries of ``x`` where ``keep``, with these values and columns."""
    before = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(keep, out=before[1:])
    return sp.csr_matrix((data[keep], indices[keep], before[x.indptr]), shape=(x.shape[0], n_cols))


def _term_products(config: TextEncoderConfig, terms: _Terms, idf: np.ndarray, scales: np.ndarray
                   ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """``(V -> X @ V, P -> X.T @ P)`` for the notes' (notes x features) TF-IDF matrix ``X``
    with ``tf_scope="term"``: each row scaled by ``scales`` (1 / its norm), each column by
    ``idf``, without forming it. ``X = diag(scales) (Tw Fw + Tg) diag(idf)``: ``Tw`` the notes'
    weighted word terms, ``Fw`` each distinct word's features (itself and its character n-grams,
    :func:`_word_matrix`), ``Tg`` the word n-grams' weights put in their one hashed column. A
    word's features are stored once per distinct word instead of once per note that has it."""
    w = terms.weighted(config)
    v = len(terms.words)
    data = w.data * np.repeat(scales, np.diff(w.indptr))
    word = w.indices < v
    tw = _csr_where(w, word, data, w.indices, v)
    cols = np.zeros(len(word), w.indices.dtype)
    cols[~word] = terms.gram_cols[w.indices[~word] - v]
    tg = _csr_where(w, ~word, data * idf[cols], cols, config.n_features)
    fw = _word_matrix(config, terms.words)
    fw = sp.csr_matrix((idf[fw.indices], fw.indices, fw.indptr), shape=fw.shape)  # ones x idf
    tg_t, tw_t, fw_t = tg.T.tocsr(), tw.T.tocsr(), fw.T.tocsr()

    def matmat(x: np.ndarray) -> np.ndarray:
        return tg @ x + tw @ (fw @ x)

    def rmatmat(p: np.ndarray) -> np.ndarray:
        return tg_t @ p + fw_t @ (tw_t @ p)

    return matmat, rmatmat


def hashed_counts(config: TextEncoderConfig, texts: list[str], workers: int = 1) -> sp.csr_matrix:
    """(n, n_features) float32 counts equal to ``TextEncoder(config)._counts(texts)`` (up to the
    float rounding of the per-term weights), each row's columns in no particular order (the
    encoder's are sorted).

    Each distinct word's features (itself and its character n-grams) are hashed once, each
    distinct word n-gram once; the counts are one product (docs x terms) @ (terms x features),
    the terms being the distinct words and word n-grams (integer counts in float32: exact sums).
    """
    return _term_counts(config, _analyse(config, texts, workers))


class _CatalogueEncoder(TextEncoder):
    """The text encoder over a catalogue's :class:`_Terms` (:func:`_terms_of`: each distinct
    word and word n-gram of a batch of notes once): fitted on a sample's terms
    (:meth:`fit_terms`), each batch's vectors from its terms (:meth:`transform_terms`). With
    ``tf_scope="term"`` a batch is projected one distinct word at a time (:meth:`_project_terms`)
    instead of through its feature counts."""

    def __init__(self, config: TextEncoderConfig, threads: int = 1) -> None:
        super().__init__(config)
        self.threads = max(1, int(threads))
        self._words: tuple[object, dict[str, int], np.ndarray] | None = None  # (components, word -> row, rows)

    def _project_with(self, x: sp.csr_matrix, mat: np.ndarray) -> np.ndarray:
        """(n, k) float32 ``x @ mat``, on ``threads`` row blocks at once (SciPy releases the GIL
        in the sparse-dense product; every row is its own product, so the same vectors)."""
        if self.threads == 1 or x.shape[0] < max(THREAD_MIN_ROWS, self.threads):
            return np.asarray(x @ mat, dtype=np.float32)
        cuts = np.linspace(0, x.shape[0], self.threads + 1).astype(int)
        z = np.empty((x.shape[0], mat.shape[1]), np.float32)

        def part(j: int) -> None:
            z[cuts[j]:cuts[j + 1]] = x[cuts[j]:cuts[j + 1]] @ mat

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(part, range(self.threads)))
        return z

    def _project(self, x: sp.csr_matrix) -> np.ndarray:
        return self._project_with(x, self._components_t())

    def fit_terms(self, terms: _Terms) -> _CatalogueEncoder:
        """:meth:`fit` on the notes whose terms these are. With ``tf_scope="term"`` the SVD
        multiplies by the TF-IDF matrix through its two sparse factors (:func:`_term_products`),
        about 5x fewer stored entries than the matrix itself: the components of :meth:`fit`
        up to the float rounding of the products (the same algorithm and random start,
        :func:`~notefeed.content.kernels.randomized_components`)."""
        c = self.config
        counts = _term_counts(c, terms)
        if c.tf_scope != "term":
            self._fit_counts(counts)
            return self
        self._fit_idf(counts)
        k = self._svd_rank(counts)
        if not k:
            return self
        assert self.idf_ is not None
        scales = _unit_scales(counts.data * self.idf_[counts.indices], counts)
        matmat, rmatmat = _term_products(c, terms, self.idf_, scales)
        self.components_ = randomized_components(matmat, rmatmat, counts.shape, k, n_iter=5, seed=c.seed)
        return self

    def transform_terms(self, terms: _Terms) -> np.ndarray:
        """(n, dim) the notes' vectors: :meth:`transform` of the notes whose terms these are."""
        if self.components_ is None or self.idf_ is None:
            raise SearchError("dense encoder: fit it before transforming")
        if self.config.tf_scope == "term":
            return self._finish(self._project_terms(terms))
        return self._finish(self._project(self._tfidf(_term_counts(self.config, terms), unit=False)))

    def _word_rows(self, words: list[str], cidf: np.ndarray) -> np.ndarray:
        """(len(words), k) each word's features' IDF-weighted projections summed (a word's row
        of ``_word_matrix @ cidf``), computed once per distinct word for the fitted components."""
        comp = self.components_
        if self._words is None or self._words[0] is not comp:
            self._words = (comp, {}, np.zeros((0, cidf.shape[1]), np.float32))
        _, at, rows = self._words
        get = at.get
        pos = np.fromiter((get(w, -1) for w in words), np.int64, len(words))
        new = np.flatnonzero(pos < 0)
        if len(new):
            fresh = [words[i] for i in new.tolist()]
            add = np.asarray(_word_matrix(self.config, fresh) @ cidf, np.float32)
            pos[new] = len(rows) + np.arange(len(new))
            at.update(zip(fresh, pos[new].tolist(), strict=True))
            rows = np.concatenate([rows, add])
            self._words = (comp, at, rows)
        return rows[pos]

    def _project_terms(self, terms: _Terms) -> np.ndarray:
        """(texts, k) the batch's unnormalised vectors with ``tf_scope="term"``: each text's
        terms (their weights) times each term's projection: a word's from :meth:`_word_rows`,
        an n-gram's the IDF-weighted component column of its one feature. The counts' product
        (``transform`` through ``_counts``) in other words: a feature shared by two terms of a
        text is weighted by each, both ways; the sums differ only in float rounding."""
        assert self.components_ is not None and self.idf_ is not None
        x = terms.weighted(self.config)
        v = len(terms.words)
        cidf = self._components_t() * self.idf_[:, None]  # (n_features, k)
        gram = x.indices >= v
        x.indices[gram] = v + terms.gram_cols[x.indices[gram] - v]
        x = sp.csr_matrix((x.data, x.indices, x.indptr), shape=(x.shape[0], v + self.config.n_features))
        return self._project_with(x, np.vstack([self._word_rows(terms.words, cidf), cidf]))

    def plain(self) -> TextEncoder:
        """The fitted encoder as a plain :class:`TextEncoder` (what queries and saves use)."""
        return _fitted(self.config, self.idf_, self.components_)


def _fitted(config: TextEncoderConfig, idf: np.ndarray, components: np.ndarray) -> TextEncoder:
    """A plain :class:`TextEncoder` with these fitted arrays."""
    enc = TextEncoder(config)
    enc.idf_, enc.components_ = idf, components
    return enc


class _QueryEncoder:
    """One query's words -> the encoder's vector without sparse-matrix machinery: the features'
    columns (hashed by sklearn once per distinct feature, then remembered), sublinear TF (per
    feature or per term, as the encoder's ``tf_scope``) x IDF,
    unit norm, projected by the gathered SVD columns. Same arithmetic as
    ``TextEncoder.transform_words`` up to float rounding (summation order)."""

    def __init__(self, encoder: TextEncoder, cache_max: int = 200_000) -> None:
        assert encoder.components_ is not None and encoder.idf_ is not None
        self.enc, self.cache_max = encoder, cache_max
        self.comp_t = encoder._components_t()  # (n_features, k): the encoder's own copy, shared
        self.cols: dict[str, int] = {}

    def __call__(self, words: list[str]) -> np.ndarray:
        """The vector of one tokenised query (its words)."""
        c = self.enc.config
        weights = None
        if c.tf_scope == "term":
            wf = words_term_weighted(words, c.word_ngrams, (c.char_ngram_min, c.char_ngram_max), c.sublinear_tf)
            feats, weights = list(wf), np.fromiter(wf.values(), np.float32, len(wf))
        else:
            feats = words_features(words, c.word_ngrams, (c.char_ngram_min, c.char_ngram_max))
        out = np.zeros(c.dim, np.float32)
        if not feats:
            return out
        memo = self.cols  # this call's own reference: a full cache is replaced, never emptied under a reader
        new = [f for f in set(feats) if f not in memo]
        if new:
            if len(memo) + len(new) > self.cache_max:
                memo, new = {}, list(set(feats))
            memo.update(zip(new, _hash(new, c.n_features).tolist(), strict=True))
            self.cols = memo
        # each column's count (feature scope) or per-term weights (term scope) summed
        cols, inv = np.unique(np.fromiter((memo[f] for f in feats), np.int64, len(feats)), return_inverse=True)
        x = np.bincount(inv, weights=weights, minlength=len(cols)).astype(np.float32)
        if weights is None and c.sublinear_tf:
            x = np.log1p(x)
        x = x * self.enc.idf_[cols]
        x = x / max(float(np.sqrt(np.dot(x, x))), 1e-12)
        z = x @ self.comp_t[cols]
        out[: z.shape[0]] = z
        return out / max(float(np.linalg.norm(out)), 1e-12)


def fit_rows(n: int, fit_max: int, seed: int) -> np.ndarray | None:
    """The notes the encoder is fitted on: ``fit_max`` of the ``n`` drawn with ``seed`` (None:
    all of them)."""
    return None if n <= fit_max else np.random.default_rng(seed).choice(n, fit_max, replace=False)


def encode_catalogue(words: CatalogueWords, dim: int = 64, fit_max: int = 50_000, seed: int = 0,
                     chunk: int | None = None, threads: int = 2, tf_scope: str = "term",
                     fitted: _CatalogueEncoder | None = None) -> tuple[TextEncoder, np.ndarray]:
    """The text encoder fitted on (at most ``fit_max`` sampled, :func:`fit_rows`) notes and
    every note's (n, dim) vector, from the notes' :class:`CatalogueWords`.

    The IDF weights and the SVD are learned from the sample; every note is transformed. Up to
    ``chunk`` notes (default :data:`TRANSFORM_CHUNK`) the catalogue's terms are made once;
    above it the notes' terms are made ``chunk`` at a time, so the terms of the whole catalogue
    are never held at once. Either way a sample is fitted on its own terms (the same products,
    so the same fit), and a note's terms do not depend on the others: the same vectors (a test
    checks it). The projection runs on ``threads`` row blocks at once (the same vectors: each
    row is its own product). ``tf_scope`` is the encoder's (:class:`~notefeed.content.text.TextEncoderConfig`):
    with ``"term"`` (the default here) the notes are projected one distinct word at a time,
    without their feature counts. ``fitted``: the encoder already fitted on the sample (by
    :func:`_fit_sample`, the same fit).
    """
    chunk = TRANSFORM_CHUNK if chunk is None else max(1, int(chunk))
    n = len(words)
    if not n:
        raise SearchError("notes: the catalogue is empty, nothing to fit the dense encoder on")
    cfg = TextEncoderConfig(dim=dim, seed=seed, tf_scope=tf_scope)
    rows = fit_rows(n, fit_max, seed)
    enc = fitted or _CatalogueEncoder(cfg, threads)
    with gc_paused():
        if n <= chunk:  # the catalogue's terms once
            terms = _terms_of(cfg, words)
            if fitted is None:  # a sample's own terms, as in chunks (the same products, to the bit)
                enc.fit_terms(terms if rows is None else _terms_of(cfg, words.take(rows)))
            return enc.plain(), enc.transform_terms(terms)
        if fitted is None:
            enc.fit_terms(_terms_of(cfg, words if rows is None else words.take(rows)))
        vecs = np.empty((n, dim), np.float32)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            vecs[lo:hi] = enc.transform_terms(_terms_of(cfg, words.slice(lo, hi)))
    return enc.plain(), vecs


#: the worker process's fitted encoders, by build (:func:`_fit_sample`, then :func:`_encode_words`)
_FITTED: dict[str, _CatalogueEncoder] = {}


def _fit_sample(key: str, sample: pd.DataFrame, dim: int, seed: int, threads: int, tf_scope: str) -> None:
    """In the worker process while this one analyses the catalogue: the encoder fitted on the
    sampled notes (``sample``, in :func:`fit_rows` order), analysed here by the same analysis,
    so the same words and the same fit as from the catalogue's arrays."""
    cfg = TextEncoderConfig(dim=dim, seed=seed, tf_scope=tf_scope)
    with gc_paused():
        words = CatalogueWords.of_notes(sample)
        _FITTED[key] = _CatalogueEncoder(cfg, threads).fit_terms(_terms_of(cfg, words))


def _encode_words(key: str, fields: tuple[FieldIds, list[str]], *args: object
                  ) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`encode_catalogue` of the notes whose :data:`DENSE_FIELDS` ids these are (with
    their vocabulary), with the encoder :func:`_fit_sample` fitted when it
    ran in this process -> plain arrays (config, idf, components, vectors)."""
    from dataclasses import asdict

    words = CatalogueWords.of_fields(*fields)
    enc, vecs = encode_catalogue(words, *args, fitted=_FITTED.pop(key, None))  # type: ignore[arg-type]
    return asdict(enc.config), enc.idf_, enc.components_, vecs


class DenseJob:
    """The catalogue's dense vectors (:func:`encode_catalogue`) computed while the caller does
    other work. With ``background``, in a spawned process (:class:`~notefeed.search.worker.BuildWorker`):
    it fits the encoder on the sampled notes (:func:`_fit_sample`) while the caller analyses
    the catalogue, then encodes the words the caller hands over (:meth:`encode`) while the
    caller builds the lexical index (the same vectors, the same code); else in this process at
    :meth:`result`. A worker that cannot start or dies falls back to this process. More work
    of the build goes to the same process in order (:meth:`then`, :meth:`share`)."""

    def __init__(self, notes: pd.DataFrame, dim: int = 64, fit_max: int = 50_000, seed: int = 0, workers: int = 1,
                 chunk: int | None = None, threads: int = 2, background: bool = False, tf_scope: str = "term") -> None:
        if not len(notes):
            raise SearchError("notes: the catalogue is empty, nothing to fit the dense encoder on")
        self.notes, self.workers = notes, workers
        self.args = (dim, fit_max, seed, chunk, threads, tf_scope)
        self._key = uuid.uuid4().hex
        self._words: tuple[FieldIds, list[str]] | None = None  # the DENSE_FIELDS' ids (encode)
        self._worker: BuildWorker | None = None
        self._vectors: Task | None = None
        self._taken = False  # the vectors' result taken (the worker may go when no task is pending)
        self._pending = 0  # tasks given by then() / share() whose result is not taken yet
        if background:
            rows = fit_rows(len(notes), fit_max, seed)
            sample = notes if rows is None else notes.iloc[rows]
            sample = sample[[c for c in sample.columns if c in DENSE_FIELDS]]  # what the analysis reads
            try:
                self._worker = BuildWorker(keep_freed_memory)
            except (OSError, RuntimeError) as e:
                log.warning("dense vectors: no worker process (%s); computing them here", e)
            else:
                fit = self._worker.submit(_fit_sample, self._key, sample, dim, seed, threads, tf_scope)
                fit.future.add_done_callback(_log_failure)

    @property
    def background(self) -> bool:
        return self._worker is not None

    def encode(self, tokens: NoteTokens) -> None:
        """The catalogue's analysed tokens (:func:`~notefeed.search.tokens.analyze_catalogue`
        of the notes given): the vectors are encoded from their :class:`CatalogueWords`, in the
        worker process when there is one."""
        if len(tokens) != len(self.notes):
            raise SearchError(f"tokens: {len(tokens)} notes analysed for a catalogue of {len(self.notes)}")
        fields = (tokens.field_ids(DENSE_FIELDS), tokens.vocab)
        self._words = fields
        if self._worker is not None:  # the fields' ids joined there (each note's words: its fields' in order)
            self._vectors = self._worker.submit(_encode_words, self._key, fields, *self.args)

    def _close(self, terminate: bool = False) -> None:
        if self._worker is not None:
            self._worker.close(terminate)
        self._worker = self._vectors = None

    def _release(self) -> None:
        """Let the worker go once the vectors are taken and no queued task waits."""
        if self._taken and not self._pending:
            self._close()

    def cancel(self) -> None:
        """Stop the worker process (the build it serves failed); nothing is returned after."""
        self._close(terminate=True)

    def then(self, fn: Callable[..., T], *args: object) -> Callable[[], T]:
        """``fn(*args)`` in the worker process after the tasks given before (a module-level
        function of arrays: its arguments and result cross the process boundary); without a
        worker, or when it dies, in this process on the first call of the returned function,
        which gives the result. Call it before :meth:`result` (which closes the worker)."""
        task = self._submit(fn, args)
        return lambda: self._take(task, fn, args)

    def share(self, fn: Callable[..., T], tasks: list[tuple]) -> Callable[[], list[T]]:
        """``[fn(*args) for args in tasks]``, shared with this process: the worker takes the
        tasks from the first, after the tasks given before; the returned function (call it when
        this process has nothing else to do) computes from the last every task not yet sent to
        the worker (taken back), then waits for the worker's. The same results as one process
        gives when each task is its own computation."""
        held = [self._submit(fn, args) for args in tasks]

        def get() -> list[T]:
            out: list[T | None] = [None] * len(tasks)
            here = [False] * len(tasks)
            for k in range(len(tasks) - 1, -1, -1):  # from the end, while the worker has not got them
                task = held[k]
                if task is not None and not self._worker_take_back(task):
                    break
                here[k] = True
                out[k] = fn(*tasks[k])
            for k, (task, args) in enumerate(zip(held, tasks, strict=True)):
                if not here[k]:
                    out[k] = self._take(task, fn, args)
            self._release()
            return out  # type: ignore[return-value]

        return get

    def _worker_take_back(self, task: Task) -> bool:
        if self._worker is None or not self._worker.take_back(task):
            return False
        self._pending -= 1
        return True

    def _submit(self, fn: Callable[..., T], args: tuple) -> Task | None:
        """``fn(*args)`` given to the worker process (None without one)."""
        if self._worker is None:
            return None
        self._pending += 1
        return self._worker.submit(fn, *args)

    def _take(self, task: Task | None, fn: Callable[..., T], args: tuple) -> T:
        """The worker's result of ``task`` (``fn(*args)`` computed here without a worker, or
        when it died)."""
        if task is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                return task.future.result()
            except (BrokenProcessPool, WorkerGone) as e:
                log.warning("build worker died (%s); computing %s here", e, getattr(fn, "__name__", fn))
            finally:
                self._pending -= 1
                self._release()
        return fn(*args)

    def result(self) -> tuple[TextEncoder, np.ndarray]:
        """(the fitted encoder, the (n, dim) vectors); waits for the worker process."""
        self._taken = True
        if self._vectors is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                config, idf, comp, vecs = self._vectors.future.result()
            except (BrokenProcessPool, WorkerGone) as e:
                log.warning("dense vectors: the worker process died (%s); computing them here", e)
            else:
                return _fitted(TextEncoderConfig(**config), idf, comp), vecs
            finally:
                self._vectors = None
                self._release()
        self._release()
        words = (CatalogueWords.of_fields(*self._words) if self._words is not None
                 else CatalogueWords.of_notes(self.notes, self.workers))
        return encode_catalogue(words, *self.args)  # type: ignore[arg-type]


def _log_failure(fut: Future) -> None:
    """A worker task nobody waits for (the sample's fit): its failure logged (the vectors'
    task then fits the encoder itself)."""
    if fut.exception() is not None:
        log.warning("dense encoder fit in the worker failed: %s", fut.exception())


@RETRIEVERS.register("dense/text")
class DenseIndex:
    """Text-encoder vectors of notes in FAISS; the query is encoded with the same encoder."""

    name = "dense/text"

    def __init__(self, encoder: TextEncoder, kind: str = "auto", hnsw_min: int = 200_000,
                 expected: int = 0, approx: str = "ivf", nprobe: int = 32) -> None:
        self.encoder = encoder
        self._query = _QueryEncoder(encoder)
        self.ann = AnnIndex(encoder.dim, kind=kind, hnsw_min=hnsw_min, expected=expected, approx=approx,
                            nprobe=nprobe)
        self._vecs: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self._lock = threading.Lock()

    @classmethod
    def build(cls, notes: pd.DataFrame, dim: int = 64, kind: str = "auto", hnsw_min: int = 200_000,
              fit_max: int = 50_000, seed: int = 0, workers: int = 1, chunk: int | None = None,
              approx: str = "ivf", nprobe: int = 32, threads: int = 2, tf_scope: str = "term") -> DenseIndex:
        """Fit the encoder on (at most ``fit_max`` sampled) notes and index all of them
        (:func:`encode_catalogue`, then the FAISS index of ``kind``: ``approx`` with ``nprobe``
        from ``hnsw_min`` notes, see :class:`~notefeed.recall.ann.AnnIndex`)."""
        enc, vecs = encode_catalogue(CatalogueWords.of_notes(notes, workers), dim, fit_max, seed, chunk, threads,
                                     tf_scope)
        return cls.of_vectors(enc, vecs, kind=kind, hnsw_min=hnsw_min, approx=approx, nprobe=nprobe)

    @classmethod
    def of_vectors(cls, encoder: TextEncoder, vecs: np.ndarray, kind: str = "auto", hnsw_min: int = 200_000,
                   approx: str = "ivf", nprobe: int = 32) -> DenseIndex:
        """The index of a fitted encoder and its catalogue's vectors (item ``i`` = row ``i``)."""
        idx = cls(encoder, kind=kind, hnsw_min=hnsw_min, expected=len(vecs), approx=approx, nprobe=nprobe)
        idx.add_vectors(vecs, np.arange(len(vecs), dtype=np.int64))
        return idx

    def add(self, notes: pd.DataFrame, items: np.ndarray) -> None:
        if len(notes):
            self.add_vectors(self.encoder.transform_words(note_words(notes)), np.asarray(items, np.int64))

    def add_vectors(self, vectors: np.ndarray, items: np.ndarray) -> None:
        with self._lock:
            self.ann.add(vectors, items)
            self._vecs.append(np.asarray(vectors, np.float32))
            self._ids.append(np.asarray(items, np.int64))

    def replace(self, notes: pd.DataFrame, items: np.ndarray) -> bool:
        """Encode ``notes`` (edited) again as the vectors of ``items``; ``False`` (the old vectors
        kept) where the ANN index cannot remove entries (HNSW)."""
        items = np.asarray(items, np.int64)
        if not len(items):
            return True
        vecs = self.encoder.transform_words(note_words(notes)).astype(np.float32)
        with self._lock:
            try:
                self.ann.replace(vecs, items)
            except RuntimeError:
                return False
            ids = np.concatenate(self._ids) if self._ids else np.zeros(0, np.int64)
            all_v = np.concatenate(self._vecs) if self._vecs else np.zeros((0, vecs.shape[1]), np.float32)
            pos = pd.Index(ids).get_indexer(items)
            all_v[pos[pos >= 0]] = vecs[pos >= 0]
            self._ids, self._vecs = [ids], [all_v]
        return True

    def __len__(self) -> int:
        return self.ann.ntotal

    def encode_query(self, query: ParsedQuery) -> np.ndarray:
        """(dim,) unit query vector from the corrected terms (the text's tokens without any;
        zeros when nothing is known)."""
        return self._query(list(query.terms) or analyze(query.text))

    def retrieve(self, query: ParsedQuery, k: int) -> Hits:
        if query.empty or k <= 0 or len(self) == 0:
            return Hits.none(self.name)
        qv = self.encode_query(query)
        if not np.any(qv):
            return Hits.none(self.name)
        scores, ids = self.ann.search(qv[None, :], k)
        keep = ids[0] >= 0
        return Hits(self.name, ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32))

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n,) int64, vectors (n, dim) float32) in insertion order."""
        with self._lock:
            if not self._ids:
                return np.zeros(0, np.int64), np.zeros((0, self.encoder.dim), np.float32)
            if len(self._ids) > 1:
                self._ids, self._vecs = [np.concatenate(self._ids)], [np.concatenate(self._vecs)]
            return self._ids[0], self._vecs[0]

    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        """(len(items), dim) vectors of ``items`` (zeros for an unknown item)."""
        ids, vecs = self.vectors()
        out = np.zeros((len(items), self.encoder.dim), np.float32)
        if len(ids) and len(items):
            if np.array_equal(ids, np.arange(len(ids))):  # the usual case: rows are items
                ok = (items >= 0) & (items < len(ids))
                out[ok] = vecs[items[ok]]
            else:
                pos = pd.Index(ids).get_indexer(items)
                out[pos >= 0] = vecs[pos[pos >= 0]]
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save(folder / "encoder")
        ids, vecs = self.vectors()
        save_file({"ids": np.ascontiguousarray(ids), "vectors": np.ascontiguousarray(vecs)},
                  str(folder / _VECTORS), metadata={"kind": self.ann.kind})
        return folder

    @classmethod
    def load(cls, folder: str | Path, hnsw_min: int = 200_000, approx: str = "ivf", nprobe: int = 32) -> DenseIndex:
        """The saved encoder and vectors; the FAISS index is built anew, its kind chosen as at a
        build (``hnsw_min``, ``approx``; the kind the saved index had is not kept)."""
        from safetensors import safe_open

        folder = Path(folder)
        if not (folder / _VECTORS).exists():
            raise SearchError(f"{folder / _VECTORS}: missing (build the search index first)")
        enc = TextEncoder.load(folder / "encoder")
        with safe_open(str(folder / _VECTORS), framework="numpy") as f:
            ids, vecs = f.get_tensor("ids"), f.get_tensor("vectors")
        if vecs.ndim != 2 or vecs.shape[1] != enc.dim or ids.shape != (vecs.shape[0],):
            raise SearchError(f"{folder / _VECTORS}: shapes ids {ids.shape} vectors {vecs.shape} do not match "
                              f"the encoder dimension {enc.dim}")
        idx = cls(enc, hnsw_min=hnsw_min, expected=len(ids), approx=approx, nprobe=nprobe)
        idx.add_vectors(vecs, ids)
        return idx
