"""BM25 over the note fields with tantivy (tantivy-py), over text we segment ourselves.

Every field is indexed from our own tokens joined by spaces under tantivy's ``whitespace``
tokenizer, so Chinese is segmented by jieba (tantivy's default tokenizer would keep a run of
Chinese characters as one token) and queries and notes share one analysis
(:mod:`notefeed.search.text`). A query is a disjunction of per-field term queries, each boosted
by its field weight; tantivy scores each with BM25.

The index lives in tantivy's own directory format under ``path`` (in RAM without one); the
document-frequency vocabulary that query understanding needs (IDF, spelling) is kept beside
it in ``vocab.json``. ``add`` commits, so a published note is searchable when it returns.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import tantivy

from notefeed.search.base import RETRIEVERS, Hits, ParsedQuery, SearchError
from notefeed.search.text import FIELDS
from notefeed.search.tokens import NoteTokens, analyze_catalogue
from notefeed.threads import gc_paused

__all__ = ["LexicalIndex", "DEFAULT_BOOSTS", "analyze_notes"]

#: field -> query boost; ``grams`` are the single characters of Chinese words (low weight)
DEFAULT_BOOSTS: dict[str, float] = {"title": 2.0, "text": 1.0, "tags": 1.5, "author": 1.0,
                                    "category": 1.0, "grams": 0.3}
_ALL_FIELDS = (*FIELDS, "grams")
_VOCAB = "vocab.json"


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field("item", stored=False, indexed=True, fast=True)
    for f in _ALL_FIELDS:
        sb.add_text_field(f, stored=False, tokenizer_name="whitespace", index_option="freq")
    return sb.build()


def analyze_notes(notes: pd.DataFrame, workers: int = 1) -> list[dict[str, list[str]]]:
    """Tokens per field (and ``grams``) for each note of a ``Dataset.notes``-shaped frame
    (``workers``: see :func:`notefeed.search.text.analyze_batch`): the per-note dicts of
    :func:`~notefeed.search.tokens.analyze_catalogue`, which a whole catalogue's build uses as
    arrays."""
    return list(analyze_catalogue(notes, workers))


def _distinct(toks: Mapping[str, list[str]]) -> set[str]:
    """A note's distinct tokens over the counted fields (what :attr:`LexicalIndex.df` counts)."""
    seen = set(toks.get("title", ()))
    seen.update(*(toks.get(f, ()) for f in FIELDS[1:]))
    return seen


