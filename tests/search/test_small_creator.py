"""The small-creator rule on search pages: the pipeline, its settings and the API."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from notefeed.search import SearchConfig, SearchPipeline
from notefeed.search.pipeline import small_creator_lookup
from tests.search.conftest import AUTH, TWO_USERS, make_notes, served_search


def _coffee_notes(n: int = 40) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` coffee notes: the first half by big creators (more "coffee" words, so BM25 ranks
    them first), the rest by small ones; returns the notes and the small flags."""
    rows = []
    for i in range(n):
        big = i < n // 2
        rows.append((f"n{i}", "coffee " * (3 if big else 1) + f"note {i}", f"espresso beans and milk {i}",
                     ["coffee"], "food", f"{'big' if big else 'small'}{i}"))
    return make_notes(rows), np.arange(n) >= n // 2


def _reference(order: np.ndarray, small: np.ndarray, share: float, depth: int, n: int) -> list[int]:
    """The rule written plainly: slot by slot, the best remaining note, unless the page is
    short of ``floor(share * t)`` small creators' notes and one remains in the top ``depth``."""
    reach = set(order[:depth].tolist())
    left, page, n_small = list(order.tolist()), [], 0
    for t in range(1, min(n, len(left)) + 1):
        need = math.floor(share * t + 1e-9)
        pool = [i for i in left if small[i] and i in reach]
        j = pool[0] if n_small < need and pool else left[0]
        left.remove(j)
        page.append(j)
        n_small += bool(small[j])
    return page


def _prefix_ok(page: np.ndarray, small: np.ndarray, share: float) -> bool:
    need = np.floor(share * np.arange(1, len(page) + 1) + 1e-9)
    return bool((np.cumsum(small[page]) >= need).all())


def test_the_rule_reserves_small_creators_on_every_prefix() -> None:
    notes, small = _coffee_notes()  # the small creators' notes rank 21st and below
    pipe = SearchPipeline.build(notes, SearchConfig(dense=False, small_creator_depth=40))
    off = pipe.search("coffee", 10, small_creator=None)
    assert not small[off.items].any()  # without follower counts: the big creators' notes, by score
    flags = small_creator_lookup(small)
    on = pipe.search("coffee", 10, small_creator=flags, explain=True)
    assert _prefix_ok(on.items, small, 0.5) and small[on.items].sum() == 5
    assert on.small_creator is not None and on.small_creator.tolist() == small[on.items].tolist()
    # each group keeps its own score order, and the big ones are the page without the rule
    assert on.items[~small[on.items]].tolist() == off.items[:5].tolist()
    full = pipe.search("coffee", 40, small_creator=None).items  # the whole ranking
    assert on.items.tolist() == _reference(full, small, 0.5, 40, 10)
    assert on.trace is not None and on.trace["small_creator"] == {"share": 0.5, "depth": 40, "applied": True,
                                                                  "on_page": 5}
    # off by config: the flags change nothing
    pipe.config = pipe.config.with_overrides(small_creator_share=0.0)
    assert pipe.search("coffee", 10, small_creator=flags).items.tolist() == off.items.tolist()


def test_the_rule_reaches_no_deeper_than_its_depth() -> None:
    notes, small = _coffee_notes()  # the small creators' notes rank 21st and below
    pipe = SearchPipeline.build(notes, SearchConfig(dense=False, small_creator_depth=20))
    flags = small_creator_lookup(small)
    off = pipe.search("coffee", 10).items
    assert pipe.search("coffee", 10, small_creator=flags).items.tolist() == off.tolist()
    pipe.config = pipe.config.with_overrides(small_creator_depth=21)  # one within reach: slot 2 takes it
    page = pipe.search("coffee", 10, small_creator=flags).items
    assert small[page].sum() == 1 and small[page[1]] and page[0] == off[0]


def test_taken_down_notes_stay_out_and_pages_after_the_rule_follow_by_score() -> None:
    notes, small = _coffee_notes()
    pipe = SearchPipeline.build(notes, SearchConfig(dense=False, small_creator_depth=40))
    flags = small_creator_lookup(small)
    best_small = [i for i in pipe.search("coffee", 40).items.tolist() if small[i]][:3]
    page = pipe.search("coffee", 40, small_creator=flags, exclude=np.sort(np.array(best_small))).items
    assert not set(best_small) & set(page.tolist()) and len(page) == 37
    assert _prefix_ok(page[:34], small, 0.5)  # then the 17 small creators' notes left are all on it
    assert page[34:].tolist() == [17, 18, 19]  # the last big ones, by score


