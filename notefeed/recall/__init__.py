"""notefeed.recall: multi-channel candidate retrieval with per-channel quotas.

Importing this package registers the ``recall`` evaluation stage in
:data:`notefeed.eval.stages.EVAL_STAGES` and names every channel module to :data:`CHANNELS`,
which imports them at its first lookup: code that needs only a kernel (``recall.kernels``, a
Ray worker's batch job) does not pay for torch. The public names below are imported on first
use (``from notefeed.recall import SASRecChannel`` works as before).
"""

from notefeed._lazy import lazy_exports
from notefeed.recall import evaluate as _evaluate  # noqa: F401  (registers the eval stage)
from notefeed.recall.base import CHANNELS, Candidates, RecallChannel, UserContext
from notefeed.recall.merge import DEFAULT_CONFIG, MergedCandidates, RecallStage, merge_candidates

#: the modules that register channels in CHANNELS; tests/test_registry.py checks that
#: every ``@CHANNELS.register`` in the package is in one of them. The language-model channels
#: (llm/notellm, llm/interest) register from their own package.
CHANNEL_MODULES = (
    "notefeed.recall.embedding",
    "notefeed.recall.explore",
    "notefeed.recall.fresh",
    "notefeed.recall.item2item",
    "notefeed.recall.mf",
    "notefeed.recall.popular",
    "notefeed.recall.sequential",
    "notefeed.recall.social",
    "notefeed.recall.tag",
    "notefeed.recall.user2user",
    "notefeed.llm.interest",
    "notefeed.llm.notellm",
)
CHANNELS.defer(*CHANNEL_MODULES)

_LAZY = {
    "AnnIndex": "notefeed.recall.ann",
    "TwoTowerChannel": "notefeed.recall.embedding",
    "shared_two_tower": "notefeed.recall.embedding",
    "ESNoiseChannel": "notefeed.recall.explore",
    "MultiInterestChannel": "notefeed.recall.explore",
    "FreshChannel": "notefeed.recall.fresh",
    "ItemCFChannel": "notefeed.recall.item2item",
    "SwingChannel": "notefeed.recall.item2item",
    "ALSChannel": "notefeed.recall.mf",
    "PopularChannel": "notefeed.recall.popular",
    "SASRecChannel": "notefeed.recall.sequential",
    "FollowChannel": "notefeed.recall.social",
    "TagInterestChannel": "notefeed.recall.tag",
    "UserToUserChannel": "notefeed.recall.user2user",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "ALSChannel",
    "CHANNELS",
    "CHANNEL_MODULES",
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
