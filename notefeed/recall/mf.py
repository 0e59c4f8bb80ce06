"""``embedding/als``: implicit-feedback matrix factorisation, served by folding in the history.

Fit trains ALS (Hu, Koren & Volinsky 2008: confidence ``1 + alpha`` on each positive, 0
preference elsewhere) with the ``implicit`` library on the binary user x note matrix of
positives, and keeps only the note factors ``Y``.

Serving never looks a user vector up: it solves the same least-squares problem ALS solves
for a user, on the request's history (the user's positives so far, online events included),

    x = (Y'Y + alpha * Y_h'Y_h + reg * I)^-1 (1 + alpha) * sum_h y_h

so a user unseen at fit time, or one who just clicked, gets a current vector, and offline
evaluation and serving compute it the same way. Scores are ``Y x``: exact below ``hnsw_min``
notes, an HNSW inner-product index above. A solve is one ``factors x factors`` system (tens
of microseconds at 64 factors); ``score_items`` (the ranking feature) is one dot product per
candidate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from notefeed.data.dataset import Dataset
from notefeed.recall._common import excluded_items, positive_log, topk
from notefeed.recall.ann import ANN_KEY, AnnIndex, ann_over
from notefeed.recall.base import CHANNELS, Candidates, UserContext

__all__ = ["ALSChannel", "fold_in"]


def fold_in(items: np.ndarray, gram: np.ndarray, history: np.ndarray, alpha: float, reg: float) -> np.ndarray:
    """The ALS user vector for ``history`` (note indices, duplicates count once) given note
    factors ``items`` (n, f) and their Gram matrix ``gram = items' items`` (f, f); zeros for
    an empty history. Returns (f,) float64."""
    h = np.unique(np.asarray(history, np.int64))
    f = items.shape[1]
    if h.size == 0:
        return np.zeros(f)
    yh = items[h].astype(np.float64)
    a = gram + alpha * (yh.T @ yh) + reg * np.eye(f)
    b = (1.0 + alpha) * yh.sum(axis=0)
    return np.linalg.solve(a, b)


@CHANNELS.register("embedding/als")
@dataclass(eq=False)
class ALSChannel:
    """Implicit ALS note factors; a request's user vector is folded in from its history.

    Defaults are the ALS baseline's of ``notefeed eval`` (64 factors, reg 0.05, alpha 10,
    15 iterations). ``max_history`` caps the history folded in (newest kept).
    """

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15
    seed: int = 0
    max_history: int = 500
    threads: int = 1
    #: HNSW over the note factors from this many notes (exact scoring below)
    hnsw_min: int = 200_000
    n_items: int = field(default=0, init=False)

    name: ClassVar[str] = "embedding/als"

    def __post_init__(self) -> None:
        for key in ("factors", "iterations", "max_history", "threads"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{self.name}: '{key}' must be >= 1, got {getattr(self, key)}")
        if self.regularization < 0 or self.alpha < 0:
            raise ValueError(f"{self.name}: 'regularization' and 'alpha' must be >= 0")
        self._items: np.ndarray | None = None
        self._gram: np.ndarray | None = None
        self._memo: tuple[bytes, np.ndarray] | None = None
        self._ann: AnnIndex | None = None

    # ------------------------------------------------------------------ training
    def fit(self, ds: Dataset) -> ALSChannel:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        log = positive_log(ds).drop_duplicates(["user", "item"])
        ui = sp.csr_matrix((np.ones(len(log), np.float32), (log["user"].to_numpy(), log["item"].to_numpy())),
                           shape=(ds.n_users, ds.n_items))
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; a threaded BLAS only oversubscribes
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            alpha=self.alpha, iterations=self.iterations,
                                            num_threads=self.threads, random_state=self.seed)
            model.fit(ui, show_progress=False)
        self.n_items = ds.n_items
        self._set(np.asarray(model.item_factors, np.float32))
        return self

    def _set(self, items: np.ndarray, ann: np.ndarray | None = None) -> None:
        """Serve ``items``; ``ann``: their stored HNSW index (:meth:`AnnIndex.to_array`),
        built here when not given."""
        self._items = np.ascontiguousarray(items, np.float32)
        y = self._items.astype(np.float64)
        self._gram = y.T @ y
        self._memo = None
        self._ann = ann_over(self._items, self.hnsw_min, ann)

    # ------------------------------------------------------------------ serving
    @property
    def item_vectors(self) -> np.ndarray | None:
        """(n_items, factors) float32 note factors; ``None`` before fit (an empty workspace)."""
        return self._items

    def _known(self, history: np.ndarray) -> np.ndarray:
        """The notes of ``history`` inside the fitted catalogue, the newest ``max_history``."""
        assert self._items is not None
        h = np.asarray(history, np.int64).ravel()
        return h[(h >= 0) & (h < self._items.shape[0])][-self.max_history:]

    def user_vector(self, history: np.ndarray) -> np.ndarray:
        """(factors,) float64 user vector folded in from ``history`` (oldest first)."""
        if self._items is None or self._gram is None:
            raise RuntimeError(f"{self.name}: used before fit()")
        return fold_in(self._items, self._gram, self._known(history), self.alpha, self.regularization)

    def _user(self, ctx: UserContext) -> np.ndarray | None:
        """The request's folded-in user vector (float32), ``None`` without a known history or
        before fit (serving an empty workspace: the channel recalls nothing)."""
        if self._items is None or self._gram is None:
            return None
        h = self._known(ctx.history)
        if h.size == 0:
            return None
        key = h.tobytes()  # recall and score_items ask in the same request: keep the last answer
        memo = self._memo
        if memo is not None and memo[0] == key:
            return memo[1]
        u = fold_in(self._items, self._gram, h, self.alpha, self.regularization).astype(np.float32)
        self._memo = (key, u)
        return u

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        u = self._user(ctx)
        if u is None or k <= 0:
            return Candidates.empty(self.name)
        assert self._items is not None
        excl = excluded_items(ctx)
        if self._ann is not None:  # a large catalogue: HNSW over the note factors
            return Candidates(self.name, *self._ann.search_excluding(u, k, excl))
        scores = self._items @ u
        scores[excl[(excl >= 0) & (excl < scores.size)]] = -np.inf
        order = topk(scores, k)
        return Candidates(self.name, order, scores[order])

    def score_items(self, ctx: UserContext, items: np.ndarray) -> np.ndarray:
        """(n,) float32 scores of ``items``; zeros without a known history, 0 for notes
        outside the fitted catalogue."""
        items = np.asarray(items, np.int64).ravel()
        u = self._user(ctx)
        out = np.zeros(items.size, np.float32)
        if u is None:
            return out
        assert self._items is not None
        known = (items >= 0) & (items < self._items.shape[0])
        out[known] = self._items[items[known]] @ u
        return out

    # ------------------------------------------------------------------ persistence
    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        if self._items is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        params = {k: v for k, v in asdict(self).items() if k != "n_items"}
        arrays = {"item_factors": self._items}
        if self._ann is not None:  # stored: a load skips the HNSW build
            arrays[ANN_KEY] = self._ann.to_array()
        return {"n_items": self.n_items, "params": params}, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> ALSChannel:
        ch = cls(**params["params"])
        items = np.asarray(arrays["item_factors"], np.float32)
        if items.ndim != 2 or items.shape[1] != ch.factors:
            raise ValueError(f"{cls.name}: item_factors shape {items.shape} does not match {ch.factors} factors")
        ch.n_items = int(params["n_items"])
        ch._set(items, arrays.get(ANN_KEY))
        return ch
