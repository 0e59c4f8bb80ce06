"""notefeed.content: understand notes from their content before anyone engages with them.

Text encoders (:mod:`~notefeed.content.text`), modality fusion (:mod:`~notefeed.content.fusion`),
content-to-collaborative embeddings (:mod:`~notefeed.content.cb2cf`), tags for new notes
(:mod:`~notefeed.content.tags`). Importing the package names the ``content`` eval stage's module to
:data:`~notefeed.eval.stages.EVAL_STAGES` (imported at its first lookup) and nothing heavier: the
public names below are imported at their first use (torch only for CB2CF and the fusion modules).
"""

from notefeed._lazy import lazy_exports
from notefeed.content._common import ContentError
from notefeed.eval.stages import EVAL_STAGES

EVAL_STAGES.defer("notefeed.content.evaluate")  # registers EVAL_STAGES["content"] at its first lookup

_LAZY = {
    **dict.fromkeys(["CB2CF", "CB2CFConfig"], "notefeed.content.cb2cf"),
    **dict.fromkeys(["cooccurrence_pairs", "item_neighbours", "topk_cosine"], "notefeed.content.kernels"),
    **dict.fromkeys(["ContentFusion", "GatedFusion", "combine_title_body", "fuse_concat", "pool_images"],
                    "notefeed.content.fusion"),
    **dict.fromkeys(["TagPredictor", "popular_tags", "precision_at_k", "tag_centroids"], "notefeed.content.tags"),
    **dict.fromkeys(["SentenceTransformerEncoder", "TextEncoder", "TextEncoderConfig", "has_cjk", "text_features",
                     "tokenize"], "notefeed.content.text"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "ContentError",
    "TextEncoder",
    "TextEncoderConfig",
    "SentenceTransformerEncoder",
    "tokenize",
    "text_features",
    "has_cjk",
    "pool_images",
    "combine_title_body",
    "fuse_concat",
    "ContentFusion",
    "GatedFusion",
    "CB2CF",
    "CB2CFConfig",
    "item_neighbours",
    "cooccurrence_pairs",
    "topk_cosine",
    "TagPredictor",
    "tag_centroids",
    "precision_at_k",
    "popular_tags",
]
