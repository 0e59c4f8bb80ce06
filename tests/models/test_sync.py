"""What serving logged reaches training: notefeed.models.sync copies the event and note logs
into the store once each, and ``notefeed train`` syncs first."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.store import Workspace
from notefeed.models.sync import EVENT_LOG, NOTE_LOG, sync_logs, sync_workspace
from notefeed.online.bus import RedisEventBus, SqliteEventBus
from notefeed.online.events import EventRecord
from notefeed.schema import Event, Note
from notefeed.serve.engine import Engine, empty_dataset
from tests.serve.conftest import make_config

TS = 1_700_000_000
NOTHING_PENDING = {"notes": 0, "events": 0, "follower_counts": 0, "relations": 0, "edits": 0, "erasures": 0}


@pytest.fixture(scope="module")
def small_ds():  # type: ignore[no-untyped-def]
    from notefeed.serve.synth import synthetic_community

    return synthetic_community(300, n_users=40, n_events=900, seed=3)


def _serve_some(ws: Path, ds, notes: int, events: int, start: int = 0, **online: object) -> None:  # type: ignore[no-untyped-def]
    """An engine on ``ws`` that publishes ``notes`` notes and takes ``events`` clicks on them."""
    eng = Engine(ds, make_config(online=dict(online)) if online else make_config(), ws)
    try:
        ids = [f"live{start + i}" for i in range(notes)]
        for i, n in enumerate(ids):
            eng.publish(Note(note_id=n, author_id=f"c{i % 2}", title=f"live note {i}", category="travel"),
                        followers=7 if i == 0 else None)
        ids = ids or [eng.catalog.note_ids[0]]
        eng.ingest([Event(user_id=f"fan{k % 3}", note_id=ids[k % len(ids)], ts=TS + start + k, type="click")
                    for k in range(events)])
        eng.side_effects.drain()
        assert eng.side_effects.failed == 0
    finally:
        eng.close()


def _store(ws: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with Workspace.open(ws, create=False, read_only=True) as w:
        con = w.con
        return (con.execute("SELECT * FROM events ORDER BY seq").df(), con.execute("SELECT * FROM notes").df(),
                con.execute("SELECT * FROM creators").df())


def test_sync_copies_each_log_entry_once(small_ds, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    base = len(small_ds.events)
    _serve_some(ws, small_ds, notes=3, events=10)
    first = sync_workspace(ws)
    assert (first.notes, first.events, first.skipped) == (3, 10, 0)
    events, notes, creators = _store(ws)
    assert len(events) == base + 10 and {"live0", "live1", "live2"} <= set(notes["note_id"])
    live = events.iloc[base:]
    assert live["ts"].tolist() == list(range(TS, TS + 10)) and set(live["user_id"]) == {"fan0", "fan1", "fan2"}
    assert int(creators.set_index("creator_id").loc["c0", "followers"]) == 7  # the count it was published with
    assert sync_workspace(ws) == type(first)()  # again: nothing new
    _serve_some(ws, small_ds, notes=1, events=4, start=100)  # more traffic: only it is copied
    second = sync_workspace(ws)
    assert (second.notes, second.events) == (1, 4)
    assert len(_store(ws)[0]) == base + 14
    with Workspace.open(ws) as w:  # the marks are the logs' positions
        assert w.mark(EVENT_LOG) == 14 and w.mark(NOTE_LOG) == 4
        assert not any(k.startswith("sync.") for k in w.load_dataset().meta)  # not dataset metadata
        w.save_dataset(small_ds, replace=True)  # data import --replace: a fresh store, from the logs' start
        assert w.mark(EVENT_LOG) is None
    assert sync_workspace(ws).events == 14


def test_an_interrupted_sync_resumes_without_copying_twice(small_ds, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    _serve_some(ws, small_ds, notes=0, events=25)
    bus = SqliteEventBus(ws / "events.sqlite")
    try:
        with Workspace.open(ws) as w:
            report = sync_logs(w, bus, None, batch=10)  # three transactions: 10, 10, 5
            assert report.events == 25 and w.mark(EVENT_LOG) == 25

        class Dies(Exception):
            pass

        real = Workspace.append_events
        calls = []

        def die_second(self, frame, require_known=False, marks=None, checked=False):  # type: ignore[no-untyped-def]
            calls.append(1)
            if len(calls) == 2:
                raise Dies
            return real(self, frame, require_known, marks, checked)

        bus.append([EventRecord(user_id="late", note_id=small_ds.notes["note_id"].iat[0], ts=TS + 99, type="click",
                                received_at=TS + 99.0) for _ in range(15)])
        with Workspace.open(ws) as w:
            with monkeypatch.context() as m:
                m.setattr(Workspace, "append_events", die_second)
                with pytest.raises(Dies):
                    sync_logs(w, bus, None, batch=10)
            assert w.mark(EVENT_LOG) == 35  # the first batch of 10 is in, with its mark
            assert sync_logs(w, bus, None, batch=10).events == 5
            assert w.con.execute("SELECT count(*) FROM events").fetchone()[0] == 40
    finally:
        bus.close()


def test_train_learns_from_a_community_that_began_empty(tmp_path: Path) -> None:
    """Everything arrived through the API: no import, no store until the first train."""
    ws = tmp_path / "ws"
    _serve_some(ws, empty_dataset("ws"), notes=6, events=40)
    assert not (ws / "notefeed.duckdb").exists()
    r = CliRunner().invoke(app, ["train", "--workspace", str(ws), "--no-sync"])
    assert r.exit_code == 2 and "no events to train on" in r.output and "post events" in r.output, r.output
    r = CliRunner().invoke(app, ["models", "sync", "--workspace", str(ws)])  # the sync alone
    assert r.exit_code == 0 and "synced the serving logs: 6 notes and 40 events" in r.output, r.output
    r = CliRunner().invoke(app, ["train", "--workspace", str(ws)])
    assert r.exit_code == 0, r.output
    assert "synced the serving logs" not in r.output  # nothing new
    assert "training on" in r.output and "40 events" in r.output and "stored version" in r.output


def test_the_servers_mirror_is_the_sync(small_ds, tmp_path: Path) -> None:
    """With mirror_to_workspace the server copies in the background through the same marks:
    a later train's sync finds nothing left, so no event is counted twice."""
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    _serve_some(ws, small_ds, notes=2, events=9, mirror_to_workspace=True)
    assert len(_store(ws)[0]) == len(small_ds.events) + 9
    assert sync_workspace(ws).events == 0


