"""Pieces shared by the greedy kernels: quality normalisation, the pick step, window residuals."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dtrtri as _trtri

from notefeed.rerank.constraints import PageConstraints

__all__ = ["normalise_quality", "pick", "slide_window", "window_inverse", "window_residual_sq", "QualityNorm"]

QualityNorm = Literal["none", "minmax", "zscore"]


def normalise_quality(scores: np.ndarray, how: QualityNorm) -> np.ndarray:
    """(N,) -> (N,) float64. ``minmax`` maps to [0, 1] (all-equal scores -> 0); ``zscore``
    centres and scales by the std. Makes a diversity weight mean the same thing whatever the
    upstream ranker's score scale (logits, probabilities, SVD dot products)."""
    q = np.asarray(scores, dtype=np.float64)
    if how == "none" or q.size == 0:
        return q.copy()
    if how == "minmax":
        span = q.max() - q.min()
        return (q - q.min()) / span if span > 0 else np.zeros_like(q)
    if how == "zscore":
        sd = q.std()
        return (q - q.mean()) / sd if sd > 0 else np.zeros_like(q)
    raise ValueError(f"quality_norm must be none/minmax/zscore, got {how!r}")


def pick(gain: np.ndarray, taken: np.ndarray, cons: PageConstraints | None) -> int:
    """argmax of ``gain`` (N,) over candidates allowed by ``cons``. Kernels keep ``-inf`` at
    taken positions of ``gain`` themselves (cheaper than masking each step); with ``cons``,
    ``gain`` is scratch and modified in place."""
    if cons is None:
        return int(gain.argmax())
    return cons.pick(gain, taken)


def window_inverse(G: np.ndarray) -> np.ndarray | None:
    """Inverse of a window Gram matrix (m, m), or ``None`` when it is (numerically) singular."""
    if G.shape[0] == 0:
        return np.zeros((0, 0))
    ev = np.linalg.eigvalsh(G)
    if ev[0] <= 1e-10 * max(ev[-1], 1e-300):
        return None
    return np.linalg.inv(G)


def slide_window(
    Cw: np.ndarray, Gw: np.ndarray, r2: np.ndarray, Ginv: np.ndarray | None, norms2: np.ndarray
) -> np.ndarray | None:
    """Slide the window by one item, updating squared residual norms ``r2`` (N,) in place.

    ``Cw`` (m+1, N): inner products with all N candidates of, in order, the oldest window item
    o, the m-1 items R that stay, and the newly selected item j; ``Gw`` (m+1, m+1) their Gram
    matrix (diagonal jitter included); ``Ginv`` the inverse of ``Gw[:m, :m]`` (the current
    window), or ``None`` if that is singular. On entry ``r2`` holds residuals against
    {o} + R, on exit against R + {j}. Returns the inverse Gram matrix of R + {j} (or ``None``).

    - o leaves: ``r2 += (u . v)^2``, u = o's unit residual against R; with ``A = Ginv`` that is
      ``(A[0] @ C_W)^2 / A[0, 0]`` (block inverse: ``A[0, 0] = 1 / s_o``);
    - j joins: ``r2 -= (e . v)^2``, e = j's unit residual against R:
      ``(c_j - a @ C_R)^2 / s_j`` with ``a = G_R^{-1} g_Rj`` and ``s_j = G_jj - g_Rj . a``;
    - the inverse follows by the same block formulas (downdate o, update j).

    O(m N + m^2) per step, two matrix-vector products over the candidates and no LAPACK call:
    at m ~ 10 a LAPACK call's overhead (and its thread pool waking up) costs more than the
    arithmetic. A singular window (exact repeats, no jitter) falls back to an exact
    pseudo-inverse recompute, O(m^2 N), for as long as it stays singular.
    """
    m = Gw.shape[0] - 1
    if Ginv is not None:
        g0 = Ginv[0]
        a00 = float(g0[0])
        h = g0[1:]
        GRi = Ginv[1:, 1:] - h[:, None] * (h / a00)
        gRj = Gw[1:-1, m]
        a = GRi @ gRj
        s_j = float(Gw[m, m] - gRj @ a)
        if a00 > 0 and s_j > 1e-10 * float(Gw[m, m]):
            A = np.zeros((2, m + 1))  # both coefficient rows from one product over Cw
            A[0, :m] = g0
            A[1, 1:m] = -a
            A[1, m] = 1.0
            D = A @ Cw
            D *= D
            r2 += np.array([1.0 / a00, -1.0 / s_j]) @ D
            np.maximum(r2, 0.0, out=r2)
            out = np.empty((m, m))
            out[:-1, :-1] = GRi + a[:, None] * (a / s_j)
            out[-1, :-1] = out[:-1, -1] = -a / s_j
            out[-1, -1] = 1.0 / s_j
            return out
    # degenerate window: exact recompute through the pseudo-inverse
    Gn = Gw[1:, 1:]
    Cn = Cw[1:]
    r2[:] = norms2 - np.einsum("mn,mn->n", np.linalg.pinv(Gn) @ Cn, Cn)
    np.maximum(r2, 0.0, out=r2)
    return window_inverse(Gn)


def window_residual_sq(C: np.ndarray, window: np.ndarray, norms2: np.ndarray) -> np.ndarray:
    """Squared residual norm of every candidate against the span of the window items.

    ``C`` (m, N): inner products of the m window items with all N candidates (any diagonal
    jitter already added at ``C[i, window[i]]``); ``window`` (m,) their candidate positions;
    ``norms2`` (N,) squared norms. Uses the window's Gram matrix:
    ``||r_j||^2 = ||v_j||^2 - c_j^T G^{-1} c_j`` -- O(m^2 N + m^3), independent of d.
    This equals the DPP conditional variance ``L_jj - L_jW L_WW^{-1} L_Wj`` for L = V V^T.
    The m x m work goes straight to LAPACK (Cholesky ``potrf`` + triangular inverse ``trtri``):
    at m ~ 10 the per-call overhead of ``np.linalg`` dominates the arithmetic.
    """
    G = C[:, window]
    R, info = _potrf(G)
    if info == 0:
        Ri, info = _trtri(R)
    if info != 0:  # not positive definite (exactly repeated items, no jitter): pseudo-inverse
        Z = C
        r2 = norms2 - np.einsum("mn,mn->n", np.linalg.pinv(G) @ C, C)
    else:
        Z = Ri.T @ C  # coefficients on an orthonormal basis of the window's span
        r2 = norms2 - np.einsum("mn,mn->n", Z, Z)
    np.maximum(r2, 0.0, out=r2)
    return r2
