"""Feed ads in the closed-loop feed simulator (notefeed/ads/feedsim.py)."""

from __future__ import annotations

import pytest

from notefeed.ads.feedsim import feed_ads_study, run_feed_ads
from notefeed.sim.community import generate


@pytest.fixture(scope="module")
def community() -> object:
    return generate("demo", seed=3)


def test_ads_take_slots_and_are_paid(community: object) -> None:
    none = run_feed_ads(3, "none", 0, steps=3, requests_per_step=40, community=community)
    again = run_feed_ads(3, "none", 0, steps=3, requests_per_step=40, community=community)
    assert none["ads_per_request"] == 0 and none["revenue_per_1k_requests"] == 0
    assert none["organic_clicks_per_request"] == again["organic_clicks_per_request"]  # reproducible
    two = run_feed_ads(3, "interest", 2, steps=3, requests_per_step=40, community=community)
    assert 1.5 < two["ads_per_request"] <= 2.0  # 2 slots on a 10-note page (place_ads allows both)
    assert two["revenue_per_1k_requests"] > 0 and 0 < two["ad_ctr"] < 1
    with pytest.raises(ValueError):
        run_feed_ads(3, "sideways", 1, steps=1, community=community)


def test_study_reports_paired_organic_change() -> None:
    rows = {r["method"]: r for r in feed_ads_study([0, 1], steps=2, requests_per_step=30)}
    assert set(rows) == {"none", "interest-1", "interest-2", "random-2"}
    assert "organic_clicks_per_request_vs_none" not in rows["none"]
    lo, hi = rows["interest-2"]["organic_clicks_per_request_vs_none_ci95"]
    assert lo <= rows["interest-2"]["organic_clicks_per_request_vs_none"] <= hi
