"""notefeed.recall: multi-channel candidate retrieval with per-channel quotas.

Importing this package registers every channel in :data:`CHANNELS` and the ``recall``
evaluation stage in :data:`notefeed.eval.stages.EVAL_STAGES`.
"""

from notefeed.recall import evaluate as _evaluate  # noqa: F401  (registers the eval stage)
from notefeed.recall.ann import AnnIndex
from notefeed.recall.base import CHANNELS, Candidates, RecallChannel, UserContext
from notefeed.recall.embedding import TwoTowerChannel, shared_two_tower
from notefeed.recall.explore import ESNoiseChannel, MultiInterestChannel
from notefeed.recall.fresh import FreshChannel
from notefeed.recall.item2item import ItemCFChannel, SwingChannel
from notefeed.recall.merge import DEFAULT_CONFIG, MergedCandidates, RecallStage, merge_candidates
from notefeed.recall.mf import ALSChannel
from notefeed.recall.popular import PopularChannel
from notefeed.recall.sequential import SASRecChannel
from notefeed.recall.social import FollowChannel
from notefeed.recall.tag import TagInterestChannel
from notefeed.recall.user2user import UserToUserChannel

__all__ = [
    "ALSChannel",
    "CHANNELS",
    "DEFAULT_CONFIG",
    "AnnIndex",
    "Candidates",
    "ESNoiseChannel",
    "FollowChannel",
    "FreshChannel",
    "ItemCFChannel",
    "MergedCandidates",
    "MultiInterestChannel",
    "PopularChannel",
    "RecallChannel",
    "RecallStage",
    "SASRecChannel",
    "SwingChannel",
    "TagInterestChannel",
    "TwoTowerChannel",
    "UserContext",
    "UserToUserChannel",
    "merge_candidates",
    "shared_two_tower",
]

# the language-model channels (llm/notellm, llm/interest) register from their own package
import notefeed.llm  # noqa: E402, F401
