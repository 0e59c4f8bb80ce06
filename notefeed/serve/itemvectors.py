"""Learned item vectors for serving: re-ranking similarity (SSD / DPP / MMR) and related notes.

The vectors come from the first recall channel of the pipeline that has ``item_vectors``
(``sequence/sasrec``'s item embeddings, ``embedding/two-tower``'s item tower), as the config
orders the channels. They are prepared for cosine similarity:

- *centred* on the catalogue mean: the output embeddings of a softmax-trained model share a
  large common direction (it carries popularity), so raw cosines of any two notes are high
  and similar, and a diversity term computed from them barely separates same-topic from
  different-topic pairs; centring removes that shared component;
- *unit rows*: the remaining norm is also popularity/confidence, not similarity.

Notes published after training have no learned vector (a two-tower channel adds one when a
note is published; a sequence model cannot): for re-ranking they take the centroid of their
category's learned vectors (zero for a category the model never saw), and related notes fall
back to the catalogue's category/author vectors (:meth:`Catalog.vectors`).

The prepared matrix is never materialised: the mean (d,) and row norms (n,) are computed once
per vector matrix (rows appended later get their norms against the same mean), and each
request centres and scales only the rows it uses. :meth:`ItemVectors.warm` computes them
ahead of the first request.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from notefeed.serve.catalog import Catalog

__all__ = ["ItemVectors", "learned_vectors", "vector_source", "cosine_topk", "blend_unit", "LEARNED_WEIGHT"]

#: share of the learned vectors in the re-ranking similarity (the rest: catalogue category/author)
LEARNED_WEIGHT = 0.5


def vector_source(components: list[Any]) -> Any:
    """The first of ``components`` with usable ``item_vectors`` (``None``: none has)."""
    for comp in components:
        try:
            v = getattr(comp, "item_vectors", None)
        except Exception:  # e.g. a channel that is not fitted raises: not a source
            continue
        if v is not None and np.ndim(v) == 2 and len(v):
            return comp
    return None


def blend_unit(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """Rows of unit (or zero) vectors ``a`` (n, d1) and ``b`` (n, d2) concatenated as
    ``[sqrt(w) a, sqrt(1 - w) b]``: (n, d1 + d2) float32, unit rows when both are, and the
    cosine of two rows is ``w cos_a + (1 - w) cos_b``."""
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"blend_unit: w must be in [0, 1], got {w}")
    return np.hstack([np.sqrt(w) * np.asarray(a, np.float32),
                      np.sqrt(1.0 - w) * np.asarray(b, np.float32)]).astype(np.float32)


def cosine_topk(sim: np.ndarray, k: int, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest of ``sim`` (N,), descending, ``exclude`` left
    out; ``(k',) int64, (k',) float32`` with ``k' = min(k, available)``."""
    sim = np.asarray(sim, np.float32).copy()
    if exclude is not None and 0 <= exclude < len(sim):
        sim[exclude] = -np.inf
    k = min(k, int(np.isfinite(sim).sum()))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    top = np.argpartition(-sim, k - 1)[:k]
    top = top[np.argsort(-sim[top], kind="stable")]
    return top.astype(np.int64), sim[top]


