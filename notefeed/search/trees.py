"""Gradient-boosted regression trees in numpy, small enough to save as JSON.

Used by :class:`~notefeed.search.fusion.LearnedFusion` (``kind="trees"``): the fusion's
features interact (a personal feature matters when the note is about the query; BM25 scores
mean more when the dense list agrees), which a linear logit cannot express.

Squared loss on the soft labels, level-wise trees of a fixed ``depth`` over histogram bins
(at most ``bins`` quantile cut points per feature), shrinkage ``lr``, L2 ``l2`` on the leaf
values and ``min_leaf`` rows per leaf. A tree is stored complete (``2**depth - 1`` split nodes
in heap order, ``2**depth`` leaves): a node that does not split sends every row left
(threshold +inf), so prediction is ``depth`` vectorised steps for all trees at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Forest", "fit_forest"]


@dataclass
class Forest:
    """``feature`` (T, 2^d - 1) int, ``threshold`` (T, 2^d - 1) float (go left when
    ``x <= threshold``), ``value`` (T, 2^d) leaf values, ``base`` the constant start."""

    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    base: float

    @property
    def depth(self) -> int:
        return int(np.log2(self.value.shape[1])) if self.value.size else 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n,) predictions of (n, n_features) rows."""
        x = np.asarray(x, np.float64)
        n, t = len(x), len(self.feature)
        out = np.full(n, self.base)
        if not n or not t:
            return out
        # flat gathers (one index array per step) for every (row, tree) pair at once
        n_split, n_leaf = self.feature.shape[1], self.value.shape[1]
        feat, thr, xf = self.feature.ravel(), self.threshold.ravel(), np.ascontiguousarray(x).ravel()
        tree_off = (np.arange(t) * n_split)[None, :]
        row_off = (np.arange(n) * x.shape[1])[:, None]
        node = np.zeros((n, t), np.intp)
        for _ in range(self.depth):
            k = node + tree_off
            node = 2 * node + 1 + (xf[row_off + feat[k]] > thr[k])
        leaf = node - (n_leaf - 1) + (np.arange(t) * n_leaf)[None, :]
        return out + self.value.ravel()[leaf].sum(axis=1)

    def to_json(self) -> dict:
        thr = np.where(np.isfinite(self.threshold), self.threshold, 1e300)  # JSON has no inf
        return {"feature": self.feature.tolist(), "threshold": thr.tolist(), "value": self.value.tolist(),
                "base": self.base}

    @classmethod
    def from_json(cls, raw: dict) -> Forest:
        feat = np.asarray(raw["feature"], np.int64)
        thr = np.asarray(raw["threshold"], np.float64)
        val = np.asarray(raw["value"], np.float64)
        if feat.ndim != 2 or thr.shape != feat.shape or val.shape != (len(feat), feat.shape[1] + 1):
            raise ValueError(f"forest shapes: feature {feat.shape}, threshold {thr.shape}, value {val.shape}")
        return cls(feat, np.where(thr >= 1e300, np.inf, thr), val, float(raw["base"]))


def _edges(col: np.ndarray, bins: int) -> np.ndarray:
    """Cut points of one feature: midpoints between distinct quantile values."""
    q = np.unique(np.quantile(col, np.linspace(0, 1, bins + 1)))
    return (q[:-1] + q[1:]) / 2 if len(q) > 1 else np.zeros(0)


def fit_forest(x: np.ndarray, y: np.ndarray, n_trees: int = 200, depth: int = 4, lr: float = 0.05,
               min_leaf: int = 20, l2: float = 1.0, bins: int = 63) -> Forest:
    """Fit (n, f) features ``x`` to (n,) targets ``y`` (squared loss)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, nf = x.shape
    edges = [_edges(x[:, j], bins) for j in range(nf)]
    codes = np.stack([np.searchsorted(e, x[:, j], side="left") for j, e in enumerate(edges)], axis=1)
    nb = max([len(e) + 1 for e in edges] + [1])
    n_split, n_leaf = 2 ** depth - 1, 2 ** depth
    feats = np.zeros((n_trees, n_split), np.int64)
    thrs = np.full((n_trees, n_split), np.inf)
    vals = np.zeros((n_trees, n_leaf))
    base = float(y.mean()) if n else 0.0
    pred = np.full(n, base)
    for t in range(n_trees):
        g = y - pred  # the negative gradient of the squared loss
        node = np.zeros(n, np.int64)  # heap index at the current level
        for d in range(depth):
            first = 2 ** d - 1
            local = node - first
            k = 2 ** d
            best_gain = np.zeros(k)
            best = np.full((k, 2), -1, np.int64)  # (feature, bin) per node
            cnt_node = np.bincount(local, minlength=k).astype(np.float64)
            sum_node = np.bincount(local, weights=g, minlength=k)
            parent = sum_node ** 2 / (cnt_node + l2)
            for j in range(nf):
                if not len(edges[j]):
                    continue
                key = local * nb + codes[:, j]
                c = np.bincount(key, minlength=k * nb).reshape(k, nb).cumsum(axis=1)[:, :-1]
                s = np.bincount(key, weights=g, minlength=k * nb).reshape(k, nb).cumsum(axis=1)[:, :-1]
                cr, sr = cnt_node[:, None] - c, sum_node[:, None] - s
                gain = s ** 2 / (c + l2) + sr ** 2 / (cr + l2) - parent[:, None]
                gain[(c < min_leaf) | (cr < min_leaf)] = 0.0
                b = gain.argmax(axis=1)
                gb = gain[np.arange(k), b]
                better = gb > best_gain + 1e-12
                best_gain[better] = gb[better]
                best[better] = np.c_[np.full(better.sum(), j), b[better]]
            split = best[:, 0] >= 0
            idx = first + np.arange(k)
            feats[t, idx[split]] = best[split, 0]
            thrs[t, idx[split]] = [edges[f][b] for f, b in best[split].tolist()]
            go_right = codes[np.arange(n), feats[t, node]] > np.where(split[local], best[local, 1], nb)
            node = 2 * node + 1 + go_right
        leaf = node - n_split
        cnt = np.bincount(leaf, minlength=n_leaf)
        vals[t] = lr * np.bincount(leaf, weights=g, minlength=n_leaf) / (cnt + l2)
        pred += vals[t, leaf]
    return Forest(feats, thrs, vals, base)
