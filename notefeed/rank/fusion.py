"""Fusion of task predictions into one ranking score, and the weight search.

``product``: ``prod_t p_t ** w_t``, returned as its logarithm ``sum_t w_t log(eps + p_t)`` (same
order, no underflow). ``sum``: ``sum_t w_t p_t``. With ``w_t >= 0`` both are non-decreasing in
every task score. ``dwell`` predictions are log1p seconds; they enter as they are.

:func:`tune_fusion` is the pure search: optuna TPE over non-negative weights maximising any
``objective(weights) -> float``. :func:`offline_objective` is one such objective on logged data:
per request, top-k engagement under a floor on the small-creator share of the top-k.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FusionConfig", "fuse", "tune_fusion", "offline_objective", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS: dict[str, float] = {"click": 1.0, "like": 0.5, "collect": 0.5, "comment": 0.3,
                                     "share": 0.3, "dwell": 0.2}


@dataclass
class FusionConfig:
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    mode: str = "product"  # product | sum
    eps: float = 1e-6


def fuse(preds: Mapping[str, np.ndarray], weights: Mapping[str, float], mode: str = "product",
         eps: float = 1e-6) -> np.ndarray:
    """(n,) float64 fused score from ``{task: (n,)}``; tasks missing from ``preds`` are skipped."""
    if mode not in ("product", "sum"):
        raise ValueError(f"fuse: field 'mode' must be 'product' or 'sum', got {mode!r}")
    n = len(next(iter(preds.values()))) if preds else 0
    out = np.zeros(n, np.float64)
    for task, w in weights.items():
        if task not in preds or w == 0:
            continue
        if w < 0 or not np.isfinite(w):
            raise ValueError(f"fuse: weight for '{task}' must be finite and >= 0, got {w}")
        p = np.asarray(preds[task], np.float64)
        if p.shape != (n,):
            raise ValueError(f"fuse: '{task}' has shape {p.shape}, expected ({n},)")
        if np.isnan(p).any():
            raise ValueError(f"fuse: '{task}' has NaN")
        out += w * (np.log(eps + np.maximum(p, 0.0)) if mode == "product" else p)
    return out


def tune_fusion(objective: Callable[[dict[str, float]], float], n_trials: int, seed: int,
                tasks: Sequence[str] = tuple(DEFAULT_WEIGHTS), high: float = 2.0,
                progress: bool = False, baseline: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Maximise ``objective(weights)`` with optuna TPE; returns best weights, value and trials.
    The first trial is ``baseline`` (default :data:`DEFAULT_WEIGHTS`), so the search is compared
    with the hand-set weights in the same run."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    first = DEFAULT_WEIGHTS if baseline is None else baseline
    study.enqueue_trial({t: float(first.get(t, 1.0)) for t in tasks})  # the hand-set weights first

    def _obj(trial: optuna.Trial) -> float:
        w = {t: trial.suggest_float(t, 0.0, high) for t in tasks}
        return float(objective(w))

    study.optimize(_obj, n_trials=n_trials, show_progress_bar=progress)
    return {"best_weights": dict(study.best_params), "best_value": float(study.best_value),
            "default_value": float(study.trials[0].value or 0.0),
            "trials": [{"weights": t.params, "value": t.value} for t in study.trials]}


def offline_objective(preds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], group: np.ndarray,
                      small: np.ndarray, k: int = 10, min_small_share: float = 0.5, penalty: float = 10.0,
                      gains: Mapping[str, float] | None = None, mode: str = "product") -> Callable[[dict[str, float]], float]:
    """Objective over logged requests: mean top-``k`` gain per request (``gains`` per task label,
    default 1 each) minus ``penalty`` x shortfall of the top-k small-creator share."""
    group = np.asarray(group)
    small = np.asarray(small, bool)
    gains = dict(gains or {t: 1.0 for t in labels if t != "dwell"})
    gain = np.zeros(len(group))
    for t, g in gains.items():
        gain += g * np.nan_to_num(np.asarray(labels[t], np.float64))
    n_groups = len(np.unique(group))

    def objective(weights: dict[str, float]) -> float:
        s = fuse(preds, weights, mode)
        order = np.lexsort((-s, group))
        g = group[order]
        starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
        rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
        top = order[rank < k]
        engagement = gain[top].sum() / max(n_groups, 1)
        share = small[top].mean() if len(top) else 0.0
        return float(engagement - penalty * max(0.0, min_small_share - share))

    return objective
