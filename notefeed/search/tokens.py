"""A catalogue's analysed tokens as arrays: what the index build reads instead of a dict of
token lists per note.

:func:`analyze_catalogue` gives exactly the tokens of :func:`notefeed.search.text.analyze` per
field (and the ``grams`` of :func:`notefeed.search.lexical.analyze_notes`), as one vocabulary of
distinct tokens and, per field, the notes' token ids in order (``codes``) with each note's
start (``indptr``, CSR style). Every consumer of a whole catalogue then works on arrays:

- tantivy reads each field as one string per note whose whitespace-separated words are the
  field's tokens (:attr:`NoteTokens.strings`). An ASCII field's string is its normalised text
  with every non-word character turned to a space, made for a chunk of notes by one
  ``str.translate``: no per-note split and join;
- the document frequencies are one sparse (notes x vocabulary) matrix's column counts
  (:meth:`NoteTokens.document_frequencies`);
- the topic model's counts (:func:`notefeed.search.topics.note_counts`) and the dense
  encoder's word sequences are gathers of the ids.

The tokens of a chunk of ASCII notes are one ``str.split`` of the translated chunk with a marker
word between notes; the ids come from :func:`pandas.factorize` per chunk and one dict lookup
per distinct token. :class:`NoteTokens` is also a sequence of the per-note dicts, so code that
wants token lists (a test, a few notes) still gets them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from notefeed.content.text import has_cjk
from notefeed.search.text import (
    _ASCII_NONWORD,
    _CJK,
    _SEP,
    _WORD,
    FIELDS,
    _chunks,
    _cjk_tokens,
    _fill_block_cache,
    _segment_new_blocks,
    note_fields,
)
from notefeed.threads import gc_paused

__all__ = ["NoteTokens", "FieldIds", "analyze_catalogue", "ragged_take", "ragged_concat"]

#: the fields of :class:`NoteTokens`: the note fields, then ``grams``
ALL_FIELDS = (*FIELDS, "grams")


class _Vocab:
    """Token -> id in first-seen order (ids of a chunk's tokens: one factorize, then one dict
    lookup per distinct token)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def codes(self, tokens: list[str], marker: str | None = None) -> np.ndarray:
        """The ids of ``tokens`` (int32); ``marker`` (not a token) gets -1 and no id."""
        if not tokens:
            return np.zeros(0, np.int32)
        loc, uniq = pd.factorize(np.asarray(tokens, dtype=object), sort=False)
        ids = self.ids
        glob = np.fromiter((-1 if t == marker else ids.setdefault(t, len(ids)) for t in uniq.tolist()),
                           np.int32, len(uniq))
        return glob[loc]

    def words(self) -> list[str]:
        return list(self.ids)


def _offsets(lens: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=out[1:])
    return out


def ragged_take(codes: np.ndarray, indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, indptr) of the rows ``rows`` (in that order, repeats allowed) of a CSR-style
    ragged array."""
    rows = np.asarray(rows, np.int64)
    lens = (indptr[rows + 1] - indptr[rows]).astype(np.int64)
    out_ptr = _offsets(lens)
    pos = np.arange(int(out_ptr[-1]), dtype=np.int64) + np.repeat(indptr[rows] - out_ptr[:-1], lens)
    return codes[pos], out_ptr


def ragged_concat(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Row ``j`` of the result: row ``j`` of every part, in the parts' order (all have the same
    number of rows)."""
    lens = sum(np.diff(p).astype(np.int64) for _, p in parts)
    out_ptr = _offsets(lens)
    out = np.empty(int(out_ptr[-1]), parts[0][0].dtype if parts else np.int32)
    at = out_ptr[:-1].copy()  # where each row's next part goes
    for codes, ptr in parts:
        plens = np.diff(ptr).astype(np.int64)
        out[np.arange(len(codes), dtype=np.int64) + np.repeat(at - ptr[:-1], plens)] = codes
        at += plens
    return out, out_ptr


