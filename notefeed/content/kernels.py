"""Array kernels of the content stage: ItemCF neighbours, co-engagement pairs, top-k cosine,
the randomized truncated SVD of a matrix given by its products.

Pure functions on arrays (shapes in the docstrings). ItemCF is computed here rather than taken
from the recall stage so that content training and evaluation stay independent of it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from notefeed.content._common import ContentError

__all__ = ["item_neighbours", "cooccurrence_pairs", "topk_cosine", "randomized_components"]


def item_neighbours(
    interactions: sp.spmatrix,
    k: int = 20,
    min_common: int = 1,
    items: np.ndarray | None = None,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """ItemCF cosine top-``k`` neighbours of every item from a binary user x item matrix.

    ``sim(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|)``, counted only when at least ``min_common``
    users engaged with both. Processed in item chunks so memory stays ``chunk x n_items``.
    Shapes: interactions (n_users, n_items) -> (neighbours (n_items, k) int64 padded with -1,
    similarities (n_items, k) float32 padded with 0), each row sorted by descending similarity.
    """
    if not sp.issparse(interactions) or interactions.ndim != 2:
        raise ContentError("interactions: expected a scipy.sparse (n_users, n_items) matrix")
    if k < 1:
        raise ContentError(f"k: must be >= 1, got {k}")
    x = sp.csc_matrix(interactions, dtype=np.float32)
    x.data[:] = 1.0
    n = x.shape[1]
    counts = np.asarray(x.sum(axis=0)).ravel()
    inv = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    xt = x.T.tocsr()
    rows = np.arange(n) if items is None else np.asarray(items, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ContentError(f"items: index out of range [0, {n})")
    q = len(rows)
    nbr = np.full((q, k), -1, np.int64)
    sim = np.zeros((q, k), np.float32)
    kk = min(k, n - 1)
    for lo in range(0, q, chunk):
        hi = min(q, lo + chunk)
        r = rows[lo:hi]
        c = (xt[r] @ x).toarray()  # (chunk, n) co-engagement counts
        c[np.arange(hi - lo), r] = 0.0
        c[c < min_common] = 0.0
        s = c * inv[r, None] * inv[None, :]
        if kk < 1:
            continue
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        ts = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-ts, axis=1, kind="stable")
        top, ts = np.take_along_axis(top, order, axis=1), np.take_along_axis(ts, order, axis=1)
        ok = ts > 0
        nbr[lo:hi, :kk] = np.where(ok, top, -1)
        sim[lo:hi, :kk] = np.where(ok, ts, 0.0)
    return nbr, sim


def cooccurrence_pairs(
    interactions: sp.spmatrix, k: int = 10, min_common: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Positive training pairs: each item with its ItemCF top-``k`` neighbours.

    Returns ``(pairs (m, 2) int64, similarities (m,) float32)``; pairs are directed (i, j).
    """
    nbr, sim = item_neighbours(interactions, k=k, min_common=min_common)
    rows, cols = np.nonzero(nbr >= 0)
    return np.stack([rows, nbr[rows, cols]], axis=1).astype(np.int64), sim[rows, cols]


def topk_cosine(query: np.ndarray, items: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by cosine for each query row (both sides already unit rows).

    Shapes: query (q, d), items (n, d), exclude (q,) item index to skip (-1: none) ->
    (indices (q, k) int64, scores (q, k) float32), each row descending.
    """
    s = query @ items.T
    if exclude is not None:
        ok = exclude >= 0
        s[np.flatnonzero(ok), exclude[ok]] = -np.inf
    k = min(k, items.shape[0])
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    ts = np.take_along_axis(s, top, axis=1)
    order = np.argsort(-ts, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int64), np.take_along_axis(ts, order, axis=1).astype(np.float32)


def randomized_components(matmat: Callable[[np.ndarray], np.ndarray], rmatmat: Callable[[np.ndarray], np.ndarray],
                          shape: tuple[int, int], k: int, n_iter: int = 5, oversamples: int = 10, seed: int = 0,
                          dtype: type = np.float32) -> np.ndarray:
    """(k, shape[1]) the top ``k`` right singular vectors of an (m, n) matrix ``A`` known only
    by its products ``matmat(V) = A @ V`` and ``rmatmat(P) = A.T @ P``: the randomized range
    finder with ``n_iter`` power iterations (Halko, Martinsson and Tropp 2011, algorithm 4.4;
    each product re-normalised by an LU factor, or not at all for ``n_iter <= 2``), then the SVD
    of the small projected matrix.

    The steps, the random start (``numpy.random.RandomState(seed).normal``, as ``dtype``), the
    transposition of a wide matrix (``m < n``: the range of ``A.T`` is sampled instead) and the
    signs (each row's largest entry positive) are those of scikit-learn's ``TruncatedSVD``
    (``algorithm="randomized"``), so the components are that estimator's ``components_`` up to
    the float rounding of the products (tested). What it adds: ``A`` need not be stored, e.g.
    a product of two sparse factors much smaller than their product.
    """
    import scipy.linalg as la

    m, n = shape
    if not 1 <= k <= min(m, n):
        raise ContentError(f"k: must be in 1..{min(m, n)}, got {k}")
    transpose = m < n
    fwd, back = (rmatmat, matmat) if transpose else (matmat, rmatmat)
    cols = m if transpose else n
    size = k + oversamples
    q = np.random.RandomState(seed).normal(size=(cols, size)).astype(dtype, copy=False)

    def norm(x: np.ndarray) -> np.ndarray:
        return la.lu(x, permute_l=True, check_finite=False)[0] if n_iter > 2 else x

    for _ in range(n_iter):
        q = norm(fwd(q))
        q = norm(back(q))
    q = la.qr(fwd(q), mode="economic", check_finite=False)[0]
    b = np.ascontiguousarray(back(q).T)  # q.T @ A (of the sampled side)
    u_hat, _, vt = la.svd(b, full_matrices=False, check_finite=False)
    comps = (q @ u_hat)[:, :k].T if transpose else vt[:k]
    signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    return np.ascontiguousarray(comps * signs[:, None], dtype=dtype)
