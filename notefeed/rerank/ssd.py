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
- *once items leave the window* Gram-Schmidt can't cheaply "un-project" the oldest item o
  (every later direction depends on it). With H the inverse Gram matrix of (o, the window items
  R that stay, the new item j) -- ``m + 1 <= window`` items -- both changes are rank one:
  ``r2 += (H[0] @ C)^2 / H[0, 0]`` (o leaves) and ``r2 -= (H[m] @ C)^2 / H[m, m]`` (j joins),
  C the stored inner products of those items with all candidates. Columns 0 and m of H come
  from one LAPACK ``posv`` (Cholesky + solve) on the gathered Gram matrix, and the two rows over
  the candidates from one ``(2, m+1) @ (m+1, N)`` product: ``O(N (d + w) + w^3)`` per step in
  about ten numpy calls (at N = 500, w = 10 the per-call overhead, not the arithmetic, is the
  cost -- an m x m inverse kept up to date by block formulas took ~25 calls per step).
  A (near-)singular window (exact repeats, no jitter) falls back to an exact pseudo-inverse
  recompute until it is well conditioned again.

Speed details: gamma is folded into the vectors (the gain is then ``q + ||r||``, one op less
per step) and the vectors are stored item-per-column, ``(d, N)`` (the gemv of a new item with
all candidates is ~25% faster that way). Total ``O(T N (d + w))`` for T slots, all of it
vectorised over the N candidates.

