"""Offline metrics as pure numpy functions.

Ranking metrics take ``recs`` (n_users, K) int item indices, best first, where ``-1`` pads a
list that ran out of candidates (it never counts as a hit and is ignored by beyond-accuracy
metrics), and ``truth``: the relevant items of each row, either a CSR matrix (n_users, n_items)
whose nonzeros are the relevant items or a sequence of n_users int arrays. Everything goes
through one boolean hit matrix (:func:`hit_matrix`), so no metric loops over users in Python.

Rows with no relevant item are left out of the means (a user with nothing to find says
nothing about a ranking); a matrix with none at all gives ``nan``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "Truth",
    "hit_matrix",
    "truth_counts",
    "recall_at_k",
    "ndcg_at_k",
    "hit_rate_at_k",
    "mrr_at_k",
    "ranking_metrics",
    "catalog_coverage",
    "ilad",
    "category_diversity",
    "novelty",
    "small_creator_share",
    "gini",
    "creator_exposure_gini",
    "auc",
    "gauc",
    "logloss",
    "logloss_per_task",
]

Truth = sp.csr_matrix | Sequence[np.ndarray]


# ---------------------------------------------------------------------- validation helpers
def _check_recs(recs: np.ndarray, k: int | None = None) -> np.ndarray:
    recs = np.asarray(recs)
    if recs.ndim != 2:
        raise ValueError(f"recs: expected a 2-d (n_users, K) array, got shape {recs.shape}")
    if not np.issubdtype(recs.dtype, np.integer):
        raise ValueError(f"recs: expected integer item indices, got dtype {recs.dtype}")
    if k is not None:
        if not isinstance(k, int | np.integer) or k <= 0:
            raise ValueError(f"k: must be a positive integer, got {k!r}")
        if k > recs.shape[1]:
            raise ValueError(f"k: {k} is larger than the {recs.shape[1]} recommendations per row")
    return recs


def _truth_csr(truth: Truth, n_rows: int) -> sp.csr_matrix:
    """Relevant items as a binary CSR with sorted, unique column indices per row."""
    if sp.issparse(truth):
        m = sp.csr_matrix(truth)
    else:
        if len(truth) != n_rows:
            raise ValueError(f"truth: {len(truth)} rows for {n_rows} recommendation rows")
        lens = np.fromiter((len(t) for t in truth), np.int64, len(truth))
        cols = np.concatenate([np.asarray(t, np.int64) for t in truth]) if lens.sum() else np.empty(0, np.int64)
        if cols.size and cols.min() < 0:
            raise ValueError("truth: negative item index")
        rows = np.repeat(np.arange(n_rows), lens)
        n_cols = int(cols.max()) + 1 if cols.size else 1
        m = sp.csr_matrix((np.ones(cols.size, np.float32), (rows, cols)), shape=(n_rows, n_cols))
    if m.shape[0] != n_rows:
        raise ValueError(f"truth: {m.shape[0]} rows for {n_rows} recommendation rows")
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m


def truth_counts(truth: Truth, n_rows: int) -> np.ndarray:
    """(n_rows,) int number of distinct relevant items per row."""
    return np.diff(_truth_csr(truth, n_rows).indptr)


def hit_matrix(recs: np.ndarray, truth: Truth) -> np.ndarray:
    """(n_users, K) bool: ``recs[u, j]`` is a relevant item of row ``u``.

    Vectorised by encoding (row, item) pairs as one int64 key and binary-searching the
    sorted relevant keys.
    """
    recs = _check_recs(recs)
    t = _truth_csr(truth, recs.shape[0])
    n_cols = max(t.shape[1], int(recs.max(initial=0)) + 1)
    rows = np.repeat(np.arange(t.shape[0], dtype=np.int64), np.diff(t.indptr))
    keys = rows * n_cols + t.indices.astype(np.int64)  # sorted: rows ascending, then columns
    q = np.arange(recs.shape[0], dtype=np.int64)[:, None] * n_cols + recs.astype(np.int64)
    if keys.size == 0:
        return np.zeros(recs.shape, bool)
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    return (keys[pos] == q) & (recs >= 0)


def _mean_over_users(values: np.ndarray, n_true: np.ndarray) -> float:
    ok = n_true > 0
    return float(values[ok].mean()) if ok.any() else float("nan")


def _recall(h: np.ndarray, n_true: np.ndarray, k: int) -> float:
    return _mean_over_users(h[:, :k].sum(1) / np.maximum(n_true, 1), n_true)


def _ndcg(h: np.ndarray, n_true: np.ndarray, k: int) -> float:
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (h[:, :k] * disc).sum(1)
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_true, k)]
    return _mean_over_users(dcg / np.where(idcg > 0, idcg, 1.0), n_true)


def _hit(h: np.ndarray, n_true: np.ndarray, k: int) -> float:
    return _mean_over_users(h[:, :k].any(1).astype(float), n_true)


def _mrr(h: np.ndarray, n_true: np.ndarray, k: int) -> float:
    hk = h[:, :k]
    first = hk.argmax(1)
    rr = np.where(hk.any(1), 1.0 / (first + 1.0), 0.0)
    return _mean_over_users(rr, n_true)


def recall_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / |relevant|. ``recs`` (n, K>=k)."""
    recs = _check_recs(recs, k)
    return _recall(hit_matrix(recs, truth), truth_counts(truth, len(recs)), k)


