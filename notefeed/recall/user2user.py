"""``user-to-user/default``: recent positives of users with a similar history (sparse cosine)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from notefeed.data.dataset import Dataset
from notefeed.recall._common import (
    candidates_from_scores,
    csr_from_state,
    csr_state,
    positive_log,
    stable_topk,
    user_histories,
    weighted_row_sum,
)
from notefeed.recall.base import CHANNELS, Candidates, UserContext

__all__ = ["UserToUserChannel"]


@CHANNELS.register("user-to-user/default")
class UserToUserChannel:
    """User vectors are binary history rows, IDF-weighted and L2-normalised; the query user's
    vector is built from ``ctx.history`` (so a brand-new user with a few actions works too).
    Score of a note = sum over the ``n_neighbours`` most similar users of ``cos * recency``,
    over each neighbour's ``n_items_per_user`` most recent positives.
    """

    name = "user-to-user/default"

    def __init__(self, n_neighbours: int = 50, n_items_per_user: int = 50, n_recent: int = 100) -> None:
        self.n_neighbours, self.n_items_per_user, self.n_recent = int(n_neighbours), int(n_items_per_user), int(n_recent)
        self.users_norm: sp.csr_matrix | None = None

    def fit(self, ds: Dataset) -> UserToUserChannel:
        log = positive_log(ds)
        a = ds.interactions(events=ds.select_events())
        n_u = np.asarray((a > 0).sum(axis=0)).ravel()
        self.idf = np.log((1.0 + ds.n_users) / (1.0 + n_u)).astype(np.float32) + 1.0
        x = a.multiply(self.idf.reshape(1, -1)).tocsr()
        norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        self.users_norm = sp.csr_matrix(sp.diags(1.0 / np.maximum(norm, 1e-12)) @ x)
        self.item_users_t = self.users_norm.T.tocsr()  # (n_items, n_users): fast query products
        hist = user_histories(log, ds.n_users, self.n_items_per_user)
        # recent positives per user as a CSR with recency weights (newest = 1)
        lens = np.array([h.size for h in hist], np.int64)
        rows = np.repeat(np.arange(ds.n_users), lens)
        cols = np.concatenate(hist) if len(hist) else np.empty(0, np.int64)
        rec = np.concatenate([0.97 ** np.arange(n - 1, -1, -1) for n in lens]) if len(hist) else np.empty(0)
        self.recent = sp.csr_matrix((rec, (rows, cols)), shape=(ds.n_users, ds.n_items))
        return self

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """IDF, the item -> user table and users' recent positives (what recall reads)."""
        if self.users_norm is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        params = {"n_neighbours": self.n_neighbours, "n_items_per_user": self.n_items_per_user,
                  "n_recent": self.n_recent}
        return params, {"idf": self.idf, **csr_state("item_users_t", self.item_users_t),
                        **csr_state("recent", self.recent)}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> UserToUserChannel:
        ch = cls(**params)
        ch.idf = arrays["idf"]
        ch.item_users_t = csr_from_state(arrays, "item_users_t")
        ch.recent = csr_from_state(arrays, "recent")
        ch.users_norm = ch.item_users_t.T.tocsr()
        return ch

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if self.users_norm is None:
            raise RuntimeError(f"{self.name}: recall() before fit()")
        h = np.unique(np.asarray(ctx.history, np.int64)[-self.n_recent :])
        h = h[(h >= 0) & (h < self.item_users_t.shape[0])]
        if h.size == 0:
            return Candidates.empty(self.name)
        q = self.idf[h] / np.linalg.norm(self.idf[h])
        users, sims = weighted_row_sum(self.item_users_t, h, q)
        if ctx.user is not None:  # never your own neighbour
            sims[users == ctx.user] = 0.0
        order = stable_topk(sims, self.n_neighbours)
        cols, vals = weighted_row_sum(self.recent, users[order], sims[order])
        return candidates_from_scores(self.name, cols, vals, ctx, k)
