"""kill -9 mid-ingest loses no acknowledged event (a real `notefeed serve` subprocess)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from notefeed.online.bus import SqliteEventBus
from notefeed.serve.bench import TOKEN, free_port, start_server, stop_server

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
