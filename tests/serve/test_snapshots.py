"""Periodic cold-start snapshots: written atomically every N events or seconds while events
arrive, so a kill -9 replays only what came after the last one."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from notefeed.schema import Event, Note
from notefeed.serve.coldstart import Snapshotter, write_atomic
from notefeed.serve.engine import Engine
from notefeed.serve.synth import synthetic_community

from .conftest import make_config

DS = synthetic_community(200, n_users=30, n_events=600, seed=1)


def _wait(cond, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.02)


def _crash(eng: Engine) -> None:  # what kill -9 leaves: no close, no save
    if eng.snapshots is not None:
        eng.snapshots.close()
    eng.reloader.close()
    eng.models.close()
    eng._close_io()


def _pool(eng: Engine) -> dict[int, tuple[int, int]]:
    assert eng.coldstart is not None
    return {n.item: (n.impressions, n.clicks) for n in eng.coldstart.pool.notes.values()}


@pytest.mark.parametrize("trigger", [{"snapshot_events": 5, "snapshot_s": 0}, {"snapshot_events": 0, "snapshot_s": 0.2}])
def test_snapshot_then_kill_replays_only_the_rest(tmp_path: Path, trigger: dict) -> None:
    cfg = make_config(coldstart=trigger)
    eng = Engine(DS, cfg, tmp_path)
    eng.publish(Note(note_id="new1", author_id="a", tags=["brand-new"], category="cat-new"))
    evs = [Event(user_id=f"u{i % 3}", note_id="new1", ts=1_700_000_000 + i, type="impression") for i in range(6)]
    eng.ingest(evs)
    path = tmp_path / "coldstart.json"
    assert eng.snapshots is not None
    _wait(lambda: eng.snapshots.saved >= 1)
    assert json.loads(path.read_text())["events_seen"] == 6
    eng.ingest([Event(user_id="u1", note_id="new1", ts=1_700_000_100, type="click")])  # after the snapshot
    live = _pool(eng)
    _crash(eng)
    assert not list(tmp_path.glob("*.tmp"))
    eng = Engine(DS, cfg, tmp_path)
    try:
        assert _pool(eng) == live and eng.coldstart is not None and eng.coldstart.events_seen == 7
    finally:
        eng.close()


def test_no_snapshot_without_events_or_when_off(tmp_path: Path) -> None:
    eng = Engine(DS, make_config(coldstart={"snapshot_events": 1, "snapshot_s": 0.05}), tmp_path / "a")
    time.sleep(0.2)
    assert not (tmp_path / "a" / "coldstart.json").exists()  # nothing arrived: nothing to save
    _crash(eng)
    eng = Engine(DS, make_config(coldstart={"snapshot_events": 0, "snapshot_s": 0}), tmp_path / "b")
    eng.ingest([Event(user_id="u1", note_id=DS.notes["note_id"][0], ts=1, type="click")])
    assert eng.snapshots is not None and not eng.snapshots.enabled and eng.snapshots._thread is None
    _crash(eng)


def test_snapshotter_survives_a_failing_save_and_stops() -> None:
    calls: list[int] = []

    def save() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")

    s = Snapshotter(save, 0, 1)
    s.note(1)
    _wait(lambda: s.failed == 1)
    s.note(1)
    _wait(lambda: s.saved == 1)
    s.close()
    assert s._thread is not None and not s._thread.is_alive()


def test_write_atomic(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    write_atomic(p, "one")
    write_atomic(p, "two")
    assert p.read_text() == "two" and [x.name for x in tmp_path.iterdir()] == ["state.json"]


def test_a_snapshot_holds_the_ingest_lock_for_the_copy_only(tmp_path: Path, monkeypatch) -> None:
    """Encoding the pool (seconds for a 1M-note workspace) runs after the ingest lock is let
    go: events are not held up by a snapshot's JSON."""
    import notefeed.serve.coldstart as cs

    eng = Engine(DS, make_config(coldstart={"snapshot_events": 0, "snapshot_s": 0}), tmp_path)
    try:
        eng.publish(Note(note_id="new1", author_id="a", tags=["brand-new"], category="cat-new"))
        eng.ingest([Event(user_id="u1", note_id="new1", ts=1_700_000_000, type="click")])
        held = []
        real = cs.encode_state

        def spy(c):
            held.append(eng._ingest_lock.locked())
            return real(c)

        monkeypatch.setattr(cs, "encode_state", spy)
        path = eng.save_coldstart()
        assert held == [False]
        body = json.loads(path.read_text())
        assert body["events_seen"] == 1 and "new1" in body["notes"].values()
    finally:
        eng.close()
