"""Full-ranking kernels: top-k selection and batched scoring with the seen items masked."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

__all__ = ["topk", "mask_seen", "rank_all", "batch_size_for"]


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row, best first; equal scores in column order.

    ``scores`` (n, m) float; returns ``(idx (n, min(k, m)) int64, vals (n, min(k, m)) float32)``,
    the first ``k`` of each row's stable descending sort (NaN counts as ``-inf``), without
    sorting whole rows: each row's ``k``-th best value (a partition), every column above it,
    then the first columns equal to it, and only those ``k`` sorted. (An ``argpartition``
    keeps an arbitrary subset of the columns tied at the cut, and which one differs by CPU:
    pop's and ItemKNN's lists, and so the baselines' HR@10, moved between machines.) Rows
    whose winners include ``-inf`` (masked) get index ``-1`` there.
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"topk: scores must be (n, m), got shape {s.shape}")
    if not isinstance(k, int | np.integer) or k <= 0:
        raise ValueError(f"topk: k must be a positive integer, got {k!r}")
    n, m = s.shape
    k = min(int(k), m)
    if np.issubdtype(s.dtype, np.floating) and np.isnan(s).any():
        s = np.where(np.isnan(s), -np.inf, s)
    if k < m:
        kth = np.partition(s, m - k, axis=1)[:, m - k, None]  # each row's k-th largest value
        above, tied = s > kth, s == kth
        sel = above | tied
        need = k - above.sum(1)
        over = np.flatnonzero(tied.sum(1) > need)  # rows with more ties at the cut than places
        if over.size:
            sel[over] = above[over] | (tied[over] & (np.cumsum(tied[over], axis=1, dtype=np.int32) <= need[over, None]))
        part = np.nonzero(sel)[1].reshape(n, k)  # row-major: each row's k columns, in column order
    else:
        part = np.broadcast_to(np.arange(m), s.shape).copy()
    vals = np.take_along_axis(s, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    idx[~np.isfinite(vals) & (vals < 0)] = -1
    return idx, vals


def mask_seen(scores: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """Set ``scores[r, j] = -inf`` where ``seen[r, j]`` is stored; in place, returns ``scores``.

    ``scores`` (n, m) float; ``seen`` CSR (n, m).
    """
    if seen.shape != scores.shape:
        raise ValueError(f"mask_seen: seen {seen.shape} and scores {scores.shape} differ")
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    scores[rows, seen.indices] = -np.inf
    return scores


def batch_size_for(n_items: int, budget_mb: float = 256.0) -> int:
    """Users per batch so that one dense (batch, n_items) float32 block fits ``budget_mb``."""
    return max(1, int(budget_mb * 2**20 // (4 * max(n_items, 1))))


def rank_all(
    score_fn: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    k: int,
    seen: sp.csr_matrix | None,
    n_items: int,
    batch: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Full ranking over all items for ``users`` in batches.

    ``score_fn(users_batch) -> (b, n_items)`` dense scores; ``seen`` CSR (n_all_users, n_items)
    or ``None`` for no filtering. Returns ``(items (n, k) int64, scores (n, k) float32)``,
    ``-1`` where fewer than ``k`` unseen items exist.
    """
    users = np.asarray(users, np.int64)
    if users.ndim != 1:
        raise ValueError(f"users: expected a 1-d array, got shape {users.shape}")
    if not isinstance(k, int | np.integer) or k <= 0:
        raise ValueError(f"k: must be a positive integer, got {k!r}")
    batch = batch or batch_size_for(n_items)
    out_i = np.full((len(users), k), -1, np.int64)
    out_s = np.full((len(users), k), -np.inf, np.float32)
    for s in range(0, len(users), batch):
        ub = users[s : s + batch]
        sc = np.array(score_fn(ub), dtype=np.float32, copy=True)
        if sc.shape != (len(ub), n_items):
            raise ValueError(f"score_fn returned shape {sc.shape}, expected {(len(ub), n_items)}")
        if seen is not None:
            mask_seen(sc, seen[ub])
        idx, vals = topk(sc, k)
        out_i[s : s + len(ub), : idx.shape[1]] = idx
        out_s[s : s + len(ub), : idx.shape[1]] = vals
    return out_i, out_s
