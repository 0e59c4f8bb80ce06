"""Swing / ItemCF kernels against brute-force Python references of the exact formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from notefeed.recall.item2item import ItemCFChannel, SwingChannel
from notefeed.recall.kernels import build_rows, cap_log, itemcf_rows, swing_rows


def _random_log(seed: int, nu: int = 30, ni: int = 20, n: int = 250):
    rng = np.random.default_rng(seed)
    return rng.integers(0, nu, n), rng.integers(0, ni, n), rng.integers(0, 1000, n), nu, ni


def _sets(hist, iu):
    H = [set(hist[x].indices.tolist()) for x in range(hist.shape[0])]
    U = [list(iu[x].indices.tolist()) for x in range(iu.shape[0])]
    return H, U


def swing_reference(hist, iu, alpha, alpha1, beta):
    H, U = _sets(hist, iu)
    ni = iu.shape[0]
    ref = np.zeros((ni, ni))
    for i in range(ni):
        for u, v in itertools.combinations(U[i], 2):
            common = H[u] & H[v]
            w = (len(H[u]) + alpha1) ** -beta * (len(H[v]) + alpha1) ** -beta / (alpha + len(common))
            for j in common - {i}:
                ref[i, j] += w
    return ref


def itemcf_reference(hist, iu, a, iuf):
    H, U = _sets(hist, iu)
    ni = iu.shape[0]
    ref = np.zeros((ni, ni))
    for i in range(ni):
        for u in U[i]:
            c = 1.0 / np.log2(1 + max(len(H[u]), 1)) if iuf else 1.0
            for j in H[u] - {i}:
                ref[i, j] += c / (max(len(U[i]), 1) ** a * max(len(U[j]), 1) ** (1 - a))
    return ref


@pytest.mark.parametrize("seed,item_cap,user_cap", [(0, 6, 5), (1, 100, 100), (2, 3, 8)])
def test_swing_equals_bruteforce(seed, item_cap, user_cap):
    u, i, t, nu, ni = _random_log(seed)
    hist, iu = cap_log(u, i, t, nu, ni, item_cap, user_cap)
    ref = swing_reference(hist, iu, 0.5, 5.0, 0.3)
    got = swing_rows(hist, iu, np.arange(ni), alpha=0.5, alpha1=5.0, beta=0.3).toarray()
    assert ref.sum() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("a,iuf", [(0.5, False), (0.8, True)])
def test_itemcf_equals_bruteforce(a, iuf):
    u, i, t, nu, ni = _random_log(3)
    hist, iu = cap_log(u, i, t, nu, ni, 7, 6)
    got = itemcf_rows(hist, iu, np.arange(ni), a=a, iuf=iuf).toarray()
    np.testing.assert_allclose(got, itemcf_reference(hist, iu, a, iuf), rtol=1e-5, atol=1e-7)


def test_caps_keep_most_recent():
    u = np.array([0, 0, 0, 1, 2, 3])
    i = np.array([0, 1, 2, 0, 0, 0])
    t = np.array([1, 3, 2, 5, 6, 4])
    hist, iu = cap_log(u, i, t, 4, 3, item_cap=2, user_cap=2)
    assert sorted(hist[0].indices) == [1, 2]  # item 0 (ts 1) is user 0's oldest
    assert sorted(iu[0].indices) == [1, 2]  # users 2 (ts 6) and 1 (ts 5) are item 0's newest


def test_blocks_and_topn_match_single_pass():
    u, i, t, nu, ni = _random_log(4, n=400)
    hist, iu = cap_log(u, i, t, nu, ni, 10, 10)
    full = swing_rows(hist, iu, np.arange(ni)).toarray()
    blocked = build_rows("swing", hist, iu, np.arange(ni), top_n=ni, block=1).toarray()
    np.testing.assert_allclose(blocked, full, rtol=1e-6)
    top3 = build_rows("swing", hist, iu, np.arange(ni), top_n=3).toarray()
    assert ((top3 > 0).sum(axis=1) <= 3).all()
    with pytest.raises(ValueError, match="kernel"):
        build_rows("nope", hist, iu, np.arange(ni), top_n=3)


def test_cap_log_rejects_out_of_range():
    with pytest.raises(ValueError, match="items"):
        cap_log(np.array([0]), np.array([5]), np.array([0]), 1, 3, 2, 2)


@pytest.mark.parametrize("cls", [SwingChannel, ItemCFChannel])
def test_incremental_update_equals_rebuild(cls):
    rng = np.random.default_rng(5)
    n = 600
    log = pd.DataFrame({"user": rng.integers(0, 40, n), "item": rng.integers(0, 60, n) % 30, "ts": np.arange(n)})
    old, new = log.iloc[:595], log.iloc[595:]
    # new events also bring a new user (40) and a new item (30)
    new = pd.concat([new, pd.DataFrame({"user": [40, 40, 3], "item": [30, 2, 30], "ts": [700, 701, 702]})])
    inc = cls(item_cap=8, user_cap=6, top_n=1000).fit_log(old, 40, 30)
    before = inc.sim.toarray()
    rows = inc.update(new)
    full = cls(item_cap=8, user_cap=6, top_n=1000).fit_log(pd.concat([old, new]), 41, 31)
    got, want = inc.sim.toarray(), full.sim.toarray()
    assert got.shape == want.shape == (31, 31)
    np.testing.assert_allclose(got[rows], want[rows], rtol=1e-6)
    assert len(rows) < 31  # only a subset was recomputed
    untouched = np.setdiff1d(np.arange(30), rows)
    np.testing.assert_allclose(got[untouched], np.pad(before, ((0, 1), (0, 1)))[untouched])
    if cls is SwingChannel:  # Swing rows outside the touched set are exactly unchanged
        np.testing.assert_allclose(got, want, rtol=1e-6)
