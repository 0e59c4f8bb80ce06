"""Search by image: the notes whose image vectors are nearest to a query image (or vector).

:class:`ImageIndex` holds one unit vector per note image (a note may have several; a note's
score is its best image's inner product with the query), searched in FAISS
(:class:`notefeed.recall.ann.AnnIndex`). Vectors are keyed by ``note_id``, so the index
survives a rebuild of the text index and serves any catalogue holding those notes.

Where the vectors come from:

- precomputed by any encoder (``notefeed search images --vectors FILE --ids FILE``);
- computed here from the notes' image files (:func:`encode_note_images`) with
  :class:`notefeed.content.image.OpenClipImageEncoder` (the optional extra
  ``notefeed[content]``, a local checkpoint; nothing is downloaded). The index then records the
  encoder (architecture and checkpoint), so an uploaded image can be encoded the same way.

A vector query needs no image library at all. On disk (``WORKSPACE/images/``):
``images.safetensors`` (``vectors`` (m, dim) float32) and ``images.json`` (``note_ids`` of the
rows, ``dim``, ``encoder`` or null). JSON and safetensors only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from notefeed.recall.ann import AnnIndex
from notefeed.search.base import SearchError

__all__ = ["ImageIndex", "encode_note_images", "check_vector", "load_encoder"]

_VECTORS, _META = "images.safetensors", "images.json"
FORMAT_VERSION = 1


def check_vector(v: object, dim: int, field: str = "vector") -> np.ndarray:
    """(dim,) unit float32 query vector, or :class:`SearchError` naming ``field``."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise SearchError(f"{field}: expected a list of {dim} numbers") from None
    if a.ndim != 1:
        raise SearchError(f"{field}: expected a flat list of {dim} numbers, got shape {list(a.shape)}")
    if a.shape[0] != dim:
        raise SearchError(f"{field}: expected {dim} numbers (the image index dimension), got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise SearchError(f"{field}: holds NaN or infinite values")
    top = float(np.abs(a).max())
    if top == 0.0:
        raise SearchError(f"{field}: is all zeros (no direction to search)")
    a = a / top  # huge components: no overflow in the norm
    return (a / float(np.linalg.norm(a))).astype(np.float32)


class ImageIndex:
    """Note image vectors in FAISS; ``search(vector, k) -> [(note_id, score)]`` best first."""

    name = "image/vectors"

    def __init__(self, dim: int, encoder: dict[str, Any] | None = None, hnsw_min: int = 200_000,
                 expected: int = 0) -> None:
        if dim < 1:
            raise SearchError(f"dim: must be >= 1, got {dim}")
        self.dim, self.encoder, self.hnsw_min = dim, encoder, hnsw_min
        self.ann = AnnIndex(dim, hnsw_min=hnsw_min, expected=expected)
        self.note_ids: list[str] = []
        self._vecs: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.note_ids)

    @property
    def n_notes(self) -> int:
        return len(set(self.note_ids))

    def add(self, note_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add one row per image: ``note_ids[j]`` owns ``vectors[j]`` (rows are L2-normalised;
        all-zero or non-finite rows are refused)."""
        v = np.asarray(vectors, dtype=np.float32)
        ids = [str(n) for n in note_ids]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise SearchError(f"vectors: expected shape (n, {self.dim}), got {list(v.shape)}")
        if len(ids) != v.shape[0]:
            raise SearchError(f"note_ids: {len(ids)} ids for {v.shape[0]} vectors")
        if not np.all(np.isfinite(v)):
            raise SearchError("vectors: hold NaN or infinite values")
        norms = np.linalg.norm(v, axis=1)
        if np.any(norms == 0):
            raise SearchError(f"vectors: row {int(np.flatnonzero(norms == 0)[0])} is all zeros")
        fix = np.abs(norms - 1.0) > 1e-6  # unit rows stay as given (a saved index loads bit for bit)
        if np.any(fix):
            v = v.copy()
            v[fix] /= norms[fix, None]
        with self._lock:
            start = len(self.note_ids)
            self.ann.add(v, np.arange(start, start + len(ids), dtype=np.int64))
            self.note_ids.extend(ids)
            self._vecs.append(v)

    def search(self, vector: object, k: int = 10, field: str = "vector") -> list[tuple[str, float]]:
        """The ``k`` notes with the nearest image (best image per note), best first."""
        q = check_vector(vector, self.dim, field)
        if not self.note_ids or k <= 0:
            return []
        out: dict[str, float] = {}
        want = k
        while True:  # several images of one note may fill the first rows: widen until k notes
            scores, rows = self.ann.search(q[None, :], min(want, len(self.note_ids)))
            for s, r in zip(scores[0].tolist(), rows[0].tolist(), strict=True):
                if r >= 0:
                    n = self.note_ids[r]
                    if n not in out or s > out[n]:
                        out[n] = float(s)
            if len(out) >= k or want >= len(self.note_ids):
                break
            out.clear()
            want *= 4
        return sorted(out.items(), key=lambda x: (-x[1], x[0]))[:k]

    def vectors(self) -> np.ndarray:
        with self._lock:
            if len(self._vecs) > 1:
                self._vecs = [np.concatenate(self._vecs)]
            return self._vecs[0] if self._vecs else np.zeros((0, self.dim), np.float32)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (_VECTORS + ".tmp")
        save_file({"vectors": np.ascontiguousarray(self.vectors())}, str(tmp))
        tmp.replace(folder / _VECTORS)
        meta = {"format_version": FORMAT_VERSION, "dim": self.dim, "encoder": self.encoder,
                "note_ids": self.note_ids}
        tmp = folder / (_META + ".tmp")
        tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        tmp.replace(folder / _META)
        return folder

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / _META).is_file() and (Path(folder) / _VECTORS).is_file()

    @classmethod
    def load(cls, folder: str | Path, hnsw_min: int = 200_000) -> ImageIndex:
        from safetensors import SafetensorError, safe_open

        folder = Path(folder)
        if not cls.exists(folder):
            raise SearchError(f"{folder}: no image index (build one with `notefeed search images`)")
        try:
            meta = json.loads((folder / _META).read_text(encoding="utf-8"))
            dim, ids, enc = int(meta["dim"]), [str(n) for n in meta["note_ids"]], meta.get("encoder")
        except (ValueError, KeyError, TypeError) as e:
            raise SearchError(f"{folder / _META}: not a valid image index description ({e})") from None
        try:
            with safe_open(str(folder / _VECTORS), framework="numpy") as f:
                vecs = f.get_tensor("vectors")
        except (SafetensorError, OSError, KeyError) as e:
            raise SearchError(f"{folder / _VECTORS}: cannot read the image vectors ({e})") from None
        if vecs.shape != (len(ids), dim):
            raise SearchError(f"{folder / _VECTORS}: shape {list(vecs.shape)} does not match {len(ids)} note ids "
                              f"of dimension {dim}")
        idx = cls(dim, enc, hnsw_min=hnsw_min, expected=len(ids))
        if ids:
            idx.add(ids, vecs)
        return idx


def load_encoder(spec: dict[str, Any] | None) -> Any:
    """The image encoder an index records (``{"kind": "open_clip", "model_name", "checkpoint"}``),
    or :class:`SearchError` when there is none or it cannot be loaded."""
    if not spec:
        raise SearchError("image: this image index was built from precomputed vectors and has no image "
                          "encoder; send a vector")
    if spec.get("kind") != "open_clip":
        raise SearchError(f"image: unknown image encoder kind {spec.get('kind')!r}")
    from notefeed.content.image import OpenClipImageEncoder

    try:
        return OpenClipImageEncoder(str(spec["model_name"]), str(spec["checkpoint"]),
                                    batch_size=int(spec.get("batch_size", 32)))
    except ImportError as e:
        raise SearchError(f"image: the image encoder needs open_clip ({e}); send a vector") from None
    except Exception as e:  # ContentError: a missing or broken checkpoint
        raise SearchError(f"image: cannot load the image encoder ({e})") from None


def encode_note_images(note_ids: Sequence[str], media: Sequence[Sequence[str]], root: str | Path,
                       encoder: Any, spec: dict[str, Any] | None = None) -> tuple[ImageIndex, list[str]]:
    """An :class:`ImageIndex` of the notes' image files (``media[i]``: paths relative to
    ``root``), encoded by ``encoder`` (``encode(paths) -> (m, dim)``); returns it and the
    paths that were missing (skipped)."""
    root = Path(root)
    rows, paths, missing = [], [], []
    for n, files in zip(note_ids, media, strict=True):
        for f in files or []:
            p = root / str(f)
            if p.is_file():
                rows.append(str(n))
                paths.append(str(p))
            else:
                missing.append(str(p))
    if not paths:
        raise SearchError(f"media: none of the notes' image files is under {root}")
    vecs = np.asarray(encoder.encode(paths), np.float32)
    idx = ImageIndex(int(vecs.shape[1]), spec, expected=len(rows))
    idx.add(rows, vecs)
    return idx, missing
