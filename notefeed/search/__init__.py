"""Note search: query understanding, BM25 (tantivy) + dense (FAISS) retrieval, fusion,
personalisation and page diversity. See :class:`~notefeed.search.pipeline.SearchPipeline`."""

from notefeed.search import evaluate as _evaluate  # noqa: F401  (registers eval --stage search)
from notefeed.search.base import (
    RETRIEVERS,
    REWRITERS,
    Hits,
    ParsedQuery,
    Retriever,
    RewriteBackend,
    SearchError,
)
from notefeed.search.config import HttpRewriteConfig, SearchConfig
from notefeed.search.dense import DenseIndex
from notefeed.search.lexical import LexicalIndex
from notefeed.search.pipeline import SearchPipeline, SearchResult
from notefeed.search.rewrite import HttpRewriteBackend, MinedRewrites, mine_rewrites

__all__ = [
    "RETRIEVERS", "REWRITERS", "Hits", "ParsedQuery", "Retriever", "RewriteBackend", "SearchError",
    "HttpRewriteConfig", "SearchConfig", "DenseIndex", "LexicalIndex", "SearchPipeline", "SearchResult",
    "HttpRewriteBackend", "MinedRewrites", "mine_rewrites",
]
