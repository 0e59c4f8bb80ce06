"""Editing a note (``PATCH /v1/notes/{id}``): durable in the note log before the answer; the
catalogue (pages, category diversity, related fallbacks) and search (text, category, tags,
vectors, title suggestions) have the new fields on every worker and after a restart; the sync
copies the edit into the store without moving the note's row, so training learns from it and a
running server still takes the version trained on it. Before, a note could not be edited, and
an edit written into the store moved its row (its item index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from notefeed.data.dataset import Dataset
from notefeed.data.store import Workspace
from notefeed.models.sync import EDITS_LOG, sync_workspace
from notefeed.schema import Note
from notefeed.serve.app import create_app
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine, popular_config

from ..search.conftest import AUTH, TOKEN, TWO_USERS, make_notes, served_search


def _hits(c: TestClient, q: str) -> list[str]:
    """The page's note ids (lexical and dense hits fused: on these 12 notes the dense side
    returns most notes for any known word, so a test looks at the top)."""
    r = c.get("/v1/search", params={"q": q, "n": 10})
    assert r.status_code == 200, r.text
    return [x["note_id"] for x in r.json()["items"]]


def _suggested(c: TestClient, prefix: str) -> list[str]:
    return [s["text"] for s in c.get("/v1/search/suggest", params={"prefix": prefix}).json()["suggestions"]]


def test_an_edit_reaches_the_page_search_and_suggestions(tmp_path: Path) -> None:
    with served_search(tmp_path, TWO_USERS, "edit") as (eng, c):
        assert "n4" in _hits(c, "camping") and "n4" not in _hits(c, "zephyrquux")
        assert c.patch("/v1/notes/n4", json={"title": "x"}).status_code == 401  # writes need the token
        r = c.patch("/v1/notes/n4", headers=AUTH, json={"title": "Zephyrquux lagoon swim", "text": "a cold swim",
                                                        "tags": ["swimming"], "category": "travel"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["changed"] == ["category", "tags", "text", "title"] and body["item"] == 4
        assert body["note"]["title"] == "Zephyrquux lagoon swim" and body["note"]["tags"] == ["swimming"]
        assert _hits(c, "zephyrquux")[0] == "n4" and "n4" not in _hits(c, "camping")
        assert "n4" in _hits(c, "swimming")  # the new tag
        assert "zephyrquux lagoon swim" in _suggested(c, "zephyr") and "camping in the alps" not in _suggested(c, "camp")
        i = eng.catalog.item_of("n4")
        assert eng.catalog.category_name(i) == "travel" and eng.catalog.note_json(i)["title"] == "Zephyrquux lagoon swim"
        assert c.get("/v1/notes/n7/related").status_code == 200
        # the same values again: nothing changed, nothing logged
        again = c.patch("/v1/notes/n4", headers=AUTH, json={"tags": ["swimming"]}).json()
        assert again["changed"] == [] and len(eng.note_log.edits_since(0, move=False)) == 1
        assert "notes_edited_total 1" in c.get("/metrics").text
        # bad input: 4xx naming the field, nothing written
        for bad, field in (({}, "body"), ({"title": "x", "author_id": "z"}, "author_id"), ({"tags": [""]}, "tags"),
                           ({"title": 3}, "title"), ({"category": "c" * 300}, "category")):
            r = c.patch("/v1/notes/n4", headers=AUTH, json=bad)
            assert r.status_code == 422 and field in r.text, (bad, r.text)
        got = c.get("/v1/notes/n4").json()  # the note as served
        assert (got["title"], got["tags"], got["category"], got["item"]) == ("Zephyrquux lagoon swim", ["swimming"],
                                                                             "travel", 4)
        assert got["text"] == "a cold swim" and got["author_id"] == "c2"
        assert c.get("/v1/notes/nope").status_code == 404
        assert c.patch("/v1/notes/nope", headers=AUTH, json={"title": "x"}).status_code == 404
        assert c.delete("/v1/notes/n9", headers=AUTH).status_code == 200
        assert c.patch("/v1/notes/n9", headers=AUTH, json={"title": "x"}).status_code == 410  # taken down
        assert c.get("/v1/notes/n9").status_code == 410
        assert len(eng.note_log.edits_since(0, move=False)) == 1


def _engine(ws: Path, name: str = "edit") -> Engine:
    ds = Dataset.build(name, TWO_USERS, notes=make_notes())
    return Engine(ds, popular_config(builtin_config().with_overrides(api={"token": TOKEN})), ws)


def test_edits_hold_after_a_restart_and_reach_another_worker(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    a, b = _engine(ws), _engine(ws)
    try:
        with TestClient(create_app(a)) as ca, TestClient(create_app(b)) as cb:
            assert "n1" in _hits(ca, "boots") and "n1" in _hits(cb, "boots")  # both indexes built
            a.publish(Note(note_id="p1", author_id="c9", title="Knitting basics", category="craft"))
            ca.patch("/v1/notes/n1", headers=AUTH, json={"title": "Zephyrquux kayak", "text": "paddle"})
            ca.patch("/v1/notes/p1", headers=AUTH, json={"title": "Zephyrquux knots"})
            ca.patch("/v1/notes/n1", headers=AUTH, json={"title": "Zephyrquux canoe"})  # edited twice
            assert sorted(_hits(ca, "zephyrquux")[:2]) == ["n1", "p1"]
            with b._notes_lock:  # what B's follower does each round (Redis backend)
                b._read_note_log()
            b.search.catch_up()  # the follower's note hook
            assert sorted(_hits(cb, "zephyrquux")[:2]) == ["n1", "p1"] and "n1" not in _hits(cb, "kayak")[:1]
            assert b.catalog.fields(b.catalog.item_of("n1"))["title"] == "Zephyrquux canoe"
            assert "n1" not in _hits(cb, "boots")[:1]
    finally:
        a.close()
        b.close()
    c = _engine(ws)  # a restart: the shared index catches up with the log's edits
    try:
        with TestClient(create_app(c)) as cc:
            assert sorted(_hits(cc, "zephyrquux")[:2]) == ["n1", "p1"] and "n1" not in _hits(cc, "boots")[:1]
            assert "n1" not in _hits(cc, "kayak")[:1]
            assert c.catalog.note_json(c.catalog.item_of("p1"))["title"] == "Zephyrquux knots"
            lex = c.search.pipeline.lexical
            assert lex.df.get("boots", 0) == 0 and lex.df["zephyrquux"] == 2 and lex.df.get("kayak", 0) == 0
    finally:
        c.close()
    import shutil

    shutil.rmtree(ws / "search")  # an index built afresh from the catalogue has the edited fields
    d = _engine(ws)
    try:
        with TestClient(create_app(d)) as cd:
            assert sorted(_hits(cd, "zephyrquux")[:2]) == ["n1", "p1"] and "n1" not in _hits(cd, "boots")[:1]
            assert d.search.pipeline.edits_seq == 3
    finally:
        d.close()


def test_the_sync_copies_edits_into_the_store_in_place(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ds = Dataset.build("edit", TWO_USERS, notes=make_notes())
    with Workspace.open(ws) as w:
        w.save_dataset(ds)
    eng = _engine(ws)
    try:
        eng.publish(Note(note_id="p1", author_id="c9", title="Knitting basics", tags=["craft"]))
        eng.edit_note("n3", {"title": "Zephyrquux espresso", "tags": ["coffee", "new"]})
        eng.edit_note("p1", {"category": "craft"})
        eng.edit_note("n3", {"category": "drinks"})
    finally:
        eng.close()
    report = sync_workspace(ws)
    assert (report.notes, report.edits) == (1, 3) and "3 note edits" in report.line()
    assert sync_workspace(ws).edits == 0  # copied once
    with Workspace.open(ws) as w:
        assert w.mark(EDITS_LOG) == 3
        back = w.load_dataset()
    assert back.notes["note_id"].tolist() == [*ds.notes["note_id"], "p1"]  # no row moved
    n3 = back.notes.iloc[3]
    assert (n3["title"], list(n3["tags"]), n3["category"]) == ("Zephyrquux espresso", ["coffee", "new"], "drinks")
    assert n3["text"] == ds.notes["text"].iat[3]  # a field not edited stays
    assert back.notes.iloc[-1]["category"] == "craft" and back.notes.iloc[-1]["title"] == "Knitting basics"
    cols = ["note_id", "author_id", "title", "text", "tags", "category", "created_at"]
    pd.testing.assert_frame_equal(back.notes.drop(index=[3, len(back.notes) - 1]).reset_index(drop=True)[cols],
                                  ds.notes.drop(index=[3]).reset_index(drop=True)[cols], check_dtype=False)
    with Workspace.open(ws) as w:  # a note written again (a re-import) replaces its edit too
        w.append_notes(pd.DataFrame({"note_id": ["n3"], "author_id": ["c1"], "title": ["Reimported"]}))
        assert w.load_dataset().notes.set_index("note_id").loc["n3", "title"] == "Reimported"
        assert w.counts()["note_edits"] == 1
    # a server started on the synced store, and the log replayed over it: the same fields
    eng = Engine(back, popular_config(builtin_config()), ws)
    try:
        i = eng.catalog.item_of("n3")
        assert eng.catalog.fields(i)["title"] == "Zephyrquux espresso" and eng.catalog.category_name(i) == "drinks"
        assert np.array_equal(eng.catalog.category_codes()[:3], np.asarray(
            [eng.catalog.category_index[c] for c in ds.notes["category"][:3]]))
    finally:
        eng.close()
