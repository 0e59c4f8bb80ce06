"""Gradient-boosted regression trees in numpy, small enough to save as JSON.

Used by :class:`~notefeed.search.fusion.LearnedFusion` (``kind="trees"``): the fusion's
features interact (a personal feature matters when the note is about the query; BM25 scores
mean more when the dense list agrees), which a linear logit cannot express.

Two objectives. ``squared``: squared loss on the soft labels. ``lambdarank``: the rows come in
groups (one per query) and the trees are fitted to rank each group by its labels, the
LambdaRank gradients of NDCG@k (Burges, "From RankNet to LambdaRank to LambdaMART", 2010:
each pair of rows with different labels pulls the better one up by the logistic pairwise
gradient times the change in NDCG@k that swapping the two would make; the leaves take Newton
steps, sum of gradients over sum of second derivatives). With NDCG's discounts cut at ``k`` a
pair matters only when one of its rows ranks in the top ``k``, so each round costs
(groups x k x group length). Level-wise trees of a fixed ``depth`` over histogram bins
(at most ``bins`` quantile cut points per feature), shrinkage ``lr``, L2 ``l2`` on the leaf
values and ``min_leaf`` rows per leaf. A tree is stored complete (``2**depth - 1`` split nodes
in heap order, ``2**depth`` leaves): a node that does not split sends every row left
(threshold +inf), so prediction is ``depth`` vectorised steps for all trees at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Forest", "fit_forest", "lambdarank_gradients", "OBJECTIVES"]

#: the losses :func:`fit_forest` fits
OBJECTIVES = ("squared", "lambdarank")
#: at most this many (top row, row) pair cells per array in :func:`lambdarank_gradients`
#: (8 bytes each); more groups are taken in consecutive runs
_PAIR_CELLS = 4_000_000


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


def lambdarank_gradients(pred: np.ndarray, y: np.ndarray, sizes: np.ndarray, k: int = 10,
                         sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(negative gradients, second derivatives), each (n,), of LambdaRank-NDCG@``k`` for scores
    ``pred`` (n,) and labels ``y`` (n,) (gain ``2**y - 1``) over consecutive groups of
    ``sizes`` rows (summing to n). Ties in ``pred`` rank in row order. A group whose labels
    are all 0 gives zeros."""
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    sizes = np.asarray(sizes, np.int64)
    g, h = np.zeros(len(pred)), np.zeros(len(pred))
    if not len(sizes) or not sizes.max():
        return g, h
    off = np.r_[0, np.cumsum(sizes)]
    n_g, width = len(sizes), int(sizes.max())
    per_group = min(k, width) * width  # pair cells a group needs
    if n_g > 1 and n_g * per_group > _PAIR_CELLS:  # bounded memory: consecutive runs of groups
        step = max(1, _PAIR_CELLS // per_group)
        for a in range(0, n_g, step):
            lo, hi = off[a], off[min(a + step, n_g)]
            g[lo:hi], h[lo:hi] = lambdarank_gradients(pred[lo:hi], y[lo:hi], sizes[a: a + step], k, sigma)
        return g, h
    col = np.arange(width)
    valid = col[None, :] < sizes[:, None]  # groups padded to the longest, as (groups, width)
    rows = np.where(valid, off[:-1, None] + col[None, :], 0)
    s = np.where(valid, pred[rows], 0.0)
    order = np.argsort(np.where(valid, -s, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(col, order.shape), axis=1)
    gain = np.where(valid, 2.0 ** np.where(valid, y[rows], 0.0) - 1, 0.0)
    disc = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    ideal = -np.sort(-gain, axis=1)[:, :k]
    idcg = (ideal / np.log2(np.arange(ideal.shape[1]) + 2.0)).sum(axis=1)
    kk = min(k, width)
    top = order[:, :kk]  # each group's top k columns; pairs (top row, any row)
    top_ok = np.take_along_axis(valid, top, axis=1) & (idcg > 0)[:, None]
    s_t, g_t, d_t, r_t = (np.take_along_axis(a, top, axis=1) for a in (s, gain, disc, rank))
    y_pad = np.where(valid, y[rows], 0.0)
    diff = np.take_along_axis(y_pad, top, axis=1)[:, :, None] - y_pad[:, None, :]
    # a pair of two top rows is counted once, from the higher-ranked one
    pair = (diff != 0) & valid[:, None, :] & top_ok[:, :, None] & (rank[:, None, :] > r_t[:, :, None])
    sign = np.sign(diff)
    rho = 1.0 / (1.0 + np.exp(np.clip(sigma * sign * (s_t[:, :, None] - s[:, None, :]), -50, 50)))
    delta = np.abs((g_t[:, :, None] - gain[:, None, :]) * (d_t[:, :, None] - disc[:, None, :]))
    delta /= np.maximum(idcg, 1e-12)[:, None, None]
    lam = np.where(pair, sigma * rho * delta, 0.0) * sign  # + when the top row is the better one
    hes = np.where(pair, sigma * sigma * rho * (1 - rho) * delta, 0.0)
    gp, hp = -lam.sum(axis=1), hes.sum(axis=1)
    groups = np.arange(n_g)[:, None]
    np.add.at(gp, (groups, top), lam.sum(axis=2))
    np.add.at(hp, (groups, top), hes.sum(axis=2))
    g[rows[valid]], h[rows[valid]] = gp[valid], hp[valid]
    return g, h


def fit_forest(x: np.ndarray, y: np.ndarray, n_trees: int = 200, depth: int = 4, lr: float = 0.05,
               min_leaf: int = 20, l2: float = 1.0, bins: int = 63, objective: str = "squared",
               groups: np.ndarray | None = None, ndcg_at: int = 10) -> Forest:
    """Fit (n, f) features ``x`` to (n,) targets ``y``: ``objective="squared"`` regresses
    them; ``"lambdarank"`` ranks each of the consecutive ``groups`` (rows per group, summing to
    n) by them for NDCG@``ndcg_at`` (its predictions are scores, not labels)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, nf = x.shape
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {list(OBJECTIVES)}, got {objective!r}")
    rank = objective == "lambdarank"
    if rank:
        if groups is None:
            raise ValueError("objective 'lambdarank' needs groups (rows per query)")
        groups = np.asarray(groups, np.int64)
        if groups.ndim != 1 or (groups < 0).any() or int(groups.sum()) != n:
            raise ValueError(f"groups: expected non-negative row counts summing to {n} rows")
    edges = [_edges(x[:, j], bins) for j in range(nf)]
    codes = np.stack([np.searchsorted(e, x[:, j], side="left") for j, e in enumerate(edges)], axis=1)
    nb = max([len(e) + 1 for e in edges] + [1])
    n_split, n_leaf = 2 ** depth - 1, 2 ** depth
    feats = np.zeros((n_trees, n_split), np.int64)
    thrs = np.full((n_trees, n_split), np.inf)
    vals = np.zeros((n_trees, n_leaf))
    base = float(y.mean()) if n and not rank else 0.0
    pred = np.full(n, base)
    hess = None  # lambdarank's second derivatives (the squared loss's are all 1: the counts)
    for t in range(n_trees):
        if rank:
            g, hess = lambdarank_gradients(pred, y, groups, ndcg_at)  # type: ignore[arg-type]
        else:
            g = y - pred  # the negative gradient of the squared loss (second derivative 1)
        node = np.zeros(n, np.int64)  # heap index at the current level
        for d in range(depth):
            first = 2 ** d - 1
            local = node - first
            k = 2 ** d
            best_gain = np.zeros(k)
            best = np.full((k, 2), -1, np.int64)  # (feature, bin) per node
            cnt_node = np.bincount(local, minlength=k).astype(np.float64)
            hes_node = np.bincount(local, weights=hess, minlength=k) if rank else cnt_node
            sum_node = np.bincount(local, weights=g, minlength=k)
            parent = sum_node ** 2 / (hes_node + l2)
            for j in range(nf):
                if not len(edges[j]):
                    continue
                key = local * nb + codes[:, j]
                c = np.bincount(key, minlength=k * nb).reshape(k, nb).cumsum(axis=1)[:, :-1]
                s = np.bincount(key, weights=g, minlength=k * nb).reshape(k, nb).cumsum(axis=1)[:, :-1]
                hc = np.bincount(key, weights=hess, minlength=k * nb).reshape(k, nb).cumsum(axis=1)[:, :-1] \
                    if rank else c
                cr, sr, hr = cnt_node[:, None] - c, sum_node[:, None] - s, hes_node[:, None] - hc
                gain = s ** 2 / (hc + l2) + sr ** 2 / (hr + l2) - parent[:, None]
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
        cnt = np.bincount(leaf, weights=hess, minlength=n_leaf) if rank else np.bincount(leaf, minlength=n_leaf)
        vals[t] = lr * np.bincount(leaf, weights=g, minlength=n_leaf) / (cnt + l2)
        pred += vals[t, leaf]
    return Forest(feats, thrs, vals, base)
