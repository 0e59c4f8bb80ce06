"""notefeed.rank: request-time features, coarse ranker, multi-task fine ranker, fusion."""

from notefeed.rank import evaluate as _evaluate  # noqa: F401  (registers eval stage "rank")
from notefeed.rank import scorer as _scorer  # noqa: F401  (registers rank/cgc, rank/ple, ...)
from notefeed.rank.base import SCORERS, TASKS, Scorer
from notefeed.rank.coarse import CoarseRanker
from notefeed.rank.features import FeatureBuilder, FeatureConfig
from notefeed.rank.finenet import FineConfig
from notefeed.rank.fusion import FusionConfig, fuse, tune_fusion
from notefeed.rank.ltr import Group, ListwiseRanker, LTRConfig
from notefeed.rank.multitask import FineRanker
from notefeed.rank.samples import Samples, build_samples
from notefeed.rank.scorer import FineRankerScorer

__all__ = ["SCORERS", "TASKS", "Scorer", "CoarseRanker", "FeatureBuilder", "FeatureConfig", "FineConfig",
           "FineRanker", "FineRankerScorer", "FusionConfig", "fuse", "tune_fusion", "Samples", "build_samples",
           "Group", "ListwiseRanker", "LTRConfig"]
