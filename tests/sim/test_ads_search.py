"""Search ads and organic search results in one closed loop (notefeed/sim/ads_search.py)."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.ads.recall import SERVING_DEFAULTS
from notefeed.sim.ads_search import (
    PAGE,
    SearchAdWorld,
    SearchUser,
    _serving_slots,
    attraction,
    run_search_ads,
    scan_page,
    search_recall_study,
)


@pytest.fixture(scope="module")
def world() -> SearchAdWorld:
    return SearchAdWorld.build(3, "tiny", n_queries=400, n_ads=150)


def test_cascade_clicks_and_stops_at_satisfaction() -> None:
    assert np.allclose(attraction(np.array([0, 1, 2, 3])), [0, 1 / 8, 3 / 8, 7 / 8])
    user = SearchUser(eta=0.0, ad_attract=1.0, annoy=0.0)
    u = np.zeros((5, 3))  # every result examined, clicked if attractive at all, satisfying
    out = scan_page(np.array([0, 0, 2, 3, 3]), np.zeros(5, bool), u, 1.0, user)
    assert out.clicks.tolist() == [False, False, True, False, False] and out.satisfied and not out.by_ad
    assert out.examined.tolist() == [True, True, True, False, False]
    out = scan_page(np.array([0, 3, 3]), np.array([False, True, False]), u[:3], 1.0, user)
    assert out.by_ad and out.clicks.tolist() == [False, True, False]
    u[:, 2] = 0.99  # clicks never satisfy: the user reads on
    out = scan_page(np.array([1, 2, 3]), np.zeros(3, bool), u[:3], 1.0, user)
    assert out.clicks.all() and not out.satisfied


def test_examined_ads_cost_trust_by_their_irrelevance() -> None:
    user = SearchUser(eta=0.0, annoy=0.4)
    u = np.full((1, 3), 0.999)
    u[0, 0] = 0.0  # examined, not clicked
    bad = scan_page(np.array([0]), np.array([True]), u, 1.0, user)
    good = scan_page(np.array([3]), np.array([True]), u, 1.0, user)
    organic = scan_page(np.array([0]), np.array([False]), u, 1.0, user)
    assert bad.trust == pytest.approx(0.6) and good.trust == pytest.approx(1 - 0.4 / 8) and organic.trust == 1.0
    u[0, 0] = 0.7  # not examined at trust 0.6: no further cost
    assert scan_page(np.array([0]), np.array([True]), u, 0.6, user).trust == 0.6


def test_an_ad_that_steals_the_click_costs_organic_clicks() -> None:
    """Planted: a perfect ad above the organic results takes the satisfying click from them; an
    ad nobody clicks only pushes them down."""
    rng = np.random.default_rng(0)
    organic = np.array([3, 2, 3, 2, 1, 2, 1, 0, 2, 1])

    def organic_clicks(ad_attract: float, with_ad: bool) -> int:
        user = SearchUser(ad_attract=ad_attract, annoy=0.0)
        grades = np.concatenate([[3], organic]) if with_ad else organic
        is_ad = np.arange(len(grades)) == 0 if with_ad else np.zeros(len(grades), bool)
        tot = 0
        for _ in range(3000):
            u = rng.random((len(grades), 3))
            tot += int((scan_page(grades, is_ad, u, 1.0, user).clicks & ~is_ad).sum())
        return tot

    none, ignored, stealing = organic_clicks(1.0, False), organic_clicks(0.0, True), organic_clicks(1.0, True)
    assert stealing < 0.6 * none  # the ad satisfies most users before they reach the results
    assert stealing < 0.75 * ignored < ignored < none  # displacement alone costs less


def test_serving_settings_are_the_shared_defaults() -> None:
    from notefeed.serve.adslots import AdSlotsConfig

    cfg = AdSlotsConfig()
    for k in ("first", "spacing", "load_cap", "reserve", "prior_ctr", "prior_weight", "relevance_floor", "recall_k",
              "search_semantic_floor"):
        assert getattr(cfg, k) == SERVING_DEFAULTS[k], k
    assert cfg.quotas == SERVING_DEFAULTS["quotas"]
    assert _serving_slots() == 2  # a 10-result page: positions 2 and 7


def test_world_recall_and_equal_load(world: SearchAdWorld) -> None:
    qs = world.queries
    assert len(world.pages) == len(qs) and all(len(p) <= PAGE for p in world.pages)  # type: ignore[arg-type]
    assert np.mean([len(p) == PAGE for p in world.pages]) > 0.9
    assert sorted(q for s in world.sessions for q in s) == list(range(len(qs)))  # type: ignore[arg-type]
    assert all(len({int(qs.users[q]) for q in s}) == 1 for s in world.sessions)  # type: ignore[attr-defined]
    kw_rel, sem_rel, on_page = [], [], 0
    for qi in range(len(qs)):  # type: ignore[arg-type]
        kw, kr = world.candidates("keyword", qi)
        sem, sr = world.candidates("keyword+semantic", qi)
        assert set(kw[:60].tolist()) <= set(sem.tolist())  # keyword's quota comes first
        assert world.fill("keyword+semantic", qi, 2) >= world.fill("keyword", qi, 2)
        on_page += int(np.isin(world.ad_note[sem], world.pages[qi]).sum())
        rel = qs.relevance[qi]  # type: ignore[attr-defined]
        kw_rel += [rel.get(int(n), 0) for n in world.ad_note[kw]]
        sem_rel += [rel.get(int(n), 0) for n in world.ad_note[np.setdiff1d(sem, kw)]]
    assert on_page == 0
    assert np.mean(kw_rel) > np.mean(sem_rel) > 0  # keyword ads are the more relevant ones
    # every query served in every arm (no session ends early): the same queries, the same load
    user = SearchUser(continue_sat=1.0, continue_unsat=1.0)
    kw_arm = run_search_ads(world, "keyword", "natural", user)
    sem_arm = run_search_ads(world, "keyword+semantic", "keyword", user)
    nat = run_search_ads(world, "keyword+semantic", "natural", user)
    assert kw_arm["queries"] == sem_arm["queries"] == len(qs)  # type: ignore[arg-type]
    assert kw_arm["ad_imp"] == sem_arm["ad_imp"] > 0 and nat["ad_imp"] >= sem_arm["ad_imp"]
    assert nat["ads_per_query"] <= 2.0
    none = run_search_ads(world, None, "natural", user)
    assert none["ad_imp"] == 0 and none == {**run_search_ads(world, None, "natural", user), "wall_s": none["wall_s"]}
    with pytest.raises(ValueError):
        run_search_ads(world, "sideways")


def test_semantic_floor(world: SearchAdWorld) -> None:
    """Serving's ``search_semantic_floor``: an ad only semantic recall finds is a candidate at a
    cosine of at least the floor; the ``-unfloored`` setting keeps the ones below it."""
    floor = SERVING_DEFAULTS["search_semantic_floor"]
    below = 0
    for qi in range(len(world.queries)):  # type: ignore[arg-type]
        kw, _ = world.candidates("keyword", qi)
        for recall in ("keyword+semantic", "keyword+semantic-unfloored"):
            ids, rel = world.candidates(recall, qi)
            sem_only = ~np.isin(ids, kw)
            if recall == "keyword+semantic":
                assert (rel[sem_only] >= floor).all()
            else:
                below += int((rel[sem_only] < floor).sum())
    assert below > 0


def test_irrelevant_annoying_ads_cost_organic_clicks_later(world: SearchAdWorld) -> None:
    """Planted: ads from every campaign regardless of the query (``random``: mostly off-topic)
    that annoy the user a lot cost organic clicks on the session's later pages; without
    annoyance that extra cost goes away."""
    annoyed = SearchUser(annoy=0.9, ad_attract=0.0)
    calm = SearchUser(annoy=0.0, ad_attract=0.0)
    runs = {(r, u.annoy): run_search_ads(world, r, "keyword", u) for r in ("keyword", "random") for u in (annoyed, calm)}
    assert runs[("random", 0.9)]["ad_irrelevant_share"] > runs[("keyword", 0.9)]["ad_irrelevant_share"] + 0.3
    loss = runs[("random", 0.9)]["organic_clicks_per_session"] / runs[("keyword", 0.9)]["organic_clicks_per_session"]
    calm_loss = runs[("random", 0.0)]["organic_clicks_per_session"] / runs[("keyword", 0.0)]["organic_clicks_per_session"]
    assert loss < 0.95 and calm_loss == pytest.approx(1.0, abs=0.01)


def test_study_rows_pair_seeds(tmp_path: object) -> None:
    arms = (("none", None, "natural"), ("keyword", "keyword", "natural"),
            ("keyword+semantic", "keyword+semantic", "keyword"))
    resume = tmp_path / "seeds.jsonl"  # type: ignore[operator]
    first = search_recall_study([0, 1], "tiny", n_queries=250, n_ads=100, arms=arms, resume=resume)
    again = search_recall_study([0, 1], "tiny", n_queries=250, n_ads=100, arms=arms, resume=resume)  # read back
    assert [{k: v for k, v in r.items() if k not in ("arm_s", "build_s")} for r in again] == \
        [{k: v for k, v in r.items() if k not in ("arm_s", "build_s")} for r in first]
    with pytest.raises(ValueError, match="resume"):
        search_recall_study([0], "tiny", n_queries=251, n_ads=100, arms=arms, resume=resume)
    rows = {r["method"]: r for r in first}
    assert set(rows) == {"none", "keyword", "keyword+semantic"}
    assert "organic_ctr_vs_none" not in rows["none"] and rows["none"]["ads_per_query"] == 0
    sem = rows["keyword+semantic"]
    lo, hi = sem["organic_ctr_minus_keyword_ci95"]
    assert lo <= sem["organic_ctr_minus_keyword"] <= hi
    lo, hi = sem["cpm_vs_keyword_ci95"]
    assert lo <= sem["cpm_vs_keyword"] <= hi
    assert "organic_clicks_per_query_vs_none_ci95" in rows["keyword"] and 0.8 < sem["load_vs_keyword"] < 1.2
    assert rows["none"]["user_model"]["eta"] > 0


def test_eval_param_checks() -> None:
    import notefeed.sim.ads_feed  # noqa: F401  (registers the feed loads)
    import notefeed.sim.ads_serving  # noqa: F401  (and serving-pctr: alone, this file would not import it)
    from notefeed.ads.evaluate import CLOSED_LOOP, CLOSED_LOOP_LOADS, evaluate_ads

    assert CLOSED_LOOP.names() == sorted(CLOSED_LOOP_LOADS)  # every closed-loop load has its study

    with pytest.raises(ValueError, match="ads.user"):
        evaluate_ads([], None, 0, True, None, params={"ads": {"user": {"annoy": 0.1}}})
    with pytest.raises(ValueError, match="ads.user"):
        evaluate_ads([], None, 0, True, None, params={"ads": {"load": "search-recall", "user": {"sideways": 1}}})
