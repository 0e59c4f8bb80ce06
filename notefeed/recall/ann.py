"""A FAISS inner-product index over note vectors that grows without a rebuild.

Small catalogues use exact ``IndexFlatIP``; large ones ``IndexHNSWFlat`` (inner product) or,
where the build time matters more than the last point of recall (search's dense index),
``IndexIVFFlat``: about sqrt(n) k-means lists trained on a sample of the first vectors added,
``nprobe`` of them searched. All are wrapped in ``IndexIDMap2`` so ids are item indices, and
``add`` appends new notes in place (HNSW inserts into the existing graph; IVF appends to the
nearest list). :meth:`AnnIndex.to_array` /
:meth:`AnnIndex.from_array` carry a built index through a safetensors file as FAISS's own
serialisation in a uint8 array (data, never code), so loading a model version skips the HNSW
build: minutes at a million notes.
"""

from __future__ import annotations

import faiss
import numpy as np

__all__ = ["ANN_KEY", "AnnIndex", "ann_over", "ivf_lists"]

#: the array name under which a channel's state stores its index (:meth:`AnnIndex.to_array`)
ANN_KEY = "ann_index"
#: the approximate kinds ``kind="auto"`` may choose from ``hnsw_min`` vectors
APPROX_KINDS = ("hnsw", "ivf")
#: training points per IVF list (FAISS asks for at least 39)
IVF_TRAIN_PER_LIST = 64


