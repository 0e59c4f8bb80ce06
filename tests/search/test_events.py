"""Search events: pages logged with a request_id, impressions and clicks through the engine's
event ingest (bus, online state), clicks joined to their query, suggestions from the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from notefeed.search.querylog import SearchLog
from notefeed.serve.engine import Engine
from tests.search.conftest import AUTH, TWO_USERS, served_search


@pytest.fixture
def eng(tmp_path: Path) -> Iterator[tuple[Engine, TestClient]]:
    with served_search(tmp_path, TWO_USERS, "search-events") as ec:
        yield ec


def _search(c: TestClient, **params: object) -> dict:
    r = c.get("/v1/search", params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def _click(c: TestClient, user: str, note: str, rid: str | None, pos: int = 0, surface: str = "search") -> None:
    ev = {"user_id": user, "note_id": note, "ts": 100, "type": "click", "surface": surface, "position": pos}
    if rid is not None:
        ev["request_id"] = rid
    r = c.post("/v1/events", json={"events": [ev]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def test_page_is_logged_with_impressions_on_the_bus(eng: tuple[Engine, TestClient]) -> None:
    e, c = eng
    body = _search(c, q="Paris", user_id="newbie", n=3)
    rid = body["request_id"]
    shown = [it["note_id"] for it in body["items"]]
    assert len(rid) == 32 and len(shown) == 3
    e.side_effects.drain(5.0)
    logged = e.search.log.query_of(rid)
    assert logged is not None and logged["query"] == "paris" and logged["items"] == shown
    assert logged["user_id"] == "newbie" and logged["clicks"] == []
    imps = [r for r in e.bus.replay() if r.request_id == rid]
    assert [(r.type, r.surface, r.note_id, r.position) for r in imps] == [
        ("impression", "search", n, k) for k, n in enumerate(shown)]
    assert set(shown) <= e.state.snapshot("newbie").seen
    # anonymous pages are logged, but there is no user to give impressions to
    anon = _search(c, q="coffee")["request_id"]
    e.side_effects.drain(5.0)
    assert e.search.log.query_of(anon)["user_id"] is None
    assert not [r for r in e.bus.replay() if r.request_id == anon]


@pytest.mark.parametrize("clicked, other", [("n7", "n0"), ("n0", "n7")])
def test_search_click_changes_the_next_search_and_feed(eng: tuple[Engine, TestClient], clicked: str,
                                                       other: str) -> None:
    e, c = eng
    user = f"new-{clicked}"
    first = _search(c, q="paris", user_id=user, n=2, explain="true")
    assert first["trace"]["personalised"] is False  # nothing known about the user yet
    _click(c, user, clicked, first["request_id"], [x["note_id"] for x in first["items"]].index(clicked))
    # the click went through the event ingest: the online state holds it now
    state = c.get(f"/v1/users/{user}", headers=AUTH).json()
    assert state["short_seq"] == [clicked]
    nxt = _search(c, q="paris", user_id=user, n=2, explain="true")
    assert nxt["trace"]["personalised"] is True and nxt["items"][0]["note_id"] == clicked
    e.side_effects.drain(5.0)
    got = e.search.log.query_of(first["request_id"])
    assert [(k["note_id"], k["type"]) for k in got["clicks"]] == [(clicked, "click")]
    feed = c.get("/v1/feed", params={"user_id": user, "n": 12}, headers=AUTH)
    assert feed.status_code == 200, feed.text
    assert clicked not in [it["note_id"] for it in feed.json()["items"]]  # seen now


def test_clicks_without_a_logged_search_are_still_events(eng: tuple[Engine, TestClient]) -> None:
    e, c = eng
    _click(c, "u1", "n3", "not-a-search-page")
    _click(c, "u1", "n5", None)
    _click(c, "u1", "n9", "feed-page", surface="feed")
    e.side_effects.drain(5.0)
    assert c.get("/v1/users/u1", headers=AUTH).json()["short_seq"] == ["n3", "n5", "n9"]
    assert e.search.log.query_of("not-a-search-page") is None
    assert e.search.log.frame()["clicked"].tolist() == []


def test_suggest_uses_the_query_log_then_titles(eng: tuple[Engine, TestClient]) -> None:
    e, c = eng
    for q in ("paris travel", "Paris travel", "paris museums", "espresso"):
        _search(c, q=q, user_id="s")
    r = c.get("/v1/search/suggest", params={"prefix": "par", "n": 5}, headers=AUTH).json()
    texts = [s["text"] for s in r["suggestions"]]
    assert texts[:2] == ["paris travel", "paris museums"] and r["suggestions"][0]["weight"] == 2
    assert r["source"] == "query log+titles" and "paris travel diary" in texts  # topped up from titles
    only = c.get("/v1/search/suggest", params={"prefix": "espr", "n": 1}, headers=AUTH).json()
    assert only["source"] == "query log" and [s["text"] for s in only["suggestions"]] == ["espresso"]


def test_query_log_survives_a_restart_and_feeds_rewrite_mining(tmp_path: Path) -> None:
    log = SearchLog(tmp_path / "log.sqlite")
    log.log_query("r1", "u", "expresso", ["n1"], ts=10)
    log.log_query("r2", "u", "espresso", ["n3", "n0"], ts=20)
    assert log.log_clicks([("r2", "n3", "u", 21.0, "click", 0), ("nope", "n3", "u", 22.0, "click", 0)]) == 1
    log.close()
    again = SearchLog(tmp_path / "log.sqlite")
    assert again.queries() == ["expresso", "espresso"] and again.queries(limit=1) == ["espresso"]
    f = again.frame()
    assert f.to_dict("records") == [
        {"user_id": "u", "query": "expresso", "ts": 10, "clicked": ""},
        {"user_id": "u", "query": "espresso", "ts": 20, "clicked": ""},
        {"user_id": "u", "query": "espresso", "ts": 20, "clicked": "n3"}]
    from notefeed.search.rewrite import mine_rewrites

    assert "espresso" in dict(mine_rewrites(f)["expresso"])  # reformulation after a click-less search
    again.close()
    (tmp_path / "bad.sqlite").write_bytes(b"not a database at all, not at all" * 10)
    with pytest.raises(ValueError, match="bad.sqlite"):
        SearchLog(tmp_path / "bad.sqlite")


def test_a_query_searched_on_one_worker_is_suggested_by_another(tmp_path: Path) -> None:
    """Two serving processes on one workspace share the query log: a query searched on A is
    suggested by B (before, B suggested only its own searches and those logged before it
    started), and A's own searches are counted once."""
    from notefeed.data.dataset import Dataset
    from notefeed.serve.app import create_app
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import popular_config
    from tests.search.conftest import TOKEN, make_notes

    def engine() -> Engine:
        ds = Dataset.build("two", TWO_USERS, notes=make_notes())
        return Engine(ds, popular_config(builtin_config().with_overrides(api={"token": TOKEN})), tmp_path / "ws")

    a, b = engine(), engine()
    try:
        with TestClient(create_app(a)) as ca, TestClient(create_app(b)) as cb:
            for _ in range(2):
                assert ca.get("/v1/search", params={"q": "espresso machine"}).status_code == 200
            a.side_effects.drain()  # the page is logged (milliseconds after it is served)
            got = cb.get("/v1/search/suggest", params={"prefix": "espr"}).json()
            assert got["suggestions"][0] == {"text": "espresso machine", "weight": 2}, got
            mine = ca.get("/v1/search/suggest", params={"prefix": "espr"}).json()["suggestions"]
            assert mine[0] == {"text": "espresso machine", "weight": 2}  # not counted again from the log
    finally:
        a.close()
        b.close()
