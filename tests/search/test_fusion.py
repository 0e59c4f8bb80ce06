"""Fusion kernels and personalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from notefeed.search import SearchConfig, SearchError, SearchPipeline
from notefeed.search.fusion import FEATURES, LearnedFusion, fit_logistic, rrf, union_ranks


def test_union_ranks_and_rrf() -> None:
    items, ranks = union_ranks([np.array([5, 3, 9]), np.array([3, 7])])
    assert items.tolist() == [5, 3, 9, 7]
    assert ranks.tolist() == [[0, -1], [1, 0], [2, -1], [-1, 1]]
    s = rrf(ranks, k=60)
    assert np.argmax(s) == 1  # in both lists
    np.testing.assert_allclose(s[0], 1 / 61)
    np.testing.assert_allclose(rrf(ranks, 60, np.array([1.0, 0.0]))[3], 0.0)


def test_fit_logistic_learns_the_signal() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    y = (1 / (1 + np.exp(-(2 * x[:, 0] - x[:, 1])))).round()
    w = fit_logistic(x, y)
    assert w[0] > 1 and w[1] < -0.5 and abs(w[2]) < 0.3


def test_learned_fusion_round_trip(tmp_path: Path) -> None:
    f = LearnedFusion(np.arange(len(FEATURES) + 1, dtype=float))
    f.save(tmp_path / "fusion.json")
    g = LearnedFusion.load(tmp_path / "fusion.json")
    np.testing.assert_array_equal(g.weights, f.weights)
    with pytest.raises(SearchError, match="weights"):
        LearnedFusion(np.zeros(3))


def test_personalisation_reorders_by_history(pipe: SearchPipeline) -> None:
    # "paris" matches a food note (n0) and a travel note (n7); a travel lover gets n7 first
    anon = pipe.search("paris", 2, personalise=False).items.tolist()
    travel = pipe.search("paris", 2, history=np.array([2, 11, 7])).items.tolist()
    food = pipe.search("paris", 2, history=np.array([3, 5, 9])).items.tolist()
    assert set(anon) == {0, 7}
    assert travel[0] == 7 and food[0] == 0
    res = pipe.search("paris", 2, history=np.array([2, 11]), explain=True)
    assert res.trace is not None and res.trace["personalised"]
    assert res.trace["items"][0]["user_category"] > 0


def test_learned_fusion_in_the_pipeline(pipe: SearchPipeline) -> None:
    w = np.zeros(len(FEATURES) + 1)
    w[FEATURES.index("lex_score")] = 1.0
    pipe.fusion = LearnedFusion(w)
    res = pipe.search("coffee", 3, fusion="learned")
    lex = pipe.lexical.retrieve(pipe.understanding.parse("coffee"), 3)
    assert res.items.tolist() == lex.items.tolist()
    with pytest.raises(SearchError, match="fusion"):
        SearchPipeline(SearchConfig(fusion="learned"), pipe.lexical, None, pipe.intent, pipe.suggester,
                       [], [], [], [], [])


def test_ssd_diversity_on_the_page(notes) -> None:  # type: ignore[no-untyped-def]
    pipe = SearchPipeline.build(notes, SearchConfig(dense_dim=8, rerank="rerank/ssd"))
    res = pipe.search("coffee latte", 4, explain=True)
    assert "rerank" in res.ms and len(res.items) == 4 and len(set(res.items.tolist())) == 4


def test_tag_share_arrays_equal_the_loop() -> None:
    import numpy as np

    from notefeed.search.personal import TagTable, UserProfile, personal_features

    rng = np.random.default_rng(0)
    item_tags = [rng.choice(40, int(rng.integers(0, 7)), replace=True).tolist() for _ in range(300)]
    cats = rng.integers(0, 5, 300)
    hist = rng.choice(300, 25)
    prof = UserProfile.from_history(hist, cats, 5, item_tags, None)
    items = np.r_[rng.choice(300, 150), [0, 299]]
    table = TagTable().sync(item_tags[:100]).sync(item_tags)  # grown in two steps
    fast = personal_features(prof, items, cats, item_tags, None, table)
    slow = personal_features(prof, items, cats, item_tags, None)
    assert np.array_equal(fast, slow) and np.any(fast[:, 1] > 0)
