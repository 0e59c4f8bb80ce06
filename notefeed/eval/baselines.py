"""Reference recommenders for full-ranking evaluation: random, popularity, ItemKNN, ALS, BPR.

All follow :class:`Recommender` (the habits of scikit-learn and ``implicit``): ``fit`` on a
user x item CSR returns ``self``; ``recommend`` ranks *all* items for a batch of users with
the training items masked; ``similar_items`` gives an item's neighbours. ``MODELS`` is the
explicit registry (``factory(seed=0, **params) -> Recommender``); other stages register
their own models there to appear in ``notefeed eval --stage model``. A model that needs
more than the binary matrix (event order for a sequential model, side info for a content
model) may also define ``fit_dataset(train: Dataset) -> self``; the runner then calls that
with the split's training :class:`~notefeed.data.Dataset` instead of ``fit``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from notefeed.eval.ranking import rank_all, topk
from notefeed.registry import Registry

__all__ = [
    "Recommender",
    "MODELS",
    "BaseRecommender",
    "RandomRecommender",
    "PopularityRecommender",
    "ItemKNNRecommender",
    "ImplicitRecommender",
    "item_cosine_topk",
    "sparse_row_topk",
]


@runtime_checkable
class Recommender(Protocol):
    """A model that ranks the whole catalogue for users it was fit on."""

    name: str

    def fit(self, user_items: sp.csr_matrix) -> Recommender: ...

    def recommend(
        self, users: np.ndarray, k: int, filter_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def similar_items(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]: ...


MODELS: Registry[Recommender] = Registry("model")


def _check_user_items(user_items: sp.spmatrix) -> sp.csr_matrix:
    if not sp.issparse(user_items):
        raise TypeError(f"user_items: expected a scipy sparse (n_users, n_items) matrix, got {type(user_items).__name__}")
    m = sp.csr_matrix(user_items, dtype=np.float32)
    if m.nnz and not np.isfinite(m.data).all():
        raise ValueError("user_items: contains NaN or inf")
    return m


class BaseRecommender:
    """Shared plumbing: input checks, batched full ranking via :meth:`score_users`."""

    name = "base"

    def __init__(self) -> None:
        self.user_items: sp.csr_matrix | None = None

    # subclasses implement these two
    def _fit(self, user_items: sp.csr_matrix) -> None:
        raise NotImplementedError

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32 scores, higher is better."""
        raise NotImplementedError

    def fit(self, user_items: sp.csr_matrix) -> BaseRecommender:
        self.user_items = _check_user_items(user_items)
        self._fit(self.user_items)
        return self

    def _check_fitted(self) -> sp.csr_matrix:
        if self.user_items is None:
            raise RuntimeError(f"{self.name}: call fit() first")
        return self.user_items

    def _check_users(self, users: np.ndarray) -> np.ndarray:
        ui = self._check_fitted()
        u = np.asarray(users)
        if u.ndim != 1 or not np.issubdtype(u.dtype, np.integer):
            raise ValueError(f"users: expected a 1-d int array, got shape {u.shape} dtype {u.dtype}")
        if u.size and (u.min() < 0 or u.max() >= ui.shape[0]):
            raise ValueError(f"users: index out of range [0, {ui.shape[0]})")
        return u.astype(np.int64)

    def recommend(self, users: np.ndarray, k: int, filter_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items for each user: ``(items (n, k) int64, scores (n, k) float32)``; -1 pads."""
        u = self._check_users(users)
        ui = self._check_fitted()
        return rank_all(self.score_users, u, k, ui if filter_seen else None, ui.shape[1])

    def similar_items(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(f"{self.name}: no item similarity")

    def _check_item(self, item: int) -> int:
        n = self._check_fitted().shape[1]
        if not isinstance(item, int | np.integer) or not 0 <= item < n:
            raise ValueError(f"item: expected an index in [0, {n}), got {item!r}")
        return int(item)


@MODELS.register("random")
class RandomRecommender(BaseRecommender):
    """Uniform random scores: the floor every model must clear."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)

    def _fit(self, user_items: sp.csr_matrix) -> None:
        pass

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.rng.random((len(users), self._check_fitted().shape[1]), dtype=np.float32)

    def similar_items(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        i = self._check_item(item)
        s = self.rng.random((1, self._check_fitted().shape[1]), dtype=np.float32)
        s[0, i] = -np.inf
        idx, vals = topk(s, k)
        return idx[0], vals[0]


@MODELS.register("pop")
class PopularityRecommender(BaseRecommender):
    """Most-interacted items (number of distinct users), the same list for everyone."""

    name = "pop"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.counts = np.empty(0, np.float32)

    def _fit(self, user_items: sp.csr_matrix) -> None:
        self.counts = np.bincount(user_items.indices, minlength=user_items.shape[1]).astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), self.counts.size))

    def similar_items(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        i = self._check_item(item)
        s = self.counts[None, :].copy()
        s[0, i] = -np.inf
        idx, vals = topk(s, k)
        return idx[0], vals[0]


def sparse_row_topk(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest stored values of each row of ``m`` (CSR in, CSR out).

    One lexsort over the stored entries (row ascending, value descending) and a rank
    within each row: no dense slab, so it costs O(nnz log nnz) however wide ``m`` is.
    """
    m = m.tocsr()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((-m.data, rows))
    r, c, v = rows[order], m.indices[order], m.data[order]
    starts = np.searchsorted(r, r, side="left")
    keep = (np.arange(r.size) - starts) < k
    return sp.csr_matrix((v[keep], (r[keep], c[keep])), shape=m.shape, dtype=np.float32)


def item_cosine_topk(
    user_items: sp.csr_matrix, k: int = 100, shrink: float = 10.0, block: int = 1024
) -> sp.csr_matrix:
    """Item-item cosine similarity, keeping each item's ``k`` nearest neighbours.

    ``user_items`` (n_users, n_items) CSR. ``sim(i, j) = x_i·x_j / (|x_i||x_j| + shrink)``
    (shrinkage damps pairs supported by few users). Co-occurrences are computed sparse, in
    blocks of ``block`` items, and pruned to the top ``k`` per row before the next block,
    so memory follows the co-occurrence count, not n_items²; a block whose co-occurrences
    are dense (over 5%) is pruned on a dense slab instead. Returns CSR (n_items, n_items):
    row ``i`` holds the neighbours of ``i`` (never ``i`` itself).
    """
    if k <= 0 or shrink < 0:
        raise ValueError(f"item_cosine_topk: need k > 0 and shrink >= 0, got k={k}, shrink={shrink}")
    x = sp.csr_matrix(user_items, dtype=np.float32)
    n_items = x.shape[1]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(0)).ravel()).astype(np.float32)
    xt = x.T.tocsr()
    parts = []
    for s in range(0, n_items, block):
        dots = xt[s : s + block] @ x
        n_rows = dots.shape[0]
        if dots.nnz > 0.05 * n_rows * n_items:
            # dense co-occurrence (MovieLens): argpartition on a slab beats sorting entries
            sim = dots.toarray() / (norms[s : s + n_rows, None] * norms[None, :] + shrink + 1e-12)
            sim[np.arange(n_rows), np.arange(s, s + n_rows)] = 0.0
            idx, v = topk(sim, min(k, n_items))
            r = np.repeat(np.arange(n_rows), idx.shape[1])
            ok = v.ravel() > 0
            blk = sp.csr_matrix((v.ravel()[ok], (r[ok], idx.ravel()[ok])), shape=(n_rows, n_items), dtype=np.float32)
            parts.append(blk)
            continue
        coo = dots.tocoo()
        i, j = coo.row + s, coo.col
        v = coo.data / (norms[i] * norms[j] + shrink + 1e-12)
        ok = (i != j) & (v > 0)  # no self-neighbour
        blk = sp.csr_matrix((v[ok], (i[ok] - s, j[ok])), shape=(n_rows, n_items), dtype=np.float32)
        parts.append(sparse_row_topk(blk, k))
    if not parts:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return sp.vstack(parts, format="csr").astype(np.float32)


@MODELS.register("itemknn")
class ItemKNNRecommender(BaseRecommender):
    """Item-based collaborative filtering: score(u, j) = Σ_{i ∈ history(u)} sim(i, j)."""

    name = "itemknn"

    def __init__(self, seed: int = 0, neighbors: int = 100, shrink: float = 10.0) -> None:
        super().__init__()
        self.neighbors = neighbors
        self.shrink = shrink
        self.sim: sp.csr_matrix | None = None

    def _fit(self, user_items: sp.csr_matrix) -> None:
        self.sim = item_cosine_topk(user_items, self.neighbors, self.shrink)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        assert self.sim is not None
        return (self._check_fitted()[users] @ self.sim).toarray()

    def similar_items(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        i = self._check_item(item)
        assert self.sim is not None
        row = self.sim[i].toarray()
        row[row == 0] = -np.inf
        idx, vals = topk(row, k)
        return idx[0], vals[0]


class ImplicitRecommender(BaseRecommender):
    """Wraps an ``implicit`` (0.7) CPU matrix-factorisation model; its batch recommend does the top-k."""

    name = "implicit"

    def __init__(self, model: object, show_progress: bool = False) -> None:
        super().__init__()
        self.model = model
        self.show_progress = show_progress

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from threadpoolctl import threadpool_limits

        # implicit parallelises itself; a multi-threaded BLAS underneath only oversubscribes
        with threadpool_limits(1, "blas"):
            self.model.fit(user_items, show_progress=self.show_progress)  # type: ignore[attr-defined]

    @property
    def item_factors(self) -> np.ndarray:
        return np.asarray(self.model.item_factors)  # type: ignore[attr-defined]

    def score_users(self, users: np.ndarray) -> np.ndarray:
        uf = np.asarray(self.model.user_factors)[users]  # type: ignore[attr-defined]
        return uf @ self.item_factors.T

    def recommend(self, users: np.ndarray, k: int, filter_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        u = self._check_users(users)
        ui = self._check_fitted()
        if not isinstance(k, int | np.integer) or k <= 0:
            raise ValueError(f"k: must be a positive integer, got {k!r}")
        out_i = np.full((len(u), k), -1, np.int64)
        out_s = np.full((len(u), k), -np.inf, np.float32)
        if len(u) == 0:
            return out_i, out_s
        ids, sc = self.model.recommend(  # type: ignore[attr-defined]
            u, ui[u], N=min(int(k), ui.shape[1]), filter_already_liked_items=filter_seen
        )
        ids = np.asarray(ids, np.int64).reshape(len(u), -1)
        sc = np.asarray(sc, np.float32).reshape(len(u), -1)
        # implicit marks filtered items with -FLT_MAX rather than -inf
        bad = ~np.isfinite(sc) | (sc <= np.finfo(np.float32).min) | (ids < 0)
        ids[bad], sc[bad] = -1, -np.inf
        out_i[:, : ids.shape[1]], out_s[:, : sc.shape[1]] = ids, sc
        return out_i, out_s

    def similar_items(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        i = self._check_item(item)
        ids, sc = self.model.similar_items(i, N=int(k) + 1)  # type: ignore[attr-defined]
        keep = np.asarray(ids) != i
        return np.asarray(ids, np.int64)[keep][:k], np.asarray(sc, np.float32)[keep][:k]


@MODELS.register("als")
def make_als(
    seed: int = 0, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0,
    iterations: int = 15, num_threads: int = 0, show_progress: bool = False,
) -> ImplicitRecommender:
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with confidence ``1 + alpha * r``."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # the constructor warns about a threaded BLAS otherwise
        m = AlternatingLeastSquares(
            factors=factors, regularization=regularization, alpha=alpha, iterations=iterations,
            num_threads=num_threads, random_state=seed,
        )
    rec = ImplicitRecommender(m, show_progress)
    rec.name = "als"
    return rec


@MODELS.register("bpr")
def make_bpr(
    seed: int = 0, factors: int = 64, learning_rate: float = 0.05, regularization: float = 0.01,
    iterations: int = 100, num_threads: int = 1, show_progress: bool = False,
) -> ImplicitRecommender:
    """Bayesian personalised ranking (Rendle et al. 2009), SGD over sampled triples.

    One thread by default: implicit's parallel SGD is lock-free (Hogwild), so with more
    threads a fixed ``seed`` no longer gives the same factors.
    """
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    m = BayesianPersonalizedRanking(
        factors=factors, learning_rate=learning_rate, regularization=regularization,
        iterations=iterations, num_threads=num_threads, random_state=seed,
    )
    rec = ImplicitRecommender(m, show_progress)
    rec.name = "bpr"
    return rec
