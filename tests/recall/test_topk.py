"""``topk`` narrows long score arrays through a sampled threshold: the same answer as the
head of a stable sort, ties (in index order), infinities and NaN included."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.recall import _common
from notefeed.recall._common import topk


def _full(scores: np.ndarray, k: int) -> np.ndarray:
    """The definition: the first ``k`` of a stable descending sort, minus the non-finite."""
    idx = np.argsort(-scores, kind="stable")[: max(int(k), 0)]
    return idx[np.isfinite(scores[idx])].astype(np.int64)


def _cases(rng: np.random.Generator):
    n = _common.TOPK_NARROW_MIN
    yield rng.standard_normal(100_000).astype(np.float32)
    yield rng.standard_normal(n).astype(np.float64) * 1e-3
    s = rng.standard_normal(60_000).astype(np.float32)
    s[rng.integers(0, s.size, 500)] = -np.inf  # excluded notes
    yield s
    s = np.round(rng.standard_normal(50_000), 1).astype(np.float32)  # ties everywhere
    yield s
    s = rng.standard_normal(50_000).astype(np.float32)
    s[np.argsort(-s)[:3]] = np.inf  # infinities at the top: the full path drops them
    yield s
    s = rng.standard_normal(50_000).astype(np.float32)
    s[rng.integers(0, s.size, 100)] = np.nan
    yield s
    s = np.full(40_000, -np.inf, np.float32)
    s[:150] = rng.standard_normal(150)  # fewer finite scores than k
    yield s
    s = rng.standard_normal(40_000).astype(np.float32)
    s[np.argsort(-s)[99:101]] = s.max() + 1  # a tie at the boundary (k = 100)
    yield s
    yield np.sort(rng.standard_normal(30_000).astype(np.float32))  # sorted: a skewed sample
    yield rng.exponential(size=80_000).astype(np.float32) ** 8  # heavy tail


@pytest.mark.parametrize("seed", range(4))
def test_topk_equals_the_head_of_a_stable_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    narrowed = 0
    for s in _cases(rng):
        for k in (1, 5, 100, 200, 1000, s.size // 8, s.size):
            got, want = topk(s, k), _full(s, k)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want, err_msg=f"n={s.size} k={k}")
            narrowed += int(_common._topk_narrowed(s, k) is not None) if 8 * k <= s.size else 0
    assert narrowed > 20  # the narrowed path did answer most of them


def test_narrowed_path_declines_ties_and_infinities() -> None:
    s = np.zeros(50_000, np.float32)
    assert _common._topk_narrowed(s, 10) is None  # all tied
    s = np.arange(50_000, dtype=np.float32)
    s[-1] = np.inf
    assert _common._topk_narrowed(s, 10) is None
    s[-1] = 1e9
    assert _common._topk_narrowed(s, 10).tolist() == list(range(49_999, 49_989, -1))


def test_stable_topk_is_the_head_of_a_stable_argsort() -> None:
    """``stable_topk`` = ``np.argsort(-s, kind="stable")[:k]``: same indices, same order, with
    ties (index order), infinities, NaN (last), k of 0 and beyond the length."""
    from notefeed.recall._common import stable_topk

    rng = np.random.default_rng(3)
    for t in range(3000):
        n = int(rng.integers(1, 500))
        s = rng.integers(0, 5, n).astype(np.float64) if t % 2 else rng.standard_normal(n)
        if t % 7 == 0:
            s[rng.integers(0, n, 3)] = np.nan
        if t % 5 == 0:
            s[rng.integers(0, n, 2)] = np.inf * rng.choice([-1, 1])
        if t % 11 == 0:
            s[rng.integers(0, n, n // 2 + 1)] = np.nan
        k = int(rng.integers(0, n + 3))
        np.testing.assert_array_equal(stable_topk(s, k), np.argsort(-s, kind="stable")[:k])


def test_tag_interests_equal_the_plain_sparse_product() -> None:
    """The tag channel's interests (the product over the history's own columns) equal the plain
    ``w @ terms`` of the whole table: terms, weights and their order, with repeated history notes
    and tied weights."""
    import scipy.sparse as sp

    from notefeed.recall._common import recency_weights
    from notefeed.recall.tag import TagInterestChannel

    rng = np.random.default_rng(4)
    for t in range(200):
        n_items, n_terms = int(rng.integers(5, 300)), int(rng.integers(3, 2000))
        terms = sp.random(n_items, n_terms, density=min(1.0, 4 / n_terms), format="csr", random_state=t,
                          data_rvs=np.ones if t % 2 else (lambda m: rng.integers(1, 3, m).astype(float)))
        ch = TagInterestChannel(n_interests=int(rng.integers(1, 8)))
        ch.terms = terms.astype(np.float32)
        h = rng.integers(0, n_items, int(rng.integers(1, 60)))
        got = ch.interests(h)
        hh = h[-ch.n_recent:]
        w = sp.csr_matrix((recency_weights(hh.size, ch.decay), (np.zeros(hh.size, np.int64), hh)),
                          shape=(1, n_items))
        plain = (w @ ch.terms).tocsr()
        order = np.argsort(-plain.data, kind="stable")[: ch.n_interests]
        np.testing.assert_array_equal(got[0], plain.indices[order])
        np.testing.assert_array_equal(got[1], plain.data[order] / max(plain.data.sum(), 1e-12))


def test_weighted_row_sum_is_the_same_through_both_paths(monkeypatch) -> None:
    """Few selected entries are summed by sorting, many into a column-long array: the same
    columns and the same float sums either way (and as the sparse product)."""
    import scipy.sparse as sp

    from notefeed.recall import _common as c

    rng = np.random.default_rng(5)
    for t in range(60):
        m = sp.random(300, int(rng.integers(5, 3000)), density=float(rng.uniform(0.001, 0.2)), format="csr",
                      random_state=t, dtype=np.float32)
        rows = rng.integers(0, 300, int(rng.integers(1, 80)))
        w = rng.random(rows.size)
        monkeypatch.setattr(c, "DENSE_SUM_RATIO", 10**9)  # always the column-long array
        dense = c.weighted_row_sum(m, rows, w)
        monkeypatch.setattr(c, "DENSE_SUM_RATIO", 0)  # always the sort
        sort = c.weighted_row_sum(m, rows, w)
        np.testing.assert_array_equal(dense[0], sort[0])
        np.testing.assert_array_equal(dense[1], sort[1])
        plain = sp.csr_matrix((w, (np.zeros(rows.size, np.int64), rows)), shape=(1, 300)) @ m.astype(np.float64)
        np.testing.assert_allclose(np.asarray(plain.todense()).ravel()[sort[0]], sort[1], rtol=1e-12)
