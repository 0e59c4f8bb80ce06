"""Ranking-quality metrics on arrays: AUC, group AUC, log loss."""

from __future__ import annotations

import numpy as np

__all__ = ["auc", "gauc", "logloss"]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC of scores ``p`` (n,) for binary labels ``y`` (n,); NaN when one class is absent."""
    y = np.asarray(y) > 0.5
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # here: scipy.stats costs a second at import

    r = rankdata(p)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gauc(y: np.ndarray, p: np.ndarray, group: np.ndarray) -> float:
    """AUC per group (user), averaged weighted by group size over groups with both classes."""
    y = np.asarray(y) > 0.5
    order = np.argsort(group, kind="stable")
    g, y, p = np.asarray(group)[order], y[order], np.asarray(p)[order]
    bounds = np.flatnonzero(np.diff(g)) + 1
    num = den = 0.0
    for ys, ps in zip(np.split(y, bounds), np.split(p, bounds), strict=True):
        k = int(ys.sum())
        if 0 < k < len(ys):
            num += auc(ys, ps) * len(ys)
            den += len(ys)
    return num / den if den else float("nan")


def logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    y = np.asarray(y, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
