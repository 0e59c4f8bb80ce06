import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from notefeed.ads.auction import FrequencyCap, click_bids, ecpm, gsp_auction, place_ads

money = st.floats(0.01, 100.0, allow_nan=False)
qual = st.floats(0.001, 1.0, allow_nan=False)
lots = st.lists(st.tuples(money, qual), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(lots, st.integers(1, 5), st.floats(0.0, 5.0))
def test_gsp_winner_never_pays_more_than_bid_and_never_below_reserve(rows, slots, reserve):
    b = np.array([r[0] for r in rows])
    q = np.array([r[1] for r in rows])
    res = gsp_auction(b, q, slots, reserve)
    assert len(res.winners) <= slots
    assert np.all(b[res.winners] >= reserve)  # no ad below reserve wins
    assert np.all(res.prices <= b[res.winners] + 1e-12)
    assert np.all(res.prices >= reserve - 1e-12)
    s = b[res.winners] * q[res.winners]
    assert np.all(np.diff(s) <= 1e-12)  # slots in score order
    # per-impression price (price x quality) never rises down the page
    assert np.all(np.diff(res.prices * q[res.winners]) <= 1e-9)


@settings(max_examples=100, deadline=None)
@given(lots, st.integers(1, 4), st.floats(1.0, 3.0))
def test_gsp_payments_monotone_in_competitor_bids(rows, slots, factor):
    b = np.array([r[0] for r in rows])
    q = np.array([r[1] for r in rows])
    res = gsp_auction(b, q, slots)
    if len(res.winners) == 0:
        return
    top = res.winners[0]
    others = np.arange(len(b)) != top
    b2 = b.copy()
    b2[others] *= factor  # competitors bid more
    res2 = gsp_auction(b2, q, slots)
    if len(res2.winners) and res2.winners[0] == top:
        assert res2.prices[0] >= res.prices[0] - 1e-9


def test_gsp_relevance_floor_and_second_price():
    r = gsp_auction(np.array([2.0, 1.0, 3.0]), np.array([0.1, 0.1, 0.1]), 2,
                    relevance=np.array([1.0, 1.0, 0.0]), relevance_floor=0.5)
    assert r.winners.tolist() == [0, 1]
    assert np.allclose(r.prices, [1.0, 0.0])


def test_gsp_reserve_ecpm_sets_the_load_and_floors_the_price():
    b, q = np.array([2.0, 1.0, 3.0]), np.array([0.1, 0.1, 0.01])  # eCPM 200, 100, 30
    r = gsp_auction(b, q, 3, reserve_ecpm=90.0)
    assert r.winners.tolist() == [0, 1]
    assert np.allclose(r.prices, [1.0, 0.9])  # the last pays what keeps it above the eCPM reserve
    assert gsp_auction(b, q, 3).winners.tolist() == [0, 1, 2]


def test_ecpm_and_ocpc_bids():
    cb = click_bids(np.array([1.0, 10.0]), np.array([False, True]), np.array([0.5, 0.1]))
    assert np.allclose(cb, [1.0, 1.0])
    assert np.allclose(ecpm(cb, np.array([0.02, 0.01])), [20.0, 10.0])


@given(st.integers(0, 60), st.integers(0, 20), st.integers(0, 5), st.integers(1, 6), st.floats(0.0, 0.5))
def test_place_ads_respects_caps_and_spacing(n_org, n_ads, first, spacing, cap):
    page = place_ads(n_org, n_ads, first, spacing, cap)
    ads = [i for i, (kind, _) in enumerate(page) if kind == "ad"]
    assert [j for k, j in page if k == "note"] == list(range(n_org))
    assert len(ads) <= n_ads and (not ads or len(ads) / len(page) <= cap + 1e-9)
    assert all(i >= first for i in ads)
    assert all(b - a - 1 >= spacing for a, b in zip(ads, ads[1:], strict=False))


def test_frequency_cap():
    fc = FrequencyCap(per_day=2)
    for _ in range(2):
        assert fc.allowed(1, "c", 10.0)
        fc.record(1, "c", 10.0)
    assert not fc.allowed(1, "c", 20.0)
    assert fc.allowed(2, "c", 20.0) and fc.allowed(1, "c", 86400.0 + 5)
