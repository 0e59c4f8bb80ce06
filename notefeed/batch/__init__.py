"""Batch jobs on one machine or a Ray cluster: item-to-item tables, item embeddings and
their FAISS index, sharded so that every engine computes the same result.

``open_engine("local" | "ray", address=...)`` gives a :class:`BatchEngine`; ``notefeed train
--engine ray`` fits the Swing/ItemCF channels and builds the sequence model's training
sequences on it. Ray is the optional extra ``ray``.
"""

from notefeed.batch.base import ENGINES, BatchEngine, LocalEngine, open_engine
from notefeed.batch.jobs import embed_items, lake_cap_log, sharded_cap_log, sharded_rows

__all__ = ["BatchEngine", "LocalEngine", "open_engine", "ENGINES", "sharded_cap_log", "sharded_rows",
           "embed_items", "lake_cap_log"]