def ndcg_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Mean binary NDCG@k: DCG = Σ hit_j / log2(j+2); IDCG puts min(|relevant|, k) hits first."""
    recs = _check_recs(recs, k)
    return _ndcg(hit_matrix(recs, truth), truth_counts(truth, len(recs)), k)


def hit_rate_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Share of users with at least one relevant item in the top k."""
    recs = _check_recs(recs, k)
    return _hit(hit_matrix(recs, truth), truth_counts(truth, len(recs)), k)


def mrr_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Mean reciprocal rank of the first relevant item in the top k (0 when none)."""
    recs = _check_recs(recs, k)
    return _mrr(hit_matrix(recs, truth), truth_counts(truth, len(recs)), k)


def ranking_metrics(recs: np.ndarray, truth: Truth, ks: Sequence[int]) -> dict[str, float]:
    """``recall@k``, ``ndcg@k``, ``hit@k``, ``mrr@k`` for every k, from one hit matrix."""
    recs = _check_recs(recs)
    for k in ks:
        _check_recs(recs, int(k))
    h = hit_matrix(recs, truth)
    n_true = truth_counts(truth, len(recs))
    out: dict[str, float] = {}
    for k in ks:
        k = int(k)
        out[f"recall@{k}"] = _recall(h, n_true, k)
        out[f"ndcg@{k}"] = _ndcg(h, n_true, k)
        out[f"hit@{k}"] = _hit(h, n_true, k)
        out[f"mrr@{k}"] = _mrr(h, n_true, k)
    return out


# ---------------------------------------------------------------------- beyond accuracy
def catalog_coverage(recs: np.ndarray, n_items: int) -> float:
    """Share of the catalogue (``n_items``) that appears in at least one list."""
    recs = _check_recs(recs)
    if n_items <= 0:
        raise ValueError(f"n_items: must be positive, got {n_items}")
    valid = recs[recs >= 0]
    if valid.size and valid.max() >= n_items:
        raise ValueError(f"recs: item index {int(valid.max())} >= n_items {n_items}")
    return float(np.unique(valid).size / n_items)


def ilad(recs: np.ndarray, item_vectors: np.ndarray, batch: int = 2048) -> float:
    """Intra-list average distance: mean over lists of the mean pairwise ``1 - cos``.

    ``item_vectors`` (n_items, d). Pairs involving a ``-1`` pad are skipped; lists with
    fewer than two items are left out. Zero vectors have cosine 0 with everything.
    """
    recs = _check_recs(recs)
    v = np.asarray(item_vectors, np.float32)
    if v.ndim != 2:
        raise ValueError(f"item_vectors: expected (n_items, d), got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(norms > 0, norms, 1.0)
    v = np.vstack([v, np.zeros((1, v.shape[1]), np.float32)])  # row -1 -> the zero pad
    sums, counts = [], []
    for s in range(0, len(recs), batch):
        r = recs[s : s + batch]
        valid = (r >= 0).astype(np.float32)
        lv = v[r]  # (b, K, d); -1 indexes the zero pad row
        sim = np.einsum("bkd,bjd->bkj", lv, lv)
        pair = valid[:, :, None] * valid[:, None, :]
        pair[:, np.arange(r.shape[1]), np.arange(r.shape[1])] = 0.0
        sums.append(((1.0 - sim) * pair).sum((1, 2)))
        counts.append(pair.sum((1, 2)))
    tot, cnt = np.concatenate(sums), np.concatenate(counts)
    ok = cnt > 0
    return float((tot[ok] / cnt[ok]).mean()) if ok.any() else float("nan")


def category_diversity(recs: np.ndarray, item_category: np.ndarray) -> float:
    """Mean share of distinct categories in a list: |distinct categories| / |list|.

    ``item_category`` (n_items,) int codes. 1.0 means every item has its own category.
    """
    recs = _check_recs(recs)
    cat = np.asarray(item_category)
    valid = recs >= 0
    c = np.where(valid, cat[np.where(valid, recs, 0)], np.iinfo(np.int64).max).astype(np.int64)
    c.sort(axis=1)  # the pads (sentinel) sort last
    n = valid.sum(1)
    new_value = (np.diff(c, axis=1) != 0) & (c[:, 1:] != np.iinfo(np.int64).max)
    distinct = (n > 0).astype(int) + new_value.sum(1)
    ok = n > 0
    return float((distinct[ok] / n[ok]).mean()) if ok.any() else float("nan")


def novelty(recs: np.ndarray, item_counts: np.ndarray) -> float:
    """Mean self-information ``-log2 p_i`` of recommended items, in bits.

    ``item_counts`` (n_items,) training interactions per item; ``p_i = max(c_i, 1) / Σc``
    (an item never seen in training counts as seen once, so the figure stays finite).
    """
    recs = _check_recs(recs)
    c = np.asarray(item_counts, np.float64)
    if c.ndim != 1 or (c < 0).any() or not np.isfinite(c).all():
        raise ValueError("item_counts: expected a 1-d array of non-negative finite counts")
    info = -np.log2(np.maximum(c, 1.0) / max(c.sum(), 1.0))
    valid = recs[recs >= 0]
    return float(info[valid].mean()) if valid.size else float("nan")


def small_creator_share(recs: np.ndarray, item_is_small: np.ndarray) -> float:
    """Share of recommended slots held by notes of small creators. ``item_is_small`` (n_items,) bool."""
    recs = _check_recs(recs)
    valid = recs[recs >= 0]
    return float(np.asarray(item_is_small, bool)[valid].mean()) if valid.size else float("nan")


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal, -> 1 = all on one)."""
    x = np.sort(np.asarray(values, np.float64))
    if x.ndim != 1 or (x < 0).any():
        raise ValueError("gini: expected a 1-d array of non-negative values")
    n, tot = x.size, x.sum()
    if n == 0 or tot == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * tot))


