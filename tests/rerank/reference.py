"""Slow, obviously-correct reference implementations for the tests (explicit least squares)."""

from __future__ import annotations

import numpy as np


def residual_sq(V: np.ndarray, window: list[int]) -> np.ndarray:
    """(N,) squared residual of every row of V against span(V[window]) by least squares."""
    if not window:
        return (V * V).sum(1)
    A = V[window].T
    coef, *_ = np.linalg.lstsq(A, V.T, rcond=None)
    R = V.T - A @ coef
    return (R * R).sum(0)


def naive_greedy(q: np.ndarray, V: np.ndarray, k: int, window: int, gain) -> np.ndarray:
    """Greedy with ``gain(q, r2)`` where r2 are residuals against the last ``window - 1`` picks."""
    look = window - 1 if window > 0 else k
    sel: list[int] = []
    for _ in range(k):
        w = sel[max(0, len(sel) - look):] if look > 0 else []
        g = gain(q, np.maximum(residual_sq(V, w), 0.0))
        g[sel] = -np.inf
        sel.append(int(np.argmax(g)))
    return np.array(sel)


def naive_ssd(q: np.ndarray, V: np.ndarray, k: int, gamma: float, window: int) -> np.ndarray:
    return naive_greedy(q, V, k, window, lambda q, r2: q + gamma * np.sqrt(r2))


def naive_dpp(q: np.ndarray, V: np.ndarray, k: int, alpha: float, window: int) -> np.ndarray:
    return naive_greedy(q, V, k, window, lambda q, r2: 2 * alpha * q + np.log(np.maximum(r2, 1e-300)))
