"""Related notes (``GET /v1/notes/{id}/related``): co-engagement neighbours blended with
learned-vector neighbours, and a content-free fallback for notes newer than the models.

Sources, each a ranked list of neighbours of the note:

- every item-to-item channel of the served pipeline (``neighbours(item, k)``: Swing, ItemCF),
  co-engagement, the strongest signal where a note has it;
- the learned item vectors (:mod:`notefeed.serve.itemvectors`: the sequence model's or the
  two-tower's item embeddings, centred cosine) in the similarity space the re-ranker uses:
  ``LEARNED_WEIGHT`` x learned cosine + the rest x catalogue category/author cosine. They
  also relate notes nobody engaged with together. Alone, a sequence model's embeddings are a
  weak topical signal (on the ``demo`` community, 2 epochs of ``sequence/sasrec``: 13.5% of
  the 10 nearest notes share the note's topic, chance 12%, Swing 63%), hence the catalogue
  share and the lower weight ``VECTOR_WEIGHT`` in the blend.

Their scores are on different scales (Swing weights, ItemCF cosines, embedding cosines), so
they are blended by rank: reciprocal-rank fusion, ``score = sum over sources w / (RRF_K +
rank)`` (rank from 1); a note two sources agree on comes first. When the sources give fewer
than ``n`` (a note published after training: no co-engagement row, no learned vector), the
rest is filled from the catalogue's category/author vectors, scored below every blended note.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from notefeed.recall._common import in_sorted
from notefeed.serve.catalog import Catalog
from notefeed.serve.itemvectors import LEARNED_WEIGHT, ItemVectors, cosine_topk

log = logging.getLogger(__name__)

__all__ = ["related_items", "rrf_blend", "vector_neighbours", "RRF_K", "VECTOR_WEIGHT"]

#: reciprocal-rank-fusion constant: how flat the blend is over ranks
RRF_K = 10.0
#: weight of the vector neighbours in the blend (each item-to-item channel: 1)
VECTOR_WEIGHT = 0.5


def rrf_blend(lists: Sequence[np.ndarray], k: int, rrf_k: float = RRF_K,
              weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion of ranked item lists (each (m_s,) int64, best first).

    Returns the ``k`` best ``(items (k',) int64, scores (k',) float64)``, descending; ties
    keep the order of first appearance (earlier list, earlier rank).
    """
    w = [1.0] * len(lists) if weights is None else list(weights)
    score: dict[int, float] = {}
    for lst, wt in zip(lists, w, strict=True):
        for r, i in enumerate(np.asarray(lst, np.int64).tolist()):
            score[i] = score.get(i, 0.0) + wt / (rrf_k + r + 1)
    if not score:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    items = np.fromiter(score, np.int64, len(score))
    vals = np.fromiter(score.values(), np.float64, len(score))
    order = np.argsort(-vals, kind="stable")[:k]
    return items[order], vals[order]


def vector_neighbours(catalog: Catalog, vectors: ItemVectors, item: int, k: int,
                      learned_weight: float = LEARNED_WEIGHT,
                      exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` notes nearest ``item`` (which has a learned vector) by ``learned_weight`` x
    learned cosine + the rest x catalogue cosine, among the notes with learned vectors."""
    learned = vectors.cosines(item)
    cat = catalog.vectors()[: len(learned)]
    sim = learned_weight * learned + (1.0 - learned_weight) * (cat @ cat[item])
    gone = _excluded(catalog, exclude)
    if len(gone):  # taken down (or the asking user's blocked creators'): not neighbours, nor in their places
        sim[gone[gone < len(sim)]] = -np.inf
    return cosine_topk(sim, k, exclude=item)


def _excluded(catalog: Catalog, exclude: np.ndarray | None) -> np.ndarray:
    """The sorted items no related list returns: removed ones, and ``exclude`` (sorted)."""
    gone = catalog.removed_items
    return gone if exclude is None or not len(exclude) else np.union1d(gone, exclude)


def _neighbour_lists(item: int, depth: int, channels: Sequence[Any], vectors: ItemVectors | None,
                     catalog: Catalog, exclude: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    lists, weights = [], []
    for ch in channels:
        try:
            got = ch.neighbours(item, depth)
        except ValueError:  # the note is newer than the channel's table
            continue
        except Exception:  # related notes degrade, never fail, on one broken source
            log.exception("related: %s.neighbours failed", getattr(ch, "name", type(ch).__name__))
            continue
        items = np.asarray(got.items, np.int64)
        if len(items):
            lists.append(items[(items != item) & ~in_sorted(items, exclude)])
            weights.append(1.0)
    if vectors is not None and vectors.covers(item):
        near = vector_neighbours(catalog, vectors, item, depth, exclude=exclude)[0]
        lists.append(near[~in_sorted(near, exclude)])
        weights.append(VECTOR_WEIGHT)
    return lists, weights


def related_items(catalog: Catalog, item: int, n: int, channels: Sequence[Any] = (),
                  vectors: ItemVectors | None = None, exclude: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The ``n`` notes most related to ``item``: ``[(item, score)]``, best first (see the
    module docstring), never a removed note (``catalog.removed_items``) nor one of ``exclude``
    (sorted items: the asking user's blocked creators' notes). ``channels``:
    components with ``neighbours(item, k)``."""
    if n <= 0:
        return []
    depth = min(max(2 * n, 20), 1000)
    gone = _excluded(catalog, exclude)
    lists, weights = _neighbour_lists(item, depth, channels, vectors, catalog, gone)
    items, scores = rrf_blend(lists, n, weights=weights)
    out = [(int(i), float(s)) for i, s in zip(items.tolist(), scores.tolist(), strict=True)]
    if len(out) < n:  # fallback: catalogue category/author vectors, below every blended note
        v = catalog.vectors()
        sim = v @ v[item] + 1e-3 * np.log1p(catalog.popularity()[: len(v)])
        taken = np.asarray([item] + [i for i, _ in out], np.int64)
        sim[taken] = -np.inf
        sim[gone[gone < len(sim)]] = -np.inf  # taken down, or blocked by the asking user
        top, vals = cosine_topk(sim, n - len(out))
        if out:  # cosines in [-1, 1] mapped monotonically into [0, half the lowest blended score]
            floor = min(s for _, s in out)
            vals = floor * np.clip(1.0 + vals, 0.0, 2.0) / 4.0
        out += [(int(i), float(s)) for i, s in zip(top.tolist(), vals.tolist(), strict=True)]
    return out