def creator_exposure_gini(recs: np.ndarray, item_author: np.ndarray, n_creators: int) -> float:
    """Gini of exposure counts over all ``n_creators`` (creators never shown count as 0).

    ``item_author`` (n_items,) creator index of each note.
    """
    recs = _check_recs(recs)
    valid = recs[recs >= 0]
    exp = np.bincount(np.asarray(item_author)[valid], minlength=n_creators)
    return gini(exp)


# ---------------------------------------------------------------------- pointwise (ranking stage)
def t_half_width(values: np.ndarray | Sequence[float], level: float = 0.95) -> float:
    """Half-width of the Student-t ``level`` interval of the mean of ``values`` (seeds, runs,
    users): ``t(level, n-1) * sd / sqrt(n)``; NaN with fewer than two values. The one
    implementation behind every "mean and 95% interval" the reports print."""
    v = np.asarray(values, np.float64)
    n = len(v)
    if n < 2:
        return float("nan")
    from scipy import stats  # here: scipy.stats costs a second at import

    return float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval) of the finite ``values`` (seeds); the half-width
    is NaN for one value, both NaN for none."""
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), t_half_width(v)


def _check_binary(labels: np.ndarray, scores: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"{what}: labels {y.shape} and scores {s.shape} must be equal 1-d shapes")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{what}: labels must be 0/1")
    if not np.isfinite(s).all():
        raise ValueError(f"{what}: scores contain NaN or inf")
    return y.astype(np.int8), s


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (scikit-learn). ``labels`` (n,) 0/1, ``scores`` (n,). Needs both classes."""
    from sklearn.metrics import roc_auc_score

    y, s = _check_binary(labels, scores, "auc")
    if y.min() == y.max():
        raise ValueError("auc: labels contain a single class")
    return float(roc_auc_score(y, s))


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Group AUC: per-user AUC weighted by the user's number of samples.

    Users whose samples are all one class are skipped. Per-user AUC is the Mann-Whitney
    statistic from within-user average ranks (ties count one half), computed for all users
    at once with a grouped rank.
    """
    y, s = _check_binary(labels, scores, "gauc")
    u = np.asarray(users)
    if u.shape != y.shape:
        raise ValueError(f"gauc: users {u.shape} and labels {y.shape} differ")
    df = pd.DataFrame({"u": u, "y": y, "s": s})
    df["r"] = df.groupby("u")["s"].rank(method="average")
    g = df.groupby("u").agg(n=("y", "size"), pos=("y", "sum"))
    g["rpos"] = df[df["y"] == 1].groupby("u")["r"].sum()
    g = g[(g["pos"] > 0) & (g["pos"] < g["n"])]
    if g.empty:
        raise ValueError("gauc: no user has both positive and negative samples")
    neg = g["n"] - g["pos"]
    per_user = (g["rpos"] - g["pos"] * (g["pos"] + 1) / 2) / (g["pos"] * neg)
    return float((per_user * g["n"]).sum() / g["n"].sum())


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Binary cross-entropy with probabilities clipped to ``[eps, 1 - eps]``."""
    y, p = _check_binary(labels, probs, "logloss")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("logloss: probabilities must lie in [0, 1]")
    p = np.clip(p, eps, 1 - eps)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def logloss_per_task(
    labels: Mapping[str, np.ndarray], probs: Mapping[str, np.ndarray], eps: float = 1e-7
) -> dict[str, float]:
    """``{task: logloss}`` for every task in ``labels``; a task missing from ``probs`` is an error."""
    missing = set(labels) - set(probs)
    if missing:
        raise ValueError(f"logloss_per_task: no predictions for tasks {sorted(missing)}")
    return {t: logloss(labels[t], probs[t], eps) for t in labels}
