"""An erased user (``DELETE /v1/users/{id}``) leaves the store with the next sync: their
events, relation rows and social edges deleted, their attributes cleared with their row kept in
place (the user index trained versions use); an event another worker stored while the erasure
was written is neither copied nor kept in the log; events sent after it are a new account's and
are copied. Before, the sync copied everything a user ever sent, for good."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.store import Workspace
from notefeed.models.sync import sync_workspace
from notefeed.online.bus import SqliteEventBus
from notefeed.online.events import EventRecord
from notefeed.schema import Event
from notefeed.serve.engine import Engine
from notefeed.serve.experiments import PAGE_LOG, PageLog
from tests.serve.conftest import make_config


@pytest.fixture(scope="module")
def small_ds():  # type: ignore[no-untyped-def]
    from notefeed.serve.synth import synthetic_community

    return synthetic_community(300, n_users=40, n_events=900, seed=3)


def test_an_erasure_reaches_the_store_and_the_logs_once(small_ds, tmp_path: Path) -> None:
    users = small_ds.users["user_id"].astype(str).tolist()
    gone, kept = users[2], users[3]
    creators = small_ds.creators["creator_id"].astype(str).tolist()
    graph = pd.DataFrame({"user": np.array([2, 3], np.int32), "target_id": [creators[0], creators[0]],
                          "kind": "follow"})
    ds = dataclasses.replace(small_ds, social=graph)
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(ds)
        n_gone = int(w.con.execute("SELECT count(*) FROM events WHERE user_id = ?", [gone]).fetchone()[0])
        n_kept = int(w.con.execute("SELECT count(*) FROM events WHERE user_id = ?", [kept]).fetchone()[0])
    assert n_gone > 0 and n_kept > 0
    note = str(ds.notes["note_id"].iat[0])
    now = int(time.time())
    eng = Engine(ds, make_config(), ws)
    try:
        eng.ingest([Event(user_id=u, note_id=note, ts=now, type="like") for u in (gone, kept)])
        eng.relate(gone, creators[1], "follow")
        eng.relate(kept, creators[1], "follow")
        at = eng.erase_user(gone)["erased_at"]
        # another worker stored an event of the user, received before the erasure, after its purge
        bus = SqliteEventBus(ws / "events.sqlite")
        bus.append([EventRecord(user_id=gone, note_id=note, ts=now, type="click", received_at=at - 1)])
        bus.close()
        later = eng.ingest([Event(user_id=gone, note_id=note, ts=now + 5, type="click")])  # a new account's
        assert later[0] == 1
    finally:
        eng.close()
    pages = PageLog(ws / PAGE_LOG)  # a page logged by a worker whose buffer was flushed late
    pages.add(("exp", "a", gone, at - 1, 10, 5, 1.0))
    pages.close()
    r = CliRunner().invoke(app, ["data", "stats", "--workspace", str(ws), "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s.json").read_text())["not_yet_in_store"]["erasures"] == 1
    r = CliRunner().invoke(app, ["models", "sync", "--workspace", str(ws)])
    assert r.exit_code == 0, r.output
    assert "1 user erasures" in " ".join(r.output.split())
    with Workspace.open(ws) as w:
        con = w.con
        rows = con.execute("SELECT user_id, type FROM events WHERE user_id IN (?, ?)", [gone, kept]).fetchall()
        assert sorted(t for u, t in rows if u == gone) == ["click"]  # only the new account's event
        assert sum(u == kept for u, _ in rows) == n_kept + 1
        assert con.execute("SELECT user_id FROM relations").fetchall() == [(kept,)]
        assert con.execute("SELECT target_id FROM social WHERE user_id = ?", [gone]).fetchall() == []
        assert con.execute("SELECT count(*) FROM social WHERE user_id = ?", [kept]).fetchone()[0] == 1
        assert con.execute("SELECT attributes FROM users WHERE user_id = ?", [gone]).fetchone()[0] == "{}"
        assert w.erasures()["user_id"].tolist() == [gone]
        loaded = w.load_dataset()
        assert loaded.users["user_id"].astype(str).tolist() == users  # every row in its place
    with sqlite3.connect(ws / "events.sqlite") as db:  # the straggler left the log too
        assert db.execute("SELECT count(*) FROM events WHERE user_id = ? AND received_at <= ?",
                          (gone, at)).fetchone()[0] == 0
    with sqlite3.connect(ws / PAGE_LOG) as db:
        assert db.execute("SELECT count(*) FROM pages WHERE user_id = ?", (gone,)).fetchone()[0] == 0
    r = CliRunner().invoke(app, ["models", "sync", "--workspace", str(ws)])  # nothing twice
    assert r.exit_code == 0 and "erasure" not in r.output
    with Workspace.open(ws) as w:
        assert len(w.erasures()) == 1
    # a re-import of a file that still holds the user (--replace starts the store and its marks
    # afresh): the next sync erases them again, from the relation log
    with Workspace.open(ws) as w:
        w.save_dataset(ds, replace=True)
        assert w.con.execute("SELECT count(*) FROM events WHERE user_id = ?", [gone]).fetchall()[0][0] == n_gone
    sync_workspace(ws)
    with Workspace.open(ws) as w:
        rows = w.con.execute("SELECT type FROM events WHERE user_id = ?", [gone]).fetchall()
        assert rows == [("click",)] and w.erasures()["user_id"].tolist() == [gone]


def test_the_event_lake_drops_an_erased_users_events_at_the_next_export(small_ds, tmp_path: Path) -> None:
    from notefeed.data.lake import EventLake

    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    lake = EventLake.for_workspace(ws)
    n = lake.export_workspace(ws)
    users = small_ds.users["user_id"].astype(str).tolist()
    gone = users[2]
    before = lake.query(f"SELECT count(*) AS n FROM events WHERE user_id = '{gone}'")["n"].iat[0]
    assert before > 0 and n == len(small_ds.events)
    with Workspace.open(ws) as w:
        w.erase_users(pd.DataFrame({"user_id": [gone], "erased_at": [1.0]}))
        w.append_events(pd.DataFrame({"user_id": [users[3]], "note_id": [str(small_ds.notes["note_id"].iat[0])],
                                      "ts": [1_700_000_000], "type": ["click"]}))
    assert lake.export_workspace(ws) == 1  # no "the workspace's events changed": an erasure is not a replace
    assert lake.query(f"SELECT count(*) AS n FROM events WHERE user_id = '{gone}'")["n"].iat[0] == 0
    assert lake.count() == len(small_ds.events) - before + 1
    with Workspace.open(ws) as w:  # the lake's dataset equals the store's
        assert len(w.load_dataset().events) == lake.count()
    assert lake.export_workspace(ws) == 0


def test_the_syncs_purge_keeps_a_lagging_redis_states_count(small_ds, redis_url: str, redis_client,
                                                           tmp_path: Path) -> None:
    from notefeed.online.bus import RedisEventBus
    from notefeed.online.redis_sync import applied_key

    users = small_ds.users["user_id"].astype(str).tolist()
    gone, kept = users[2], users[3]
    note = str(small_ds.notes["note_id"].iat[0])
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    cfg = make_config().with_overrides(online={"backend": "redis", "redis_url": redis_url, "redis_prefix": "e"})
    now = int(time.time())
    eng = Engine(small_ds, cfg, ws)
    try:
        eng.ingest([Event(user_id=kept, note_id=note, ts=now + i, type="like") for i in range(2)])
        at = eng.erase_user(gone)["erased_at"]
    finally:
        eng.close()
    # another worker's event of the user, received before the erasure, in the stream but not in
    # the state (a kill between its two writes on two servers)
    bus = RedisEventBus(redis_client, "e:events")
    bus.append([EventRecord.from_event(Event(user_id=gone, note_id=note, ts=now, type="like"), at - 0.5)])
    assert int(redis_client.get(applied_key(bus))) == 2
    assert sync_workspace(ws, cfg).erased == 1
    assert redis_client.xlen("e:events") == 2 and int(redis_client.get(applied_key(bus))) == 3
    eng = Engine(small_ds, cfg, ws)
    try:  # nothing left to catch up: the kept user's likes are not applied again
        assert eng.caught_up == 0 and eng.state.snapshot(kept).n_events == 2
    finally:
        eng.close()
