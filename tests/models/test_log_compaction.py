"""The SQLite event log stops growing: once the store holds its entries, the sync deletes all
but the newest ``online.log_keep`` (positions keep counting from the deleted ones), and a
server restarting on the store takes the deleted entries' follows, hides, popularity and
history from the store's dataset. Before, the log grew for ever and every start-up replayed
all of it (18.2 s for a million events: docs/results/serve/log_compaction/startup_1000000.json)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from notefeed.data.store import Workspace
from notefeed.models import sync as sync_mod
from notefeed.models.sync import MIN_LOG_KEEP, sync_workspace
from notefeed.online.bus import RedisEventBus, SqliteEventBus, open_bus
from notefeed.online.events import EventRecord
from notefeed.schema import Event
from notefeed.serve.engine import EVENT_ID_WINDOW, Engine
from tests.serve.conftest import make_config


@pytest.fixture(scope="module")
def small_ds():  # type: ignore[no-untyped-def]
    from notefeed.serve.synth import synthetic_community

    return synthetic_community(300, n_users=40, n_events=900, seed=3)


def _rec(k: int, user: str = "u") -> EventRecord:
    return EventRecord(user_id=user, note_id=f"n{k}", ts=k, type="click", received_at=float(k), event_id=f"e{k}")


def test_a_compacted_log_keeps_its_positions(tmp_path: Path) -> None:
    bus = SqliteEventBus(tmp_path / "events.sqlite")
    bus.append([_rec(k) for k in range(1, 11)])
    bus.erase("nobody", 100.0)
    assert bus.compact(4) == 4 and bus.base == 4 and bus.count() == 10
    assert [p for p, _ in bus.entries()] == list(range(5, 11))
    assert [p for p, _ in bus.entries(2)] == list(range(5, 11))  # below the base: from the first kept
    assert [(p, r.note_id) for p, r in bus.entries(7)] == [(8, "n8"), (9, "n9"), (10, "n10")]
    assert bus.compact(3) == 0 and bus.base == 4  # never backwards
    bus.append([_rec(5, "gone")])
    bus.erase("gone", 100.0)  # a tombstone at position 11
    assert bus.erased_within(11) == 1 and bus.erased_within(10) == 0
    with pytest.raises(ValueError, match="past the log's end"):
        bus.compact(50)
    assert bus.base == 4
    bus.close()
    again = SqliteEventBus(tmp_path / "events.sqlite")  # the base is kept in the file
    assert again.base == 4 and again.count() == 11 and [p for p, _ in again.entries(9)] == [10]
    again.close()
    assert MIN_LOG_KEEP == EVENT_ID_WINDOW  # a kept log holds every event id a server remembers


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_restart_on_a_compacted_log_has_everything_the_log_had(small_ds, tmp_path: Path, backend: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 request: pytest.FixtureRequest) -> None:
    monkeypatch.setattr(sync_mod, "MIN_LOG_KEEP", 0)
    online: dict = {"log_keep": 2}
    if backend == "redis":
        online.update(backend="redis", redis_url=request.getfixturevalue("redis_url"), redis_prefix="compact")
        request.getfixturevalue("redis_client")  # an empty Redis
    cfg = make_config(online=online)
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    users = small_ds.users["user_id"].astype(str).tolist()
    notes = small_ds.notes["note_id"].astype(str).tolist()
    author = str(small_ds.notes["author_id"].iat[4])
    now = int(time.time())
    eng = Engine(small_ds, cfg, ws)
    try:
        eng.ingest([Event(user_id=users[1], note_id=notes[4], ts=now - 30, type="follow"),
                    Event(user_id=users[1], note_id=notes[5], ts=now - 20, type="hide"),
                    *[Event(user_id=users[1], note_id=notes[k], ts=now - 10 + k, type="like") for k in (6, 7, 8)]])
        before = eng.context(users[1])
        pop = eng.catalog.popularity().copy()
    finally:
        eng.close()
    report = sync_workspace(ws, cfg)
    assert report.events == 5 and report.compacted == 3 and "3 older ones" in report.line()
    bus = open_bus(backend, ws, online.get("redis_url"), stream="compact:events")
    assert bus.base == 3 and bus.count() == 5 and len(list(bus.replay())) == 2
    bus.close()
    with Workspace.open(ws, create=False) as w:
        ds = w.load_dataset()
    eng = Engine(ds, cfg, ws)
    try:
        ctx = eng.context(users[1])
        assert ctx.followed == before.followed == (author,)
        assert ctx.hidden.tolist() == before.hidden.tolist() == [5]
        assert ctx.history.tolist() == before.history.tolist()
        assert np.array_equal(eng.catalog.popularity(), pop)
        assert eng.replayed >= 2  # what the log keeps
    finally:
        eng.close()
    if backend == "redis":
        return
    # a store replaced since (an import, a restore of an older backup): the sync says what it lacks
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds, replace=True)
    report = sync_workspace(ws, cfg)
    assert report.missing == 3 and report.events == 2 and "not in it" in report.line()


def test_compaction_keeps_what_the_running_experiment_counts(small_ds, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries received since the newest experiment started stay in the log: its report (the
    CLI's, and a restarted server's tallies) counts events by their receive time, which the
    store does not keep."""
    from notefeed.serve.config import ExperimentsConfig
    from notefeed.serve.experiments import PAGE_LOG, PageLog

    monkeypatch.setattr(sync_mod, "MIN_LOG_KEEP", 0)
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    bus = SqliteEventBus(ws / "events.sqlite")
    users = small_ds.users["user_id"].astype(str).tolist()
    notes = small_ds.notes["note_id"].astype(str).tolist()
    bus.append([EventRecord(user_id=users[k % 9], note_id=notes[k], ts=1000 + k, type="click",
                            received_at=1000.0 + k) for k in range(10)])
    bus.close()
    log = PageLog(ws / PAGE_LOG)
    log.define(ExperimentsConfig(name="exp", arms=[{"name": "control"}, {"name": "b"}]))
    log._db.execute("UPDATE experiments SET started_at = 1004.0")  # it started with the 5th event
    log.close()
    report = sync_workspace(ws, make_config(online={"log_keep": 1}))
    assert report.compacted == 4  # not the 9 that log_keep alone would delete
    bus = SqliteEventBus(ws / "events.sqlite")
    assert [r.received_at for r in bus.replay()][0] == 1004.0
    bus.close()


def test_a_redis_stream_is_trimmed_only_past_the_mark_and_the_newest(redis_client, redis_url: str) -> None:
    bus = RedisEventBus.from_url(redis_url, stream="trim-test")
    bus.append([_rec(k) for k in range(1, 11)])
    ids = [i for i, _ in bus.entries()]
    assert bus.compact_synced(None, 2) == 0  # a store that holds none of it
    assert bus.compact_synced(ids[5], 2, keep_from=time.time() - 3600) == 0  # an experiment older than all
    assert bus.compact_synced(ids[5], 2) == 6 and bus.base == 6 and bus.count() == 10
    assert [r.note_id for r in bus.replay()] == ["n7", "n8", "n9", "n10"]
    assert bus.compact_synced(ids[9], 2) == 2 and bus.base == 8  # the newest 2 stay
    assert bus.compact_synced(ids[9], 2) == 0
    bus.close()
