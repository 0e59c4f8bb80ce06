"""The re-ranking contract: pick an ordered subset of ranked candidates.

Also the one place where re-ranker input is checked (:func:`validate_input`), so every
method treats bad input the same way:

- ``scores`` NaN/inf, wrong shape or dtype -> ``ValueError`` naming ``scores``;
- ``vectors`` not 2-D, row count != len(scores), NaN/inf -> ``ValueError`` naming ``vectors``;
- ``authors`` / ``categories`` / ``small_creator`` / ``ids`` of the wrong length -> ``ValueError``
  naming the field; duplicate ``ids`` -> ``ValueError`` naming ``ids``;
- ``k`` negative or not an integer -> ``ValueError`` naming ``k``; ``k > N`` returns all ``N``;
- all-zero vectors are allowed (a note without an embedding) and carry no similarity
  information: MMR sees similarity 0 to everything; DPP treats the item as similar only to
  itself (S_ii = 1); SSD keeps only the stabilised variant's bias dimension, so the item is
  selectable on quality with a small novelty term (none with ``bias=0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from notefeed.registry import Registry

__all__ = ["RerankInput", "ReRanker", "RERANKERS", "validate_input", "unit_rows"]


@dataclass
class RerankInput:
    """Candidates after fine ranking.

    ``scores`` (N,) quality; ``vectors`` (N, d) item embeddings for similarity;
    ``authors`` (N,) int creator index; ``categories`` (N,) int; ``small_creator`` (N,) bool;
    ``ids`` (N,) optional note ids (checked for duplicates, otherwise unused).
    """

    scores: np.ndarray
    vectors: np.ndarray
    authors: np.ndarray | None = None
    categories: np.ndarray | None = None
    small_creator: np.ndarray | None = None
    ids: np.ndarray | None = None


@runtime_checkable
class ReRanker(Protocol):
    """Selects ``k`` positions of the input, in display order."""

    name: str

    def select(self, inp: RerankInput, k: int) -> np.ndarray: ...


RERANKERS: Registry[ReRanker] = Registry("re-ranker")


def _check_len(name: str, arr: np.ndarray | None, n: int) -> np.ndarray | None:
    if arr is None:
        return None
    a = np.asarray(arr)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"rerank input: '{name}' must have shape ({n},), got {a.shape}")
    return a


def validate_input(inp: RerankInput, k: int) -> tuple[RerankInput, int]:
    """Check ``inp`` and ``k``; return a cleaned copy (float64 scores/vectors, int64 labels)
    and the effective page size ``min(k, N)``. See the module docstring for the rules."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"rerank input: 'k' must be an int, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"rerank input: 'k' must be >= 0, got {k}")
    try:
        scores = np.asarray(inp.scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("rerank input: 'scores' must be numeric") from None
    if scores.ndim != 1:
        raise ValueError(f"rerank input: 'scores' must be 1-D, got shape {scores.shape}")
    n = scores.shape[0]
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"rerank input: 'scores' has a non-finite value at position {bad}")
    try:
        vectors = np.asarray(inp.vectors, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("rerank input: 'vectors' must be numeric") from None
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise ValueError(f"rerank input: 'vectors' must have shape ({n}, d), got {vectors.shape}")
    if not np.isfinite(vectors).all():
        bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise ValueError(f"rerank input: 'vectors' has a non-finite value in row {bad}")
    authors = _check_len("authors", inp.authors, n)
    categories = _check_len("categories", inp.categories, n)
    small = _check_len("small_creator", inp.small_creator, n)
    ids = _check_len("ids", inp.ids, n)
    for name, a in (("authors", authors), ("categories", categories)):
        if a is not None and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"rerank input: '{name}' must be integers, got {a.dtype}")
    if small is not None and small.dtype != np.bool_:
        if not np.isin(small, (0, 1)).all():
            raise ValueError("rerank input: 'small_creator' must be boolean")
        small = small.astype(bool)
    if ids is not None and len(np.unique(ids)) != n:
        u, c = np.unique(ids, return_counts=True)
        raise ValueError(f"rerank input: 'ids' has duplicates, e.g. {u[c > 1][0]!r}")
    clean = RerankInput(
        scores=scores,
        vectors=vectors,
        authors=None if authors is None else authors.astype(np.int64),
        categories=None if categories is None else categories.astype(np.int64),
        small_creator=small,
        ids=ids,
    )
    return clean, int(min(k, n))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(N, d) -> (N, d) rows scaled to unit L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 1e-12, norms, 1.0)
