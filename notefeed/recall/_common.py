"""Small array helpers shared by the recall channels (top-k, exclusion, recency weights)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from notefeed.data.dataset import Dataset
from notefeed.recall.base import Candidates, UserContext

__all__ = [
    "stable_topk",
    "topk",
    "candidates_from_scores",
    "in_sorted",
    "excluded_items",
    "recency_weights",
    "positive_log",
    "user_histories",
    "request_seed",
    "weighted_row_sum",
    "csr_state",
    "csr_from_state",
    "restore_ranked_list",
    "edited_items",
]


#: :func:`weighted_row_sum` sums into a column-long array, instead of sorting the selected
#: entries, once they number at least 1 / DENSE_SUM_RATIO of the columns
DENSE_SUM_RATIO = 8

#: :func:`topk` first narrows an array this long or longer to the entries above a sampled
#: threshold (exact answers; see :func:`_topk_narrowed`)
TOPK_NARROW_MIN = 20_000


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite ``scores`` (1-D), in descending order, equal scores
    in index order (the first ``k`` of a stable sort, minus the non-finite)."""
    n = scores.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.empty(0, np.int64)
    if n >= TOPK_NARROW_MIN and 8 * k <= n:
        out = _topk_narrowed(scores, k)
        if out is not None:
            return out
    idx = stable_topk(scores, k)  # ties in index order: an argpartition's tied subset differs by CPU
    return idx[np.isfinite(scores[idx])].astype(np.int64)


def stable_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(-scores, kind="stable")[:k]`` (ties in index order, NaN last), without
    sorting the whole array: the entries above the ``k``-th best value, then the first of those
    equal to it, sorted. The same indices in the same order (a test checks it)."""
    scores = np.asarray(scores)
    n = scores.shape[0]
    k = max(0, min(int(k), n))
    if k == 0:
        return np.empty(0, np.int64)
    if k == n:
        return np.argsort(-scores, kind="stable")
    neg = -scores
    kth = np.partition(neg, k - 1)[k - 1]
    if np.isnan(kth):  # fewer than k non-NaN scores
        return np.argsort(neg, kind="stable")[:k]
    above = np.flatnonzero(neg < kth)
    idx = np.concatenate([above, np.flatnonzero(neg == kth)[: k - above.size]])
    return idx[np.argsort(neg[idx], kind="stable")]


def _topk_narrowed(scores: np.ndarray, k: int) -> np.ndarray | None:
    """:func:`topk` of a long array through the few entries above a threshold, or ``None``
    where it could differ from the full path.

    A request's exact scoring (SASRec logits, ALS scores of every note) asks for a few hundred
    of 10^5+ scores; an indirect partition of the whole array is most of that channel's time.
    The ``k``-th largest of a strided sample of the scores sets a threshold that about ``4k``
    entries pass; those are partitioned instead. The answer is the full path's whenever the
    ``k + 1`` best values are finite and distinct (then the top ``k`` and their order are
    unique, whatever the partition algorithm) and at least ``k + 1`` entries pass; otherwise
    ``None`` (the caller takes the full path, which breaks ties in index order).
    """
    n = scores.shape[0]
    step = max(1, n // 4096)
    sample = scores[::step]
    r = min(sample.size - 1, int(np.ceil(4 * k * sample.size / n)))
    thr = np.partition(sample, sample.size - 1 - r)[sample.size - 1 - r]
    if not np.isfinite(thr):
        return None
    cand = np.flatnonzero(scores >= thr)
    if cand.size <= k:
        return None
    vals = scores[cand]
    part = np.argpartition(-vals, k)[: k + 1]  # the k + 1 best, unordered
    part = part[np.argsort(-vals[part], kind="stable")]
    best = vals[part]
    if not np.isfinite(best).all() or not (best[:-1] > best[1:]).all():
        return None
    return cand[part[:k]].astype(np.int64)


def excluded_items(ctx: UserContext) -> np.ndarray:
    """Items a channel must never return for ``ctx``: already seen, history, hidden (int64, unique)."""
    parts = [np.asarray(ctx.seen, np.int64), np.asarray(ctx.history, np.int64)]
    hidden = getattr(ctx, "hidden", None)
    if hidden is not None:
        parts.append(np.asarray(hidden, np.int64))
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)


def edited_items(name: str, items: np.ndarray, notes: pd.DataFrame, n: int, unique: bool = False) -> np.ndarray:
    """``items`` (int64) of a channel's ``replace_items(items, notes)``, checked: one per row of
    ``notes``, each one of the channel's ``n`` notes (and, with ``unique``, none twice)."""
    items = np.asarray(items, np.int64)
    if len(items) != len(notes):
        raise ValueError(f"{name}: {len(items)} items for {len(notes)} notes")
    if len(items) and (items.min() < 0 or items.max() >= n):
        raise ValueError(f"{name}: replace_items() of items outside 0..{n - 1}")
    if unique and len(np.unique(items)) != len(items):
        raise ValueError(f"{name}: replace_items() with an item twice")
    return items