def test_with_ssd_diversity_the_rule_still_holds() -> None:
    notes, small = _coffee_notes()
    pipe = SearchPipeline.build(notes, SearchConfig(dense_dim=8, rerank="rerank/ssd", small_creator_depth=40))
    res = pipe.search("coffee", 10, small_creator=small_creator_lookup(small))
    assert "rerank" in res.ms and _prefix_ok(res.items, small, 0.5) and len(set(res.items.tolist())) == 10


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.2, 0.5, 0.8, 1.0]), st.integers(1, 30), st.integers(1, 25))
def test_select_equals_the_plain_rule(seed: int, share: float, depth: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 40))
    s = rng.normal(size=m).round(1)  # ties too
    small = rng.random(m) < rng.random()
    pipe = SearchPipeline.__new__(SearchPipeline)  # _select reads only these
    pipe.config = SearchConfig(small_creator_share=share, small_creator_depth=depth)
    pipe._cat_arr = np.zeros(m, np.int64)
    pipe.dense, pipe._rerankers = None, {}
    items = np.arange(m)
    order = np.argsort(-s, kind="stable")
    got = pipe._select(items, s, order, n, small_creator_lookup(small))
    assert sorted(got.tolist()) == list(range(m))  # every candidate once
    assert got[:n].tolist() == _reference(order, small, share, depth, n)
    if small[order[:depth]].sum() >= math.floor(share * min(n, m) + 1e-9):
        assert _prefix_ok(got[: min(n, m)], small, share)


def test_config_names_the_fields() -> None:
    with pytest.raises(ValidationError, match="small_creator_share"):
        SearchConfig(small_creator_share=1.5)
    with pytest.raises(ValidationError, match="small_creator_depth"):
        SearchConfig(small_creator_depth=0)
    with pytest.raises(ValidationError, match="rerank_params"):
        SearchConfig(rerank="rerank/ssd", rerank_params={"fairness": {"mode": "hard"}})


@pytest.mark.parametrize("over, says", [
    ({"rerank": "rerank/nope"}, "rerank: unknown re-ranker 'rerank/nope'"),
    ({"rerank": "rerank/ssd", "rerank_params": {"gamma": -1}}, "rerank_params: SSDReRanker: 'gamma'"),
    ({"rerank": "rerank/ssd", "rerank_params": {"bogus": 1}}, "rerank_params: .*bogus"),
    ({"rerank": "rerank/mmr", "rerank_params": {"rules": {"category_cap": 0}}}, "rerank_params: rules: RuleConfig"),
    ({"rerank": "rerank/ssd", "rerank_params": {"rules": {"author_window": 3}}}, "rules.author_window"),
])
def test_a_page_reranker_that_would_fail_each_search_fails_the_config(over: dict, says: str) -> None:
    """Each of these failed at every search (a 500) until the config checked them."""
    with pytest.raises(ValidationError, match=says):
        SearchConfig(**over)


def test_page_rules_given_as_a_mapping_apply() -> None:
    notes, small = _coffee_notes()
    notes["category"] = ["food", "drink"] * 20
    pipe = SearchPipeline.build(notes, SearchConfig(dense_dim=8, rerank="rerank/mmr",
                                                    rerank_params={"rules": {"category_cap": 3}}))
    page = pipe.search("coffee", 10).items
    cats = notes["category"].to_numpy()[page]
    # three of each category, then the caps are relaxed so that the page is full
    assert (cats[:6] == "food").sum() == 3 and len(page) == 10
    assert pipe._page_reranker(False) is pipe._page_reranker(False)  # built once per config


def test_lookup_counts_items_past_the_flags_as_not_small() -> None:
    of = small_creator_lookup(np.array([True, False]))
    assert of(np.array([1, 0, 5])).tolist() == [False, True, False]


def test_the_served_page_follows_the_live_follower_counts(tmp_path: Path) -> None:
    with served_search(tmp_path, TWO_USERS, "search-small") as (_, c):
        def page() -> list[tuple[str, bool]]:
            r = c.get("/v1/search", params={"q": "coffee", "n": 4, "explain": "true"})
            assert r.status_code == 200, r.text
            return [(it["note_id"], it["small_creator"]) for it in r.json()["items"]]

        first = page()  # no follower counts given: every creator is small
        assert all(sm for _, sm in first)
        for creator in ("c1", "c8"):  # the authors of the three coffee notes BM25 ranks first
            assert c.put(f"/v1/creators/{creator}", json={"followers": 5000}, headers=AUTH).status_code == 200
        ruled = page()
        assert [sm for _, sm in ruled] == [False, True, False, True]
        assert ruled[0][0] == first[0][0] and {ruled[1][0], ruled[3][0]} <= {"n7", "n8", "n9", "n4", "n1"}
        body = c.get("/v1/search", params={"q": "coffee", "n": 4, "explain": "true"}).json()
        assert body["trace"]["small_creator"]["applied"] and body["trace"]["small_creator"]["on_page"] == 2
        assert c.put("/v1/creators/c8", json={"followers": 10}, headers=AUTH).status_code == 200
        assert page()[0] == (first[0][0], True)


