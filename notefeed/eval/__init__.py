"""notefeed.eval: splits, metrics, reference models and the ``notefeed eval`` harness.

Importing the package registers the ``model`` stage in :data:`EVAL_STAGES` and the
baselines (``random``, ``pop``, ``itemknn``, ``als``, ``bpr``) in :data:`MODELS`.
"""

from notefeed.eval import runner as _runner  # noqa: F401  (registers the "model" stage)
from notefeed.eval.baselines import MODELS, Recommender
from notefeed.eval.ranking import rank_all, topk
from notefeed.eval.splits import Split, leave_last_out, make_split, temporal_split
from notefeed.eval.stages import EVAL_STAGES, run_stage

__all__ = [
    "EVAL_STAGES",
    "MODELS",
    "Recommender",
    "Split",
    "leave_last_out",
    "make_split",
    "rank_all",
    "run_stage",
    "temporal_split",
    "topk",
]
