"""Undoing a takedown (``POST /v1/notes/{id}/restore``) and the list of notes down now
(``GET /v1/admin/removed``). Before, a takedown could not be undone: a moderation mistake or a
granted appeal left the note down for good."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from notefeed.data.dataset import Dataset
from notefeed.schema import Note
from notefeed.serve.app import create_app
from notefeed.serve.engine import Engine

from ..search.conftest import AUTH as SEARCH_AUTH
from ..search.conftest import TWO_USERS, served_search
from .conftest import AUTH
from .test_remove import _config, _page, _recalled


def test_a_restored_note_is_back_everywhere_and_stays_back(small_ds: Dataset, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    eng = Engine(small_ds, _config(), ws)
    try:
        with TestClient(create_app(eng)) as c:
            assert c.post("/v1/notes", json={"note_id": "fine", "author_id": "c1", "title": "wrongly reported"},
                          headers=AUTH).status_code == 201
            popular = _page(c, "someone")[0]
            for note, why in (("fine", "reported"), (popular, "spam")):
                assert c.delete(f"/v1/notes/{note}", params={"reason": why}, headers=AUTH).status_code == 200
            listed = c.get("/v1/admin/removed").json()
            assert listed["removed"] == 2 and [x["note_id"] for x in listed["notes"]] == [popular, "fine"]
            assert listed["notes"][1]["reason"] == "reported" and listed["notes"][1]["title"] == "wrongly reported"
            assert [x["note_id"] for x in c.get("/v1/admin/removed", params={"limit": 1, "offset": 1}).json()
                    ["notes"]] == ["fine"]

            assert c.post("/v1/notes/fine/restore").status_code == 401  # writes need the token
            r = c.post("/v1/notes/fine/restore", params={"reason": "appeal granted"}, headers=AUTH)
            assert r.status_code == 200 and r.json() == {"note_id": "fine", "item": small_ds.n_items,
                                                         "removed": False, "was_removed": True}
            assert "fine" in _recalled(eng, "someone")  # fresh/recent recalls it again
            assert c.get("/v1/notes/fine/related").status_code == 200
            assert popular not in _page(c, "someone")  # the other takedown holds
            again = c.post("/v1/notes/fine/restore", headers=AUTH).json()
            assert again["was_removed"] is False  # a retry is harmless
            assert c.post("/v1/notes/never-was/restore", headers=AUTH).status_code == 404
            bad = c.post(f"/v1/notes/{popular}/restore", params={"reason": "a\x07b"}, headers=AUTH)
            assert bad.status_code == 422 and "reason" in bad.text
            assert popular not in _page(c, "someone")  # the bad call restored nothing
            assert c.get("/healthz").json()["removed_notes"] == 1
            assert c.get("/v1/admin/removed").json()["removed"] == 1
            assert eng.note_log.removal("fine") is None
            assert eng.note_log.restores("fine")[0]["removed_reason"] == "reported"
            # restored, then taken down again: down
            assert c.delete("/v1/notes/fine", headers=AUTH).json()["already_removed"] is False
            assert "fine" not in _recalled(eng, "someone")
            assert c.post("/v1/notes/fine/restore", headers=AUTH).json()["was_removed"] is True
            assert c.post(f"/v1/notes/{popular}/restore", headers=AUTH).json()["was_removed"] is True
            assert "notes_restored_total 3" in c.get("/metrics").text
    finally:
        eng.close()
    eng = Engine(small_ds, _config(), ws)  # a restart replays the log: everything is back
    try:
        assert len(eng.catalog.removed_items) == 0
        assert {"fine", popular} <= set(_recalled(eng, "someone"))
        assert len(eng.note_log.restores("fine")) == 2
    finally:
        eng.close()


def test_a_restored_note_is_back_in_search_and_title_suggestions(tmp_path: Path) -> None:
    with served_search(tmp_path, TWO_USERS, "search-restore") as (eng, c):
        assert c.delete("/v1/notes/n7", headers=SEARCH_AUTH).status_code == 200
        sug = c.get("/v1/search/suggest", params={"prefix": "paris"}).json()["suggestions"]
        assert "paris travel diary" not in [s["text"] for s in sug]
        assert c.post("/v1/notes/n7/restore", headers=SEARCH_AUTH).json()["was_removed"] is True
        hits = [x["note_id"] for x in c.get("/v1/search", params={"q": "paris", "n": 5}).json()["items"]]
        assert "n7" in hits
        sug = c.get("/v1/search/suggest", params={"prefix": "paris"}).json()["suggestions"]
        assert "paris travel diary" in [s["text"] for s in sug]


def test_a_worker_applies_restores_and_removals_in_the_logs_order(small_ds: Dataset, tmp_path: Path) -> None:
    """Worker B reads the log after A removed, restored and removed again a note (down), and
    after A removed and restored another (live), all in one read."""
    a, b = Engine(small_ds, _config(), tmp_path / "ws"), Engine(small_ds, _config(), tmp_path / "ws")

    def down_on_b() -> list[bool]:  # what B's follower does each round (Redis backend), then its state
        with b._notes_lock:
            b._read_note_log()
        return b.catalog.is_removed([b.catalog.item_of("x"), b.catalog.item_of("y")]).tolist()

    try:
        for n in ("x", "y"):
            a.publish(Note(note_id=n, author_id="c1"))
        a.remove_note("x")
        a.remove_note("y")
        assert down_on_b() == [True, True]
        a.restore_note("x")
        a.remove_note("x")
        a.restore_note("y")
        assert down_on_b() == [True, False]
        a.restore_note("x")
        assert down_on_b() == [False, False]
    finally:
        a.close()
        b.close()
