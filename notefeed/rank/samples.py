"""Training samples for ranking: one row per exposure, labels per task.

With impressions in the log (Qilin, the simulator, the synthetic feed) every impression is a
sample, and task ``X`` is 1 when the same user did ``X`` on the same note within ``window``
seconds from the impression (``ts <= t_X < ts + window``). Dwell is ``log1p(dwell_s)`` of that
click (0 for an exposure without a click), missing (NaN) when the log has no dwell at all.

Without impressions (Taobao: every ``pv`` row is already a click) exposures are rebuilt honestly:
each click is a positive sample at its own time; for each, ``neg_per_pos`` negatives are drawn
from the notes *other users* clicked in the same category within ``+-neg_window`` seconds (what
was plausibly on screen around then), dropping draws the user touched in that window. Deeper
labels (cart/fav/buy under their mapped names) come from the same window rule. Tasks whose event
type never occurs in the log are NaN (masked in the loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.rank.base import TASKS
from notefeed.rank.features import ENGAGE_TYPES
from notefeed.rank.timeindex import TimeIndex
from notefeed.schema import EVENT_TYPES

__all__ = ["Samples", "build_samples"]


@dataclass
class Samples:
    """Columns of equal length n: ``users``/``items``/``ts``/``position``/``surface`` (int64) and
    ``labels`` {task: (n,) float32, NaN = missing}. ``source`` says how exposures were built."""

    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    position: np.ndarray
    surface: np.ndarray
    labels: dict[str, np.ndarray]
    source: str

    def __len__(self) -> int:
        return len(self.users)

    def take(self, idx: np.ndarray) -> Samples:
        return Samples(self.users[idx], self.items[idx], self.ts[idx], self.position[idx],
                       self.surface[idx], {k: v[idx] for k, v in self.labels.items()}, self.source)

    def split_time(self, test_frac: float = 0.2) -> tuple[Samples, Samples]:
        """Earlier ``1 - test_frac`` of the rows (by time) vs the rest."""
        order = np.argsort(self.ts, kind="stable")
        cut = int(len(order) * (1 - test_frac))
        return self.take(order[:cut]), self.take(order[cut:])


def _labels(ds: Dataset, u: np.ndarray, i: np.ndarray, t: np.ndarray, window: int) -> dict[str, np.ndarray]:
    ev = ds.events
    code = ev["type"].cat.codes.to_numpy(np.int64)
    eu, ei, ets = ev["user"].to_numpy(np.int64), ev["item"].to_numpy(np.int64), ev["ts"].to_numpy(np.int64)
    pair_key = eu * ds.n_items + ei
    uniq = np.unique(pair_key)
    pid = np.searchsorted(uniq, pair_key)
    nt = len(EVENT_TYPES)
    idx = TimeIndex(pid * nt + code, ets)
    q = u * ds.n_items + i
    qp = np.searchsorted(uniq, q)
    found = (qp < len(uniq)) & (uniq[np.minimum(qp, len(uniq) - 1)] == q)
    qp = np.where(found, qp, 0)
    present = np.bincount(code, minlength=nt) > 0
    out: dict[str, np.ndarray] = {}
    for task in TASKS:
        if task == "dwell":
            continue
        k = EVENT_TYPES.index(task)
        if not present[k]:
            out[task] = np.full(len(u), np.nan, np.float32)
            continue
        hit = found & (idx.count(qp * nt + k, t, t + window) > 0)
        out[task] = hit.astype(np.float32)
    dw = ev["dwell_s"].to_numpy(np.float64)[idx.order]
    if np.isfinite(dw).any():
        k = EVENT_TYPES.index("click")
        first = idx.end(qp * nt + k, t)  # first click at or after t
        clicked = out["click"] > 0
        val = dw[np.minimum(first, len(dw) - 1)]
        out["dwell"] = np.where(clicked, np.log1p(np.nan_to_num(val, nan=0.0)), 0.0).astype(np.float32)
    else:
        out["dwell"] = np.full(len(u), np.nan, np.float32)
    return out


def build_samples(ds: Dataset, window: int = 1800, neg_per_pos: int = 4, neg_window: int = 3600,
                  seed: int = 0) -> Samples:
    """Samples of ``ds``; see the module docstring for how exposures and labels are built."""
    ev = ds.events
    code = ev["type"].cat.codes.to_numpy(np.int64)
    imp = code == EVENT_TYPES.index("impression")
    surf = ev["surface"].cat.codes.to_numpy(np.int64)
    if imp.any():
        sel = np.flatnonzero(imp)
        u = ev["user"].to_numpy(np.int64)[sel]
        i = ev["item"].to_numpy(np.int64)[sel]
        t = ev["ts"].to_numpy(np.int64)[sel]
        pos = ev["position"].to_numpy(np.int64)[sel]
        labels = _labels(ds, u, i, t, window)
        return Samples(u, i, t, pos, surf[sel], labels, "impressions")
    click = np.flatnonzero(code == EVENT_TYPES.index("click"))
    if not len(click):
        raise ValueError(f"{ds.name}: no impressions and no clicks: cannot build ranking samples")
    rng = np.random.default_rng(seed)
    cu = ev["user"].to_numpy(np.int64)[click]
    ci = ev["item"].to_numpy(np.int64)[click]
    ct = ev["ts"].to_numpy(np.int64)[click]
    cat = ds.item_category[0].astype(np.int64)[ci]
    by_cat = TimeIndex(cat, ct)
    lo = by_cat.end(cat, ct - neg_window)
    hi = by_cat.end(cat, ct + neg_window + 1)
    nu = np.repeat(cu, neg_per_pos)
    nt_ = np.repeat(ct, neg_per_pos)
    r = rng.random(len(nu))
    p = np.repeat(lo, neg_per_pos) + np.floor(r * np.repeat(hi - lo, neg_per_pos)).astype(np.int64)
    ni = ci[by_cat.order][np.minimum(p, len(ci) - 1)]
    # drop draws the user touched around then (they would not be negatives)
    touched = _labels(ds, nu, ni, nt_ - neg_window, 2 * neg_window + 1)
    anyev = np.zeros(len(nu), bool)
    for task in ENGAGE_TYPES:
        anyev |= np.nan_to_num(touched[task]) > 0
    keep = ~anyev
    nu, ni, nt_ = nu[keep], ni[keep], nt_[keep]
    u = np.concatenate([cu, nu])
    i = np.concatenate([ci, ni])
    t = np.concatenate([ct, nt_])
    labels = _labels(ds, u, i, t, window)
    order = np.argsort(t, kind="stable")
    s = Samples(u, i, t, np.full(len(u), -1, np.int64), np.zeros(len(u), np.int64), labels,
                f"clicks+sampled-exposures(neg_per_pos={neg_per_pos}, window=+-{neg_window}s)")
    return s.take(order)
