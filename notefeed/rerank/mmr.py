"""Baselines: Maximal Marginal Relevance (Carbonell & Goldstein, 1998) and top-k by quality.

MMR slot t takes ``argmax_j lambda * q_j - (1 - lambda) * max_{s in selected} cos(v_j, v_s)``;
the running max similarity is updated with one matrix-vector product per step (O(N d)).
``window > 0`` compares only against the ``window - 1`` previous slots.
Top-k is the same greedy loop with gain = quality, so it obeys the rules too; without rules
it is a single sort.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from notefeed.rerank._common import QualityNorm, normalise_quality, pick
from notefeed.rerank.base import RERANKERS, RerankInput, unit_rows, validate_input
from notefeed.rerank.constraints import FairnessConfig, PageConstraints, RuleConfig

__all__ = ["mmr", "topk_greedy", "MMRReRanker", "TopKReRanker"]


def mmr(
    quality: np.ndarray,
    vectors: np.ndarray,
    k: int,
    lam: float = 0.7,
    window: int = 0,
    constraints: PageConstraints | None = None,
) -> np.ndarray:
    """``quality`` (N,), ``vectors`` (N, d) unit rows, ``k <= N`` -> (k,) int64 positions."""
    n = quality.shape[0]
    sel = np.empty(k, np.int64)
    if k == 0:
        return sel
    V = np.ascontiguousarray(vectors, dtype=np.float64)
    look = (window - 1) if window > 0 else k
    sims = np.empty((k, n)) if window > 0 else None
    maxsim = np.zeros(n)  # before the first pick there is no redundancy
    base = lam * np.asarray(quality, dtype=np.float64)  # -inf once taken
    taken = np.zeros(n, bool)
    for t in range(k):
        gain = base - (1.0 - lam) * maxsim
        j = pick(gain, taken, constraints)
        sel[t] = j
        taken[j] = True
        base[j] = -np.inf
        if t == k - 1 or look <= 0:
            continue
        s = V @ V[j]
        if sims is None:
            maxsim = np.maximum(maxsim, s) if t else s
        else:
            sims[t] = s
            maxsim = sims[max(0, t + 1 - look) : t + 1].max(axis=0)
    return sel


def topk_greedy(quality: np.ndarray, k: int, constraints: PageConstraints | None = None) -> np.ndarray:
    """Top-k by ``quality`` (N,), ties to the lower position; through the rules when given."""
    if constraints is None:
        return np.argsort(-quality, kind="stable")[:k].astype(np.int64)
    sel = np.empty(k, np.int64)
    taken = np.zeros(quality.shape[0], bool)
    for t in range(k):
        sel[t] = pick(quality.copy(), taken, constraints)
        taken[sel[t]] = True
    return sel


@RERANKERS.register("rerank/mmr")
@dataclass
class MMRReRanker:
    lam: float = 0.7
    window: int = 0
    quality_norm: QualityNorm = "minmax"
    rules: RuleConfig = field(default_factory=RuleConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    name: str = "rerank/mmr"

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"MMRReRanker: 'lam' must be in [0, 1], got {self.lam}")

    def select(self, inp: RerankInput, k: int) -> np.ndarray:
        inp, k = validate_input(inp, k)
        cons = PageConstraints(k, self.rules, self.fairness, inp.authors, inp.categories, inp.small_creator)
        q = normalise_quality(inp.scores, self.quality_norm)
        return mmr(q, unit_rows(inp.vectors), k, self.lam, self.window, cons if cons.active else None)


@RERANKERS.register("rerank/topk")
@dataclass
class TopKReRanker:
    rules: RuleConfig = field(default_factory=RuleConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    name: str = "rerank/topk"

    def select(self, inp: RerankInput, k: int) -> np.ndarray:
        inp, k = validate_input(inp, k)
        cons = PageConstraints(k, self.rules, self.fairness, inp.authors, inp.categories, inp.small_creator)
        return topk_greedy(inp.scores, k, cons if cons.active else None)
