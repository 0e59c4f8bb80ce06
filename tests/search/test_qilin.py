"""The Qilin (Xiaohongshu) toy sample end to end: import -> index -> search (Chinese notes, real
queries and their sessions) -> served pages and search clicks through the engine's event ingest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from notefeed.search import SearchConfig, SearchPipeline
from notefeed.search.rewrite import mine_rewrites


@pytest.fixture(scope="module")
def qilin():
    from notefeed.data.loaders import load_dataset

    try:
        return load_dataset("qilin")
    except FileNotFoundError as e:
        pytest.skip(f"Qilin toy sample not here: {e}")


def _log(ds) -> pd.DataFrame:
    q = ds.meta["queries"]
    return pd.DataFrame([(r.user_id, r.text, r.ts, c) for r in q.itertuples() for c in (r.clicked_note_ids or [""])],
                        columns=["user_id", "query", "ts", "clicked"])


def test_qilin_notes_are_found_by_their_words(qilin) -> None:
    pipe = SearchPipeline.build(qilin.notes, SearchConfig(), query_log=_log(qilin))
    want = {"灌香肠": "0", "新加坡女佣": "3", "特斯拉 摄像头": "7", "生日礼物": "4", "klcc 美食": "2",
            "猪里脊": "9", "INFJ": "8", "补课": "1"}
    for q, note in want.items():
        assert pipe.note_ids[int(pipe.search(q, 3).items[0])] == note, q
    # the real query log: suggestions from what users typed, a rewrite from a real session
    assert [s for s, _ in pipe.suggest("国考", 5)] == ["国考准考证手机下载", "国考准考证怎么下载", "国考准考证证件号码"]
    assert pipe.suggester.source == "query log"
    assert mine_rewrites(_log(qilin))["冬天送女朋友四件套用品"][0][0] == "入冬九件套礼物"


def test_qilin_served_search_and_click(qilin, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from notefeed.serve.app import create_app
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import Engine, popular_config

    auth = {"Authorization": "Bearer qilin-token"}
    eng = Engine(qilin, popular_config(builtin_config().with_overrides(api={"token": "qilin-token"})), tmp_path / "ws")
    try:
        with TestClient(create_app(eng)) as c:
            user = qilin.meta["queries"]["user_id"].iloc[0]
            page = c.get("/v1/search", params={"q": "新加坡 女佣", "user_id": user, "n": 3}, headers=auth).json()
            assert page["items"][0]["note_id"] == "3" and page["terms"] == ["新加坡", "女佣"]
            ev = {"user_id": user, "note_id": "3", "ts": 1732566500, "type": "click", "surface": "search",
                  "request_id": page["request_id"], "position": 0}
            assert c.post("/v1/events", json={"events": [ev]}, headers=auth).json()["accepted"] == 1
            eng.side_effects.drain(5.0)
            got = eng.search.log.query_of(page["request_id"])
            assert got["query"] == "新加坡 女佣" and [k["note_id"] for k in got["clicks"]] == ["3"]
            assert eng.state.snapshot(user).short_seq[-1] == "3"
    finally:
        eng.search.close()
        eng.close()
