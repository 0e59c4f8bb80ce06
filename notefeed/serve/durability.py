"""``notefeed bench durability``: kill -9 a real ``notefeed serve`` mid-write, again and again.

Each round starts the server on the same workspace, checks that every write acknowledged so
far is served (each acknowledged note exists, every acknowledged event is stored exactly
once), resends the batch that was in flight at the last kill (stored exactly once either way,
by its client event ids), then writes a mix of note publishes and event batches from a client
thread and ``SIGKILL``s the server 1.5 s in. A last start checks the final state. With the
Redis backend it also checks that the online state counted every stored event exactly once.

The same write loop backs the durability tests (``tests/serve/test_durability.py``).
"""

from __future__ import annotations

import functools
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from notefeed.eval.timing import machine_info
from notefeed.serve.bench import TOKEN, free_port, start_server, stop_server

__all__ = ["kill9_while_writing", "mixed_writes", "retry_in_flight", "run_durability"]

H = {"Authorization": f"Bearer {TOKEN}"}


def kill9_while_writing(proc: subprocess.Popen, writer: Callable[[threading.Event], Any],
                        after_s: float = 1.5) -> None:
    """Run ``writer(stop)`` on a thread, SIGKILL ``proc`` after ``after_s`` seconds, then set
    ``stop`` and wait for the writer."""
    stop = threading.Event()
    t = threading.Thread(target=writer, args=(stop,))
    t.start()
    time.sleep(after_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    stop.set()
    t.join(10)


def mixed_writes(base: str, rnd: int, stop: threading.Event, notes: list[str], events: set[str],
                 in_flight: list[dict]) -> None:
    """Publish a note (unseen tag and category) every 4th call, else a batch of 10 events with
    client ids, until ``stop`` or the server dies; acknowledged writes go to ``notes``/``events``,
    the batch without an answer stays in ``in_flight``."""
    import httpx

    seq = 0
    with httpx.Client(base_url=base, timeout=10) as c:
        while not stop.is_set():
            seq += 1
            try:
                if seq % 4 == 0:
                    nid = f"r{rnd}n{seq}"
                    r = c.post("/v1/notes", headers=H, json={"note_id": nid, "author_id": f"a{seq % 3}",
                                                             "tags": [f"tag-{rnd}-{seq}"], "category": f"cat-new-{seq % 5}"})
                    if r.status_code == 201:
                        notes.append(nid)
                    continue
                batch = [{"user_id": f"u{(seq + j) % 7}", "note_id": notes[(seq + j) % len(notes)],
                          "ts": 1_700_000_000 + seq, "type": "click" if j % 3 else "impression",
                          "event_id": f"r{rnd}e{seq}.{j}"} for j in range(10)]
                in_flight[:] = batch
                r = c.post("/v1/events", json={"events": batch}, headers=H)
            except httpx.HTTPError:
                return  # the server died under us: not acknowledged
            if r.status_code == 200 and r.json()["accepted"] == len(batch):
                events.update(e["event_id"] for e in batch)
                in_flight.clear()


def retry_in_flight(c: Any, batch: list[dict], events: set[str]) -> bool:
    """Resend the batch that had no answer at the kill (an ``httpx.Client``); True when every
    event of it is stored (accepted now or a duplicate of an earlier store)."""
    if not batch:
        return True
    r = c.post("/v1/events", json={"events": batch}, headers=H)
    if r.status_code != 200:
        return False
    body = r.json()
    ok = body["accepted"] + len(body.get("duplicates", [])) == len(batch) and not body["rejected"]
    if ok:
        events.update(e["event_id"] for e in batch)
    return ok


def _stored_ids(backend: str, ws: Path, redis_url: str | None, prefix: str) -> list[str]:
    from notefeed.online.bus import RedisEventBus, SqliteEventBus

    bus: Any = SqliteEventBus(ws / "events.sqlite") if backend == "sqlite" else \
        RedisEventBus.from_url(str(redis_url), stream=f"{prefix}:events")
    try:
        return [e.event_id for e in bus.replay() if e.event_id is not None]
    finally:
        bus.close()


def _state_mismatches(redis_url: str, prefix: str, base: str) -> int:
    """Users whose online-state event count differs from the stream's (Redis backend)."""
    from collections import Counter

    import httpx

    from notefeed.online.bus import RedisEventBus

    bus = RedisEventBus.from_url(redis_url, stream=f"{prefix}:events")
    try:
        stream = Counter(r.user_id for r in bus.replay())
    finally:
        bus.close()
    return sum(httpx.get(f"{base}/v1/users/{u}").json()["n_events"] != n for u, n in stream.items())


def run_durability(rounds: int = 10, backends: tuple[str, ...] = ("sqlite", "redis"),
                   redis_url: str | None = None, after_s: float = 1.5) -> dict[str, Any]:
    import httpx
    import yaml

    from notefeed.serve.bench_online import redis_server

    out = []
    for backend in backends:
        if backend not in ("sqlite", "redis"):
            raise ValueError(f"--backend: sqlite or redis, got {backend!r}")
        with tempfile.TemporaryDirectory(prefix="notefeed-bench-durability-") as tmp:
            ws, rproc, url = Path(tmp) / "ws", None, None
            prefix = f"dur{time.time_ns()}"
            extra: list[str] = []
            if backend == "redis":
                url, rproc = redis_server(redis_url, Path(tmp))
                cfg = Path(tmp) / "redis.yaml"
                cfg.write_text(yaml.safe_dump({"online": {"backend": "redis", "redis_url": url, "redis_prefix": prefix}}))
                extra = ["--config", str(cfg)]
            notes: list[str] = []
            events: set[str] = set()
            in_flight: list[dict] = []
            per_round, failed_restarts, lost_notes, failed_retries = [], 0, 0, 0
            try:
                for rnd in range(rounds + 1):  # the last start only checks
                    port = free_port()
                    base = f"http://127.0.0.1:{port}"
                    try:
                        proc = start_server(ws, port, extra, timeout=300)
                    except (RuntimeError, TimeoutError):
                        failed_restarts += 1
                        break
                    try:
                        with httpx.Client(base_url=base, timeout=10) as c:
                            missing = sum(c.post("/v1/notes", json={"note_id": n, "author_id": "x"},
                                                 headers=H).status_code != 409 for n in notes)
                            lost_notes += missing
                            failed_retries += not retry_in_flight(c, in_flight, events)
                            in_flight.clear()
                            stored = _stored_ids(backend, ws, url, prefix)
                            row = {"round": rnd, "acked_events": len(events), "acked_notes": len(notes),
                                   "lost_events": len(events - set(stored)), "lost_notes": missing,
                                   "duplicate_ids": len(stored) - len(set(stored))}
                            if backend == "redis":
                                row["state_mismatches"] = _state_mismatches(str(url), prefix, base)
                            per_round.append(row)
                            if rnd == rounds:
                                break
                            for i in range(5 if not notes else 0):
                                if c.post("/v1/notes", json={"note_id": f"base{i}", "author_id": "a"},
                                          headers=H).status_code == 201:
                                    notes.append(f"base{i}")
                        writer = functools.partial(mixed_writes, base, rnd, notes=notes, events=events,
                                                   in_flight=in_flight)
                        kill9_while_writing(proc, lambda stop, w=writer: w(stop=stop), after_s)
                    finally:
                        stop_server(proc)
            finally:
                if rproc is not None:
                    rproc.terminate()
                    rproc.wait(10)
            last = per_round[-1] if per_round else {}
            out.append({"backend": backend, "rounds": rounds, "failed_restarts": failed_restarts,
                        "acked_events": len(events), "acked_notes": len(notes),
                        "lost_events": last.get("lost_events"), "lost_notes": lost_notes,
                        "duplicate_ids": last.get("duplicate_ids"), "failed_retries": failed_retries,
                        "state_mismatches": last.get("state_mismatches"), "per_round": per_round})
    return {"bench": "durability", "machine": machine_info(), "after_s": after_s, "results": out,
            "notes": "each round: restart, check every acknowledged note and event, resend the in-flight batch, "
                     "then mixed writes and SIGKILL; the last start only checks"}
