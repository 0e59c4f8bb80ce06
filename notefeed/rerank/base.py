"""The re-ranking contract: pick an ordered subset of ranked candidates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from notefeed.registry import Registry

__all__ = ["RerankInput", "ReRanker", "RERANKERS"]


@dataclass
class RerankInput:
    """Candidates after fine ranking.

    ``scores`` (N,) quality; ``vectors`` (N, d) item embeddings for similarity;
    ``authors`` (N,) int creator index; ``categories`` (N,) int; ``small_creator`` (N,) bool.
    """

    scores: np.ndarray
    vectors: np.ndarray
    authors: np.ndarray | None = None
    categories: np.ndarray | None = None
    small_creator: np.ndarray | None = None


@runtime_checkable
class ReRanker(Protocol):
    """Selects ``k`` positions of the input, in display order."""

    name: str

    def select(self, inp: RerankInput, k: int) -> np.ndarray: ...


RERANKERS: Registry[ReRanker] = Registry("re-ranker")