def test_a_redis_event_log_syncs_by_entry_id(redis_url: str, small_ds, tmp_path: Path) -> None:
    """The Redis stream's position is its last copied entry id: a resumed sync reads only what
    is new, and trimming the stream's head does not shift it."""
    import redis

    from notefeed.models.sync import event_log_key

    bus = RedisEventBus(redis.Redis.from_url(redis_url, decode_responses=True), stream=f"t:{uuid.uuid4().hex}")
    note = small_ds.notes["note_id"].iat[0]

    def add(k: int, at: int) -> None:
        bus.append([EventRecord(user_id=f"r{i}", note_id=note, ts=TS + i, type="click", received_at=0.0)
                    for i in range(at, at + k)])

    ws = tmp_path / "ws"
    try:
        with Workspace.open(ws) as w:
            w.save_dataset(small_ds)
            add(2500, 0)
            assert sync_logs(w, bus, None, batch=1000).events == 2500
            last = w.mark(event_log_key(bus))
            assert isinstance(last, str) and last == bus.r.xrevrange(bus.stream, count=1)[0][0]
            bus.r.xtrim(bus.stream, maxlen=10)  # the head is gone: an id does not shift
            add(7, 2500)
            assert sync_logs(w, bus, None).events == 7
            got = w.con.execute("SELECT ts FROM events WHERE user_id LIKE 'r%' ORDER BY seq").fetchall()
            assert [t for (t,) in got] == list(range(TS, TS + 2507))
            assert sync_logs(w, bus, None).events == 0
    finally:
        bus.r.delete(bus.stream)
        bus.close()


