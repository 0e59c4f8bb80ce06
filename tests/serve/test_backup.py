"""``notefeed backup`` / ``notefeed restore``: a workspace copied while it serves (events
arriving all along) restores into a workspace a server starts on with everything the backup
held: notes, edits, follows, erasures, events, the store and its sync marks, the ads logs and
model files; a damaged backup, an existing destination or a non-empty workspace are one-line
errors naming the flag. Before, there was no way to back a workspace up but stopping it."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.store import Workspace
from notefeed.models.sync import sync_workspace
from notefeed.schema import Event, Note
from notefeed.search.querylog import SearchLog
from notefeed.serve.backup import MANIFEST, BackupError, backup_workspace, restore_workspace
from notefeed.serve.engine import Engine

from .conftest import make_config


@pytest.fixture(scope="module")
def small_ds():  # type: ignore[no-untyped-def]
    from notefeed.serve.synth import synthetic_community

    return synthetic_community(300, n_users=40, n_events=900, seed=3)


def _events(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT count(*) FROM events WHERE type != 'erased'").fetchone()[0])


def test_a_workspace_backed_up_while_it_serves_restores_whole(small_ds, tmp_path: Path) -> None:
    ws, dest, back = tmp_path / "ws", tmp_path / "backup", tmp_path / "restored"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    users = small_ds.users["user_id"].astype(str).tolist()
    notes = small_ds.notes["note_id"].astype(str).tolist()
    creator = str(small_ds.creators["creator_id"].iat[0])
    (ws / "models" / ".20260101T000000000Z-abcdef").mkdir(parents=True)  # a version being written
    (ws / "models" / "promoted.json").write_text('{"version": null, "history": []}')
    (ws / "ads").mkdir()
    (ws / "ads" / "clicks.jsonl").write_text('{"query": "q", "ad_id": "a1", "user_id": "u", "ts": 1}\n')
    log = SearchLog(ws / "search_log.sqlite")
    log.log_query("r1", users[1], "cats", [notes[0]])
    log.close()
    eng = Engine(small_ds, make_config(), ws)
    stop = threading.Event()
    try:
        now = int(time.time())
        eng.publish(Note(note_id="fresh", author_id=creator, title="a new note", created_at=now))
        eng.edit_note(notes[3], {"title": "edited title"})
        eng.relate(users[0], creator, "follow")
        eng.ingest([Event(user_id=users[2], note_id=notes[5], ts=now, type="like")])
        eng.erase_user(users[2])
        sync_workspace(ws)  # the store's marks: past the events so far

        def traffic() -> None:  # a server taking events all through the backup
            k = 0
            while not stop.is_set():
                eng.ingest([Event(user_id=users[5 + k % 20], note_id=notes[k % 50], ts=now, type="click")])
                k += 1

        t = threading.Thread(target=traffic)
        t.start()
        m = backup_workspace(ws, dest)
        stop.set()
        t.join()
        eng.ingest([Event(user_id=users[6], note_id=notes[7], ts=now, type="like")])  # after the backup
    finally:
        stop.set()
        eng.close()
    files = set(m["files"])
    assert {"notefeed.duckdb", "events.sqlite", "notes.sqlite", "relations.sqlite", "search_log.sqlite",
            "ads/clicks.jsonl", "models/promoted.json"} <= files
    assert not any(f.startswith("models/.") or f.endswith(("-wal", "-shm", ".lock")) for f in files)
    assert json.loads((dest / MANIFEST).read_text())["files"] == m["files"]
    held = _events(dest / "events.sqlite")
    assert 0 < held < _events(ws / "events.sqlite")  # a snapshot taken while events arrived

    restore_workspace(dest, back)
    assert _events(back / "events.sqlite") == held
    with Workspace.open(back, create=False) as w:
        restored = w.load_dataset()
    eng = Engine(restored, make_config(), back)
    try:
        assert eng.catalog.item_of("fresh") is not None
        assert eng.catalog.title(small_ds.notes.index[3]) == "edited title"
        assert eng.context(users[0]).followed == (creator,)
        assert eng.erased_at(users[2]) is not None and eng.context(users[2]).user is None
        assert eng.replayed == held
        assert (back / "ads" / "clicks.jsonl").read_text() == (ws / "ads" / "clicks.jsonl").read_text()
        assert len(SearchLog(back / "search_log.sqlite")) == 1
    finally:
        eng.close()
    # the store's marks are behind the restored logs: the next sync copies the rest, nothing twice
    report = sync_workspace(back)
    with Workspace.open(back, create=False) as w:
        copied = w.con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    erased_rows = int((small_ds.events["user"] == 2).sum())  # users[2]'s, deleted by the erasure
    assert report.skipped == 0 and report.events == held and copied == len(small_ds.events) - erased_rows + held
    # damaged, existing, not empty: errors naming the flag, nothing written
    with pytest.raises(BackupError, match="--to: .* exists already"):
        backup_workspace(ws, dest)
    with pytest.raises(BackupError, match="--workspace: .* not empty"):
        restore_workspace(dest, back)
    blob = bytearray((dest / "notes.sqlite").read_bytes())
    blob[-1] ^= 0xFF
    (dest / "notes.sqlite").write_bytes(bytes(blob))
    with pytest.raises(BackupError, match="notes.sqlite differs"):
        restore_workspace(dest, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_the_cli_backs_up_and_restores_and_names_the_flag(small_ds, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    r = CliRunner().invoke(app, ["backup", "--workspace", str(ws), "--to", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "backed up 1 files" in r.output
    r = CliRunner().invoke(app, ["restore", "--from", str(tmp_path / "b"), "--workspace", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    with Workspace.open(tmp_path / "r", create=False) as w:
        assert len(w.load_dataset().events) == len(small_ds.events)
    r = CliRunner().invoke(app, ["restore", "--from", str(tmp_path / "nothing"), "--workspace", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--from:" in r.output and "not a notefeed backup" in r.output
    r = CliRunner().invoke(app, ["backup", "--workspace", str(tmp_path / "none"), "--to", str(tmp_path / "y")])
    assert r.exit_code == 2 and "--workspace:" in r.output
