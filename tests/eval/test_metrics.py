"""Metrics on hand-computed cases and a few properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from notefeed.eval import metrics as M

RECS = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
TRUTH = [np.array([2, 9]), np.array([8])]


def test_hit_matrix_lists_and_csr_agree() -> None:
    h = M.hit_matrix(RECS, TRUTH)
    assert h.tolist() == [[False, True, False, False], [False, False, False, True]]
    csr = sp.csr_matrix(([1, 1, 1], ([0, 0, 1], [2, 9, 8])), shape=(2, 10))
    assert (M.hit_matrix(RECS, csr) == h).all()


def test_hand_computed_values() -> None:
    # user 0: hit at rank 2 of 2 relevant; user 1: hit at rank 4 of 1 relevant
    assert M.recall_at_k(RECS, TRUTH, 4) == pytest.approx((1 / 2 + 1) / 2)
    assert M.recall_at_k(RECS, TRUTH, 2) == pytest.approx((1 / 2 + 0) / 2)
    ndcg0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg1 = (1 / math.log2(5)) / 1.0
    assert M.ndcg_at_k(RECS, TRUTH, 4) == pytest.approx((ndcg0 + ndcg1) / 2)
    assert M.hit_rate_at_k(RECS, TRUTH, 4) == 1.0
    assert M.hit_rate_at_k(RECS, TRUTH, 3) == 0.5
    assert M.mrr_at_k(RECS, TRUTH, 4) == pytest.approx((1 / 2 + 1 / 4) / 2)
    both = M.ranking_metrics(RECS, TRUTH, [2, 4])
    assert both["mrr@2"] == pytest.approx(0.25) and both["ndcg@4"] == pytest.approx((ndcg0 + ndcg1) / 2)


def test_padding_and_empty_truth_rows() -> None:
    recs = np.array([[-1, 3], [1, -1]])
    truth = [np.array([3]), np.array([], np.int64)]
    # the empty-truth row is left out; -1 never hits
    assert M.hit_rate_at_k(recs, truth, 2) == 1.0
    assert M.mrr_at_k(recs, truth, 2) == pytest.approx(0.5)
    assert math.isnan(M.recall_at_k(recs, [np.array([], np.int64)] * 2, 2))


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="k"):
        M.recall_at_k(RECS, TRUTH, 0)
    with pytest.raises(ValueError, match="larger"):
        M.ndcg_at_k(RECS, TRUTH, 5)
    with pytest.raises(ValueError, match="recs"):
        M.recall_at_k(np.array([1, 2]), TRUTH, 1)
    with pytest.raises(ValueError, match="truth"):
        M.recall_at_k(RECS, TRUTH[:1], 1)


def test_beyond_accuracy() -> None:
    recs = np.array([[0, 1], [0, 2]])
    assert M.catalog_coverage(recs, 6) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="n_items"):
        M.catalog_coverage(recs, 2)
    vec = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    # list 0: orthogonal -> distance 1; list 1: identical -> 0
    assert M.ilad(recs, vec) == pytest.approx(0.5)
    cats = np.array([0, 1, 0])
    assert M.category_diversity(recs, cats) == pytest.approx((1.0 + 0.5) / 2)
    assert M.category_diversity(np.array([[0, -1]]), cats) == pytest.approx(1.0)
    counts = np.array([2, 1, 1])  # p = .5, .25, .25
    assert M.novelty(recs, counts) == pytest.approx((1 + 2 + 1 + 2) / 4)
    small = np.array([True, False, False])
    assert M.small_creator_share(recs, small) == pytest.approx(0.5)


def test_gini() -> None:
    assert M.gini(np.array([5, 5, 5])) == pytest.approx(0.0)
    assert M.gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)
    # creators 0 and 1; creator 2 never shown counts as zero exposure
    authors = np.array([0, 1, 0])
    assert M.creator_exposure_gini(np.array([[0, 2], [1, 0]]), authors, 3) == pytest.approx(M.gini([3, 1, 0]))
    with pytest.raises(ValueError):
        M.gini(np.array([-1.0, 2.0]))


def test_auc_gauc_logloss() -> None:
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.9, 0.8, 0.3])
    assert M.auc(y, s) == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered
    users = np.array([0, 0, 1, 1, 2, 2, 2])
    yy = np.array([0, 1, 1, 0, 1, 1, 1])  # user 2 is single-class: skipped
    ss = np.array([0.2, 0.8, 0.3, 0.6, 0.1, 0.2, 0.3])
    # user 0 AUC 1, user 1 AUC 0, both weight 2
    assert M.gauc(users, yy, ss) == pytest.approx(0.5)
    # ties count one half
    assert M.gauc(np.array([0, 0]), np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert M.logloss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(math.log(2))
    assert np.isfinite(M.logloss(np.array([1]), np.array([0.0])))  # clipped
    out = M.logloss_per_task({"click": np.array([1, 0])}, {"click": np.array([0.9, 0.1])})
    assert out["click"] == pytest.approx(-math.log(0.9))
    with pytest.raises(ValueError, match="single class"):
        M.auc(np.array([1, 1]), np.array([0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        M.logloss(np.array([1]), np.array([np.nan]))
    with pytest.raises(ValueError, match="no predictions"):
        M.logloss_per_task({"like": y}, {})
    with pytest.raises(ValueError, match="both positive"):
        M.gauc(np.array([0, 0]), np.array([1, 1]), np.array([0.1, 0.2]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=8, unique=True), min_size=1, max_size=6),
    st.integers(1, 8),
)
def test_ndcg_bounds_and_perfect_list(truths: list[list[int]], k: int) -> None:
    rng = np.random.default_rng(len(truths))
    recs = np.stack([rng.permutation(31)[:8] for _ in truths])
    truth = [np.array(t) for t in truths]
    v = M.ndcg_at_k(recs, truth, k)
    assert 0.0 <= v <= 1.0 + 1e-9
    assert 0.0 <= M.recall_at_k(recs, truth, k) <= 1.0 + 1e-9
    # put each user's relevant items first: a perfect list scores exactly 1
    perfect = np.stack([np.concatenate([t, np.setdiff1d(np.arange(31), t)])[:8] for t in truth])
    assert M.ndcg_at_k(perfect, truth, k) == pytest.approx(1.0)
    assert M.hit_rate_at_k(perfect, truth, k) == 1.0


def test_t_half_width_is_the_student_t_interval():
    from scipy import stats

    from notefeed.eval.metrics import t_half_width

    x = np.array([0.2, 0.5, 0.3, 0.9, 0.4])
    want = stats.t.ppf(0.975, 4) * x.std(ddof=1) / np.sqrt(5)
    assert t_half_width(x) == pytest.approx(want, rel=1e-12)
    assert t_half_width(x, 0.9) == pytest.approx(stats.t.ppf(0.95, 4) * x.std(ddof=1) / np.sqrt(5), rel=1e-12)
    assert np.isnan(t_half_width([0.3])) and np.isnan(t_half_width([]))
    assert t_half_width([1.0, 1.0, 1.0]) == 0.0
