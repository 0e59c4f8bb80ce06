"""A user blocks a creator (``PUT /v1/users/{id}/blocks/{author_id}``): none of the creator's
notes reaches that user's feed (whatever the config's filters) or search again, other users
are unaffected, an unblock undoes it, and a restart keeps it. Before, ``ctx.blocked_authors``
existed in the recall contract and the seen filter, but nothing could fill it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from notefeed.data.dataset import Dataset
from notefeed.serve.app import create_app
from notefeed.serve.engine import Engine

from ..search.conftest import AUTH as SEARCH_AUTH
from ..search.conftest import TWO_USERS, served_search
from .conftest import AUTH, make_config


def _config(**over):
    return make_config(recall={"channels": [{"name": "fresh/recent", "quota": 50},
                                            {"name": "non-personalized/popular", "quota": 300}]}, **over)


def _authors(eng: Engine, user: str) -> tuple[set[str], set[str]]:
    """(authors on the user's page, authors among the candidates past the filters)."""
    _, res = eng.feed(user, 30, probe=True)
    ids = eng.catalog.creator_ids
    a = eng.catalog.authors()
    return ({ids[a[i]] for i in res.items.tolist()}, {ids[a[i]] for i in dict(res.snapshots)["recall"].tolist()})


def test_a_blocked_creator_leaves_the_users_feed_only_until_unblocked(small_ds: Dataset, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    eng = Engine(small_ds, _config(), ws)
    user, other = small_ds.users["user_id"].iat[3], "someone-else"
    try:
        with TestClient(create_app(eng)) as c:
            page, _ = _authors(eng, user)
            creator = sorted(page)[0]
            assert c.put(f"/v1/users/{user}/blocks/{creator}").status_code == 401  # the write token
            r = c.put(f"/v1/users/{user}/blocks/{creator}", headers=AUTH)
            assert r.status_code == 200 and r.json() == {"user_id": user, "author_id": creator, "blocked": True,
                                                         "blocks": [creator]}
            assert c.put(f"/v1/users/{user}/blocks/{creator}", headers=AUTH).json()["blocks"] == [creator]
            page, recalled = _authors(eng, user)
            assert creator not in page and creator not in recalled
            assert creator in _authors(eng, other)[1]  # another user still gets them
            assert c.get(f"/v1/users/{user}").json()["blocked"] == [creator]
            assert c.get("/v1/users/only-blocks").status_code == 404
            c.put(f"/v1/users/only-blocks/blocks/{creator}", headers=AUTH)
            assert c.get("/v1/users/only-blocks").json()["blocked"] == [creator]  # known by its blocks
            # related lists asked for by this user skip the creator too; others' do not
            note = next(i for i in range(small_ds.n_items) if small_ds.notes["author_id"].iat[i] != creator)
            nid = small_ds.notes["note_id"].iat[note]
            mine = c.get(f"/v1/notes/{nid}/related", params={"n": 300, "user_id": user}).json()["items"]
            theirs = c.get(f"/v1/notes/{nid}/related", params={"n": 300}).json()["items"]
            assert creator in {x["author_id"] for x in theirs} and creator not in {x["author_id"] for x in mine}
            assert len(mine) == 300
            assert c.get(f"/v1/notes/{nid}/related", params={"user_id": "a\x01"}).status_code == 422
            bad = c.put(f"/v1/users/{user}/blocks/a%07b", headers=AUTH)
            assert bad.status_code == 422 and "author_id" in bad.text
            assert c.put(f"/v1/users/{user}/blocks/{'x' * 129}", headers=AUTH).status_code == 422
    finally:
        eng.close()
    eng = Engine(small_ds, _config(filters=[]), ws)  # a restart, a config without filters: still blocked
    try:
        page, recalled = _authors(eng, user)
        assert creator not in page and creator not in recalled
        assert eng.relate(user, creator, "block", active=False) == ()
        assert creator in _authors(eng, user)[1]  # unblocked: back among the candidates
    finally:
        eng.close()
    eng = Engine(small_ds, _config(), ws)
    try:
        assert eng.user(user)["blocked"] == [] and eng.user("only-blocks")["blocked"] == [creator]
    finally:
        eng.close()


def test_a_blocked_creator_leaves_the_users_search(tmp_path: Path) -> None:
    with served_search(tmp_path, TWO_USERS, "search-blocks") as (eng, c):
        q = {"q": "paris", "n": 5, "user_id": "traveller"}
        assert {"n0", "n7"} <= {x["note_id"] for x in c.get("/v1/search", params=q).json()["items"]}
        assert c.put("/v1/users/traveller/blocks/c6", headers=SEARCH_AUTH).status_code == 200  # n7's author
        hits = {x["note_id"] for x in c.get("/v1/search", params=q).json()["items"]}
        assert "n7" not in hits and "n0" in hits
        foodie = {x["note_id"] for x in c.get("/v1/search", params={**q, "user_id": "foodie"}).json()["items"]}
        assert "n7" in foodie
        assert np.array_equal(eng.blocked_items("traveller"), [7])


def test_a_torn_relation_log_is_a_clear_error_and_left_as_it_was(tmp_path: Path) -> None:
    """Like the event and note logs: a file the server cannot read is never replaced."""
    import pytest

    from notefeed.serve.relations import RelationLog

    p = tmp_path / "relations.sqlite"
    p.write_bytes(b"SQLite format 3\x00" + b"\x07" * 3000)
    before = p.read_bytes()
    with pytest.raises(ValueError, match="not a notefeed relation log"):
        RelationLog(p)
    assert p.read_bytes() == before
    log = RelationLog(tmp_path / "ok.sqlite")
    log.append("u", "c", "block", True, at=1.0)
    log.append("u", "c", "follow", False, at=2.0)
    assert log.since(0) == [("u", "c", "block", True, 1.0), ("u", "c", "follow", False, 2.0)]
    assert log.since(log.last_seq) == []
    with pytest.raises(ValueError, match="kind"):
        log.append("u", "c", "mute", True)
    log.close()
