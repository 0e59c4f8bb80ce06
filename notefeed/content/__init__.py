"""notefeed.content: understand notes from their content before anyone engages with them.

Text encoders (:mod:`~notefeed.content.text`), modality fusion (:mod:`~notefeed.content.fusion`),
content-to-collaborative embeddings (:mod:`~notefeed.content.cb2cf`), tags for new notes
(:mod:`~notefeed.content.tags`). Importing the package registers the ``content`` eval stage.
"""

from notefeed.content import evaluate  # noqa: F401  (registers EVAL_STAGES["content"])
from notefeed.content._common import ContentError
from notefeed.content.cb2cf import CB2CF, CB2CFConfig, cooccurrence_pairs, item_neighbours, topk_cosine
from notefeed.content.fusion import ContentFusion, GatedFusion, combine_title_body, fuse_concat, pool_images
from notefeed.content.tags import TagPredictor, popular_tags, precision_at_k, tag_centroids
from notefeed.content.text import (
    SentenceTransformerEncoder,
    TextEncoder,
    TextEncoderConfig,
    has_cjk,
    text_features,
    tokenize,
)

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
