"""Query understanding: spelling, term weights, category prediction, mined rewrites."""

from __future__ import annotations

import numpy as np
import pandas as pd

from notefeed.search import SearchConfig, SearchPipeline, mine_rewrites
from notefeed.search.intent import CategoryModel
from notefeed.search.spelling import SpellCorrector, osa_distance


def test_osa_distance() -> None:
    assert osa_distance("coffee", "coffee") == 0
    assert osa_distance("cofee", "coffee") == 1
    assert osa_distance("ocffee", "coffee") == 1  # transposition
    assert osa_distance("kitten", "sitting", limit=5) == 3
    assert osa_distance("a", "abcdef", limit=2) == 2


def test_spell_corrector_prefers_frequent_and_close() -> None:
    sc = SpellCorrector({"coffee": 10, "toffee": 2, "espresso": 5, "mountain": 3}, min_df=1)
    assert sc.correct("cofee") == "coffee"
    assert sc.correct("espreso") == "espresso"
    assert sc.correct("mountian") == "mountain"
    assert sc.correct("coffee") is None  # known
    assert sc.correct("xyzzyq") is None and sc.correct("cfe") is None  # far, short


def test_pipeline_corrects_and_weights(pipe: SearchPipeline) -> None:
    res = pipe.search("espreso machin", 3, explain=True)
    # "machine" is in one note only: below the vocabulary's min_df, never a correction target
    assert res.query.corrections == {"espreso": "espresso"}
    assert set(res.items[:2].tolist()) == {0, 3}
    assert pipe.search("mountian", 3).query.corrections == {"mountian": "mountain"}
    pq = pipe.understanding.parse("coffee tokyo")
    w = dict(zip(pq.terms, pq.weights.tolist(), strict=True))
    assert w["tokyo"] > w["coffee"] > 0  # rarer term weighs more


def test_category_prediction(pipe: SearchPipeline) -> None:
    assert pipe.understanding.parse("lipstick").categories[0][0] == "beauty"
    assert pipe.understanding.parse("tent mountain").categories[0][0] == "outdoors"
    assert pipe.understanding.parse("火锅").categories[0][0] == "food"
    m = CategoryModel().fit([["a", "b"], ["c"]], ["x", "y"])
    p = m.proba(["a"])
    assert abs(sum(p.values()) - 1) < 1e-6 and p["x"] > p["y"]
    assert m.predict(["unknown"]) == []


def _log() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ["u1", "u1", "u2", "u2", "u3", "u4"],
        "query": ["cheap joe", "coffee", "cuppa", "coffee", "coffee", "cuppa"],
        "ts": [0, 30, 100, 130, 200, 300],
        "clicked": ["", "n0", "", "n3", "n0", "n0"],
    })


def test_mine_rewrites_from_sessions_and_coclicks() -> None:
    table = mine_rewrites(_log())
    assert table["cheap joe"][0][0] == "coffee"  # reformulation after no click
    assert table["cuppa"][0][0] == "coffee"  # reformulation + co-click on n0
    assert "coffee" not in table  # never rewritten towards the rarer query


def test_mined_rewrite_recovers_a_zero_result_query(notes: pd.DataFrame) -> None:
    pipe = SearchPipeline.build(notes, SearchConfig(dense=False), query_log=_log())
    res = pipe.search("cheap joe", 5, explain=True)
    assert res.query.rewrites == ["coffee"]
    assert set(res.items.tolist()) >= {0, 3}
    assert pipe.search("cheap joe", 5, rewrite=False).items.tolist() == []
    assert pipe.suggest("cof") == [("coffee", 3)] and pipe.suggester.source == "query log"


def test_suggest_from_titles(pipe: SearchPipeline) -> None:
    assert [s for s, _ in pipe.suggest("PARIS")] == ["paris travel diary"]
    assert pipe.suggest("") == [] and pipe.suggest("zzz") == []
    assert np.all([s.startswith("t") for s, _ in pipe.suggest("t", 10)])
