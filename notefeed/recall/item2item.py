"""``item-to-item/swing`` and ``item-to-item/itemcf``: neighbour tables with incremental updates.

Fit builds the top-N neighbours of every item with a kernel from :mod:`.kernels`. ``update``
folds in new events without a full rebuild: only the rows of items whose inputs changed are
recomputed. For Swing that is exact: a row ``i`` depends on the capped users of ``i`` and
their capped histories, which change only for items in the old or new history of a user with
new events. For ItemCF the same rows are recomputed; other rows keep their old column
normalisation ``|U_j|^(1-a)`` until the next full build (documented approximation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from notefeed.data.dataset import Dataset
from notefeed.recall._common import (
    candidates_from_scores,
    csr_from_state,
    csr_state,
    positive_log,
    recency_weights,
    weighted_row_sum,
)
from notefeed.recall.base import CHANNELS, Candidates, UserContext
from notefeed.recall.kernels import build_rows, cap_log

__all__ = ["ItemToItemChannel", "SwingChannel", "ItemCFChannel"]


class ItemToItemChannel:
    """Shared state and recall for neighbour-table channels; subclasses name the kernel."""

    name = "item-to-item/base"
    kernel = "swing"

    def __init__(
        self,
        item_cap: int = 50,
        user_cap: int = 100,
        top_n: int = 100,
        n_recent: int = 20,
        decay: float = 0.9,
        block: int = 2048,
        n_jobs: int = 1,
        progress: bool = False,
        **kernel_params: float,
    ) -> None:
        for key, val in (("item_cap", item_cap), ("user_cap", user_cap), ("top_n", top_n), ("n_recent", n_recent)):
            if int(val) < 1:
                raise ValueError(f"{self.name}: '{key}' must be >= 1, got {val}")
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"{self.name}: 'decay' must be in (0, 1], got {decay}")
        self.item_cap, self.user_cap, self.top_n = int(item_cap), int(user_cap), int(top_n)
        self.n_recent, self.decay = int(n_recent), float(decay)
        self.block, self.n_jobs, self.progress = int(block), int(n_jobs), progress
        self.kernel_params = dict(kernel_params)
        self.sim: sp.csr_matrix | None = None
        self._log: pd.DataFrame | None = None
        self.hist: sp.csr_matrix | None = None
        self.item_users: sp.csr_matrix | None = None
        #: the last history's similarity sums (sim matrix, history bytes, cols, vals): recall
        #: and score_items ask for the same ones in one request; a tuple swaps atomically
        self._memo: tuple[sp.csr_matrix, bytes, np.ndarray, np.ndarray] | None = None
        #: where the capping and the rows run: None is this process (the kernels' own
        #: ``n_jobs``); a batch engine (``notefeed.batch``) shards them, with equal results
        self.engine: Any = None

    # ------------------------------------------------------------------ building
    def fit(self, ds: Dataset) -> ItemToItemChannel:
        return self.fit_log(positive_log(ds), ds.n_users, ds.n_items)

    def fit_log(self, log: pd.DataFrame, n_users: int, n_items: int) -> ItemToItemChannel:
        """Build from a ``user, item, ts`` frame of positive events."""
        self._log = _dedupe(log)
        self.n_users, self.n_items = int(n_users), int(n_items)
        self._recap()
        assert self.hist is not None and self.item_users is not None
        self.sim = self._rows(np.arange(self.n_items))
        return self

    def fit_capped(self, hist: sp.csr_matrix, item_users: sp.csr_matrix) -> ItemToItemChannel:
        """Build from capped matrices computed elsewhere (``cap_log``'s output, e.g. a batch job
        over the event lake); like a loaded channel it has no training log for ``update``."""
        self._log = None
        self.n_users, self.n_items = int(hist.shape[0]), int(hist.shape[1])
        self.hist, self.item_users = hist.tocsr(), item_users.tocsr()
        self.sim = self._rows(np.arange(self.n_items))
        return self

    def _recap(self) -> None:
        assert self._log is not None
        lg = self._log
        self.hist, self.item_users = (self.engine.cap_log if self.engine is not None else cap_log)(
            lg["user"].to_numpy(), lg["item"].to_numpy(), lg["ts"].to_numpy(),
            self.n_users, self.n_items, self.item_cap, self.user_cap,
        )

    def _rows(self, rows: np.ndarray) -> sp.csr_matrix:
        assert self.hist is not None and self.item_users is not None
        if self.engine is not None:
            return self.engine.build_rows(self.kernel, self.hist, self.item_users, rows, self.top_n,
                                          block=self.block, progress=self.progress, **self.kernel_params)
        return build_rows(
            self.kernel, self.hist, self.item_users, rows, self.top_n,
            block=self.block, progress=self.progress, n_jobs=self.n_jobs, **self.kernel_params,
        )

    def update(self, events: pd.DataFrame, n_users: int | None = None, n_items: int | None = None) -> np.ndarray:
        """Fold in new positive events (``user, item, ts``); return the recomputed item rows.

        ``n_users`` / ``n_items`` grow the id spaces for new users and notes.
        """
        if self.sim is None or self.hist is None:
            raise RuntimeError(f"{self.name}: update() before fit()")
        if self._log is None:
            raise RuntimeError(f"{self.name}: update() needs the training log, which a loaded channel lacks; refit")
        for col in ("user", "item", "ts"):
            if col not in events.columns:
                raise ValueError(f"{self.name}.update: events missing column '{col}'")
        new = _dedupe(events[["user", "item", "ts"]].astype(np.int64))
        self.n_users = max(self.n_users, int(n_users or 0), int(new["user"].max()) + 1 if len(new) else 0)
        self.n_items = max(self.n_items, int(n_items or 0), int(new["item"].max()) + 1 if len(new) else 0)
        changed = np.unique(new["user"].to_numpy())
        old_hist = self.hist
        old_rows = old_hist[changed[changed < old_hist.shape[0]]].indices
        self._log = _dedupe(pd.concat([self._log, new], ignore_index=True))
        self._recap()
        new_rows = self.hist[changed].indices
        rows = np.unique(np.concatenate([old_rows, new_rows, new["item"].to_numpy()])).astype(np.int64)
        fresh = self._rows(rows).tocoo()
        old = self.sim.tocoo()
        keep = ~np.isin(old.row, rows)
        self.sim = sp.csr_matrix(
            (
                np.concatenate([old.data[keep], fresh.data]),
                (np.concatenate([old.row[keep], rows[fresh.row]]), np.concatenate([old.col[keep], fresh.col])),
            ),
            shape=(self.n_items, self.n_items),
            dtype=np.float32,
        )
        return rows

    # ------------------------------------------------------------------ persistence
    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The neighbour table and capped histories (what recall reads). The training log is
        not kept: a loaded channel serves, and is rebuilt by the next training run."""
        if self.sim is None or self.hist is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        params = {"item_cap": self.item_cap, "user_cap": self.user_cap, "top_n": self.top_n,
                  "n_recent": self.n_recent, "decay": self.decay, "block": self.block, "n_jobs": self.n_jobs,
                  "kernel_params": self.kernel_params, "n_users": self.n_users, "n_items": self.n_items}
        return params, {**csr_state("sim", self.sim), **csr_state("hist", self.hist)}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> ItemToItemChannel:
        p = dict(params)
        n_users, n_items = int(p.pop("n_users")), int(p.pop("n_items"))
        ch = cls(**p.pop("kernel_params", {}), **p)
        ch.n_users, ch.n_items = n_users, n_items
        ch.sim, ch.hist = csr_from_state(arrays, "sim"), csr_from_state(arrays, "hist")
        return ch

    # ------------------------------------------------------------------ serving
    def neighbours(self, item: int, k: int = 10) -> Candidates:
        """The ``k`` most similar items of ``item`` (the related-notes surface)."""
        if self.sim is None:
            raise RuntimeError(f"{self.name}: neighbours() before fit()")
        if not 0 <= item < self.sim.shape[0]:
            raise ValueError(f"{self.name}: item index {item} out of range")
        row = self.sim[item]
        order = np.argsort(-row.data, kind="stable")[:k]
        return Candidates(self.name, row.indices[order], row.data[order])

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if self.sim is None:
            raise RuntimeError(f"{self.name}: recall() before fit()")
        hist = np.asarray(ctx.history, np.int64)
        if hist.size == 0 and ctx.user is not None and self.hist is not None and 0 <= ctx.user < self.hist.shape[0]:
            hist = self.hist[ctx.user].indices.astype(np.int64)  # stored history (order unknown)
        hist = hist[(hist >= 0) & (hist < self.sim.shape[0])][-self.n_recent :]
        if hist.size == 0:
            return Candidates.empty(self.name)
        cols, vals = self._sums(hist)
        return candidates_from_scores(self.name, cols, vals, ctx, k)

    def _sums(self, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Recency-weighted similarity sums of ``hist`` (int64, in range) as (cols, vals);
        duplicate items in the history add their weights, as repeated interest should."""
        sim, key = self.sim, hist.tobytes()
        memo = self._memo
        if memo is not None and memo[0] is sim and memo[1] == key:
            return memo[2], memo[3]
        assert sim is not None
        cols, vals = weighted_row_sum(sim, hist, recency_weights(hist.size, self.decay))
        self._memo = (sim, key, cols, vals)
        return cols, vals

    def score_items(self, ctx: UserContext, items: np.ndarray) -> np.ndarray:
        """(n,) float32: each item's recall score for ``ctx`` (0 where it has none): the
        similarity to the recent history, for every candidate (a ranking feature)."""
        items = np.asarray(items, np.int64)
        out = np.zeros(len(items), np.float32)
        if self.sim is None or not len(items):
            return out
        hist = np.asarray(ctx.history, np.int64)
        hist = hist[(hist >= 0) & (hist < self.sim.shape[0])][-self.n_recent :]
        if hist.size == 0:
            return out
        cols, vals = self._sums(hist)
        dense = np.zeros(self.sim.shape[1] + 1, np.float32)
        dense[cols] = vals
        ok = (items >= 0) & (items < self.sim.shape[1])
        out[ok] = dense[items[ok]]
        return out


def _dedupe(log: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, item) with the latest ts; int64 columns."""
    lg = log[["user", "item", "ts"]].astype(np.int64)
    return lg.sort_values("ts", kind="stable").drop_duplicates(["user", "item"], keep="last").reset_index(drop=True)


@CHANNELS.register("item-to-item/swing")
class SwingChannel(ItemToItemChannel):
    """Swing: user pairs who both acted on i and j, damped by how much else they share.

    Kernel params: ``alpha`` (1.0), ``alpha1`` (5.0), ``beta`` (0.3).
    """

    name = "item-to-item/swing"
    kernel = "swing"


@CHANNELS.register("item-to-item/itemcf")
class ItemCFChannel(ItemToItemChannel):
    """ItemCF: co-occurrence with popularity damping ``|U_i|^a |U_j|^(1-a)``.

    Kernel params: ``a`` (0.5; higher damps popular query items), ``iuf`` (True).
    """

    name = "item-to-item/itemcf"
    kernel = "itemcf"
