"""DPP fast greedy MAP inference (Chen, Zhang & Zhou, NeurIPS 2018), full and sliding-window.

Kernel ``L = diag(q) S diag(q)`` with ``S = V V^T`` over L2-normalised item vectors (cosine
similarity; a Gram matrix is PSD by construction, so nothing needs clamping -- clamping negative
cosines to 0 would *break* PSD -- and a ``jitter`` on the diagonal keeps it strictly PD).
Quality uses the paper's relevance/diversity trade-off: ``q_i = exp(alpha * r_i)`` with
``alpha = theta / (2 (1 - theta))``, so ``log det L_Y = (theta/(1-theta)) sum r + log det S_Y``,
i.e. the objective ``theta * sum r + (1 - theta) * log det S_Y`` up to a constant factor.

Because ``diag(q)`` factors out of the incremental Cholesky (``d_i(L) = q_i d_i(S)``), the
greedy step is run on S in log space: ``argmax 2 alpha r_i + log d_i^2`` -- identical picks
and no ``exp`` overflow for theta near 1.

Incremental Cholesky (the paper's Algorithm 1): each candidate i keeps a row c_i and
``d_i^2`` (its conditional variance given the selection); selecting j adds
``e_i = (S_ji - <c_j, c_i>) / d_j`` to every row and ``d_i^2 -= e_i^2`` -- ``O(N t)`` per step plus
``O(N d)`` for S's row j, so ``O(N k^2 + N k d)`` total.

**Early stop**: when the best candidate's ``d^2`` falls below ``eps`` the log-det gain has
collapsed (every remaining item is nearly in the span); the remaining slots are then filled by
quality alone, still through the rules.

**Sliding window** (the paper's Section 4 variant): diversity only against the ``window - 1``
previous slots; the conditional variance is recomputed from the window's Gram matrix once items
leave it (same code path as SSD's sliding phase).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from notefeed.rerank._common import QualityNorm, normalise_quality, pick, slide_window, window_inverse
from notefeed.rerank.base import RERANKERS, RerankInput, unit_rows, validate_input
from notefeed.rerank.constraints import FairnessConfig, PageConstraints, RuleConfig

__all__ = ["dpp_greedy", "dpp_alpha", "DPPReRanker"]


def dpp_alpha(theta: float) -> float:
    """The paper's ``alpha = theta / (2 (1 - theta))``; theta in [0, 1)."""
    if not 0.0 <= theta < 1.0:
        raise ValueError(f"DPP 'theta' must be in [0, 1), got {theta}")
    return theta / (2.0 * (1.0 - theta))


def dpp_greedy(
    quality: np.ndarray,
    vectors: np.ndarray,
    k: int,
    alpha: float = 1.0,
    window: int = 0,
    eps: float = 1e-6,
    jitter: float = 1e-6,
    constraints: PageConstraints | None = None,
) -> np.ndarray:
    """Greedy MAP of the DPP with kernel ``diag(exp(alpha q)) V V^T diag(exp(alpha q))``.

    ``quality`` (N,), ``vectors`` (N, d) unit rows, ``k <= N``; an all-zero row (no embedding)
    is treated as similar only to itself (``S_ii = 1``, ``S_ij = 0``);
    ``window <= 0``: the full (non-windowed) DPP. Returns (k,) int64 positions.
    """
    n = quality.shape[0]
    sel = np.empty(k, np.int64)
    if k == 0:
        return sel
    V = np.ascontiguousarray(vectors, dtype=np.float64)
    norms2 = np.einsum("nd,nd->n", V, V)
    # An item without a vector is similar only to itself: S_ii = 1, S_ij = 0.
    norms2[norms2 < 1e-12] = 1.0
    norms2 += jitter
    d2 = norms2.copy()
    logq = 2.0 * alpha * quality  # -inf once taken: no mask op per step
    fill = quality.astype(np.float64, copy=True)
    look = (window - 1) if window > 0 else k
    C = np.empty((k, n))  # Cholesky rows (growing phase) / inner products (sliding phase)
    GG = np.empty((k, k) if window > 0 else (0, 0))  # Gram matrix of the selected items
    Ginv: np.ndarray | None = None  # inverse Gram matrix of the current window
    taken = np.zeros(n, bool)
    gain = np.empty(n)
    collapsed = False
    for t in range(k):
        if not collapsed:
            with np.errstate(divide="ignore"):
                np.log(d2, out=gain)
            gain += logq
            j0 = int(gain.argmax())  # the unconstrained greedy choice decides the early stop
            collapsed = bool(d2[j0] < eps or gain[j0] == -np.inf)
        if collapsed:
            np.copyto(gain, fill)
        j = pick(gain, taken, constraints)
        sel[t] = j
        taken[j] = True
        logq[j] = -np.inf
        fill[j] = -np.inf
        if t == k - 1 or collapsed:
            continue
        if d2[j] < eps:  # (a rule forced j): no direction to add, and none removed later
            collapsed = True
            continue
        if look <= 0:
            continue
        s_j = C[t]
        np.dot(V, V[j], out=s_j)
        s_j[j] = norms2[j]
        if window <= 0 or t < look:  # Algorithm 1: incremental Cholesky, row t of C
            if t:
                s_j -= C[:t, j] @ C[:t]
            s_j /= np.sqrt(d2[j])
            d2 -= s_j * s_j
            np.maximum(d2, 0.0, out=d2)
            if window > 0 and t == look - 1:
                # Switch to inner products for the sliding phase: rebuild them from S rows.
                C[: t + 1] = V[sel[: t + 1]] @ V.T
                C[np.arange(t + 1), sel[: t + 1]] = norms2[sel[: t + 1]]
                GG[: t + 1, : t + 1] = C[: t + 1][:, sel[: t + 1]]
        else:  # sliding phase: the oldest item leaves, j joins
            lo = t - look
            GG[t, lo : t + 1] = GG[lo : t + 1, t] = s_j[sel[lo : t + 1]]
            if lo == 0:  # first slide: invert the full window once
                Ginv = window_inverse(GG[:look, :look])
            Ginv = slide_window(C[lo : t + 1], GG[lo : t + 1, lo : t + 1], d2, Ginv, norms2)
    return sel


@RERANKERS.register("rerank/dpp")
@dataclass
class DPPReRanker:
    """Fast greedy DPP with rules and fairness; ``window > 0`` gives the sliding-window variant."""

    theta: float = 0.7
    window: int = 0
    eps: float = 1e-6
    quality_norm: QualityNorm = "minmax"
    rules: RuleConfig = field(default_factory=RuleConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    name: str = "rerank/dpp"

    def __post_init__(self) -> None:
        dpp_alpha(self.theta)  # validates theta

    def select(self, inp: RerankInput, k: int) -> np.ndarray:
        inp, k = validate_input(inp, k)
        cons = PageConstraints(k, self.rules, self.fairness, inp.authors, inp.categories, inp.small_creator)
        q = normalise_quality(inp.scores, self.quality_norm)
        return dpp_greedy(
            q, unit_rows(inp.vectors), k, dpp_alpha(self.theta), self.window, self.eps,
            constraints=cons if cons.active else None,
        )


@RERANKERS.register("rerank/dpp-window")
def _dpp_window(**params: object) -> DPPReRanker:
    params.setdefault("window", 10)
    params.setdefault("name", "rerank/dpp-window")
    return DPPReRanker(**params)  # type: ignore[arg-type]