def test_train_with_a_redis_serving_config_leaves_the_live_stream_and_state_alone(
        redis_url: str, small_ds, tmp_path: Path) -> None:
    """`notefeed train --config` with the serving config (online.backend: redis): the engine
    that captures the rankers' samples runs on its own log and state. Before, it opened the live
    stream, replayed it and stopped ("warm_state: the online state was rebuilt from the event
    log"); on an empty stream it wrote its warm-up into the state users are served from."""
    import redis

    from notefeed.models.train import train_workspace

    prefix = f"t{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    cfg = make_config(recall={"channels": [{"name": "fresh/recent", "quota": 50},
                                           {"name": "item-to-item/swing", "quota": 200}]},
                      coarse={"scorer": "rank/ltr"},
                      online={"backend": "redis", "redis_url": redis_url, "redis_prefix": prefix})
    try:
        _serve_some(ws, small_ds, notes=2, events=30, backend="redis", redis_url=redis_url, redis_prefix=prefix)
        before = {k: r.type(k) for k in r.scan_iter(f"{prefix}:*")}
        stream_len = r.xlen(f"{prefix}:events")
        assert stream_len == 30
        v = train_workspace(ws, cfg, progress=False)  # synced from the stream, then trained
        assert v and {k: r.type(k) for k in r.scan_iter(f"{prefix}:*")} == before
        assert r.xlen(f"{prefix}:events") == stream_len
    finally:
        for k in r.scan_iter(f"{prefix}:*"):
            r.delete(k)
        r.close()


def test_redis_entries_from_a_position(redis_url: str) -> None:
    import redis

    bus = RedisEventBus(redis.Redis.from_url(redis_url, decode_responses=True), stream=f"t:{uuid.uuid4().hex}")
    try:
        recs = [EventRecord(user_id=f"u{i}", note_id="n", ts=i, type="click", received_at=float(i))
                for i in range(2500)]  # three xrange pages
        bus.append(recs)
        ids = [entry_id for entry_id, _ in bus.entries()]
        assert len(ids) == 2500 and bus.last_id == "0-0"  # the follower's position is not moved
        for start in (0, 1, 999, 1000, 1001, 2499, 2500):
            got = list(bus.entries(ids[start - 1] if start else None))
            assert [r.ts for _, r in got] == list(range(start, 2500)), start
            assert [p for p, _ in got] == ids[start:], start
    finally:
        bus.r.delete(bus.stream)
        bus.close()


def test_sqlite_entries_from_a_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import notefeed.online.bus as B

    monkeypatch.setattr(B, "_PAGE", 7)  # several pages
    bus = SqliteEventBus(tmp_path / "events.sqlite")
    try:
        bus.append([EventRecord(user_id="u", note_id="n", ts=i, type="click", received_at=0.0) for i in range(30)])
        for start in (0, 1, 6, 7, 8, 29, 30, 40):
            got = list(bus.entries(start))
            assert [r.ts for _, r in got] == list(range(start, 30)), start
            assert [p for p, _ in got] == list(range(start + 1, 31)), start
    finally:
        bus.close()


def test_serve_starts_again_after_a_sync(small_ds, tmp_path: Path) -> None:
    """The synced notes are in the dataset now: the note log's copies are not added twice, and
    the cold-start state saved for the smaller dataset is rebuilt quietly."""
    from notefeed.serve.cli import load_workspace_dataset

    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    _serve_some(ws, small_ds, notes=3, events=12)
    assert (ws / "coldstart.json").exists()
    assert sync_workspace(ws).notes == 3
    ds = load_workspace_dataset(ws)
    assert ds.n_items == small_ds.n_items + 3
    eng = Engine(ds, make_config(), ws)
    try:
        assert eng.catalog.n_items == ds.n_items and eng.catalog.item_of("live2") == small_ds.n_items + 2
        assert not eng.startup_warnings and not list(ws.glob("coldstart.json.unused-*"))
        _, res = eng.feed("fan0", 5)
        assert len(res.items) == 5
    finally:
        eng.close()


