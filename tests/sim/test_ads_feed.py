"""Feed ads in the closed-loop feed simulator (notefeed/sim/ads_feed.py)."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.sim.ads_feed import feed_ads_study, run_feed_ads
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


def test_feed_ad_recall_channels() -> None:
    """category/interest recalls only ads of the history's top categories, best share first;
    adding semantic/text keeps those and adds ads by the history's text vector."""
    from notefeed.sim.ads_feed import _FeedAdRecall
    from notefeed.sim.env import SimEnvironment

    env = SimEnvironment(generate("tiny", seed=5), seed=5)
    rng = np.random.default_rng(0)
    ad_note = rng.choice(env.n_items, 300, replace=False)
    bid = rng.lognormal(0, 0.4, 300)
    topic = env.item_topic
    hist = [int(i) for i in np.flatnonzero(topic == topic[ad_note[0]])[:3]] + [int(ad_note[1])]
    cat = _FeedAdRecall(env, ad_note, bid, semantic=False, seed=5)
    ids, rel = cat.retrieve(hist)
    assert len(ids) and set(topic[ad_note[ids]].tolist()) <= set(topic[hist].tolist())
    assert rel[0] == 0.75 or topic[ad_note[1]] == topic[ad_note[0]]  # the majority category's share first
    sem = _FeedAdRecall(env, ad_note, bid, semantic=True, seed=5)
    ids2, rel2 = sem.retrieve(hist)
    assert set(ids[:60].tolist()) <= set(ids2.tolist()) and len(ids2) > len(ids)
    assert np.all(rel2 > 0)
    assert len(cat.retrieve([])[0]) == 0 and len(sem.retrieve([])[0]) == 0


def test_recall_arms_run_at_equal_load() -> None:
    from notefeed.sim.ads_feed import feed_recall_study, logged_clicks

    tiny = generate("tiny", seed=3)
    hist = logged_clicks(tiny)
    assert hist and all(isinstance(v, list) for v in hist.values())
    kw = {"steps": 2, "requests_per_step": 40, "community": tiny, "history": hist, "preset": "tiny", "n_ads": 100}
    cat = run_feed_ads(3, "category", 2, **kw)
    assert cat["ads_per_request"] > 1.0  # users with a logged history get ads from the first request
    plan = [[0] * 40, [1] * 40]
    sem = run_feed_ads(3, "category+semantic", 2, slot_plan=plan, **kw)
    assert sem["placed"][0] == [0] * 40 and max(sem["placed"][1]) <= 1
    rows = {r["method"]: r for r in feed_recall_study([0, 1], steps=2, requests_per_step=30, preset="tiny", n_ads=100)}
    both = rows["category+semantic"]
    assert set(rows) == {"none", "category", "category+semantic"} and both["load_vs_category"] <= 1.0
    lo, hi = both["organic_clicks_per_request_vs_category_ci95"]
    assert lo <= both["organic_clicks_per_request_vs_category"] <= hi
    assert "organic_clicks_per_request_vs_none" in rows["category"]
