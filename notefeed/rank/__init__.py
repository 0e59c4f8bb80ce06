"""notefeed.rank: request-time features, coarse ranker, multi-task fine ranker, fusion.

Importing the package imports none of them: the public names below load at their first use,
the scorer modules at :data:`SCORERS`' first lookup (``rank/base.py``) and the ``rank`` eval
stage at :data:`~notefeed.eval.stages.EVAL_STAGES`' first lookup.
"""

from notefeed._lazy import lazy_exports
from notefeed.eval.stages import EVAL_STAGES
from notefeed.rank.base import SCORERS, TASKS, Scorer

EVAL_STAGES.defer("notefeed.rank.evaluate")  # registers EVAL_STAGES["rank"] at its first lookup

_LAZY = {
    "CoarseRanker": "notefeed.rank.coarse",
    "FeatureBuilder": "notefeed.rank.features",
    "FeatureConfig": "notefeed.rank.features",
    "FineConfig": "notefeed.rank.finenet",
    "FusionConfig": "notefeed.rank.fusion",
    "fuse": "notefeed.rank.fusion",
    "tune_fusion": "notefeed.rank.fusion",
    "Group": "notefeed.rank.ltr",
    "ListwiseRanker": "notefeed.rank.ltr",
    "LTRConfig": "notefeed.rank.ltr",
    "FineRanker": "notefeed.rank.multitask",
    "Samples": "notefeed.rank.samples",
    "build_samples": "notefeed.rank.samples",
    "FineRankerScorer": "notefeed.rank.scorer",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["SCORERS", "TASKS", "Scorer", "CoarseRanker", "FeatureBuilder", "FeatureConfig", "FineConfig",
           "FineRanker", "FineRankerScorer", "FusionConfig", "fuse", "tune_fusion", "Samples", "build_samples",
           "Group", "ListwiseRanker", "LTRConfig"]
