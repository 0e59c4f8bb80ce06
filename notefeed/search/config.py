"""The search config: one typed, validated tree with every default stated here.

Unknown keys are errors (a typo never falls back to a default silently); messages name the
field (``search.lexical_k: ...``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from notefeed.registry import error_text, nested_params
from notefeed.search.text import MAX_QUERY_CHARS

__all__ = ["HttpRewriteConfig", "SearchConfig", "page_reranker"]


def page_reranker(config: SearchConfig, fairness: Any = None) -> Any:
    """The re-ranker that cuts a search page: ``config.rerank`` with ``rerank_params`` (a
    mapping for ``rules`` becomes its RuleConfig), or ``rerank/topk`` (by score) without one,
    and, when given, the small-creator rule's ``fairness`` (a FairnessConfig). Raises
    ``KeyError`` for an unknown name, ``TypeError`` / ``ValueError`` for bad parameters."""
    from notefeed.rerank.base import RERANKERS

    factory = RERANKERS.get(config.rerank or "rerank/topk")
    kwargs = nested_params(factory, config.rerank_params if config.rerank else {})
    if fairness is not None:
        kwargs["fairness"] = fairness
    return factory(**kwargs)


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # no NaN/infinite float


class HttpRewriteConfig(_Cfg):
    """An OpenAI-compatible chat-completions endpoint for query rewrites (off unless given)."""

    base_url: str = Field(min_length=8, description="e.g. http://127.0.0.1:8080/v1 (a local vLLM / llama.cpp)")
    model: str = Field(default="default", min_length=1)
    api_key: str | None = None
    timeout_s: float = Field(default=2.0, gt=0, le=30, description="bound on the background HTTP call")
    wait_s: float = Field(default=0.0, ge=0, le=1, description="how long a search waits for an uncached answer")

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("expected an http(s) URL")
        return v


class SearchConfig(_Cfg):
    # retrieval
    lexical_k: int = Field(default=200, ge=1, le=10_000, description="BM25 candidates per query")
    dense: bool = Field(default=True, description="dense retrieval (text encoder + FAISS) on/off")
    dense_k: int = Field(default=200, ge=1, le=10_000, description="dense candidates per query")
    dense_dim: int = Field(default=64, ge=2, le=1024, description="text encoder dimension")
    hnsw_min: int = Field(default=200_000, ge=1, description="an approximate FAISS index (dense_ann) instead of "
                          "the exact one from this many notes")
    dense_ann: Literal["ivf", "hnsw"] = Field(default="ivf", description="the approximate index: IVF (about sqrt(n) "
                                              "lists; at 1M notes built in seconds, 99.8% of the exact dense top 200 in "
                                              "the bench) or HNSW (tens of seconds more, 72.7%)")
    dense_nprobe: int = Field(default=32, ge=1, le=4096, description="IVF lists searched per query")
    dense_process_min: int = Field(default=200_000, ge=0, description="from this many notes an index build "
                                   "computes the dense vectors in a second process while it builds the lexical "
                                   "index (the same vectors; 0: always in this process)")
    dense_fit_max: int = Field(default=50_000, ge=2, description="notes sampled to fit the text encoder's IDF and "
                               "SVD (every note is encoded); its SVD is the largest part of a hybrid build")
    dense_tf: Literal["term", "feature"] = Field(default="term", description="what the text encoder's sublinear TF "
                                                 "counts: each word and word pair ('term'; a catalogue is then "
                                                 "projected one distinct word at a time) or each hashed feature "
                                                 "('feature', the encoder before session 39)")
    boosts: dict[str, float] = Field(default_factory=dict, description="BM25 field boosts over the defaults")
    # building
    build_workers: int = Field(default=1, ge=1, le=64, description="processes that segment Chinese text "
                               "when an index is built (same tokens; pays off from ~1M new characters)")
    index_threads: int = Field(default=1, ge=1, le=16, description="tantivy indexing threads")
    index_heap_mb: int = Field(default=512, ge=16, le=4000, description="tantivy writer memory budget (MB, all "
                               "threads): a larger one writes fewer segments, so a build merges less")
    topic_refine: int = Field(default=3, ge=0, le=20, description="EM rounds re-estimating the category "
                              "model's word likelihoods from the notes' topic mixtures, on the notes it is fitted on "
                              "(0: the naive-Bayes counts as they are)")
    # fusion and ranking
    fusion: Literal["rrf", "learned", "auto"] = Field(
        default="auto", description="rrf; learned (needs fusion.json); auto: the fusion.json trained from the "
        "search log (notefeed search-train-fusion) when it beat RRF on its validation clicks or won the "
        "interleaving (interleave_share), else rrf (so rrf until a fusion is trained and has won)")
    interleave_share: float = Field(
        default=0.1, ge=0, le=1, description="with fusion auto and a trained fusion.json that has not won yet: the "
        "share of searches that interleave RRF and the learned fusion (team draft, notefeed.search.interleave); "
        "their clicks decide whether auto serves the learned fusion")
    interleave_pages: int = Field(
        default=1000, ge=10, le=1_000_000, description="interleaved searches with a click the verdict waits for "
        "(one sign test at 5% on that many pages, not repeated as pages come)")
    learned_model: Literal["linear", "trees"] = Field(default="trees", description="the model a learned fusion "
                                                      "is fitted as (eval --stage search, search-train-fusion): logistic or boosted trees")
    learned_objective: Literal["lambdarank", "squared"] = Field(
        default="lambdarank", description="the trees' loss where a fusion is fitted to graded relevance per query "
        "(eval --stage search): rank each query's candidates for NDCG (fusion.TREE_PARAMS' ndcg_at, 30), or "
        "regress the grades; a fusion "
        "trained from the search log's clicks regresses them")
    rrf_k: float = Field(default=60.0, gt=0)
    dense_weight: float = Field(default=1.0, ge=0, description="RRF weight of the dense list (lexical: 1)")
    personalise: bool = Field(default=True, description="re-rank by the user's history when one is known")
    personal_weight: float = Field(default=0.5, ge=0, le=10, description="weight of the personal score (rrf)")
    rerank: str | None = Field(default=None, description="a notefeed.rerank name for page diversity, e.g. rerank/ssd")
    rerank_params: dict[str, Any] = Field(default_factory=dict)
    rerank_window: int = Field(default=100, ge=1, le=10_000, description="top candidates the re-ranker sees")
    # the small-creator rule (the feed's, notefeed.rerank.constraints): needs the creators'
    # follower counts (serving: the catalogue's; eval: the dataset's)
    small_creator_share: float = Field(
        default=0.5, ge=0, le=1, description="each page's first t notes hold at least floor(share * t) notes "
        "of creators under 1,000 followers, as long as such notes remain among the small_creator_depth best "
        "ranked candidates (0: off; 0.5 as in the feed)")
    small_creator_depth: int = Field(
        default=50, ge=1, le=10_000, description="how far down the ranking the rule may reach for a small "
        "creator's note (the best ranked first). 50: the shallowest depth that held the floor on every "
        "simulator page with NDCG@10 unchanged; where small creators were scarce it cost 0.6-0.7% of NDCG@10 "
        "(notefeed eval --stage search-page; docs/search.md)")
    # query understanding
    spelling: bool = True
    mined_rewrites: bool = Field(default=True, description="rewrites mined from the query log, when there is one")
    rewrite_weight: float = Field(default=0.5, ge=0, le=1, description="score factor of hits found by a rewrite")
    max_rewrites: int = Field(default=2, ge=0, le=10)
    http_rewrite: HttpRewriteConfig | None = None
    max_query_chars: int = Field(default=MAX_QUERY_CHARS, ge=1, le=100_000)
    max_page: int = Field(default=100, ge=1, le=1000)

    @field_validator("rerank_params")
    @classmethod
    def _no_fairness(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "fairness" in v:
            raise ValueError("the small-creator rule of a search page is set by small_creator_share and "
                             "small_creator_depth, not by the re-ranker's 'fairness'")
        return v

    @model_validator(mode="after")
    def _reranker_builds(self) -> SearchConfig:
        """A page re-ranker that would fail at every search fails here, naming the field."""
        if self.rerank is None:
            return self
        rules = self.rerank_params.get("rules")
        if isinstance(rules, dict) and rules.get("author_window"):
            raise ValueError("rerank_params.rules.author_window: a search page has no author rule (the index "
                             "keeps no authors); category caps apply")
        try:
            page_reranker(self)
        except KeyError as e:
            raise ValueError(f"rerank: {error_text(e)}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"rerank_params: {e}") from None
        return self

    def with_overrides(self, **kw: Any) -> SearchConfig:
        return SearchConfig.model_validate({**self.model_dump(), **kw})
