"""A FAISS inner-product index over note vectors that grows without a rebuild.

Small catalogues use exact ``IndexFlatIP``; large ones ``IndexHNSWFlat`` (inner product).
Both are wrapped in ``IndexIDMap2`` so ids are item indices, and ``add`` appends new notes
in place (HNSW inserts into the existing graph). :meth:`AnnIndex.to_array` /
:meth:`AnnIndex.from_array` carry a built index through a safetensors file as FAISS's own
serialisation in a uint8 array (data, never code), so loading a model version skips the HNSW
build: minutes at a million notes.
"""

from __future__ import annotations

import faiss
import numpy as np

__all__ = ["ANN_KEY", "AnnIndex", "ann_over"]

#: the array name under which a channel's state stores its index (:meth:`AnnIndex.to_array`)
ANN_KEY = "ann_index"


class AnnIndex:
    """Inner-product ANN over (n, d) float32 vectors with int64 ids.

    ``kind`` is ``"flat"``, ``"hnsw"`` or ``"auto"`` (HNSW from ``hnsw_min`` vectors).
    """

    def __init__(
        self, dim: int, kind: str = "auto", m: int = 32, ef_construction: int = 80, ef_search: int = 64,
        hnsw_min: int = 50_000, expected: int = 0,
    ) -> None:
        if dim < 1:
            raise ValueError(f"AnnIndex: 'dim' must be >= 1, got {dim}")
        if kind not in ("auto", "flat", "hnsw"):
            raise ValueError(f"AnnIndex: 'kind' must be auto/flat/hnsw, got {kind!r}")
        self.dim = int(dim)
        self.kind = ("hnsw" if expected >= hnsw_min else "flat") if kind == "auto" else kind
        if self.kind == "hnsw":
            base = faiss.IndexHNSWFlat(self.dim, int(m), faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = int(ef_construction)
            base.hnsw.efSearch = int(ef_search)
        else:
            base = faiss.IndexFlatIP(self.dim)
        self._base = base
        self.index = faiss.IndexIDMap2(base)

    @classmethod
    def of_rows(cls, vectors: np.ndarray, **kwargs: object) -> AnnIndex:
        """An index over the rows of ``vectors`` (n, dim), row numbers as ids; ``kwargs`` as
        for the constructor (``expected`` is ``n``)."""
        v = np.asarray(vectors)
        index = cls(v.shape[1], expected=len(v), **kwargs)  # type: ignore[arg-type]
        index.add(v, np.arange(len(v), dtype=np.int64))
        return index

    def to_array(self) -> np.ndarray:
        """The whole index (graph, vectors, ids, search settings) as a uint8 array."""
        return np.asarray(faiss.serialize_index(self.index), dtype=np.uint8)

    @classmethod
    def from_array(cls, data: np.ndarray, dim: int, ntotal: int) -> AnnIndex:
        """The index :meth:`to_array` wrote; ``ValueError`` unless it is an id-mapped flat or
        HNSW inner-product index of ``ntotal`` vectors of ``dim`` dimensions."""
        try:
            index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        except RuntimeError as e:
            raise ValueError(f"AnnIndex.from_array: not a FAISS index ({e})") from None
        base = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else None
        if not isinstance(base, (faiss.IndexHNSWFlat, faiss.IndexFlatIP)):
            raise ValueError(f"AnnIndex.from_array: expected an id-mapped HNSW or flat index, got "
                             f"{type(base if base is not None else index).__name__}")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"AnnIndex.from_array: FAISS metric {index.metric_type}, expected inner product")
        if index.d != dim or index.ntotal != ntotal:
            raise ValueError(f"AnnIndex.from_array: index of {index.ntotal} x {index.d} vectors, "
                             f"expected {ntotal} x {dim}")
        out = cls.__new__(cls)
        out.dim, out.kind = int(dim), "hnsw" if isinstance(base, faiss.IndexHNSWFlat) else "flat"
        out._base, out.index = base, index
        return out

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def set_ef_search(self, ef: int) -> None:
        if self.kind == "hnsw":
            self._base.hnsw.efSearch = int(ef)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Append ``vectors`` (n, dim) with ``ids`` (n,) int64; no rebuild."""
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"AnnIndex.add: 'vectors' must be (n, {self.dim}), got {v.shape}")
        if ids.shape != (v.shape[0],):
            raise ValueError(f"AnnIndex.add: 'ids' must be ({v.shape[0]},), got {ids.shape}")
        if not np.isfinite(v).all():
            raise ValueError("AnnIndex.add: 'vectors' contain NaN or inf")
        self.index.add_with_ids(v, ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by inner product: (scores (q, k) float32, ids (q, k) int64; -1 pads)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"AnnIndex.search: 'queries' must be (q, {self.dim}), got {q.shape}")
        k = max(1, min(int(k), max(self.ntotal, 1)))
        return self.index.search(q, k)

    def search_excluding(self, query: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` ids for one query (dim,) that are not in ``exclude`` (a recall
        channel's seen/history notes), best first: ``(ids, scores)``."""
        scores, ids = self.search(query[None, :], k + len(exclude))
        keep = (ids[0] >= 0) & ~np.isin(ids[0], exclude)
        return ids[0][keep][:k], scores[0][keep][:k]


def ann_over(items: np.ndarray, hnsw_min: int, stored: np.ndarray | None = None,
             ef_search: int = 128) -> AnnIndex | None:
    """A recall channel's HNSW index over its item vectors ``items`` (n, dim) from
    ``hnsw_min`` rows (``None`` below: the channel scores every note exactly). ``stored``: the
    index a model version saved with them (:meth:`AnnIndex.to_array`), loaded instead of
    built; a stored index that does not match ``items`` is a ``ValueError``."""
    if len(items) < hnsw_min:
        return None
    if stored is not None:
        return AnnIndex.from_array(stored, items.shape[1], len(items))
    return AnnIndex.of_rows(items, kind="hnsw", ef_search=ef_search)
