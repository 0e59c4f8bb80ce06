"""The search contracts: a retriever returns note hits for an understood query; a rewrite
backend proposes alternative phrasings of a query.

Item indices are the catalogue's dense item indices (row ``i`` of ``Dataset.notes``, then
published notes appended in order), so every retriever, the personaliser and the re-ranker
speak about the same notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from notefeed.registry import Registry

__all__ = [
    "SearchError",
    "ParsedQuery",
    "Hits",
    "Retriever",
    "RewriteBackend",
    "RETRIEVERS",
    "REWRITERS",
]


class SearchError(ValueError):
    """A bad query or bad search input; the message names the field (``q: ...``)."""


@dataclass
class ParsedQuery:
    """What query understanding makes of the raw text.

    ``terms`` are the index-vocabulary tokens searched (after spelling correction), with
    ``weights`` (len(terms),) their IDF; ``corrections`` maps a typed token to the vocabulary
    token that replaced it; ``categories`` the predicted categories with probabilities, best
    first; ``rewrites`` alternative queries (mined or from a backend), searched as well.
    """

    raw: str
    text: str
    terms: list[str]
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    corrections: dict[str, str] = field(default_factory=dict)
    categories: list[tuple[str, float]] = field(default_factory=list)
    rewrites: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.terms


@dataclass
class Hits:
    """A retriever's answer: ``items`` (k,) int64 item indices best first, ``scores`` (k,) float32."""

    retriever: str
    items: np.ndarray
    scores: np.ndarray

    @classmethod
    def none(cls, retriever: str) -> Hits:
        return cls(retriever, np.zeros(0, np.int64), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.items)


@runtime_checkable
class Retriever(Protocol):
    """Finds notes for a query. ``add`` indexes new notes (a ``Dataset.notes``-shaped frame)
    under the item indices given, searchable as soon as it returns."""

    name: str

    def retrieve(self, query: ParsedQuery, k: int) -> Hits: ...

    def add(self, notes: pd.DataFrame, items: np.ndarray) -> None: ...

    def __len__(self) -> int: ...


@runtime_checkable
class RewriteBackend(Protocol):
    """Alternative phrasings of a (normalised) query, best first; ``[]`` when it has none.
    Must not block a search: slow backends answer ``[]`` and fill a cache in the background."""

    name: str

    def rewrite(self, query: str) -> list[str]: ...


RETRIEVERS: Registry[Retriever] = Registry("search retriever")
REWRITERS: Registry[RewriteBackend] = Registry("query rewrite backend")
# the modules that register rewrite backends, imported at the first lookup (``rewrite/llm`` lives
# with the language models and imports torch)
REWRITERS.defer("notefeed.search.rewrite", "notefeed.llm.tasks")