class ItemVectors:
    """Centred, unit-length views of one component's ``item_vectors`` (see module docstring)."""

    def __init__(self, source: Any, catalog: Catalog) -> None:
        self.source, self.catalog = source, catalog
        self._lock = threading.Lock()
        self._n = -1
        self._mean = np.zeros(0, np.float32)
        self._norms = np.zeros(0, np.float32)
        self._centroids = np.zeros((0, 0), np.float32)

    @property
    def raw(self) -> np.ndarray:
        return np.asarray(self.source.item_vectors)

    def _stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(mean (d,), centred row norms (n,), unit category centroids (n_categories, d), n)."""
        raw = self.raw
        n = len(raw)
        with self._lock:
            if 0 < self._n < n:  # rows appended (a note published to a two-tower channel)
                # the mean and centroids stay those of the fitted catalogue: O(new rows)
                norms = np.linalg.norm(np.asarray(raw[self._n:], np.float32) - self._mean, axis=1)
                norms[norms <= 1e-12] = 1.0
                self._norms = np.concatenate([self._norms, norms.astype(np.float32)])
                self._n = n
            elif n != self._n:
                x = np.asarray(raw, np.float32)
                mean = x.mean(axis=0)
                norms = np.linalg.norm(x - mean, axis=1).astype(np.float32)
                norms[norms <= 1e-12] = 1.0
                unit = (x - mean) / norms[:, None]
                cats = self.catalog.category_codes()[:n]
                n_cat = max(len(self.catalog.categories), int(cats.max(initial=-1)) + 1)
                cent = np.zeros((n_cat, x.shape[1]), np.float32)
                np.add.at(cent, cats, unit)
                cn = np.linalg.norm(cent, axis=1, keepdims=True)
                cent = np.where(cn > 1e-12, cent / np.maximum(cn, 1e-12), 0.0).astype(np.float32)
                self._mean, self._norms, self._centroids, self._n = mean, norms, cent, n
            return self._mean, self._norms, self._centroids, self._n

    def warm(self) -> ItemVectors:
        """Compute the statistics now (start-up) rather than on the first request."""
        self._stats()
        return self

    def covers(self, item: int) -> bool:
        return 0 <= item < len(self.raw)

    def rows(self, items: np.ndarray) -> np.ndarray:
        """(len(items), d) float32 unit vectors; items past the learned ones get their
        category's centroid (zero when the category has none)."""
        items = np.asarray(items, np.int64)
        mean, norms, cent, n = self._stats()
        raw = self.raw
        out = np.zeros((len(items), len(mean)), np.float32)
        known = items < n
        if known.any():
            k = items[known]
            out[known] = (np.asarray(raw[k], np.float32) - mean) / norms[k, None]
        if not known.all():
            cats = self.catalog.category_codes()[items[~known]]
            ok = cats < len(cent)
            rows = np.zeros((len(cats), len(mean)), np.float32)
            rows[ok] = cent[cats[ok]]
            out[~known] = rows
        return out

    def cosines(self, item: int) -> np.ndarray:
        """(n,) float32 cosine of ``item`` (which must be covered) with every learned item."""
        mean, norms, _, n = self._stats()
        if not 0 <= item < n:
            raise ValueError(f"item {item} has no learned vector (0..{n - 1})")
        raw = np.asarray(self.raw[:n], np.float32)
        q = (raw[item] - mean) / norms[item]
        # (x - mean) . q / |x - mean| without a centred copy of the matrix
        return ((raw @ q - float(mean @ q)) / norms).astype(np.float32)

    def neighbours(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` learned items most cosine-similar to ``item`` (which must be covered),
        ``item`` excluded: ``(items (k,) int64, cosines (k,) float32)``."""
        return cosine_topk(self.cosines(item), k, exclude=item)


#: id(component) -> its ItemVectors, held weakly: an entry lives while someone (the pipeline's
#: re-rank selector) holds the ItemVectors, which holds the component. A map keyed weakly by the
#: component held them for good instead (the value refers to its key): every component a model
#: reload replaced stayed alive.
_CACHE: weakref.WeakValueDictionary[int, ItemVectors] = weakref.WeakValueDictionary()
_CACHE_LOCK = threading.Lock()


def learned_vectors(source: Any, catalog: Catalog) -> ItemVectors | None:
    """The shared :class:`ItemVectors` of ``source`` over ``catalog`` (``None`` when
    ``source`` is ``None``); one per component while one is in use, so re-ranking and related
    notes share the cached statistics."""
    if source is None:
        return None
    with _CACHE_LOCK:
        iv = _CACHE.get(id(source))
        if iv is None or iv.source is not source or iv.catalog is not catalog:  # an id is reused once freed
            iv = _CACHE[id(source)] = ItemVectors(source, catalog)
        return iv
