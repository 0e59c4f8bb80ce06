"""Online state (memory backend), the SQLite bus and side effects."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from notefeed.online.bus import SideEffects, SqliteEventBus, open_bus
from notefeed.online.events import EventRecord, StateUpdate
from notefeed.online.state import MemoryOnlineState


def _up(user: str, note: str, type_: str = "click", cat: str = "food", at: float = 1000.0) -> StateUpdate:
    return StateUpdate(user, note, type_, cat, at)


def _rec(i: int, type_: str = "click") -> EventRecord:
    return EventRecord(f"u{i % 3}", f"n{i}", i, type_, 1000.0 + i, dwell_s=1.5 if i % 2 else None)


def test_memory_state_seen_seq_counters() -> None:
    s = MemoryOnlineState(seq_len=3, max_seen=4)
    s.apply([_up("a", "n1", "impression"), _up("a", "n2"), _up("a", "n3", "like", "travel", 1100)])
    snap = s.snapshot("a", now=1200.0)
    assert snap.seen == {"n1", "n2", "n3"}
    assert snap.short_seq == ["n2", "n3"]  # impressions are not positives
    assert snap.counts["5m"] == {"food": 1, "travel": 1}
    # 10 minutes later only the 1-hour window still counts them
    later = s.snapshot("a", now=1100.0 + 600)
    assert later.counts["5m"] == {} and later.counts["1h"] == {"food": 1, "travel": 1}
    assert s.snapshot("a", now=1100.0 + 7200).counts["1h"] == {}
    s.apply([_up("a", f"m{i}", at=1200.0 + i) for i in range(5)])
    snap = s.snapshot("a", now=1300.0)
    assert snap.short_seq == ["m2", "m3", "m4"] and len(snap.seen) == 4 and "m4" in snap.seen
    assert snap.n_events == 8
    empty = s.snapshot("nobody")
    assert empty.n_events == 0 and empty.seen == set()


def test_memory_state_evicts_users() -> None:
    s = MemoryOnlineState(max_users=2)
    s.apply([_up("a", "n"), _up("b", "n"), _up("c", "n")])
    assert s.n_users() == 2 and s.snapshot("a").n_events == 0


def test_memory_state_rejects_bad_params() -> None:
    with pytest.raises(ValueError, match="seq_len"):
        MemoryOnlineState(seq_len=0)


def test_event_record_validates_type() -> None:
    with pytest.raises(ValueError, match="type"):
        EventRecord("u", "n", 0, "purchase", 0.0)


def test_sqlite_bus_roundtrip_and_reopen(tmp_path: Path) -> None:
    bus = SqliteEventBus(tmp_path / "e.sqlite")
    assert bus.append([]) == 0
    recs = [_rec(i) for i in range(10)]
    assert bus.append(recs[:4]) == 4 and bus.append(recs[4:]) == 6
    bus.close()
    bus = SqliteEventBus(tmp_path / "e.sqlite")
    assert list(bus.replay()) == recs and bus.count() == 10
    bus.close()


def test_sqlite_bus_concurrent_appends(tmp_path: Path) -> None:
    bus = SqliteEventBus(tmp_path / "e.sqlite", synchronous="NORMAL")

    def w(k: int) -> None:
        for j in range(20):
            bus.append([_rec(k * 1000 + j * 5 + m) for m in range(5)])

    ts = [threading.Thread(target=w, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    got = [e.ts for e in bus.replay()]
    assert len(got) == 400 and len(set(got)) == 400
    bus.close()


def test_sqlite_bus_corrupt_file(tmp_path: Path) -> None:
    p = tmp_path / "e.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match="not a notefeed event log"):
        SqliteEventBus(p)


def test_open_bus_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workspace"):
        open_bus("sqlite")
    with pytest.raises(ValueError, match="redis_url"):
        open_bus("redis")
    with pytest.raises(ValueError, match="backend"):
        open_bus("kafka", tmp_path)
    assert open_bus("sqlite", tmp_path).name == "sqlite"


def test_side_effects_never_block() -> None:
    fx = SideEffects(maxsize=4)
    gate = threading.Event()
    seen: list[int] = []
    fx.subscribe(lambda b: (gate.wait(5), seen.append(len(b))))
    fx.subscribe(lambda b: 1 / 0)  # a failing side effect is counted, not raised
    t0 = time.perf_counter()
    for _ in range(50):
        fx.publish([_rec(0)])
    assert time.perf_counter() - t0 < 0.5
    assert fx.dropped >= 90  # 100 submissions, at most ~5 queued or running
    gate.set()
    fx.drain()
    assert seen and fx.failed == 100 - fx.dropped - len(seen)
    fx.close()


def test_online_events_cli(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from notefeed.cli import app

    bus = SqliteEventBus(tmp_path / "events.sqlite")
    bus.append([_rec(i, "click" if i % 2 else "impression") for i in range(6)])
    bus.close()
    r = CliRunner().invoke(app, ["online", "events", "--workspace", str(tmp_path), "--user", "u1", "--tail", "2"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["events"] == 6 and out["by_type"] == {"impression": 3, "click": 3}
    assert len(out["last"]) == 2 and out["user"]["n_events"] == 2
    r = CliRunner().invoke(app, ["online", "events", "--workspace", str(tmp_path / "none")])
    assert r.exit_code == 1
