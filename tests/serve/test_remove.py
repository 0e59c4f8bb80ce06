"""Taking a note down (``DELETE /v1/notes/{id}``): durable before the answer; from the next
request no feed (whatever the config's filters), related list, search or title suggestion
shows it, and a restart keeps it down. Before, a published or imported note could not be
removed at all."""

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


def _page(client: TestClient, user: str, n: int = 50) -> list[str]:
    r = client.get("/v1/feed", params={"user_id": user, "n": n})
    assert r.status_code == 200, r.text
    return [x["note_id"] for x in r.json()["items"]]


def _recalled(eng: Engine, user: str) -> list[str]:
    """The note ids past the filters (the candidates ranking sees)."""
    _, res = eng.feed(user, 50, probe=True)
    return [eng.catalog.note_ids[i] for i in dict(res.snapshots)["recall"].tolist()]


def test_a_removed_note_leaves_every_feed_and_related_list_and_stays_removed(small_ds: Dataset,
                                                                            tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    eng = Engine(small_ds, _config(), ws)
    try:
        with TestClient(create_app(eng)) as c:
            r = c.post("/v1/notes", json={"note_id": "oops", "author_id": "c1", "title": "posted by mistake"},
                       headers=AUTH)
            assert r.status_code == 201
            top = _page(c, "someone")
            assert "oops" in _recalled(eng, "someone")  # fresh/recent recalls it
            popular = top[0]  # an imported note, the most popular
            assert c.delete("/v1/notes/oops").status_code == 401  # writes need the token
            r = c.delete("/v1/notes/oops", params={"reason": "spam"}, headers=AUTH)
            assert r.status_code == 200 and r.json() == {"note_id": "oops", "item": small_ds.n_items,
                                                         "removed": True, "already_removed": False}
            r = c.delete(f"/v1/notes/{popular}", headers=AUTH)
            assert r.status_code == 200 and not r.json()["already_removed"]
            for user in ("someone", "else", small_ds.users["user_id"].iat[0]):
                page = _page(c, user)
                assert "oops" not in page and popular not in page and len(page) == 50
                assert not {"oops", popular} & set(_recalled(eng, user))
            assert c.get("/v1/notes/oops/related").status_code == 410
            assert c.get(f"/v1/notes/{popular}/related").status_code == 410
            other = next(n for n in top if n not in ("oops", popular))
            rel = c.get(f"/v1/notes/{other}/related", params={"n": 1000}).json()["items"]
            assert rel and not {"oops", popular} & {x["note_id"] for x in rel}
            again = c.delete("/v1/notes/oops", headers=AUTH).json()
            assert again["removed"] and again["already_removed"]  # a retry is harmless
            assert c.delete("/v1/notes/never-was", headers=AUTH).status_code == 404
            bad = c.delete(f"/v1/notes/{other}", params={"reason": "a\x00b"}, headers=AUTH)
            assert bad.status_code == 422 and "reason" in bad.text
            assert c.get(f"/v1/notes/{other}/related").status_code == 200  # the bad call removed nothing
            assert c.get("/healthz").json()["removed_notes"] == 2
            assert eng.note_log.removal("oops")[1] == "spam"
    finally:
        eng.close()
    # a restart, with a config that names no filters: still removed
    eng = Engine(small_ds, _config(filters=[]), ws)
    try:
        assert {eng.catalog.note_ids[i] for i in eng.catalog.removed_items.tolist()} == {"oops", popular}
        for user in ("someone", "else"):
            ctx, res = eng.feed(user, 50)
            assert not {"oops", popular} & {eng.catalog.note_ids[i] for i in res.items.tolist()}
            assert "builtin/removed" in [s.name for s in res.stages] and len(res.items) == 50
    finally:
        eng.close()


def test_a_removed_note_leaves_search_and_title_suggestions(tmp_path: Path) -> None:
    with served_search(tmp_path, TWO_USERS, "search-remove") as (eng, c):
        hits = [x["note_id"] for x in c.get("/v1/search", params={"q": "paris", "n": 5}).json()["items"]]
        assert {"n0", "n7"} <= set(hits)
        sug = c.get("/v1/search/suggest", params={"prefix": "paris"}).json()["suggestions"]
        assert "paris travel diary" in [s["text"] for s in sug]  # n7's title (and "paris", just searched)
        assert c.delete("/v1/notes/n7", headers=SEARCH_AUTH).status_code == 200
        hits = [x["note_id"] for x in c.get("/v1/search", params={"q": "paris", "n": 5}).json()["items"]]
        assert "n7" not in hits and "n0" in hits
        sug = c.get("/v1/search/suggest", params={"prefix": "paris"}).json()["suggestions"]
        assert "paris travel diary" not in [s["text"] for s in sug] and "paris" in [s["text"] for s in sug]
        personal = c.get("/v1/search", params={"q": "paris", "n": 5, "user_id": "traveller"}).json()["items"]
        assert "n7" not in [x["note_id"] for x in personal]
        assert np.array_equal(eng.catalog.removed_items, [7])


def test_a_note_published_and_removed_elsewhere_is_added_removed(small_ds: Dataset, tmp_path: Path) -> None:
    """Two workers on one workspace: A publishes a note and takes it down before B has read the
    note log. B, reading the removal first, adds the note first, and removed; before, it skipped
    the removal of a note it did not know and then added the note live."""
    from notefeed.schema import Note

    a, b = Engine(small_ds, _config(), tmp_path / "ws"), Engine(small_ds, _config(), tmp_path / "ws")
    try:
        a.publish(Note(note_id="x", author_id="c1"))
        a.remove_note("x")
        assert b.catalog.item_of("x") is None
        with b._notes_lock:  # what B's follower does each round (Redis backend), removals read first
            b._add_removed()
        i = b.catalog.item_of("x")
        assert i is not None and b.catalog.is_removed([i]).tolist() == [True]
        with b._notes_lock:
            b._add_logged_notes()  # the notes read afterwards: nothing more, still removed
        assert b.catalog.is_removed([i]).tolist() == [True] and b.catalog.n_items == small_ds.n_items + 1
    finally:
        a.close()
        b.close()


def test_in_sorted_is_isin() -> None:
    """The removal filter's membership test (a binary search per candidate) is ``np.isin``."""
    from hypothesis import given
    from hypothesis import strategies as st

    from notefeed.recall._common import in_sorted

    @given(st.lists(st.integers(-5, 60)), st.sets(st.integers(-5, 60)))
    def check(items: list[int], values: set[int]) -> None:
        a, v = np.asarray(items, np.int64), np.asarray(sorted(values), np.int64)
        assert in_sorted(a, v).tolist() == np.isin(a, v).tolist()

    check()