def test_a_version_trained_on_what_the_server_logged_is_served_without_a_restart(small_ds, tmp_path: Path) -> None:
    """Train -> promote -> serve on a live community: the new version holds the notes the server
    published and the users it met since it started; the server follows the promotion and
    serves it (before, it refused it until a restart: "trained on data added since it started")."""
    import time

    from notefeed.models.store import ModelStore
    from notefeed.models.train import train_workspace
    from notefeed.serve.cli import load_workspace_dataset
    from notefeed.serve.versions import engine_from_store

    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    cfg = make_config(recall={"channels": [{"name": "fresh/recent", "quota": 50},
                                           {"name": "item-to-item/swing", "quota": 200},
                                           {"name": "non-personalized/popular", "quota": 200}]},
                      online={"follow_promoted_s": 0.05})
    v1 = train_workspace(ws, cfg, progress=False)
    eng = engine_from_store(load_workspace_dataset(ws), cfg, ws)
    try:
        assert eng.model_version == v1 and not eng.served.fallback
        old_users = small_ds.users["user_id"].astype(str).tolist()
        live = [f"live{i}" for i in range(6)][::-1]  # published out of id order
        for n in live:
            eng.publish(Note(note_id=n, author_id="newbie", title=f"live {n}", category="travel"))
        eng.ingest([Event(user_id=f"fan{k % 3}" if k % 2 else old_users[k % 7], note_id=live[k % 6],
                          ts=TS + k, type="click") for k in range(60)])
        v2 = train_workspace(ws, cfg, progress=False)  # syncs, trains and promotes
        data = ModelStore(ws).manifest(v2)["data"]
        assert data["n_items"] == small_ds.n_items + 6 and data["n_users"] == small_ds.n_users + 3
        deadline = time.monotonic() + 30
        while eng.model_version != v2 and eng.reloader.state != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert eng.model_version == v2, eng.reloader.status()
        assert eng.ds.n_items == small_ds.n_items  # the same server, not restarted
        eng.publish(Note(note_id="late", author_id="newbie", title="late", category="travel"))
        for user in (old_users[0], "fan1", "nobody"):
            ctx, res = eng.feed(user, 10)
            assert len(res.items) == 10 and ctx.served_version == v2 and not ctx.fallback
        swing = next(s.component for s in eng.pipelines["default"].sources if s.name == "item-to-item/swing")
        assert swing.sim.shape[0] == small_ds.n_items + 6  # the new version knows the published notes
        # the users it met since it started get the new version's user indices (its user-indexed
        # parts serve them); before, they stayed unknown (ctx.user None) until a restart
        ids = ModelStore(ws).user_ids(v2)
        assert ids is not None and ids[: small_ds.n_users] == old_users
        for fan in ("fan0", "fan1", "fan2"):
            ctx = eng.context(fan)
            assert ctx.user == ids.index(fan) >= small_ds.n_users and len(ctx.history) > 0  # online history kept
            assert eng.user(fan)["known"] and eng.user(fan)["history_len"] == 0
        assert eng.context(old_users[3]).user == 3 and eng.context("nobody").user is None
        eng.reloader.reload(v1).result(timeout=60)  # a version without them: unknown again
        assert eng.context("fan1").user is None and eng.context(old_users[3]).user == 3
        ctx, res = eng.feed("fan1", 10)
        assert len(res.items) == 10 and ctx.served_version == v1
    finally:
        eng.close()


def test_workers_publishing_at_once_keep_the_note_logs_order(small_ds, tmp_path: Path) -> None:
    """Two serving processes on one workspace (as ``--workers``, before either follows the
    other): each catalogue holds the published notes in the note log's order, the order the sync
    appends them to the store, so a version trained on them fits every worker. Before, a worker
    added its own note at once and the other's later: two orders, and one worker refused it."""
    with Workspace.open(tmp_path / "ws") as w:
        w.save_dataset(small_ds)
    a, b = Engine(small_ds, make_config(), tmp_path / "ws"), Engine(small_ds, make_config(), tmp_path / "ws")
    n = small_ds.n_items
    try:
        assert a.publish(Note(note_id="a1", author_id="x")) == n
        assert b.publish(Note(note_id="b1", author_id="y")) == n + 1  # a1 first: it was logged first
        assert a.publish(Note(note_id="a2", author_id="x")) == n + 2
        assert a.catalog.note_ids[n:] == ["a1", "b1", "a2"] and b.catalog.note_ids[n:] == ["a1", "b1"]
    finally:
        a.close()
        b.close()
    sync_workspace(tmp_path / "ws")
    with Workspace.open(tmp_path / "ws", create=False, read_only=True) as w:
        assert w.load_dataset().notes["note_id"].tolist()[n:] == ["a1", "b1", "a2"]


