"""The DuckDB workspace: round trips, atomic validated appends, durability, corrupt files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.store import DB_NAME, Workspace
from notefeed.schema import Event, Note, User


def _dataset() -> Dataset:
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3"],
            "note_id": ["a", "b", "a", "c"],
            "ts": [3, 1, 2, 5],
            "type": ["click", "like", "impression", "collect"],
            "dwell_s": [1.5, None, None, 2.0],
            "position": [0, None, 3, None],
            "request_id": ["r1", None, "r2", None],
            "surface": ["feed", "feed", "search", "related"],
        }
    )
    notes = pd.DataFrame(
        {
            "note_id": ["a", "b", "c"],
            "author_id": ["c1", "c2", "c1"],
            "title": ["t a", "t b", "t c"],
            "tags": [["x", "y"], [], ["z"]],
            "media": [["1.jpg"], [], ["2.jpg", "3.jpg"]],
            "created_at": [10, 20, 30],
        }
    )
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "age": [30, 40, 50], "city": ["sh", "bj", "gz"]})
    creators = pd.DataFrame({"creator_id": ["c1", "c2"], "followers": [5000, 12]})
    social = pd.DataFrame({"user_id": ["u1"], "target_id": ["c1"], "kind": ["follow"]})
    return Dataset.build("tiny", events, notes, users, creators, social, meta={"type_map": {"click": "pv"}})


def _same(a: Dataset, b: Dataset) -> None:
    assert a.stats() == b.stats()
    pd.testing.assert_frame_equal(a.events, b.events, check_dtype=False)
    for col in ("note_id", "author_id", "title", "tags", "created_at", "media"):
        assert a.notes[col].tolist() == b.notes[col].tolist(), col
    assert a.users.to_dict("records") == b.users.to_dict("records")
    assert a.creators.to_dict("records") == b.creators.to_dict("records")


def test_save_load_roundtrip_and_reopen(tmp_path):
    ds = _dataset()
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(ds)
        _same(ds, ws.load_dataset())
    with Workspace.open(tmp_path, create=False) as ws:  # a new object on the same file
        back = ws.load_dataset()
        assert ws.counts() == {"notes": 3, "users": 3, "creators": 2, "events": 4, "social": 1, "relations": 0, "note_edits": 0,
                              "erasures": 0}
    _same(ds, back)
    assert back.name == "tiny" and back.meta["type_map"] == {"click": "pv"}
    assert back.social["target_id"].tolist() == ["c1"]


def test_save_refuses_to_overwrite_without_replace(tmp_path):
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(_dataset())
        with pytest.raises(DataError, match="replace=True"):
            ws.save_dataset(_dataset())
        ws.save_dataset(_dataset(), replace=True)
        assert ws.counts()["events"] == 4


def test_append_then_reopen_sees_the_rows(tmp_path):
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(_dataset())
        n = ws.append_events([Event(user_id="u2", note_id="c", ts=9, type="share", dwell_s=4.0, position=2)])
        df = pd.DataFrame({"user_id": ["new"], "note_id": ["d"], "ts": [10], "type": ["click"]})
        assert n == 1 and ws.append_events(df) == 1
    with Workspace.open(tmp_path) as ws:
        since = ws.events_since(9)
        ds = ws.load_dataset()
    assert since[["user_id", "note_id", "ts", "type"]].values.tolist() == [["u2", "c", 9, "share"], ["new", "d", 10, "click"]]
    assert since["dwell_s"].iloc[0] == 4.0 and since["position"].iloc[0] == 2 and since["surface"].iloc[0] == "feed"
    assert "new" in ds.user_index and ds.notes.iloc[ds.item_index["d"]]["author_id"] == "unknown"
    assert len(ds.events) == 6


@pytest.mark.parametrize(
    "batch,pattern",
    [
        ({"ts": [1, "x"]}, r"events\[1\]: field 'ts': expected an integer"),
        ({"type": ["click", "bogus"]}, r"events\[1\]: field 'type'"),
        ({"dwell_s": [1.0, -2.0]}, r"events\[1\]: field 'dwell_s'"),
        ({"note_id": ["a", ""]}, r"events\[1\]: field 'note_id': missing id"),
    ],
)
def test_bad_batch_writes_nothing(tmp_path, batch, pattern):
    base = {"user_id": ["u1", "u2"], "note_id": ["a", "b"], "ts": [7, 8], "type": ["click", "like"]}
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(_dataset())
        before = ws.load_dataset()
        with pytest.raises(DataError, match=pattern):
            ws.append_events(pd.DataFrame({**base, **batch}))
        _same(before, ws.load_dataset())


def test_require_known_rejects_unknown_ids_with_batch_index(tmp_path):
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(_dataset())
        batch = [Event(user_id="u1", note_id="a", ts=7, type="click"), Event(user_id="u1", note_id="zz", ts=8, type="click")]
        with pytest.raises(DataError, match=r"events\[1\]: field 'note_id': unknown note 'zz'"):
            ws.append_events(batch, require_known=True)
        batch[1] = Event(user_id="stranger", note_id="a", ts=8, type="click")
        with pytest.raises(DataError, match=r"events\[1\]: field 'user_id': unknown user 'stranger'"):
            ws.append_events(batch, require_known=True)
        assert ws.counts()["events"] == 4 and ws.counts()["notes"] == 3
        assert ws.append_events(batch[:1], require_known=True) == 1


def test_append_notes_and_upsert_users(tmp_path):
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(_dataset())
        ws.append_notes([Note(note_id="n9", author_id="newbie", title="hi", tags=["t"], media=["m.jpg"])])
        ws.append_notes(pd.DataFrame({"note_id": ["a"], "author_id": ["c1"], "title": ["edited"], "tags": ["p|q"]}))
        ws.upsert_users([User(user_id="u1", attributes={"age": 31})])
        with pytest.raises(DataError, match=r"notes\[0\]: field 'tags'"):
            ws.append_notes(pd.DataFrame({"note_id": ["b"], "tags": [["x" * 200]]}))
        ds = ws.load_dataset()
    assert ds.notes.iloc[ds.item_index["n9"]][["title", "tags", "media"]].tolist() == ["hi", ["t"], ["m.jpg"]]
    assert ds.notes.iloc[ds.item_index["a"]][["title", "tags"]].tolist() == ["edited", ["p", "q"]]
    assert "newbie" in set(ds.creators["creator_id"])
    assert ds.users.iloc[ds.user_index["u1"]]["age"] == 31


def test_new_notes_keep_the_order_they_are_appended_in(tmp_path):
    """Item indices follow the append order (as the serving catalogue's follow publication), so
    a server can serve a version trained after a sync; DuckDB's INSERT OR REPLACE gave the new
    rows rowids out of order."""
    ids = [f"live{i}" for i in range(3000)][::-1]
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(_dataset())
        ws.append_notes(pd.DataFrame({"note_id": ids, "author_id": "c9", "title": "t"}))
        ws.append_notes(pd.DataFrame({"note_id": ["b", "late"], "author_id": "c9", "title": "again"}))
        ds = ws.load_dataset()
    got = ds.notes["note_id"].tolist()
    # an edited note is replaced (DuckDB moves a row whose list column is rewritten: not kept in place)
    assert [x for x in got if x != "b"] == ["a", "c", *ids, "late"] and len(got) == 3004
    assert ds.notes.iloc[ds.item_index["b"]]["title"] == "again"
    users = [f"nu{i}" for i in range(3000)][::-1]  # users too
    with Workspace.open(tmp_path) as ws:
        ws.upsert_users(pd.DataFrame({"user_id": ["u2", *users], "age": 7}))
        got = ws.load_dataset().users
    assert got["user_id"].tolist() == ["u1", "u2", "u3", *users] and got["age"].tolist()[1] == 7


def test_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a duckdb file" * 100)
    with pytest.raises(DataError, match="not a readable DuckDB database"):
        Workspace.open(tmp_path)


def test_open_without_create(tmp_path):
    with pytest.raises(FileNotFoundError, match=DB_NAME):
        Workspace.open(tmp_path / "none", create=False)


def test_appends_survive_sigkill(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from notefeed.data.store import Workspace
        from notefeed.schema import Event
        ws = Workspace.open({str(tmp_path)!r})
        n = ws.append_events([Event(user_id="k", note_id=f"n{{i}}", ts=i, type="click") for i in range(50)])
        print("appended", n, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # blocks until append_events has returned
        assert line.strip() == "appended 50"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with Workspace.open(tmp_path) as ws:
        assert ws.counts()["events"] == 50
        assert ws.events_since(0)["note_id"].tolist() == [f"n{i}" for i in range(50)]


def _load_by_build(ws: Workspace) -> Dataset:
    """The workspace read through :meth:`Dataset.build` (ids looked up in pandas)."""
    ws._coded_events = lambda *_: None  # type: ignore[method-assign]
    try:
        return ws.load_dataset()
    finally:
        del ws._coded_events


def test_coded_fast_load_equals_building_from_ids(tmp_path):
    """load_dataset codes ids to rows inside DuckDB (a 3M-event workspace loads in seconds):
    the same frames, dtypes and order as Dataset.build, incl. stub notes/users added by
    appends, NULL dwell/position/request ids, equal timestamps and an edited note."""
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(_dataset())
        ws.append_events(pd.DataFrame({"user_id": ["new", "u1", "u3"], "note_id": ["d", "a", "d"],
                                       "ts": [5, 5, 5], "type": ["click", "share", "impression"],
                                       "surface": ["search", None, "feed"]}))
        ws.append_notes([Note(note_id="a", author_id="c2", title="edited", created_at=11)])
        ws.append_events([Event(user_id="u2", note_id="c", ts=1, type="like", dwell_s=4.0, position=2,
                                request_id="r9")])
        assert ws._coded_events() is not None  # the fast path is the one taken
        fast, slow = ws.load_dataset(), _load_by_build(ws)
    for part in ("notes", "users", "creators", "events", "social"):
        pd.testing.assert_frame_equal(getattr(fast, part), getattr(slow, part), check_dtype=True)
    assert fast.meta == slow.meta and fast.name == slow.name
    assert fast.events["ts"].tolist() == sorted(fast.events["ts"].tolist())
    assert len(fast.events) == 8 and fast.notes.iloc[fast.item_index["a"]]["title"] == "edited"


def test_coded_load_without_request_ids_and_unknown_event_types_fall_back(tmp_path):
    ds = _dataset()
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(ds.with_events(ds.events.drop(columns=["request_id"])))
        fast = ws.load_dataset()
        assert "request_id" not in fast.events and len(fast.events) == 4
        # a row the tables cannot code (written behind the store's back): the pandas path decides
        ws.con.execute("INSERT INTO events (user_id, note_id, ts, type, surface) VALUES ('u1', 'zz', 7, 'click', 'feed')")
        assert ws._coded_events() is None
        back = ws.load_dataset()
    assert len(back.events) == 5 and "zz" in back.item_index


def test_read_only_opens_share_a_workspace_across_processes(tmp_path):
    import subprocess
    import sys
    import time

    from notefeed.data.store import Workspace
    from tests.recall.conftest import make_community

    ds = make_community(n_users=10, n_notes=12, per_user=3)
    with Workspace.open(tmp_path) as w:
        w.save_dataset(ds)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from notefeed.data.store import Workspace; "
                               f"w = Workspace.open({str(tmp_path)!r}, create=False, read_only=True); "
                               "print('open', flush=True); time.sleep(3)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with Workspace.open(tmp_path, create=False, read_only=True) as w:  # a second reader at once
            assert len(w.load_dataset().events) == len(ds.events)
        t0 = time.monotonic()
    finally:
        holder.wait(20)
    assert time.monotonic() - t0 < 20
    with pytest.raises(FileNotFoundError):
        Workspace.open(tmp_path / "none", read_only=True)