**Stabilised variant** (:class:`SSDReRanker` defaults, after the paper's practical notes):
quality is min-max normalised per request so ``gamma`` means the same across score scales,
vectors are L2-normalised, and a constant ``bias`` dimension is appended -- every item then
has a floor of novelty, so zero or tiny vectors stay selectable and noisy short vectors
cannot dominate the volume term.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg.lapack import dposv as _posv

from notefeed.rerank._common import QualityNorm, normalise_quality, window_inverse
from notefeed.rerank.base import RERANKERS, RerankInput, validate_input
from notefeed.rerank.constraints import FairnessConfig, PageConstraints, RuleConfig

__all__ = ["ssd", "SSDReRanker", "ssd_vectors"]

_TOL = 1e-10  # relative pivot below which a window counts as singular
_JITTER = 1e-8  # added to the Gram diagonal of selected items


def ssd(
    quality: np.ndarray,
    vectors: np.ndarray,
    k: int,
    gamma: float = 0.25,
    window: int = 10,
    jitter: float = _JITTER,
    constraints: PageConstraints | None = None,
) -> np.ndarray:
    """SSD greedy selection.

    ``quality`` (N,), ``vectors`` (N, d) (used as given: prepare with :func:`ssd_vectors`),
    ``k <= N``; ``window <= 0`` means an unbounded window (plain Gram-Schmidt volume);
    ``gamma >= 0``. Returns (k,) int64 positions in display order.
    """
    if not np.isfinite(gamma) or gamma < 0:  # folded into the vectors below, so it must be >= 0
        raise ValueError(f"ssd: 'gamma' must be finite and >= 0, got {gamma}")
    # gamma folded into the vectors (one op less per step), stored item-per-column (faster gemv)
    VT = np.multiply(np.asarray(vectors, dtype=np.float64).T, gamma, order="C")
    return _ssd_scaled(quality, VT, k, window, jitter * gamma * gamma, gamma > 0.0, constraints)


def _ssd_scaled(
    quality: np.ndarray,
    VT: np.ndarray,
    k: int,
    window: int,
    jitter: float,
    diversify: bool,
    constraints: PageConstraints | None,
) -> np.ndarray:
    """:func:`ssd` on ``VT = gamma * vectors.T`` (d, N), C-contiguous, and ``jitter * gamma^2``:
    the gain is then ``q + ||r||`` (``||r||`` scales with the vectors). ``diversify=False``
    (gamma = 0): quality only."""
    n = quality.shape[0]
    sel = np.empty(k, np.int64)
    if k == 0:
        return sel
    norms2 = np.einsum("dn,dn->n", VT, VT)
    r2 = norms2.copy()
    look = (window - 1) if window > 0 else k  # how many previous slots a candidate is compared to
    C = np.empty((k, n))  # inner products of each selected item with all candidates
    E = np.empty((min(look, k), n))  # coefficients on the orthonormal basis (growing phase)
    base = quality.astype(np.float64, copy=True)  # -inf once taken: no mask op per step
    taken = np.zeros(n, bool)
    gain = np.empty(n)
    # sliding phase: right-hand sides picking columns 0 and m of the inverse Gram matrix H of
    # (oldest item o, window items R that stay, new item j); their two rows over the candidates
    rhs = np.zeros((look + 1, 2))
    rhs[0, 0] = rhs[-1, 1] = 1.0
    D = np.empty((2, n))
    wts = np.empty(2)
    step = np.empty(n)
    zero = np.zeros(n)  # np.maximum against an array is ~2x faster than against a scalar
    ok = True  # the current window's Gram matrix is well conditioned (every pivot > _TOL)
    # ~10 small numpy calls per step: local names save the attribute look-ups
    dot, sqrt, maximum, take, posv, ninf = np.dot, np.sqrt, np.maximum, np.take, _posv, -np.inf
    for t in range(k):
        sqrt(r2, out=gain)
        gain += base
        j = int(gain.argmax()) if constraints is None else constraints.pick(gain, taken)
        sel[t] = j
        taken[j] = True
        base[j] = ninf
        if t == k - 1 or look <= 0 or not diversify:
            continue
        Ct = C[t]
        dot(VT[:, j], VT, out=Ct)
        Ct[j] += jitter  # the Gram diagonal, keeps the sliding phase's Cholesky defined
        if t < look:  # growing phase: add one orthonormal direction
            dj = r2[j]
            ok = ok and dj > _TOL * Ct[j]
            if dj <= jitter:  # j already in the span: no new direction
                E[t] = 0.0
                continue
            e = E[t]
            if t:
                dot(E[:t, j], E[:t], out=e)
                np.subtract(Ct, e, out=e)
            else:
                e[:] = Ct
            e /= np.sqrt(dj)
            r2 -= e * e
            maximum(r2, zero, out=r2)
            continue
        # sliding phase: the oldest item o leaves, j joins
        lo = t - look
        Cw = C[lo : t + 1]  # rows: o, the window items R that stay, j
        if ok:
            Gp = take(Cw, sel[lo : t + 1], axis=1)  # Gram of (o, R, j), symmetric
            # One LAPACK call (Cholesky + solve): columns 0 and m of H = Gp^{-1}.
            _, X, info = posv(Gp.T, rhs, lower=1, overwrite_a=1)
            h00, hjj = X[0, 0], X[look, 1]  # 1 / (residual of o vs R + j), 1 / (j vs o + R)
            if info == 0 and h00 > 0.0 and 0.0 < hjj * _TOL * Ct[j] < 1.0:
                # j joins: r2 -= (H[m] @ Cw)^2 / H[m, m]; o leaves: r2 += (H[0] @ Cw)^2 / H[0, 0]
                dot(X.T, Cw, out=D)
                D *= D
                wts[0] = 1.0 / h00
                wts[1] = -1.0 / hjj
                dot(wts, D, out=step)
                r2 += step
                maximum(r2, zero, out=r2)
                continue
        # (near-)singular window: exact recompute through the pseudo-inverse
        Gn = take(Cw[1:], sel[lo + 1 : t + 1], axis=1)
        Cn = Cw[1:]
        r2[:] = norms2 - np.einsum("mn,mn->n", np.linalg.pinv(Gn) @ Cn, Cn)
        maximum(r2, zero, out=r2)
        ok = window_inverse(Gn) is not None
    return sel


def ssd_vectors(vectors: np.ndarray, normalise: bool = True, bias: float = 0.0) -> np.ndarray:
    """(N, d) -> (N, d or d+1): optional unit rows, then a constant ``bias`` column when > 0.
    (A Fortran-ordered view: the kernel wants the vectors item-per-column.)"""
    return _prepared(vectors, normalise, bias, 1.0).T


def _prepared(vectors: np.ndarray, normalise: bool, bias: float, scale: float) -> np.ndarray:
    """``scale * ssd_vectors(...).T``, (d[+1], N), written into one C-contiguous buffer."""
    X = np.asarray(vectors, dtype=np.float64)
    n, d = X.shape
    out = np.empty((d + 1, n) if bias > 0 else (d, n))
    if scale == 0.0:  # gamma = 0: quality only, the vectors are never read
        out.fill(0.0)
    elif normalise:  # all-zero rows stay zero, as in unit_rows
        norms = np.sqrt(np.einsum("nd,nd->n", X, X))
        norms[norms <= 1e-12] = 1.0
        if scale != 1.0:
            norms /= scale
        np.divide(X.T, norms, out=out[:d])
    else:
        np.multiply(X.T, scale, out=out[:d])
    if bias > 0:
        out[d] = bias * scale
    return out


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
        VT = _prepared(inp.vectors, self.normalise, self.bias, self.gamma)  # gamma folded in
        jitter = _JITTER * self.gamma**2
        return _ssd_scaled(q, VT, k, self.window, jitter, self.gamma > 0.0, cons if cons.active else None)
