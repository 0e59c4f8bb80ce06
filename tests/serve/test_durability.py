"""kill -9 mid-ingest loses no acknowledged event (a real `notefeed serve` subprocess)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from notefeed.online.bus import SqliteEventBus
from notefeed.serve.bench import TOKEN, free_port, start_server, stop_server
from notefeed.serve.durability import kill9_while_writing, mixed_writes, retry_in_flight

H = {"Authorization": f"Bearer {TOKEN}"}


def test_sigkill_mid_ingest_loses_no_acknowledged_event(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(ws, port, timeout=120)
    acked: list[int] = []
    sent_batches = 0
    try:
        with httpx.Client(base_url=base, timeout=10) as c:
            for i in range(20):
                assert c.post("/v1/notes", json={"note_id": f"p{i}", "author_id": f"a{i % 3}"}, headers=H).status_code == 201
        stop = threading.Event()

        def ingest() -> None:
            nonlocal sent_batches
            seq = 0
            with httpx.Client(base_url=base, timeout=10) as c:
                while not stop.is_set():
                    batch = [{"user_id": f"u{(seq + j) % 7}", "note_id": f"p{(seq + j) % 20}", "ts": seq + j,
                              "type": "click"} for j in range(25)]
                    seq += 25
                    sent_batches += 1
                    try:
                        r = c.post("/v1/events", json={"events": batch}, headers=H)
                    except httpx.HTTPError:
                        return  # the server died under us: this batch was never acknowledged
                    if r.status_code == 200 and r.json()["accepted"] == 25:
                        acked.extend(e["ts"] for e in batch)

        t = threading.Thread(target=ingest)
        t.start()
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)  # no shutdown hooks, no flush
        proc.wait(10)
        stop.set()
        t.join(10)
    finally:
        stop_server(proc)
    assert len(acked) >= 100, f"too few acknowledged events to be meaningful ({len(acked)})"
    bus = SqliteEventBus(ws / "events.sqlite")
    stored = {e.ts for e in bus.replay()}
    bus.close()
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
    # the restarted server sees them too, and the published notes
    port2 = free_port()
    proc2 = start_server(ws, port2, timeout=120)
    try:
        h = httpx.get(f"http://127.0.0.1:{port2}/healthz").json()
        assert h["notes"] == 20 and h["replayed_events"] >= len(acked)
        u = httpx.get(f"http://127.0.0.1:{port2}/v1/users/u0").json()
        assert u["n_events"] > 0
    finally:
        stop_server(proc2)


def _stored_event_ids(ws: Path) -> list[str]:
    bus = SqliteEventBus(ws / "events.sqlite")
    try:
        return [e.event_id for e in bus.replay() if e.event_id is not None]
    finally:
        bus.close()


def _mixed_writes(base: str, rnd: int, stop: threading.Event, notes: list[str], events: set[str],
                  in_flight: list[dict]) -> None:
    mixed_writes(base, rnd, stop, notes, events, in_flight)


def _retry(c: httpx.Client, batch: list[dict], events: set[str]) -> None:
    """Resend the batch that had no answer at the kill: stored exactly once either way."""
    assert retry_in_flight(c, batch, events), batch


def test_sigkill_during_mixed_writes_then_retry_is_exactly_once(tmp_path: Path) -> None:
    """Three rounds on one workspace: publishes and event batches with client event ids,
    kill -9 mid-way, restart. Every acknowledged note and event is served after the restart,
    and retrying the batch in flight at the kill stores each of its events exactly once."""
    ws = tmp_path / "ws"
    notes: list[str] = []
    events: set[str] = set()
    in_flight: list[dict] = []
    for rnd in range(4):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(ws, port, timeout=120)
        try:
            with httpx.Client(base_url=base, timeout=10) as c:
                h = c.get("/healthz").json()
                assert h["notes"] >= len(notes) and h["replayed_events"] >= len(events)
                for nid in notes:  # every acknowledged note is there
                    assert c.post("/v1/notes", json={"note_id": nid, "author_id": "x"}, headers=H).status_code == 409
                _retry(c, in_flight, events)
                if rnd == 3:
                    assert c.get("/v1/users/u0").json()["n_events"] > 0
                    break
                for i in range(5 if not notes else 0):
                    assert c.post("/v1/notes", json={"note_id": f"base{i}", "author_id": "a"}, headers=H).status_code == 201
                    notes.append(f"base{i}")
            kill9_while_writing(proc, lambda stop, base=base, rnd=rnd: _mixed_writes(base, rnd, stop, notes, events,
                                                                                     in_flight))
        finally:
            stop_server(proc)
        stored = _stored_event_ids(ws)
        assert len(stored) == len(set(stored)), "an event id stored twice"
        assert events <= set(stored), f"{len(events - set(stored))} acknowledged events lost"
    stored = _stored_event_ids(ws)
    assert len(stored) == len(set(stored)) and events <= set(stored)
    assert len(events) >= 100 and len(notes) >= 15, (len(events), len(notes))
