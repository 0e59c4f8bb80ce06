"""Beta-Bernoulli bandit kernels for boosting new notes (pure functions on arrays).

Each new note is an arm whose reward is a click per impression. The posterior of its
click-through rate is Beta(alpha, beta) with alpha = clicks + a and beta = impressions - clicks + b.
Thompson sampling draws one rate per arm and boosts the arms with the highest draws: notes
with strong early engagement win more often, notes with few impressions still get explored,
and notes that keep failing fade out without a hand-tuned cut-off.
"""

from __future__ import annotations

import numpy as np

__all__ = ["beta_update", "thompson_sample", "posterior_mean", "uniform_sample", "check_prior"]


def check_prior(a: float, b: float) -> None:
    """Raise ``ValueError`` naming ``prior_a``/``prior_b`` unless both are finite and > 0."""
    for name, v in (("prior_a", a), ("prior_b", b)):
        if not (isinstance(v, int | float) and np.isfinite(v) and v > 0):
            raise ValueError(f"bandit: {name} must be a finite number > 0, got {v!r}")


def _as_counts(name: str, x: np.ndarray | float) -> np.ndarray:
    arr = np.asarray(x, np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"beta_update: {name} must be finite and >= 0")
    return arr


def beta_update(alpha: np.ndarray, beta: np.ndarray, clicks: np.ndarray, impressions: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Posterior after observing (n,) ``clicks`` out of (n,) ``impressions`` per arm.

    alpha, beta: (n,) current Beta parameters (> 0). Returns new (n,) float64 arrays
    ``(alpha + clicks, beta + impressions - clicks)``; the inputs are not modified.
    """
    alpha = np.asarray(alpha, np.float64)
    beta = np.asarray(beta, np.float64)
    c = _as_counts("clicks", clicks)
    n = _as_counts("impressions", impressions)
    try:
        ok = alpha.shape == beta.shape == np.broadcast_shapes(alpha.shape, c.shape, n.shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"beta_update: shapes differ: alpha {alpha.shape}, beta {beta.shape}, "
                         f"clicks {c.shape}, impressions {n.shape}")
    if np.any(c > n):
        raise ValueError("beta_update: clicks must not exceed impressions")
    if np.any(alpha <= 0) or np.any(beta <= 0):
        raise ValueError("beta_update: alpha and beta must be > 0")
    return alpha + c, beta + (n - c)


def thompson_sample(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n,) draws theta_i ~ Beta(alpha_i, beta_i): one sampled click-through rate per arm."""
    alpha = np.asarray(alpha, np.float64)
    beta = np.asarray(beta, np.float64)
    if alpha.shape != beta.shape:
        raise ValueError(f"thompson_sample: alpha {alpha.shape} and beta {beta.shape} differ")
    if alpha.size and (not np.all(np.isfinite(alpha)) or not np.all(np.isfinite(beta))
                       or alpha.min() <= 0 or beta.min() <= 0):
        raise ValueError("thompson_sample: alpha and beta must be finite and > 0")
    return rng.beta(alpha, beta) if alpha.size else np.zeros(alpha.shape, np.float64)


def uniform_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) draws from U(0, 1): every arm boosted equally, whatever its feedback (the baseline)."""
    return rng.random(n)


def posterior_mean(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """(n,) posterior mean click-through rate alpha / (alpha + beta)."""
    alpha = np.asarray(alpha, np.float64)
    beta = np.asarray(beta, np.float64)
    return alpha / (alpha + beta)
