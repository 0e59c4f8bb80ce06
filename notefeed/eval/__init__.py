"""notefeed.eval: splits, metrics, reference models and the ``notefeed eval`` harness.

Importing the package names the ``model`` stage's module to :data:`EVAL_STAGES` (imported at
its first lookup); the other public names load at their first use. The baselines (``random``,
``pop``, ``itemknn``, ``als``, ``bpr``) register in :data:`MODELS` where it is defined.
"""

from notefeed._lazy import lazy_exports
from notefeed.eval.stages import EVAL_STAGES, run_stage

EVAL_STAGES.defer("notefeed.eval.runner")  # registers the "model" stage at the first lookup

_LAZY = {
    "MODELS": "notefeed.eval.baselines",
    "Recommender": "notefeed.eval.baselines",
    "rank_all": "notefeed.eval.ranking",
    "topk": "notefeed.eval.ranking",
    **dict.fromkeys(["Split", "leave_last_out", "make_split", "temporal_split"], "notefeed.eval.splits"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

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
