"""notefeed.rerank: choose and order a page from ranked candidates (SSD, DPP, MMR, top-k),
with business rules and creator fairness applied inside the greedy loop.

The kernels ``ssd`` and ``mmr`` live in (and are imported from) their modules,
``notefeed.rerank.ssd.ssd`` and ``notefeed.rerank.mmr.mmr``: re-exporting them here would shadow
the modules of the same name.
"""

from notefeed.rerank import evaluate as _evaluate  # noqa: E402,F401  (registers eval stage 'rerank')
from notefeed.rerank.base import RERANKERS, ReRanker, RerankInput, validate_input
from notefeed.rerank.constraints import FairnessConfig, PageConstraints, RuleConfig
from notefeed.rerank.dpp import DPPReRanker, dpp_alpha, dpp_greedy
from notefeed.rerank.fairness import FairnessController, small_creator_share
from notefeed.rerank.mmr import MMRReRanker, TopKReRanker, topk_greedy
from notefeed.rerank.ssd import SSDReRanker, ssd_vectors

__all__ = [
    "RERANKERS",
    "ReRanker",
    "RerankInput",
    "validate_input",
    "RuleConfig",
    "FairnessConfig",
    "PageConstraints",
    "FairnessController",
    "small_creator_share",
    "SSDReRanker",
    "ssd_vectors",
    "DPPReRanker",
    "dpp_greedy",
    "dpp_alpha",
    "MMRReRanker",
    "TopKReRanker",
    "topk_greedy",
]