def ivf_lists(n: int) -> int:
    """The number of IVF lists for ``n`` vectors: about sqrt(n), between 1 and 4096, and at
    most n / 39 so that every list has training points."""
    return int(max(1, min(4096, round(np.sqrt(max(n, 1))), n // 39)))


def _read_index(data: np.ndarray, chunk: int = 1 << 24) -> faiss.Index:
    """``faiss.read_index`` over the bytes of ``data``, handed over ``chunk`` bytes at a time through a
    callback. (``faiss.deserialize_index`` first copies the whole array into a new zero-filled
    vector: 2.6 s against 0.75 s for a 0.8 GB HNSW index of a million notes; the same index.)"""
    buf = memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        part = buf[pos:pos + n].tobytes()
        pos += len(part)
        return part

    return faiss.read_index(faiss.PyCallbackIOReader(read, chunk))


class AnnIndex:
    """Inner-product ANN over (n, d) float32 vectors with int64 ids.

    An HNSW search for ``k`` results looks at ``max(ef_search, k)`` candidates.

    ``kind`` is ``"flat"``, ``"hnsw"``, ``"ivf"`` or ``"auto"`` (``approx``, HNSW unless
    named, from ``hnsw_min`` vectors, else flat). An IVF index is trained on (a sample of) the
    first vectors added, with :func:`ivf_lists` of ``max(expected, that batch)`` lists.
    """

    def __init__(
        self, dim: int, kind: str = "auto", m: int = 32, ef_construction: int = 80, ef_search: int = 64,
        hnsw_min: int = 50_000, expected: int = 0, approx: str = "hnsw", nprobe: int = 32,
    ) -> None:
        if dim < 1:
            raise ValueError(f"AnnIndex: 'dim' must be >= 1, got {dim}")
        if kind not in ("auto", "flat", *APPROX_KINDS):
            raise ValueError(f"AnnIndex: 'kind' must be auto/flat/hnsw/ivf, got {kind!r}")
        if approx not in APPROX_KINDS:
            raise ValueError(f"AnnIndex: 'approx' must be hnsw/ivf, got {approx!r}")
        if nprobe < 1:
            raise ValueError(f"AnnIndex: 'nprobe' must be >= 1, got {nprobe}")
        self.dim = int(dim)
        self.kind = (approx if expected >= hnsw_min else "flat") if kind == "auto" else kind
        self.nprobe, self._expected = int(nprobe), int(expected)
        self._quantizer = None
        self._base: faiss.Index | None
        if self.kind == "hnsw":
            base = faiss.IndexHNSWFlat(self.dim, int(m), faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = int(ef_construction)
            base.hnsw.efSearch = int(ef_search)
        elif self.kind == "ivf":
            base = None  # trained on the first vectors added
        else:
            base = faiss.IndexFlatIP(self.dim)
        self._base = base
        self.index = None if base is None else faiss.IndexIDMap2(base)

    def _train_ivf(self, v: np.ndarray) -> None:
        nlist = max(1, min(ivf_lists(max(self._expected, len(v))), len(v) // 39))  # training points for every list
        sample = v
        if len(v) > IVF_TRAIN_PER_LIST * nlist:
            rows = np.random.default_rng(0).choice(len(v), IVF_TRAIN_PER_LIST * nlist, replace=False)
            sample = v[np.sort(rows)]
        self._quantizer = faiss.IndexFlatIP(self.dim)  # kept: the IVF index refers to it
        base = faiss.IndexIVFFlat(self._quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        base.cp.seed = 0
        base.train(np.ascontiguousarray(sample))
        base.nprobe = min(self.nprobe, nlist)
        self._base, self.index = base, faiss.IndexIDMap2(base)

    @classmethod
    def of_rows(cls, vectors: np.ndarray, **kwargs: object) -> AnnIndex:
        """An index over the rows of ``vectors`` (n, dim), row numbers as ids; ``kwargs`` as
        for the constructor (``expected`` is ``n``)."""
        v = np.asarray(vectors)
        index = cls(v.shape[1], expected=len(v), **kwargs)  # type: ignore[arg-type]
        index.add(v, np.arange(len(v), dtype=np.int64))
        return index

    def to_array(self) -> np.ndarray:
        """The whole index (graph or lists, vectors, ids, search settings) as a uint8 array."""
        if self.index is None:
            raise ValueError("AnnIndex.to_array: an IVF index with nothing added has nothing to save")
        return np.asarray(faiss.serialize_index(self.index), dtype=np.uint8)

    @classmethod
    def from_array(cls, data: np.ndarray, dim: int, ntotal: int) -> AnnIndex:
        """The index :meth:`to_array` wrote; ``ValueError`` unless it is an id-mapped flat, HNSW
        or IVF-flat inner-product index of ``ntotal`` vectors of ``dim`` dimensions."""
        try:
            index = _read_index(data)
        except RuntimeError as e:
            raise ValueError(f"AnnIndex.from_array: not a FAISS index ({e})") from None
        base = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else None
        if not isinstance(base, (faiss.IndexHNSWFlat, faiss.IndexFlatIP, faiss.IndexIVFFlat)):
            raise ValueError(f"AnnIndex.from_array: expected an id-mapped HNSW, IVF or flat index, got "
                             f"{type(base if base is not None else index).__name__}")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"AnnIndex.from_array: FAISS metric {index.metric_type}, expected inner product")
        if index.d != dim or index.ntotal != ntotal:
            raise ValueError(f"AnnIndex.from_array: index of {index.ntotal} x {index.d} vectors, "
                             f"expected {ntotal} x {dim}")
        out = cls.__new__(cls)
        out.dim = int(dim)
        out.kind = ("hnsw" if isinstance(base, faiss.IndexHNSWFlat)
                    else "ivf" if isinstance(base, faiss.IndexIVFFlat) else "flat")
        out._base, out.index, out._quantizer, out._expected = base, index, None, int(ntotal)
        out.nprobe = int(base.nprobe) if out.kind == "ivf" else 32
        return out

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

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
        if self.index is None:
            if not len(v):
                return
            self._train_ivf(v)
        assert self.index is not None
        self.index.add_with_ids(v, ids)

    def replace(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Give the entries ``ids`` (already added) new ``vectors``: removed, then added again.
        ``RuntimeError`` for a kind FAISS cannot remove from (HNSW)."""
        if self.kind == "hnsw":
            raise RuntimeError("AnnIndex.replace: an HNSW index cannot remove entries")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.index is not None and len(ids):
            self.index.remove_ids(ids)
        self.add(vectors, ids)

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by inner product: (scores (q, k) float32, ids (q, k) int64; -1 pads).
        ``nprobe``: an IVF index searches that many lists for this call instead of its own
        ``nprobe`` (a caller that needs less recall pays less); other kinds ignore it."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"AnnIndex.search: 'queries' must be (q, {self.dim}), got {q.shape}")
        if nprobe is not None and nprobe < 1:
            raise ValueError(f"AnnIndex.search: 'nprobe' must be >= 1, got {nprobe}")
        k = max(1, min(int(k), max(self.ntotal, 1)))
        if self.index is None:  # an IVF index before its first vectors
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if self.kind == "hnsw" and k > self._base.hnsw.efSearch:
            # HNSW keeps efSearch candidates: fewer than k loses true neighbours (a recall channel
            # asks for its quota plus the notes it excludes, above the default 128)
            params = faiss.SearchParametersHNSW()
            params.efSearch = k
            return self.index.search(q, k, params=params)
        if self.kind == "ivf" and nprobe is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = int(nprobe)
            return self.index.search(q, k, params=params)
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