def in_sorted(items: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """(len(items),) bool: which ``items`` occur in the ascending array ``sorted_values`` (a
    binary search each: no sort of ``sorted_values`` per call, as ``np.isin`` does)."""
    items = np.asarray(items)
    if not len(sorted_values) or not len(items):
        return np.zeros(items.shape, bool)
    at = np.minimum(np.searchsorted(sorted_values, items), len(sorted_values) - 1)
    return sorted_values[at] == items


def candidates_from_scores(
    channel: str, items: np.ndarray, scores: np.ndarray, ctx: UserContext, k: int
) -> Candidates:
    """Drop excluded and non-finite-score items, keep the top ``k`` by score, as :class:`Candidates`.

    ``items`` (n,) int and ``scores`` (n,) float; duplicates in ``items`` must already be summed.
    """
    items = np.asarray(items, np.int64)
    scores = np.asarray(scores, np.float64)
    if items.size == 0 or k <= 0:
        return Candidates.empty(channel)
    keep = np.isfinite(scores) & ~np.isin(items, excluded_items(ctx))
    items, scores = items[keep], scores[keep]
    order = topk(scores, k)
    return Candidates(channel, items[order], scores[order].astype(np.float32))


def recency_weights(n: int, decay: float) -> np.ndarray:
    """(n,) weights for a history oldest-first: the newest item weighs 1, each older one ``decay`` times less."""
    return decay ** np.arange(n - 1, -1, -1, dtype=np.float64)


def positive_log(ds: Dataset) -> pd.DataFrame:
    """Positive events as ``user, item, ts`` (int64), time-ordered."""
    ev = ds.select_events()
    return pd.DataFrame(
        {
            "user": ev["user"].to_numpy(np.int64),
            "item": ev["item"].to_numpy(np.int64),
            "ts": ev["ts"].to_numpy(np.int64),
        }
    )


def user_histories(log: pd.DataFrame, n_users: int, max_len: int | None = None) -> list[np.ndarray]:
    """Per-user item indices of positives, oldest first (last ``max_len`` only when given)."""
    log = log.sort_values(["user", "ts"], kind="stable")
    u = log["user"].to_numpy(np.int64)
    it = log["item"].to_numpy(np.int64)
    bounds = np.searchsorted(u, np.arange(n_users + 1))
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        h = it[a:b]
        out.append(h[-max_len:] if max_len else h)
    return out


def request_seed(ctx: UserContext, salt: int = 0) -> int:
    """A per-request seed (user id, request time): reproducible, different across requests."""
    h = 1469598103934665603
    for ch in f"{ctx.user_id}|{ctx.ts}|{salt}".encode():
        h = ((h ^ ch) * 1099511628211) % (1 << 63)
    return h


def weighted_row_sum(m: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum_r weights[r] * m[rows[r]]`` as (columns, values), touching only those rows.

    ``m`` (n, d) CSR, ``rows`` (r,) int, ``weights`` (r,). Avoids ``q @ m``, which allocates
    a ``d``-sized work array per call (milliseconds at a million columns).
    """
    ip = m.indptr
    rows = np.asarray(rows, np.int64)
    starts, ends = ip[rows], ip[rows + 1]
    lens = ends - starts
    if lens.sum() == 0:
        return np.empty(0, np.int64), np.empty(0)
    # positions of all selected entries, without a Python loop over rows
    offs = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens)
    pos = np.arange(lens.sum()) + offs
    cols = m.indices[pos]
    vals = m.data[pos] * np.repeat(np.asarray(weights, np.float64), lens)
    if cols.size * DENSE_SUM_RATIO >= m.shape[1]:
        # many entries for the width: one pass over a column-long array beats sorting them
        # (the same sums: bincount adds each column's values in input order either way)
        present = np.zeros(m.shape[1], bool)
        present[cols] = True
        uniq = np.flatnonzero(present)
        return uniq.astype(np.int64), np.bincount(cols, weights=vals, minlength=m.shape[1])[uniq]
    uniq, inv = np.unique(cols, return_inverse=True)
    return uniq.astype(np.int64), np.bincount(inv, weights=vals)


def csr_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as arrays for ``to_state``: ``{prefix}.data/indices/indptr/shape``."""
    m = sp.csr_matrix(m)
    return {f"{prefix}.data": m.data, f"{prefix}.indices": m.indices, f"{prefix}.indptr": m.indptr,
            f"{prefix}.shape": np.asarray(m.shape, np.int64)}


def csr_from_state(arrays: dict[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    """Inverse of :func:`csr_state` (entries kept in their stored order and dtypes)."""
    shape = tuple(int(x) for x in arrays[f"{prefix}.shape"])
    return sp.csr_matrix((arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]),
                         shape=shape)


def restore_ranked_list(ch: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Set a fixed ranked-list channel's ``items`` and ``scores`` from saved arrays (its
    ``from_state``), checking they agree; returns the channel."""
    ch.items, ch.scores = arrays["items"], arrays["scores"]
    if ch.items.shape != ch.scores.shape:
        raise ValueError(f"{ch.name}: items {ch.items.shape} and scores {ch.scores.shape} differ")
    return ch
