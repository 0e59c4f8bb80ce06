"""Statistics of an A/B experiment: intervals, tests and the sample-ratio check.

Pure functions on arrays. Rates (CTR, like rate, small-creator share) are ratios of sums over
users (clicks / impressions); their per-arm interval is Wilson's, and the difference between
two arms is tested with the delta method over users (the randomisation unit), so the several
impressions of one user are not counted as independent. Means (dwell, latency) use Welch's t.
The sample-ratio check is a chi-square goodness-of-fit of users per arm against the weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from notefeed.eval.metrics import t_half_width

__all__ = ["wilson", "mean_interval", "ratio_difference", "welch", "sample_ratio", "SRM_ALPHA"]

#: p-value below which the sample ratio is flagged as a mismatch (the usual, strict threshold:
#: an SRM means the assignment or the logging is broken, not that arms differ)
SRM_ALPHA = 0.001


def _stats() -> Any:
    """scipy.stats, imported on first use (a second of `notefeed serve` start-up otherwise)."""
    from scipy import stats

    return stats


def _z(level: float) -> float:
    return float(_stats().norm.ppf(0.5 + level / 2))


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def wilson(k: float, n: float, level: float = 0.95) -> dict[str, Any]:
    """Rate ``k / n`` with its Wilson score interval: ``{value, lo, hi, k, n}``."""
    if n <= 0:
        return {"value": None, "lo": None, "hi": None, "k": float(k), "n": float(n)}
    z = _z(level)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / den
    return {"value": p, "lo": max(centre - half, 0.0), "hi": min(centre + half, 1.0), "k": float(k), "n": float(n)}


def mean_interval(x: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Mean of ``x`` (n,) with its Student-t interval: ``{value, lo, hi, n}``."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n == 0:
        return {"value": None, "lo": None, "hi": None, "n": 0}
    m = float(x.mean())
    if n < 2:
        return {"value": m, "lo": None, "hi": None, "n": n}
    half = t_half_width(x, level)
    return {"value": m, "lo": m - half, "hi": m + half, "n": n}


def _ratio_var(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Ratio of sums and its delta-method variance over clusters (users): (R, var R)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    n, total = len(num), float(den.sum())
    if n < 2 or total <= 0:
        return float("nan"), float("nan")
    r = float(num.sum()) / total
    resid = num - r * den
    return r, float((resid @ resid) * n / (n - 1)) / (total * total)


def ratio_difference(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray,
                     level: float = 0.95) -> dict[str, Any]:
    """``R_b - R_a`` for ratios of per-user sums (num (users,), den (users,) per arm) with its
    normal interval and two-sided p-value, the variance by the delta method over users."""
    ra, va = _ratio_var(num_a, den_a)
    rb, vb = _ratio_var(num_b, den_b)
    return _normal_diff(rb - ra, math.sqrt(va + vb) if math.isfinite(va + vb) else float("nan"), ra, level)


def welch(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """``mean(b) - mean(a)`` with Welch's t interval and two-sided p-value."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return _normal_diff(float("nan"), float("nan"), float("nan"), level)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    d = float(b.mean() - a.mean())
    if se == 0:
        return _normal_diff(d, 0.0, float(a.mean()), level)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    t = _stats().t.ppf(0.5 + level / 2, df)
    p = float(2 * _stats().t.sf(abs(d) / se, df))
    return {"diff": d, "lo": d - t * se, "hi": d + t * se, "p": p,
            "relative": _nan_to_none(d / float(a.mean())) if a.mean() else None,
            "significant": bool(p < 1 - level)}


def _normal_diff(d: float, se: float, base: float, level: float) -> dict[str, Any]:
    if not (math.isfinite(d) and math.isfinite(se)):
        return {"diff": _nan_to_none(d), "lo": None, "hi": None, "p": None, "relative": None, "significant": False}
    if se == 0:
        p = 1.0 if d == 0 else 0.0
    else:
        p = float(2 * _stats().norm.sf(abs(d) / se))
    z = _z(level)
    return {"diff": d, "lo": d - z * se, "hi": d + z * se, "p": p,
            "relative": _nan_to_none(d / base) if base else None, "significant": bool(p < 1 - level)}


def sample_ratio(observed: Sequence[float], weights: Sequence[float]) -> dict[str, Any]:
    """Chi-square goodness-of-fit of ``observed`` units per arm against the ``weights``'
    expected split: ``{chi2, p, expected, mismatch}`` (mismatch: p < :data:`SRM_ALPHA`)."""
    obs = np.asarray(observed, np.float64)
    w = np.asarray(weights, np.float64)
    total = obs.sum()
    if total <= 0 or len(obs) < 2:
        return {"chi2": None, "p": None, "expected": [0.0] * len(obs), "mismatch": False}
    exp = total * w / w.sum()
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    p = float(_stats().chi2.sf(chi2, len(obs) - 1))
    return {"chi2": chi2, "p": p, "expected": exp.tolist(), "mismatch": bool(p < SRM_ALPHA)}
