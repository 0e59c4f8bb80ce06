"""Dense retrieval: the project's text encoder (:class:`notefeed.content.text.TextEncoder`) over
each note's title, tags, category and text, searched by inner product in FAISS
(:class:`notefeed.recall.ann.AnnIndex`: exact below ``hnsw_min`` notes, HNSW above).

Persisted as the encoder artifact (``encoder/``: config.json + safetensors) and the note
vectors (``vectors.safetensors``, with the item ids); the FAISS index is rebuilt on load.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.content.text import TextEncoder, TextEncoderConfig
from notefeed.recall.ann import AnnIndex
from notefeed.search.base import RETRIEVERS, Hits, ParsedQuery, SearchError
from notefeed.search.text import note_fields

__all__ = ["DenseIndex", "note_texts"]

_VECTORS = "vectors.safetensors"


def note_texts(notes: pd.DataFrame) -> list[str]:
    """The text each note is encoded from: title, tags, category, then body."""
    f = note_fields(notes)
    return [" ".join(x for x in parts if x) for parts in
            zip(f["title"], f["tags"], f["category"], f["text"], strict=True)]


@RETRIEVERS.register("dense/text")
class DenseIndex:
    """Text-encoder vectors of notes in FAISS; the query is encoded with the same encoder."""

    name = "dense/text"

    def __init__(self, encoder: TextEncoder, kind: str = "auto", hnsw_min: int = 200_000,
                 expected: int = 0) -> None:
        self.encoder = encoder
        self.ann = AnnIndex(encoder.dim, kind=kind, hnsw_min=hnsw_min, expected=expected)
        self._vecs: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self._lock = threading.Lock()

    @classmethod
    def build(cls, notes: pd.DataFrame, dim: int = 64, kind: str = "auto", hnsw_min: int = 200_000,
              fit_max: int = 200_000, seed: int = 0) -> DenseIndex:
        """Fit the encoder on (at most ``fit_max`` sampled) notes and index all of them."""
        texts = note_texts(notes)
        if not texts:
            raise SearchError("notes: the catalogue is empty, nothing to fit the dense encoder on")
        rng = np.random.default_rng(seed)
        fit = texts if len(texts) <= fit_max else [texts[i] for i in rng.choice(len(texts), fit_max, replace=False)]
        enc = TextEncoder(TextEncoderConfig(dim=dim, seed=seed)).fit(fit)
        idx = cls(enc, kind=kind, hnsw_min=hnsw_min, expected=len(texts))
        idx.add_vectors(enc.transform(texts), np.arange(len(texts), dtype=np.int64))
        return idx

    def add(self, notes: pd.DataFrame, items: np.ndarray) -> None:
        if len(notes):
            self.add_vectors(self.encoder.transform(note_texts(notes)), np.asarray(items, np.int64))

    def add_vectors(self, vectors: np.ndarray, items: np.ndarray) -> None:
        with self._lock:
            self.ann.add(vectors, items)
            self._vecs.append(np.asarray(vectors, np.float32))
            self._ids.append(np.asarray(items, np.int64))

    def __len__(self) -> int:
        return self.ann.ntotal

    def encode_query(self, query: ParsedQuery) -> np.ndarray:
        """(dim,) unit query vector from the corrected terms (zeros when nothing is known)."""
        return self.encoder.transform([" ".join(query.terms) or query.text])[0]

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
    def load(cls, folder: str | Path, hnsw_min: int = 200_000) -> DenseIndex:
        from safetensors import safe_open

        folder = Path(folder)
        if not (folder / _VECTORS).exists():
            raise SearchError(f"{folder / _VECTORS}: missing (build the search index first)")
        enc = TextEncoder.load(folder / "encoder")
        with safe_open(str(folder / _VECTORS), framework="numpy") as f:
            ids, vecs = f.get_tensor("ids"), f.get_tensor("vectors")
            kind = (f.metadata() or {}).get("kind", "auto")
        if vecs.ndim != 2 or vecs.shape[1] != enc.dim or ids.shape != (vecs.shape[0],):
            raise SearchError(f"{folder / _VECTORS}: shapes ids {ids.shape} vectors {vecs.shape} do not match "
                              f"the encoder dimension {enc.dim}")
        idx = cls(enc, kind=kind, hnsw_min=hnsw_min, expected=len(ids))
        idx.add_vectors(vecs, ids)
        return idx
