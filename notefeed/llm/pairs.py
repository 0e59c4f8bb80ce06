"""NoteLLM's related-note pairs mined from behaviour: normalised co-occurrence with per-note caps.

For every user, positives in time order (one entry per note, at its first positive); two notes
co-occur when they are at most ``window`` positions apart. A user adds ``1 / n_u`` per pair
(``n_u``: that user's notes), so heavy users do not decide everything (NoteLLM, Zhang et al.,
WWW 2024, section 3.1). The sum is normalised by the notes' degrees (``sqrt(d_i d_j)``, users
engaging with each), each note keeps its ``top_k`` partners, and a note may be the partner of
at most ``cap`` notes, so a handful of popular notes does not fill the training set.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["cooccurrence_matrix", "mine_pairs"]


def cooccurrence_matrix(user: np.ndarray, item: np.ndarray, ts: np.ndarray, n_items: int,
                        window: int = 10) -> sp.csr_matrix:
    """(n_items, n_items) symmetric normalised co-occurrence scores from positive events (each (e,))."""
    u, it, t = (np.asarray(x, np.int64) for x in (user, item, ts))
    order = np.lexsort((t, u))
    u, it = u[order], it[order]
    first = np.ones(len(u), bool)
    if len(u):  # keep each (user, note) at its first positive
        key = u * (n_items + 1) + it
        _, idx = np.unique(key, return_index=True)
        first[:] = False
        first[idx] = True
    u, it = u[first], it[first]
    if len(u) == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    n_u = np.bincount(u)
    w_user = 1.0 / np.maximum(n_u, 1)
    rows, cols, vals = [], [], []
    for d in range(1, int(window) + 1):
        same = u[:-d] == u[d:]
        a, b = it[:-d][same], it[d:][same]
        w = w_user[u[d:][same]]
        keep = a != b
        rows += [a[keep], b[keep]]
        cols += [b[keep], a[keep]]
        vals += [w[keep], w[keep]]
    m = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_items, n_items)).tocsr()
    m.sum_duplicates()
    deg = np.bincount(it, minlength=n_items).astype(np.float64)
    inv = 1.0 / np.sqrt(np.maximum(deg, 1.0))
    m = sp.diags(inv) @ m @ sp.diags(inv)
    return sp.csr_matrix(m, dtype=np.float32)


def mine_pairs(user: np.ndarray, item: np.ndarray, ts: np.ndarray, n_items: int, window: int = 10,
               top_k: int = 10, cap: int = 30, min_score: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Related-note pairs ``(m, 2)`` int64 (``i < j``, unique) and their scores ``(m,)`` float32."""
    m = cooccurrence_matrix(user, item, ts, n_items, window)
    src, dst, sc = [], [], []
    for i in range(n_items):
        a, b = m.indptr[i], m.indptr[i + 1]
        if a == b:
            continue
        cols, vals = m.indices[a:b], m.data[a:b]
        top = np.argsort(-vals, kind="stable")[:top_k]
        top = top[vals[top] > min_score]
        src.append(np.full(len(top), i, np.int64))
        dst.append(cols[top].astype(np.int64))
        sc.append(vals[top])
    if not src:
        return np.empty((0, 2), np.int64), np.empty(0, np.float32)
    s, d, v = np.concatenate(src), np.concatenate(dst), np.concatenate(sc)
    # per-note cap on how often a note is someone's partner: the highest scores first
    order = np.argsort(-v, kind="stable")
    s, d, v = s[order], d[order], v[order]
    seen = np.zeros(n_items, np.int64)
    keep = np.zeros(len(d), bool)
    for j, x in enumerate(d):
        if seen[x] < cap:
            seen[x] += 1
            keep[j] = True
    lo, hi = np.minimum(s[keep], d[keep]), np.maximum(s[keep], d[keep])
    key, idx = np.unique(lo * n_items + hi, return_index=True)
    pairs = np.stack([key // n_items, key % n_items], axis=1).astype(np.int64)
    return pairs, v[keep][idx].astype(np.float32)
