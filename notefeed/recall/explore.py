"""Exploration channels on the two-tower space: ``explore/es-noise`` and ``explore/multi-interest``.

Both reuse a fitted ``embedding/two-tower`` (passed in by the stage, or trained once per
dataset through :func:`shared_two_tower`).
"""

from __future__ import annotations

import faiss
import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.recall._common import candidates_from_scores, recency_weights, request_seed
from notefeed.recall.base import CHANNELS, Candidates, UserContext
from notefeed.recall.embedding import TwoTowerChannel, shared_two_tower

__all__ = ["ESNoiseChannel", "MultiInterestChannel"]


class _OnTower:
    name = "explore/base"

    def __init__(self, tower: TwoTowerChannel | None = None, tower_params: dict[str, object] | None = None,
                 nprobe: int | None = None) -> None:
        self.tower = tower
        self.tower_params = dict(tower_params or {})
        if nprobe is not None and int(nprobe) < 1:
            raise ValueError(f"{self.name}: 'nprobe' must be >= 1, got {nprobe}")
        # IVF lists each search looks at, when the tower's index is IVF (None: the tower's own)
        self.nprobe = None if nprobe is None else int(nprobe)

    def _fit_tower(self, ds: Dataset) -> TwoTowerChannel:
        if self.tower is None or self.tower.fitted_on != id(ds):
            self.tower = shared_two_tower(ds, self.tower_params)
        return self.tower

    def _ready(self) -> TwoTowerChannel:
        if self.tower is None or self.tower.model is None:
            raise RuntimeError(f"{self.name}: recall() before fit()")
        return self.tower


@CHANNELS.register("explore/es-noise")
class ESNoiseChannel(_OnTower):
    """Evolution-strategy style exploration: ``n_probes`` queries ``normalise(u + sigma * eps)``,
    ``eps ~ N(0, I)`` seeded per request, each allotted an equal share of ``k``. Scores are the
    inner products with the unperturbed user vector, so the merge sees comparable numbers."""

    name = "explore/es-noise"

    def __init__(self, sigma: float = 0.3, n_probes: int = 4, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        if sigma < 0 or n_probes < 1:
            raise ValueError(f"{self.name}: 'sigma' must be >= 0 and 'n_probes' >= 1")
        self.sigma, self.n_probes = float(sigma), int(n_probes)

    def fit(self, ds: Dataset) -> ESNoiseChannel:
        self._fit_tower(ds)
        return self

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        tower = self._ready()
        if ctx.user is None and len(ctx.history) == 0:
            return Candidates.empty(self.name)
        u = tower.user_vector(ctx)
        rng = np.random.default_rng(request_seed(ctx, salt=17))
        q = u[None] + self.sigma * rng.standard_normal((self.n_probes, u.size)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        per = -(-k // self.n_probes)
        items, _ = tower.search(q, ctx, per, nprobe=self.nprobe)
        items = np.unique(items)
        return candidates_from_scores(self.name, items, tower.item_vectors[items] @ u, ctx, k)


@CHANNELS.register("explore/multi-interest")
class MultiInterestChannel(_OnTower):
    """A global interest pool = k-means (``n_clusters``) of note vectors. A user's interests are the
    clusters of their recent history, weighted by recency; for each of the top ``n_interests``
    we query the ANN once with the mean of the user's items in that cluster, and give it a share
    of ``k`` proportional to its weight."""

    name = "explore/multi-interest"

    def __init__(self, n_clusters: int = 64, n_interests: int = 4, n_recent: int = 50, decay: float = 0.95,
                 seed: int = 0, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.n_clusters, self.n_interests, self.n_recent = int(n_clusters), int(n_interests), int(n_recent)
        self.decay, self.seed = float(decay), int(seed)
        self.assign: np.ndarray | None = None

    def fit(self, ds: Dataset) -> MultiInterestChannel:
        tower = self._fit_tower(ds)
        x = np.ascontiguousarray(tower.item_vectors, dtype=np.float32)
        k = max(1, min(self.n_clusters, x.shape[0] // 39))  # faiss wants >= 39 points per centroid
        km = faiss.Kmeans(x.shape[1], k, niter=20, seed=self.seed, spherical=True, verbose=False)
        km.train(x)
        self.centroids = km.centroids.copy()
        self.assign = self._assign(x)
        return self

    def _assign(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(x @ self.centroids.T, axis=1).astype(np.int64)

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        tower = self._ready()
        assert self.assign is not None
        h = np.asarray(ctx.history, np.int64)
        h = h[(h >= 0) & (h < tower.item_vectors.shape[0])][-self.n_recent :]
        if h.size == 0:
            return Candidates.empty(self.name)
        if h.max() >= self.assign.size:  # notes added after fit: assign them now
            self.assign = np.r_[self.assign, self._assign(tower.item_vectors[self.assign.size :])]
        w = recency_weights(h.size, self.decay)
        cl = self.assign[h]
        weight = np.bincount(cl, weights=w, minlength=self.centroids.shape[0])
        top = np.argsort(-weight, kind="stable")[: self.n_interests]
        top = top[weight[top] > 0]
        share = weight[top] / weight[top].sum()
        items_all, scores_all = [], []
        for c, s in zip(top, share, strict=True):
            vec = tower.item_vectors[h[cl == c]].T @ w[cl == c]
            vec = vec / max(np.linalg.norm(vec), 1e-12)
            items, scores = tower.search(vec[None].astype(np.float32), ctx, max(1, int(np.ceil(k * s))),
                                         nprobe=self.nprobe)
            items_all.append(items)
            scores_all.append(scores * s)  # a strong interest's hits outrank a weak one's
        items = np.concatenate(items_all)
        scores = np.concatenate(scores_all).astype(np.float64)
        # keep each item's best score (an item may come from two interests)
        order = np.lexsort((-scores, items))
        items, scores = items[order], scores[order]
        first = np.r_[True, items[1:] != items[:-1]]
        return candidates_from_scores(self.name, items[first], scores[first], ctx, k)
