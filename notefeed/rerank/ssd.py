"""Sliding Spectrum Decomposition (Huang et al., KDD 2021), Xiaohongshu's feed diversifier.

Greedy: slot t takes ``argmax_j q_j + gamma * ||r_j||`` where ``r_j`` is item j's residual
after Gram-Schmidt against the items in the sliding window (the ``window - 1`` slots before
t, so every ``window`` consecutive slots are scored as one volume). ``||r_j||`` is the factor
by which j would grow the window's spanned volume.

How the residuals are kept (and why):

- *before the window is full* the basis only grows, so residual norms are updated
  incrementally: project all candidates on the new orthonormal direction and subtract its
  square, ``O(N d)`` per step (the basis coefficients are stored, Chen et al.-style, so the new
  direction costs ``O(N t)`` more and no d-dim vector is materialised);
- *once items leave the window* Gram-Schmidt can't cheaply "un-project" the oldest item
  (every later direction depends on it), so the residual norms are recomputed from the
  window's Gram matrix and the stored inner products: ``O(N w^2 + w^3)`` per step, no d term
  (see :func:`~notefeed.rerank._common.window_residual_sq`). Each item's inner products with
  all candidates are computed once, ``O(N d)``.

Total ``O(T N (d + w^2))`` for T slots, all of it vectorised over the N candidates (no Python
loop over candidates in a step). With w = 10 the w^2 term is comparable to d = 64.

**Stabilised variant** (:class:`SSDReRanker` defaults, after the paper's practical notes):
quality is min-max normalised per request so ``gamma`` means the same across score scales,
vectors are L2-normalised, and a constant ``bias`` dimension is appended -- every item then
has a floor of novelty, so zero or tiny vectors stay selectable and noisy short vectors
cannot dominate the volume term.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from notefeed.rerank._common import QualityNorm, normalise_quality, pick, slide_window, window_inverse
from notefeed.rerank.base import RERANKERS, RerankInput, unit_rows, validate_input
from notefeed.rerank.constraints import FairnessConfig, PageConstraints, RuleConfig

__all__ = ["ssd", "SSDReRanker", "ssd_vectors"]


def ssd(
    quality: np.ndarray,
    vectors: np.ndarray,
    k: int,
    gamma: float = 0.25,
    window: int = 10,
    jitter: float = 1e-8,
    constraints: PageConstraints | None = None,
) -> np.ndarray:
    """SSD greedy selection.

    ``quality`` (N,), ``vectors`` (N, d) (used as given: prepare with :func:`ssd_vectors`),
    ``k <= N``; ``window <= 0`` means an unbounded window (plain Gram-Schmidt volume).
    Returns (k,) int64 positions in display order.
    """
    n = quality.shape[0]
    sel = np.empty(k, np.int64)
    if k == 0:
        return sel
    V = np.ascontiguousarray(vectors, dtype=np.float64)
    norms2 = np.einsum("nd,nd->n", V, V)
    r2 = norms2.copy()
    look = (window - 1) if window > 0 else k  # how many previous slots a candidate is compared to
    C = np.empty((k, n))  # inner products of each selected item with all candidates
    E = np.empty((min(look, k), n))  # coefficients on the orthonormal basis (growing phase)
    GG = np.empty((k, k) if window > 0 else (0, 0))  # Gram matrix of the selected items
    Ginv: np.ndarray | None = None  # inverse Gram matrix of the current window
    base = quality.astype(np.float64, copy=True)  # -inf once taken: no mask op per step
    taken = np.zeros(n, bool)
    gain = np.empty(n)
    for t in range(k):
        np.sqrt(r2, out=gain)
        gain *= gamma
        gain += base
        j = pick(gain, taken, constraints)
        sel[t] = j
        taken[j] = True
        base[j] = -np.inf
        if t == k - 1 or look <= 0 or gamma == 0.0:
            continue
        np.dot(V, V[j], out=C[t])
        C[t, j] += jitter  # the Gram diagonal, keeps the sliding phase's Cholesky defined
        if window > 0:  # the window's Gram matrix, for the sliding phase
            lo = max(0, t - look)
            GG[t, lo : t + 1] = GG[lo : t + 1, t] = C[t, sel[lo : t + 1]]
        if t < look:  # growing phase: add one orthonormal direction
            dj = r2[j]
            if dj <= jitter:  # j already in the span: no new direction
                E[t] = 0.0
                continue
            e = E[t]
            if t:
                np.dot(E[:t, j], E[:t], out=e)
                np.subtract(C[t], e, out=e)
            else:
                e[:] = C[t]
            e /= np.sqrt(dj)
            r2 -= e * e
            np.maximum(r2, 0.0, out=r2)
        else:  # sliding phase: the oldest item leaves, j joins
            lo = t - look
            if lo == 0:  # first slide: invert the full window once
                Ginv = window_inverse(GG[:look, :look])
            Ginv = slide_window(C[lo : t + 1], GG[lo : t + 1, lo : t + 1], r2, Ginv, norms2)
    return sel


def ssd_vectors(vectors: np.ndarray, normalise: bool = True, bias: float = 0.0) -> np.ndarray:
    """(N, d) -> (N, d or d+1): optional unit rows, then a constant ``bias`` column when > 0."""
    V = unit_rows(vectors) if normalise else np.asarray(vectors, dtype=np.float64)
    if bias > 0:
        V = np.hstack([V, np.full((V.shape[0], 1), bias)])
    return V


@RERANKERS.register("rerank/ssd")
@dataclass
class SSDReRanker:
    """SSD with rules and fairness. Defaults are the stabilised variant."""

    gamma: float = 0.25
    window: int = 10
    bias: float = 0.1
    normalise: bool = True
    quality_norm: QualityNorm = "minmax"
    rules: RuleConfig = field(default_factory=RuleConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    name: str = "rerank/ssd"

    def __post_init__(self) -> None:
        if not np.isfinite(self.gamma) or self.gamma < 0:
            raise ValueError(f"SSDReRanker: 'gamma' must be finite and >= 0, got {self.gamma}")
        if self.bias < 0:
            raise ValueError(f"SSDReRanker: 'bias' must be >= 0, got {self.bias}")

    def select(self, inp: RerankInput, k: int) -> np.ndarray:
        inp, k = validate_input(inp, k)
        cons = PageConstraints(k, self.rules, self.fairness, inp.authors, inp.categories, inp.small_creator)
        q = normalise_quality(inp.scores, self.quality_norm)
        V = ssd_vectors(inp.vectors, self.normalise, self.bias)
        return ssd(q, V, k, self.gamma, self.window, constraints=cons if cons.active else None)
