"""Train/test splits for offline evaluation.

Two protocols, both on *positive* events (``POSITIVE_TYPES`` by default):

- **leave-last-out** (:func:`leave_last_out`, the RecBole/S3Rec protocol for sequences):
  a user's positives are ordered by the time of their *first* positive event on each item;
  the last new item is the test item, the one before it optionally the validation item.
  Every event of the user on a held-out item (impressions included) leaves the training
  events, so the model cannot have seen the answer. Users with fewer than two distinct
  positive items (three with ``valid=True`` for a validation item) stay in train only.
- **global temporal** (:func:`temporal_split`): one cut-off time ``t*`` = the ``q`` quantile
  of positive-event times; training keeps every event with ``ts < t*``; the test set is the
  positive (user, item) pairs with ``ts >= t*`` for users with at least one training
  positive and items with at least one training positive (a model fit on positives knows
  nothing else), minus pairs the user already engaged with in training (those are masked
  as seen at recommendation time, so they could never be hit). No training event is later
  than any test event.
- **per-user random ratio** (:func:`ratio_split`, RecBole's default "RO_RS" protocol, for
  comparison with its published tables): each user's distinct positive items are shuffled
  and a ``test_frac`` share (at least one, never all) is held out with every event of the
  user on them. Time is ignored, so it is optimistic for sequential data.

All return a :class:`Split`; the training :class:`~notefeed.data.Dataset` shares the
catalogue and user indices of the input (``ds.with_events``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from notefeed.data.dataset import DataError, Dataset
from notefeed.schema import POSITIVE_TYPES

__all__ = ["Split", "leave_last_out", "temporal_split", "ratio_split", "make_split", "SPLITS", "seen_items",
           "has_seen_target"]

SPLITS = ("loo", "temporal", "ratio")


@dataclass
class Split:
    """A train/test split.

    ``test_users`` (n_test,) int64 user indices; ``test_items`` CSR (n_test, n_items) whose
    row ``r`` holds the relevant items of ``test_users[r]``. ``valid_users``/``valid_items``
    likewise (empty when no validation set was asked for).
    """

    kind: str
    train: Dataset
    test_users: np.ndarray
    test_items: sp.csr_matrix
    valid_users: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    valid_items: sp.csr_matrix | None = None
    params: dict[str, object] = field(default_factory=dict)

    def test_item_lists(self) -> list[np.ndarray]:
        """The relevant items of each test user, as a list of int arrays."""
        m = self.test_items
        return [m.indices[m.indptr[r] : m.indptr[r + 1]].astype(np.int64) for r in range(m.shape[0])]

    def summary(self) -> dict[str, object]:
        return {
            "split": self.kind,
            **self.params,
            "train_events": len(self.train.events),
            "test_users": int(len(self.test_users)),
            "test_pairs": int(self.test_items.nnz),
            "valid_users": int(len(self.valid_users)),
        }


def _positives(ds: Dataset, positive_types: Iterable[str] | None) -> pd.DataFrame:
    types = POSITIVE_TYPES if positive_types is None else tuple(positive_types)
    pos = ds.select_events(types)
    if pos.empty:
        raise DataError(f"{ds.name}: no positive events of types {list(types)} to split")
    return pos


def seen_items(ds: Dataset) -> np.ndarray:
    """(n_items,) bool: the notes with at least one positive event in ``ds``."""
    pos = ds.select_events(POSITIVE_TYPES)["item"].to_numpy() if len(ds.events) else np.empty(0, np.int64)
    return np.bincount(pos, minlength=ds.n_items)[: ds.n_items] > 0


def has_seen_target(test_items: sp.csr_matrix, seen: np.ndarray) -> np.ndarray:
    """(test users,) bool: whether any of a test user's held-out notes is in ``seen``
    (:func:`seen_items` of the training log)."""
    return np.asarray(test_items @ seen.astype(np.float64)).ravel() > 0


def _pairs_csr(users: np.ndarray, items: np.ndarray, n_items: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """(unique users, CSR (n_unique, n_items)) from (user, item) pairs."""
    uniq, row = np.unique(users, return_inverse=True)
    m = sp.csr_matrix(
        (np.ones(len(items), np.float32), (row, items)), shape=(len(uniq), n_items), dtype=np.float32
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return uniq.astype(np.int64), m


def leave_last_out(
    ds: Dataset, valid: bool = False, positive_types: Iterable[str] | None = None
) -> Split:
    """Per-user leave-last-out split (see the module docstring)."""
    pos = _positives(ds, positive_types)
    # events are sorted by (ts, user) stably by Dataset.build, so row order breaks ts ties
    first = pos[["user", "item", "ts"]].drop_duplicates(["user", "item"], keep="first")
    first = first.sort_values("ts", kind="stable")
    back = first.groupby("user", sort=False).cumcount(ascending=False).to_numpy()  # 0 = last
    n_pos = first.groupby("user", sort=False)["item"].transform("size").to_numpy()
    u = first["user"].to_numpy(np.int64)
    it = first["item"].to_numpy(np.int64)

    is_test = (back == 0) & (n_pos >= 2)
    is_valid = (back == 1) & (n_pos >= 3) if valid else np.zeros(len(first), bool)
    held_u = np.concatenate([u[is_test], u[is_valid]])
    held_i = np.concatenate([it[is_test], it[is_valid]])

    train_ev = _drop_pairs(ds, held_u, held_i)

    test_users, test_items = _pairs_csr(u[is_test], it[is_test], ds.n_items)
    valid_users, valid_items = _pairs_csr(u[is_valid], it[is_valid], ds.n_items)
    return Split(
        kind="loo",
        train=ds.with_events(train_ev),
        test_users=test_users,
        test_items=test_items,
        valid_users=valid_users,
        valid_items=valid_items if valid else None,
        params={"valid": valid},
    )


def temporal_split(ds: Dataset, q: float = 0.8, positive_types: Iterable[str] | None = None) -> Split:
    """Global temporal split at the ``q`` quantile of positive-event times (see the module docstring)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q: the time quantile must lie in (0, 1), got {q}")
    pos = _positives(ds, positive_types)
    cut = int(np.quantile(pos["ts"].to_numpy(), q))
    ev = ds.events
    train_ev = ev[ev["ts"].to_numpy() < cut]
    train_pos = pos[pos["ts"].to_numpy() < cut]
    if train_pos.empty:
        raise DataError(f"{ds.name}: temporal split at q={q} leaves no positive training event")

    later = pos[pos["ts"].to_numpy() >= cut]
    known_u = np.zeros(ds.n_users, bool)
    known_u[train_pos["user"].to_numpy()] = True
    known_i = np.zeros(ds.n_items, bool)
    known_i[train_pos["item"].to_numpy()] = True
    lu = later["user"].to_numpy(np.int64)
    li = later["item"].to_numpy(np.int64)
    keep = known_u[lu] & known_i[li]
    seen = train_pos["user"].to_numpy(np.int64) * ds.n_items + train_pos["item"].to_numpy(np.int64)
    keep &= ~np.isin(lu * ds.n_items + li, seen)
    test_users, test_items = _pairs_csr(lu[keep], li[keep], ds.n_items)
    return Split(
        kind="temporal",
        train=ds.with_events(train_ev),
        test_users=test_users,
        test_items=test_items,
        params={"q": q, "cutoff_ts": cut},
    )