@pytest.mark.slow
def test_the_page_study_on_the_tiny_simulator() -> None:
    import notefeed.sim.search_data  # noqa: F401  (registers the sim* query sets)
    from notefeed.search.evaluate import RULE_METHODS, evaluate_page_settings, summarize_page

    grid = ((None, 0.0, 0), (None, 0.5, 100), ("rerank/ssd", 0.0, 0))
    rows = evaluate_page_settings("sim-tiny", 0, True, n_queries=40, grid=grid, small_below=(1000, 100))
    assert len(rows) == 2 * 3 * len(RULE_METHODS)
    by = {(r["method"], r["small_below"], r["rerank"], r["share"]): r for r in rows}
    for m in RULE_METHODS:
        for below in (1000, 100):
            off, on = by[m, below, "none", 0.0], by[m, below, "none", 0.5]
            assert off["ndcg@10_vs_base"] == 1.0 and 0 < on["ndcg@10"] <= 1
            assert on["small_creator@10"] >= off["small_creator@10"]
            assert on["pages_half_small@10"] >= off["pages_half_small@10"]
        # scarce small creators (under 100 followers): the rule has to pull them up
        assert by[m, 100, "none", 0.5]["small_creator@10"] > by[m, 100, "none", 0.0]["small_creator@10"]
        assert by[m, 100, "none", 0.0]["small_notes"] < by[m, 1000, "none", 0.0]["small_notes"]
        # SSD re-orders pages, and never narrows them to fewer categories here
        ssd, plain = by[m, 1000, "rerank/ssd", 0.0], by[m, 1000, "none", 0.0]
        assert ssd["ndcg@10"] != plain["ndcg@10"] and ssd["categories@10"] >= plain["categories@10"]
    summary = summarize_page(rows + [{**r, "seed": 1, "ndcg@10": r["ndcg@10"] + (0.1 if r["share"] else 0.0)}
                                     for r in rows])
    row = next(r for r in summary if r["share"] == 0.5 and r["small_below"] == 100)
    assert row["n_seeds"] == 2 and row["seeds"] == [0, 1]
    first = by[row["method"], 100, "none", 0.5]["ndcg@10"] - by[row["method"], 100, "none", 0.0]["ndcg@10"]
    assert row["ndcg@10_change"] == pytest.approx(first + 0.05)  # the mean of the two seeds' paired changes


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.3, 0.5, 1.0]), st.integers(1, 12))
def test_team_draft_under_the_rule(seed: int, share: float, n: int) -> None:
    import random

    from notefeed.search.interleave import team_draft

    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 20))
    a, b = rng.permutation(m), rng.permutation(m)
    flags = rng.random(m) < 0.4
    small = (set(np.flatnonzero(flags).tolist()), set(np.flatnonzero(flags).tolist()))
    page, team = team_draft(a, b, n, random.Random(seed), small, share)
    plain, _ = team_draft(a, b, n, random.Random(seed))
    assert len(page) == len(plain) == min(n, m) and len(set(page.tolist())) == len(page)
    if flags.sum() >= math.floor(share * len(page) + 1e-9):  # enough small creators' notes for the floor
        assert _prefix_ok(page, flags, share)
    for t in (0, 1):  # each pick comes from its team's ranking
        mine = page[team == t]
        assert set(mine.tolist()) <= set((a, b)[t].tolist())


def test_an_interleaved_page_follows_the_rule() -> None:
    from notefeed.search.fusion import FEATURES, LearnedFusion

    notes, small = _coffee_notes()
    pipe = SearchPipeline.build(notes, SearchConfig(dense_dim=8, small_creator_depth=40))
    w = np.zeros(len(FEATURES) + 1)
    w[FEATURES.index("dense_score")] = 1.0
    pipe.fusion = LearnedFusion(w)
    flags = small_creator_lookup(small)
    for _ in range(5):  # the coin differs from page to page
        res = pipe.search("coffee", 10, fusion="interleave", small_creator=flags)
        assert res.teams is not None and _prefix_ok(res.items, small, 0.5) and small[res.items].sum() >= 5