@RETRIEVERS.register("lexical/bm25")
class LexicalIndex:
    """BM25 (tantivy) over title, text, tags, author, category (+ CJK single characters)."""

    name = "lexical/bm25"

    def __init__(self, path: str | Path | None = None, boosts: Mapping[str, float] | None = None,
                 heap_mb: int = 512, threads: int = 1) -> None:
        self.path = None if path is None else Path(path)
        self.boosts = {**DEFAULT_BOOSTS, **dict(boosts or {})}
        unknown = set(self.boosts) - set(_ALL_FIELDS)
        if unknown:
            raise SearchError(f"boosts: unknown field(s) {sorted(unknown)}; fields: {list(_ALL_FIELDS)}")
        self.schema = _schema()
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            self.index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
        else:
            self.index = tantivy.Index(self.schema)
        self.heap_mb, self.threads = heap_mb, threads
        self._writer: tantivy.IndexWriter | None = None
        self._lock = threading.Lock()
        #: token -> number of notes holding it (any field), and the note count
        self.df: Counter[str] = Counter()
        self.n_docs = 0
        self._dirty = False
        if self.path is not None and (self.path / _VOCAB).exists():
            self._read_vocab()
        self.index.reload()

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, notes: pd.DataFrame, path: str | Path | None = None, **params: object) -> LexicalIndex:
        """A fresh index of ``notes`` (items ``0..n-1``); an existing index at ``path`` is replaced."""
        idx = cls(path, **params)  # type: ignore[arg-type]
        if idx.n_docs or idx.index.searcher().num_docs:
            idx._writer_().delete_all_documents()
            idx.df, idx.n_docs = Counter(), 0
        idx.add(notes, np.arange(len(notes), dtype=np.int64))
        if idx.path is not None:
            idx.save()
        return idx

    def _writer_(self) -> tantivy.IndexWriter:
        if self._writer is None:
            self._writer = self.index.writer(self.heap_mb * 1_000_000, self.threads)
        return self._writer

    def add(self, notes: pd.DataFrame, items: np.ndarray) -> None:
        """Index ``notes`` under ``items`` (len(notes),); committed (searchable) on return."""
        items = np.asarray(items, np.int64)
        if items.shape != (len(notes),):
            raise SearchError(f"items: expected shape ({len(notes)},), got {items.shape}")
        self.add_tokens(analyze_notes(notes), items)

    def add_tokens(self, docs: Iterable[Mapping[str, list[str]]] | NoteTokens, items: np.ndarray) -> None:
        """Index already analysed notes (see :func:`analyze_notes`, or a catalogue's
        :class:`~notefeed.search.tokens.NoteTokens`) and commit."""
        with self._lock, gc_paused():
            w = self._writer_()
            n = self._add_arrays(w, docs, items) if isinstance(docs, NoteTokens) else self._add_docs(w, docs, items)
            w.commit()
            self.n_docs += n
            self.index.reload()
            self._dirty = True

    def _add_docs(self, w: tantivy.IndexWriter, docs: Iterable[Mapping[str, list[str]]], items: np.ndarray) -> int:
        """Add the documents (not committed) and their distinct tokens to :attr:`df`; returns
        how many."""
        add, new_doc = w.add_document, tantivy.Document
        seen_all: list[str] = []  # each note's distinct tokens, counted in batches (same counts, same key order)
        n = 0
        for toks, item in zip(docs, np.asarray(items, np.int64).tolist(), strict=True):
            doc = new_doc()
            doc.add_unsigned("item", item)
            for f in _ALL_FIELDS:
                t = toks.get(f)
                if t:
                    doc.add_text(f, " ".join(t))
            add(doc)
            seen_all.extend(_distinct(toks))
            if len(seen_all) >= 1_000_000:
                self.df.update(seen_all)
                seen_all.clear()
            n += 1
        self.df.update(seen_all)
        return n

    def _add_arrays(self, w: tantivy.IndexWriter, tok: NoteTokens, items: np.ndarray) -> int:
        """:meth:`_add_docs` of a :class:`NoteTokens`: each field's string as it is, the
        document frequencies from its arrays."""
        items = np.asarray(items, np.int64)
        if items.shape != (len(tok),):
            raise SearchError(f"items: expected shape ({len(tok)},), got {items.shape}")
        add, new_doc = w.add_document, tantivy.Document
        for item, *texts in zip(items.tolist(), *(tok.strings[f] for f in _ALL_FIELDS), strict=True):
            doc = new_doc()
            doc.add_unsigned("item", item)
            for f, t in zip(_ALL_FIELDS, texts, strict=True):
                if t:
                    doc.add_text(f, t)
            add(doc)
        df = tok.document_frequencies()
        seen = np.flatnonzero(df)
        vocab = tok.vocab
        self.df.update(dict(zip([vocab[i] for i in seen.tolist()], df[seen].tolist(), strict=True)))
        return len(tok)

    def replace_tokens(self, old_docs: Iterable[Mapping[str, list[str]]], docs: Iterable[Mapping[str, list[str]]],
                       items: np.ndarray) -> None:
        """Re-index the notes ``items`` (edited): their documents replaced by ``docs``, the
        document frequencies moved from ``old_docs`` (what they were indexed with) to ``docs``;
        committed on return."""
        with self._lock, gc_paused():
            w = self._writer_()
            for item in np.asarray(items, np.int64).tolist():
                w.delete_documents_by_query(tantivy.Query.term_query(self.schema, "item", item))
            for toks in old_docs:
                for t in _distinct(toks):
                    left = self.df.get(t, 0) - 1
                    if left > 0:
                        self.df[t] = left
                    else:
                        self.df.pop(t, None)
            self._add_docs(w, docs, items)
            w.commit()
            self.index.reload()
            self._dirty = True

    def __len__(self) -> int:
        return self.n_docs

    # ------------------------------------------------------------------ search
    def query(self, terms: list[str]) -> tantivy.Query:
        """The tantivy query for ``terms``: each term in each field, boosted by the field."""
        clauses = []
        for t in terms:
            for f, b in self.boosts.items():
                if b <= 0 or (f == "grams" and len(t) != 1):
                    continue
                q = tantivy.Query.term_query(self.schema, f, t)
                clauses.append((tantivy.Occur.Should, tantivy.Query.boost_query(q, float(b))))
        return tantivy.Query.boolean_query(clauses)

    def retrieve(self, query: ParsedQuery, k: int) -> Hits:
        if query.empty or k <= 0 or self.n_docs == 0:
            return Hits.none(self.name)
        searcher = self.index.searcher()
        res = searcher.search(self.query(query.terms), int(k), count=False)
        if not res.hits:
            return Hits.none(self.name)
        scores = np.fromiter((h[0] for h in res.hits), np.float32, len(res.hits))
        items = np.asarray(searcher.fast_field_values("item", [h[1] for h in res.hits]), np.int64)
        return Hits(self.name, items, scores)

    # ------------------------------------------------------------------ vocabulary
    def idf(self, terms: list[str]) -> np.ndarray:
        """(len(terms),) float32 BM25-style IDF, ``log(1 + (N - df + 0.5) / (df + 0.5))``."""
        df = np.array([self.df.get(t, 0) for t in terms], np.float64)
        return np.log1p((self.n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)

    def save(self) -> None:
        """Write ``vocab.json`` beside the tantivy files (the postings are committed by ``add``)."""
        if self.path is None:
            raise SearchError("path: an in-memory index has nowhere to be saved")
        with self._lock:
            self._write_vocab()
            self._dirty = False

    def _write_vocab(self) -> None:
        assert self.path is not None
        tmp = self.path / (_VOCAB + ".tmp")
        tmp.write_text(json.dumps({"n_docs": self.n_docs, "df": dict(self.df)}, ensure_ascii=False),
                       encoding="utf-8")
        tmp.replace(self.path / _VOCAB)

    def _read_vocab(self) -> None:
        assert self.path is not None
        try:
            raw = json.loads((self.path / _VOCAB).read_text(encoding="utf-8"))
            self.n_docs, self.df = int(raw["n_docs"]), Counter({str(k): int(v) for k, v in raw["df"].items()})
        except (ValueError, KeyError, TypeError) as e:
            raise SearchError(f"{self.path / _VOCAB}: corrupt vocabulary ({e})") from None

    def close(self) -> None:
        if self._dirty and self.path is not None:
            self.save()
        with self._lock:
            if self._writer is not None:
                self._writer.wait_merging_threads()
                self._writer = None