@dataclass
class FieldIds:
    """Some fields' token ids of a run of notes (``codes`` and ``indptr`` by field, each
    note's ids in ``codes[f][indptr[f][j]:indptr[f][j + 1]]``): what a task of the build's worker
    process is given instead of the whole :class:`NoteTokens`."""

    codes: dict[str, np.ndarray]
    indptr: dict[str, np.ndarray]

    def joined(self, fields: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(codes, indptr): each note's ids of ``fields`` in that order."""
        return ragged_concat([(self.codes[f], self.indptr[f]) for f in fields])


@dataclass
class NoteTokens(Sequence):
    """The analysed tokens of ``n`` notes (see the module docstring).

    ``vocab``: id -> token. ``codes[f]``/``indptr[f]``: field ``f``'s token ids, note ``j``'s
    being ``codes[f][indptr[f][j]:indptr[f][j + 1]]``. ``strings[f][j]``: the same tokens as one
    whitespace-separated string (possibly with more spaces). ``cjk[f]``: whether each note's
    normalised field holds CJK characters.
    """

    vocab: list[str]
    codes: dict[str, np.ndarray]
    indptr: dict[str, np.ndarray]
    strings: dict[str, list[str]]
    cjk: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.indptr["title"]) - 1

    def _row(self, j: int) -> dict[str, list[str]]:
        v = self.vocab
        return {f: [v[c] for c in self.codes[f][self.indptr[f][j] : self.indptr[f][j + 1]].tolist()]
                for f in ALL_FIELDS}

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self._row(i) for i in range(*j.indices(len(self)))]
        n = len(self)
        if not -n <= j < n:
            raise IndexError(j)
        return self._row(j % n)

    def __iter__(self) -> Iterator[dict[str, list[str]]]:
        return (self._row(j) for j in range(len(self)))

    @classmethod
    def concat(cls, parts: Sequence[NoteTokens]) -> NoteTokens:
        """The notes of ``parts`` one after another (each part analysed on its own, with its own
        vocabulary): one vocabulary, each part's ids mapped into it."""
        if len(parts) == 1:
            return parts[0]
        ids: dict[str, int] = {}
        maps = [np.fromiter((ids.setdefault(w, len(ids)) for w in p.vocab), np.int32, len(p.vocab)) for p in parts]
        codes, indptr, strings, cjk = {}, {}, {}, {}
        for f in ALL_FIELDS:
            codes[f] = np.concatenate([m[p.codes[f]] for m, p in zip(maps, parts, strict=True)]) if parts else \
                np.zeros(0, np.int32)
            indptr[f] = _offsets(np.concatenate([np.diff(p.indptr[f]) for p in parts]) if parts else np.zeros(0, np.int64))
            strings[f] = [s for p in parts for s in p.strings[f]]
            if f != "grams":
                cjk[f] = np.concatenate([p.cjk[f] for p in parts]) if parts else np.zeros(0, bool)
        return cls(list(ids), codes, indptr, strings, cjk)

    def field_ids(self, fields: Sequence[str], lo: int = 0, hi: int | None = None) -> FieldIds:
        """The ids of ``fields`` of the notes ``lo..hi`` (views of the arrays)."""
        hi = len(self) if hi is None else hi
        codes, indptr = {}, {}
        for f in fields:
            ptr = self.indptr[f]
            a, b = int(ptr[lo]), int(ptr[hi])
            codes[f], indptr[f] = self.codes[f][a:b], ptr[lo : hi + 1] - a
        return FieldIds(codes, indptr)

    def fields(self, fields: Sequence[str], rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(codes, indptr): each note's tokens of ``fields`` in that order (of the notes
        ``rows`` only, in that order, when given)."""
        parts = [(self.codes[f], self.indptr[f]) for f in fields]
        if rows is not None:
            parts = [ragged_take(c, p, rows) for c, p in parts]
        return ragged_concat(parts)

    def document_frequencies(self) -> np.ndarray:
        """(len(vocab),) int64: in how many notes each token occurs, over :data:`FIELDS`."""
        import scipy.sparse as sp

        codes, ptr = self.fields(FIELDS)
        # int8 ones: only the structure is read (a sum past 127 wraps, its entry stays)
        m = sp.csr_matrix((np.ones(len(codes), np.int8), codes, ptr), shape=(len(self), len(self.vocab)))
        m.sum_duplicates()  # each (note, token) once
        return np.bincount(m.indices, minlength=len(self.vocab))


def _field(texts: list[str], vocab: _Vocab, workers: int, chunk: int
           ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """One field of every note: (codes, indptr, strings, cjk) as :func:`analyze_batch` gives
    its tokens."""
    n = len(texts)
    distinct = dict.fromkeys(texts)
    if texts and len(distinct) * 4 <= n:  # a category, an author: each distinct text once
        keys = list(distinct)
        kc, kp, ks, kj = _field(keys, vocab, workers, chunk)
        at = {k: i for i, k in enumerate(keys)}
        rows = np.fromiter(map(at.__getitem__, texts), np.int64, n)
        codes, ptr = ragged_take(kc, kp, rows)
        return codes, ptr, [ks[i] for i in rows.tolist()], kj[rows]
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    strings: list[str] = []
    cjk = np.zeros(n, bool)
    cjk_texts: list[str] = []  # the normalised CJK texts, segmented after the chunks' NFKC
    plans = []
    for c0, part in zip(range(0, n, chunk), _chunks(texts, chunk), strict=True):
        joined = _SEP.join(part)
        if joined.count(_SEP) != len(part) - 1:  # a NUL inside a text: one at a time
            pieces = [unicodedata.normalize("NFKC", t).lower() for t in part]
        else:
            pieces = unicodedata.normalize("NFKC", joined).lower().split(_SEP)
        ascii_at = [i for i, p in enumerate(pieces) if p.isascii()]
        plans.append((c0, pieces, ascii_at))
        for i, p in enumerate(pieces):
            if not p.isascii() and _CJK.search(p) is not None:
                cjk[c0 + i] = True
                cjk_texts.append(p)
    if workers > 1:
        _segment_new_blocks(cjk_texts, workers)
    _fill_block_cache(cjk_texts)
    for c0, pieces, ascii_at in plans:
        m = len(pieces)
        lens = np.zeros(m, np.int64)
        str_of: list[str | None] = [None] * m
        groups: list[tuple[np.ndarray, np.ndarray]] = []  # (notes in the chunk, their codes in order)
        if ascii_at:
            asc = _SEP.join([pieces[i] for i in ascii_at])
            if asc.count(_SEP) == len(ascii_at) - 1:
                asc = asc.translate(_ASCII_NONWORD)  # one character for one: str.translate's fast path
                marked = asc.replace(_SEP, " \x00 ").split()  # the separator a word of its own
                codes = vocab.codes(marked, marker=_SEP)
                is_sep = codes < 0
                bounds = np.flatnonzero(is_sep)
                ends = np.append(bounds, len(codes))
                starts = np.concatenate([[0], bounds + 1])
                lens[ascii_at] = ends - starts
                groups.append((np.asarray(ascii_at, np.int64), codes[~is_sep]))
                for i, s in zip(ascii_at, asc.split(_SEP), strict=True):
                    str_of[i] = s
            else:  # unreachable in practice (the chunk's separators were counted): per note
                toks = [pieces[i].translate(_ASCII_NONWORD).replace(_SEP, " ").split() for i in ascii_at]
                _add_lists(ascii_at, toks, lens, str_of, groups, vocab)
        rest = [i for i in range(m) if str_of[i] is None]
        if rest:
            toks = [_cjk_tokens(pieces[i]) if cjk[c0 + i] else _WORD.findall(pieces[i]) for i in rest]
            _add_lists(rest, toks, lens, str_of, groups, vocab)
        ptr = _offsets(lens)
        out = np.empty(int(ptr[-1]), np.int32)
        for at, codes in groups:
            glens = lens[at]
            gptr = _offsets(glens)
            out[np.arange(len(codes), dtype=np.int64) + np.repeat(ptr[at] - gptr[:-1], glens)] = codes
        parts.append((out, ptr))
        strings.extend(str_of)  # type: ignore[arg-type]
    if not parts:
        return np.zeros(0, np.int32), np.zeros(1, np.int64), [], cjk
    codes = np.concatenate([c for c, _ in parts])
    lens = np.concatenate([np.diff(p) for _, p in parts])
    return codes, _offsets(lens), strings, cjk


def _add_lists(at: list[int], toks: list[list[str]], lens: np.ndarray, str_of: list[str | None],
               groups: list[tuple[np.ndarray, np.ndarray]], vocab: _Vocab) -> None:
    lens[at] = [len(t) for t in toks]
    for i, t in zip(at, toks, strict=True):
        str_of[i] = " ".join(t)
    groups.append((np.asarray(at, np.int64), vocab.codes([w for t in toks for w in t])))


def _grams(tok: NoteTokens, vocab: _Vocab) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The ``grams`` field: the single characters of the multi-character CJK tokens of title,
    text and tags, for notes whose title, text or tags hold CJK (in order, repeats kept)."""
    n = len(tok)
    rows = np.flatnonzero(tok.cjk["title"] | tok.cjk["text"] | tok.cjk["tags"])
    codes, ptr = tok.fields(("title", "text", "tags"), rows)
    words = vocab.words()
    uniq = np.unique(codes)
    # each distinct token's grams: ids of its characters (none unless a multi-character CJK word)
    g_of = [tuple(w) if len(w) > 1 and has_cjk(w) else () for w in (words[u] for u in uniq.tolist())]
    g_len = np.zeros(len(words), np.int64)
    g_len[uniq] = [len(g) for g in g_of]
    g_ptr = np.zeros(len(words) + 1, np.int64)
    g_ptr[uniq + 1] = g_len[uniq]
    np.cumsum(g_ptr, out=g_ptr)
    g_ids = vocab.codes([c for g in g_of for c in g])
    out, per_token = ragged_take(g_ids, g_ptr, codes.astype(np.int64))  # each token's grams, in order
    per_note = np.diff(per_token[ptr])  # a note's grams: its tokens'
    lens = np.zeros(n, np.int64)
    lens[rows] = per_note
    all_words = vocab.words()
    strings = [""] * n
    optr = _offsets(per_note)
    for k, j in enumerate(rows.tolist()):
        a, b = optr[k], optr[k + 1]
        if b > a:
            strings[j] = " ".join([all_words[c] for c in out[a:b].tolist()])
    return out.astype(np.int32), _offsets(lens), strings


def analyze_catalogue(notes: pd.DataFrame, workers: int = 1, chunk: int = 20_000) -> NoteTokens:
    """The :class:`NoteTokens` of a ``Dataset.notes``-shaped frame: per note and field the
    tokens of :func:`notefeed.search.lexical.analyze_notes` (tested equal), as arrays."""
    with gc_paused():
        raw = note_fields(notes)
        vocab = _Vocab()
        codes, indptr, strings, cjk = {}, {}, {}, {}
        for f in FIELDS:
            codes[f], indptr[f], strings[f], cjk[f] = _field(raw[f], vocab, workers, chunk)
        tok = NoteTokens([], codes, indptr, strings, cjk)
        tok.codes["grams"], tok.indptr["grams"], tok.strings["grams"] = _grams(tok, vocab)
        tok.vocab = vocab.words()
        return tok