def _drop_pairs(ds: Dataset, users: np.ndarray, items: np.ndarray) -> pd.DataFrame:
    ev = ds.events
    key = ev["user"].to_numpy(np.int64) * ds.n_items + ev["item"].to_numpy(np.int64)
    return ev[~np.isin(key, users * ds.n_items + items)]


def ratio_split(
    ds: Dataset, test_frac: float = 0.2, seed: int = 0, positive_types: Iterable[str] | None = None
) -> Split:
    """Per-user random hold-out of ``test_frac`` of the distinct positive items (see the module docstring)."""
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac: must lie in (0, 1), got {test_frac}")
    pos = _positives(ds, positive_types)
    pairs = pos[["user", "item"]].drop_duplicates()
    rng = np.random.default_rng(seed)
    pairs = pairs.iloc[rng.permutation(len(pairs))]
    rank = pairs.groupby("user", sort=False).cumcount().to_numpy()
    n = pairs.groupby("user", sort=False)["item"].transform("size").to_numpy()
    n_test = np.where(n >= 2, np.clip(np.rint(test_frac * n), 1, n - 1), 0)
    held = rank < n_test
    u = pairs["user"].to_numpy(np.int64)[held]
    it = pairs["item"].to_numpy(np.int64)[held]
    test_users, test_items = _pairs_csr(u, it, ds.n_items)
    return Split(
        kind="ratio",
        train=ds.with_events(_drop_pairs(ds, u, it)),
        test_users=test_users,
        test_items=test_items,
        params={"test_frac": test_frac, "seed": seed},
    )


def make_split(ds: Dataset, kind: str, **options: object) -> Split:
    """Dispatch on ``kind`` (``"loo"``, ``"temporal"`` or ``"ratio"``)."""
    if kind == "loo":
        return leave_last_out(ds, **options)  # type: ignore[arg-type]
    if kind == "temporal":
        return temporal_split(ds, **options)  # type: ignore[arg-type]
    if kind == "ratio":
        return ratio_split(ds, **options)  # type: ignore[arg-type]
    raise ValueError(f"split: unknown kind {kind!r}; known: {', '.join(SPLITS)}")
