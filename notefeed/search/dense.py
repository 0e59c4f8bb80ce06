"""Dense retrieval: the project's text encoder (:class:`notefeed.content.text.TextEncoder`) over
each note's title, tags, category and text, searched by inner product in FAISS
(:class:`notefeed.recall.ann.AnnIndex`: exact below ``hnsw_min`` notes, above it IVF by
default, ``SearchConfig.dense_ann``: at 1M notes it builds in seconds, where HNSW adds tens of
seconds to the build, and it returns over 99% of the exact top 200, HNSW about 73%;
``notefeed bench search --dense-ann ivf,hnsw`` measures both). From ``dense_process_min`` notes
a build computes the vectors in a worker process (:class:`DenseJob`).

The catalogue is analysed here into terms (:func:`_analyse`: each distinct word and word
n-gram once, the n-grams' feature columns hashed from the words' bytes) and its counts are
equal to the encoder's own (:func:`hashed_counts` against ``TextEncoder._counts``: the same
features through sklearn's hasher, whose columns :func:`murmur3_32` computes for all feature
strings at once), assembled with one sparse product (:class:`_CatalogueEncoder`): the encoder
is fitted on a sample of the catalogue (``fit_max`` notes, ``SearchConfig.dense_fit_max``)
whose terms are rows of the catalogue's. With the search default ``tf_scope="term"``
(``SearchConfig.dense_tf``) the catalogue's vectors need no feature counts at all: each
distinct word's projection is computed once and every note is one (notes x terms) @ (terms x
dim) product. The worker process of a large build (:class:`DenseJob`) also takes tasks queued
behind the vectors (:meth:`DenseJob.then`: the notes' topic mixtures).

Persisted as the encoder artifact (``encoder/``: config.json + safetensors) and the note
vectors (``vectors.safetensors``, with the item ids); the FAISS index is rebuilt on load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from notefeed.content.text import (
    TextEncoder,
    TextEncoderConfig,
    term_weighted_features,
    text_features,
    word_features,
)
from notefeed.recall.ann import AnnIndex
from notefeed.search.base import RETRIEVERS, Hits, ParsedQuery, SearchError
from notefeed.search.text import analyze_batch, note_fields
from notefeed.threads import gc_paused, keep_freed_memory

__all__ = ["DenseIndex", "DenseJob", "encode_catalogue", "note_texts", "hashed_counts"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_VECTORS = "vectors.safetensors"
#: notes counted and transformed at a time when the catalogue is larger (DenseIndex.build)
TRANSFORM_CHUNK = 200_000
#: fewer rows than this are projected on one thread (``_CatalogueEncoder._project``)
THREAD_MIN_ROWS = 8192


def note_texts(notes: pd.DataFrame) -> list[str]:
    """The text each note is encoded from: title, tags, category, then body."""
    f = note_fields(notes)
    return [" ".join(x for x in parts if x) for parts in
            zip(f["title"], f["tags"], f["category"], f["text"], strict=True)]


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

    def rows(self, rows: np.ndarray) -> _Terms:
        """The terms of the texts ``rows`` (the same term columns)."""
        return _Terms(self.docs[rows], self.words, self.gram_cols)

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
    """The texts' :class:`_Terms`: every word and word n-gram (``config.word_ngrams``) of each
    text, as :func:`notefeed.content.text.text_features` takes them."""
    c = config
    toks, _ = analyze_batch(texts, workers, normalised=False)
    n = len(toks)
    lens = np.fromiter((len(t) for t in toks), np.int64, n)
    flat = [w for t in toks for w in t]
    ids, vocab = pd.factorize(pd.Series(flat, dtype=object), sort=False)
    ids = ids.astype(np.int64)
    v = len(vocab)
    words = vocab.tolist()
    doc = np.repeat(np.arange(n, dtype=np.int64), lens)
    d_rows, d_cols, gram_cols = [doc], [ids], [np.zeros(0, np.int64)]
    n_terms = v
    # word n-grams: codes built a word at a time, factorized to stay small
    end = np.cumsum(lens)  # one past each document's last token
    pos_end = np.repeat(end, lens)  # per token, its document's end
    codes = ids
    for k in range(2, c.word_ngrams + 1):
        m = len(flat) - k + 1
        if m <= 0:
            break
        ok = np.arange(m) + k <= pos_end[:m]  # the n-gram stays inside its document
        codes = codes[: m] * v + ids[k - 1 :]
        codes, uniq = pd.factorize(np.where(ok, codes, -1))
        codes = codes.astype(np.int64)
        # the words of each distinct n-gram, from its first occurrence
        first = np.full(len(uniq), -1, np.int64)
        first[codes[::-1]] = np.arange(m - 1, -1, -1)
        valid = uniq >= 0
        term = np.full(len(uniq), -1, np.int64)
        term[valid] = n_terms + np.arange(int(valid.sum()))
        d_rows.append(doc[:m][ok])
        d_cols.append(term[codes[ok]])
        gram_cols.append(_hash_grams(words, first[valid], ids, k, c.n_features))
        n_terms += int(valid.sum())
        codes = np.where(ok, codes, 0)  # the next length extends only valid n-grams (the rest are masked again)
    docs = _by_rows(list(zip(d_rows, d_cols, strict=True)), (n, n_terms))
    return _Terms(docs, words, np.concatenate(gram_cols))


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
    """The text encoder over a catalogue: each batch of texts analysed once into terms
    (:func:`_analyse`, remembered for the texts it was given), the fitting sample's terms being
    rows of the catalogue's (:meth:`sample`). With ``tf_scope="term"`` a batch is projected one
    distinct word at a time (:meth:`_project_terms`) instead of through its feature counts."""

    def __init__(self, config: TextEncoderConfig, workers: int = 1, threads: int = 1) -> None:
        super().__init__(config)
        self.workers, self.threads = workers, max(1, int(threads))
        self._memo: list[tuple[list[str], _Terms]] = []
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

    def _terms(self, texts: list[str]) -> _Terms:
        for known, t in self._memo:
            if len(known) == len(texts) and known == texts:
                return t
        with gc_paused():
            t = _analyse(self.config, texts, self.workers)
        self._memo.append((texts, t))
        return t

    def _counts(self, texts: list[str]) -> sp.csr_matrix:
        return _term_counts(self.config, self._terms(texts))

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

    def _unnormalised(self, texts: list[str]) -> np.ndarray:
        if self.config.tf_scope != "term":
            return super()._unnormalised(texts)
        return self._project_terms(self._terms(texts))

    def sample(self, texts: list[str], rows: np.ndarray) -> list[str]:
        """``[texts[i] for i in rows]``, its terms taken as rows of the terms of ``texts``
        (a document's terms do not depend on the other documents)."""
        sub = [texts[i] for i in rows.tolist()]
        self._memo.append((sub, self._terms(texts).rows(rows)))
        return sub

    def forget(self) -> None:
        """Drop the remembered terms (each chunk of a large catalogue is analysed once)."""
        self._memo.clear()

    def plain(self) -> TextEncoder:
        """The fitted encoder as a plain :class:`TextEncoder` (what queries and saves use)."""
        return _fitted(self.config, self.idf_, self.components_)


def _fitted(config: TextEncoderConfig, idf: np.ndarray, components: np.ndarray) -> TextEncoder:
    """A plain :class:`TextEncoder` with these fitted arrays."""
    enc = TextEncoder(config)
    enc.idf_, enc.components_ = idf, components
    return enc


class _QueryEncoder:
    """One query text -> the encoder's vector without sparse-matrix machinery: the features'
    columns (hashed by sklearn once per distinct feature, then remembered), sublinear TF (per
    feature or per term, as the encoder's ``tf_scope``) x IDF,
    unit norm, projected by the gathered SVD columns. Same arithmetic as
    ``TextEncoder.transform`` up to float rounding (summation order)."""

    def __init__(self, encoder: TextEncoder, cache_max: int = 200_000) -> None:
        assert encoder.components_ is not None and encoder.idf_ is not None
        self.enc, self.cache_max = encoder, cache_max
        self.comp_t = encoder._components_t()  # (n_features, k): the encoder's own copy, shared
        self.cols: dict[str, int] = {}

    def __call__(self, text: str) -> np.ndarray:
        c = self.enc.config
        weights = None
        if c.tf_scope == "term":
            wf = term_weighted_features(text, c.word_ngrams, (c.char_ngram_min, c.char_ngram_max), c.sublinear_tf)
            feats, weights = list(wf), np.fromiter(wf.values(), np.float32, len(wf))
        else:
            feats = text_features(text, c.word_ngrams, (c.char_ngram_min, c.char_ngram_max))
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


def encode_catalogue(texts: list[str], dim: int = 64, fit_max: int = 50_000, seed: int = 0, workers: int = 1,
                     chunk: int | None = None, threads: int = 2,
                     tf_scope: str = "term") -> tuple[TextEncoder, np.ndarray]:
    """The text encoder fitted on (at most ``fit_max`` sampled) ``texts`` and every text's
    (n, dim) vector.

    The IDF weights and the SVD are learned from the sample; every text is transformed. Up to
    ``chunk`` texts (default :data:`TRANSFORM_CHUNK`) the catalogue is analysed into terms once,
    the sample's being their rows; above it the sample is analysed on its own and the texts are
    analysed and transformed ``chunk`` at a time, so the terms (and analysed tokens) of the
    whole catalogue are never held at once. Both give the same vectors: a document's terms do
    not depend on the others (a test checks it). The projection runs on ``threads`` row blocks
    at once (the same vectors: each row is its own product). ``tf_scope`` is the encoder's
    (:class:`~notefeed.content.text.TextEncoderConfig`): with ``"term"`` (the default here) the
    texts are projected one distinct word at a time, without their feature counts.
    """
    chunk = TRANSFORM_CHUNK if chunk is None else max(1, int(chunk))
    if not texts:
        raise SearchError("notes: the catalogue is empty, nothing to fit the dense encoder on")
    rng = np.random.default_rng(seed)
    enc = _CatalogueEncoder(TextEncoderConfig(dim=dim, seed=seed, tf_scope=tf_scope), workers, threads)
    rows = None if len(texts) <= fit_max else rng.choice(len(texts), fit_max, replace=False)
    if len(texts) <= chunk:  # the catalogue's counts once; the sample's are rows of them
        enc.fit(texts if rows is None else enc.sample(texts, rows))
        vecs = enc.transform(texts)
    else:  # a large catalogue: the sample's counts on their own, then every note a chunk at a time
        enc.fit(texts if rows is None else [texts[i] for i in rows.tolist()])
        vecs = np.empty((len(texts), dim), np.float32)
        for lo in range(0, len(texts), chunk):
            enc.forget()
            vecs[lo : lo + chunk] = enc.transform(texts[lo : lo + chunk])
    return enc.plain(), vecs


def _encode_arrays(texts: list[str], *args: object) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`encode_catalogue` in a worker process: plain arrays back (config, idf, components, vectors)."""
    from dataclasses import asdict

    with gc_paused():
        enc, vecs = encode_catalogue(texts, *args)  # type: ignore[arg-type]
    return asdict(enc.config), enc.idf_, enc.components_, vecs


class DenseJob:
    """The catalogue's dense vectors (:func:`encode_catalogue`) computed while the caller does
    other work: in a spawned process when ``background`` (the lexical index is built meanwhile
    on the other core; the same vectors, the same code), else in this process at
    :meth:`result`. A worker that cannot start or dies falls back to this process. More work
    of the build can be queued behind the vectors (:meth:`then`)."""

    def __init__(self, notes: pd.DataFrame, dim: int = 64, fit_max: int = 50_000, seed: int = 0, workers: int = 1,
                 chunk: int | None = None, threads: int = 2, background: bool = False, tf_scope: str = "term") -> None:
        self.texts = note_texts(notes)
        if not self.texts:
            raise SearchError("notes: the catalogue is empty, nothing to fit the dense encoder on")
        self.args = (dim, fit_max, seed, workers, chunk, threads, tf_scope)
        self._pool = self._future = None
        self._pending = 0  # tasks given by then() whose result is not taken yet
        if background:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            try:  # spawn, not fork: the caller may hold threads (tantivy, a web server)
                self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=keep_freed_memory)
                self._future = self._pool.submit(_encode_arrays, self.texts, *self.args)
            except (OSError, RuntimeError) as e:
                log.warning("dense vectors: no worker process (%s); computing them here", e)
                self._close()

    @property
    def background(self) -> bool:
        return self._future is not None

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._future = None

    def cancel(self) -> None:
        """Stop the worker process (the build it serves failed); nothing is returned after."""
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._future = None

    def then(self, fn: Callable[..., T], *args: object) -> Callable[[], T]:
        """``fn(*args)`` in the worker process once the vectors are done (a module-level
        function of arrays: its arguments and result cross the process boundary); without a
        worker, or when it dies, in this process on the first call of the returned function,
        which gives the result. Call it before :meth:`result` (which closes the worker)."""
        fut = self._submit(fn, args)
        return lambda: self._take(fut, fn, args)

    def share(self, fn: Callable[..., T], tasks: list[tuple]) -> Callable[[], list[T]]:
        """``[fn(*args) for args in tasks]``, shared with this process: the worker takes the
        tasks from the first, once the vectors are done; the returned function (call it when
        this process has nothing else to do) computes from the last every task the worker has
        not started (taken back from its queue), then waits for the worker's. The same results
        as one process gives when each task is its own computation."""
        futs = [self._submit(fn, args) for args in tasks]
        fns = [fn] * len(tasks)

        def get() -> list[T]:
            out: list[T | None] = [None] * len(tasks)
            for k in range(len(tasks) - 1, -1, -1):  # from the end, while the worker has not started them
                fut = futs[k]
                if fut is not None and not fut.cancel():
                    break
                if fut is not None:
                    self._pending -= 1
                futs[k] = None
                out[k] = fn(*tasks[k])
            for k, (fut, args) in enumerate(zip(futs, tasks, strict=True)):
                if out[k] is None:
                    out[k] = self._take(fut, fns[k], args)
            if not self._pending and self._future is None:
                self._close()
            return out  # type: ignore[return-value]

        return get

    def _submit(self, fn: Callable[..., T], args: tuple) -> Future | None:
        """``fn(*args)`` queued for the worker process (None without one)."""
        if self._pool is None:
            return None
        try:
            fut = self._pool.submit(fn, *args)
        except RuntimeError as e:  # the pool is broken or shut down
            log.warning("build worker: %s; computing %s here", e, getattr(fn, "__name__", fn))
            return None
        self._pending += 1
        return fut

    def _take(self, fut: Future | None, fn: Callable[..., T], args: tuple) -> T:
        """The worker's result of ``fut`` (``fn(*args)`` computed here without a worker, or
        when it died)."""
        if fut is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                return fut.result()
            except BrokenProcessPool as e:
                log.warning("build worker died (%s); computing %s here", e, getattr(fn, "__name__", fn))
            finally:
                self._pending -= 1
                if not self._pending and self._future is None:
                    self._close()  # the vectors were taken before: nothing left for the worker
        return fn(*args)

    def result(self) -> tuple[TextEncoder, np.ndarray]:
        """(the fitted encoder, the (n, dim) vectors); waits for the worker process."""
        if self._future is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                config, idf, comp, vecs = self._future.result()
            except BrokenProcessPool as e:
                log.warning("dense vectors: the worker process died (%s); computing them here", e)
            else:
                return _fitted(TextEncoderConfig(**config), idf, comp), vecs
            finally:
                self._future = None
                if not self._pending:
                    self._close()
        return encode_catalogue(self.texts, *self.args)  # type: ignore[arg-type]


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
        enc, vecs = encode_catalogue(note_texts(notes), dim, fit_max, seed, workers, chunk, threads, tf_scope)
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
            self.add_vectors(self.encoder.transform(note_texts(notes)), np.asarray(items, np.int64))

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
        vecs = self.encoder.transform(note_texts(notes)).astype(np.float32)
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
        """(dim,) unit query vector from the corrected terms (zeros when nothing is known)."""
        return self._query(" ".join(query.terms) or query.text)

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