def test_train_every_retrains_when_the_sync_brings_something(small_ds, tmp_path: Path, monkeypatch) -> None:
    """`notefeed train --every S`: a round after the first trains only when the sync copied new
    traffic in; a running server follows each promotion."""
    import time as _time
    import types

    import notefeed.models.cli as cli
    from notefeed.models.store import ModelStore

    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("recall:\n  channels:\n    - {name: fresh/recent, quota: 50}\n"
                   "    - {name: item-to-item/swing, quota: 200}\n    - {name: non-personalized/popular, quota: 200}\n")
    naps: list[float] = []

    def nap(s: float) -> None:
        naps.append(s)
        if naps.count(s) == 2:  # traffic between the second and third rounds
            _serve_some(ws, small_ds, notes=1, events=5, start=50)

    monkeypatch.setattr(cli, "time", types.SimpleNamespace(sleep=nap, perf_counter=_time.perf_counter,
                                                           process_time=_time.process_time, strftime=_time.strftime))
    monkeypatch.setattr(cli, "trim_heap", lambda: naps.append(-1.0))  # the round's memory handed back first
    r = CliRunner().invoke(app, ["train", "--workspace", str(ws), "--config", str(cfg), "--every", "60",
                                 "--rounds", "3"])
    assert r.exit_code == 0, r.output
    assert naps == [-1.0, 60.0, -1.0, 60.0] and r.output.count("stored version") == 2
    assert r.output.count("nothing new in the serving logs; not retrained") == 1
    assert "synced the serving logs: 1 notes and 5 events" in r.output
    assert len(ModelStore(ws).versions()) == 2
    r = CliRunner().invoke(app, ["train", "--workspace", str(ws), "--every", "5", "--no-sync"])
    assert r.exit_code == 2 and "--every" in r.output and "--sync" in r.output


def test_a_torn_event_log_stops_train_in_one_line_and_no_sync_trains_without(small_ds, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    (ws / "events.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x07" * 3000)
    r = CliRunner().invoke(app, ["train", "--workspace", str(ws)])
    assert r.exit_code == 2 and "events.sqlite" in r.output and "--no-sync" in r.output, r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(app, ["train", "--workspace", str(ws), "--no-sync", "--config", str(_minimal(tmp_path))])
    assert r.exit_code == 0 and "stored version" in r.output, r.output


def _minimal(tmp_path: Path) -> Path:
    """A config with built-in components only: a quick train."""
    p = tmp_path / "minimal.yaml"
    p.write_text((Path(__file__).resolve().parents[2] / "configs" / "minimal.yaml").read_text())
    return p


def test_data_stats_says_what_the_serving_logs_hold_that_the_store_does_not(small_ds, tmp_path: Path) -> None:
    """`notefeed data stats --workspace` counts what the next sync would copy (before, it showed
    the store alone, and a server's traffic looked lost until `train`)."""
    import json

    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    out = tmp_path / "stats.json"
    r = CliRunner().invoke(app, ["data", "stats", "--workspace", str(ws), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["not_yet_in_store"] == NOTHING_PENDING
    _serve_some(ws, small_ds, notes=3, events=11)  # one note published with a follower count
    r = CliRunner().invoke(app, ["data", "stats", "--workspace", str(ws), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["not_yet_in_store"] == {**NOTHING_PENDING, "notes": 3, "events": 11,
                                                                  "follower_counts": 1}
    said = " ".join(r.output.split())
    assert "not yet in the store: 3 notes, 11 events" in said and "notefeed models sync" in said
    sync_workspace(ws)
    r = CliRunner().invoke(app, ["data", "stats", "--workspace", str(ws), "--json", str(out)])
    assert json.loads(out.read_text())["not_yet_in_store"] == NOTHING_PENDING
    (ws / "notes.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x07" * 3000)  # a torn log: one line
    r = CliRunner().invoke(app, ["data", "stats", "--workspace", str(ws)])
    assert r.exit_code == 1 and "notes.sqlite: not a notefeed note log" in r.output  # `data`'s one-line errors
    assert r.exception is None or isinstance(r.exception, SystemExit)
