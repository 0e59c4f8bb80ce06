"""Redis mode: stream and online state written in one transaction, the state caught up with
the stream at start-up, and a kill -9 of a serving process loses nothing (real redis-server)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from notefeed.online.bus import RedisEventBus
from notefeed.online.events import EventRecord
from notefeed.online.redis_sync import append_and_apply, applied_key, catch_up, erase, same_server
from notefeed.online.state import RedisOnlineState
from notefeed.schema import Event
from notefeed.serve.bench import TOKEN, free_port, start_server, stop_server
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine
from notefeed.serve.synth import synthetic_community
from tests.procs import kill9_while_writing

DS = synthetic_community(200, n_users=30, n_events=600, seed=1)
H = {"Authorization": f"Bearer {TOKEN}"}


def _config(redis_url: str, prefix: str = "s"):
    return builtin_config().with_overrides(api={"token": TOKEN},
                                           online={"backend": "redis", "redis_url": redis_url, "redis_prefix": prefix})


def _events(n: int, user: str = "u1") -> list[Event]:
    notes = DS.notes["note_id"].tolist()
    return [Event(user_id=user, note_id=notes[i % 20], ts=1_700_000_000 + i, type="click" if i % 2 else "impression")
            for i in range(n)]


def test_ingest_writes_stream_state_and_counter_together(redis_url: str, redis_client, tmp_path: Path) -> None:
    eng = Engine(DS, _config(redis_url), tmp_path)
    try:
        assert eng.ingest(_events(7))[0] == 7 and eng.ingest(_events(3, "u2"))[0] == 3
        assert redis_client.xlen("s:events") == 10 and int(redis_client.get(applied_key(eng.bus))) == 10
        assert eng.state.snapshot("u1").n_events == 7 and eng.caught_up == 0
    finally:
        eng.close()
    eng = Engine(DS, _config(redis_url), tmp_path)  # nothing to catch up, nothing applied twice
    try:
        assert eng.caught_up == 0 and eng.state.snapshot("u1").n_events == 7
    finally:
        eng.close()


def test_startup_folds_unapplied_stream_entries_into_the_state(redis_url: str, redis_client, tmp_path: Path) -> None:
    eng = Engine(DS, _config(redis_url), tmp_path)
    eng.ingest(_events(4))
    # what a kill between XADD and the state update left (two servers, or an older notefeed)
    now = time.time()
    eng.bus.append([EventRecord.from_event(e, now) for e in _events(5, "u9")])
    eng.close()
    assert RedisOnlineState(redis_client, prefix="s").snapshot("u9").n_events == 0
    eng = Engine(DS, _config(redis_url), tmp_path)
    try:
        assert eng.caught_up == 5
        snap = eng.state.snapshot("u9")
        assert snap.n_events == 5 and len(snap.short_seq) == 2  # the two clicks
        assert eng.state.snapshot("u1").n_events == 4
    finally:
        eng.close()
    # catching up twice (a second server starting) applies nothing again
    bus, st = RedisEventBus(redis_client, "s:events"), RedisOnlineState(redis_client, prefix="s")
    assert catch_up(bus, st, lambda recs: []) == 0


def test_state_without_counter_is_not_applied_twice(redis_url: str, redis_client, tmp_path: Path) -> None:
    eng = Engine(DS, _config(redis_url), tmp_path)
    eng.ingest(_events(6))
    eng.close()
    redis_client.delete(applied_key(eng.bus))  # as written by a notefeed before the counter
    eng = Engine(DS, _config(redis_url), tmp_path)
    try:
        assert eng.caught_up == 0 and eng.state.snapshot("u1").n_events == 6
        assert int(redis_client.get(applied_key(eng.bus))) == 6
    finally:
        eng.close()
    redis_client.flushdb()  # an empty state and no counter: the whole stream is replayed
    bus = RedisEventBus(redis_client, "s:events")
    bus.append([EventRecord.from_event(e, 1.0) for e in _events(3)])
    st = RedisOnlineState(redis_client, prefix="s")
    assert catch_up(bus, st, lambda recs: Engine._updates(eng, recs)) == 3
    assert st.snapshot("u1").n_events == 3


def _ingest_until_killed(base: str, stop: threading.Event, acked: Counter) -> None:
    notes = DS.notes["note_id"].tolist()
    seq = 0
    with httpx.Client(base_url=base, timeout=10) as c:
        while not stop.is_set():
            batch = [{"user_id": f"u{(seq + j) % 5}", "note_id": notes[(seq + j) % 50], "ts": 1_700_000_000 + seq,
                      "type": "click" if j % 2 else "impression"} for j in range(20)]
            seq += 20
            try:
                r = c.post("/v1/events", json={"events": batch}, headers=H)
            except httpx.HTTPError:
                return
            if r.status_code == 200 and r.json()["accepted"] == len(batch):
                acked.update(e["user_id"] for e in batch)


def test_sigkill_of_a_redis_server_process_loses_no_state(redis_url: str, redis_client, tmp_path: Path) -> None:
    cfg = tmp_path / "redis.yaml"
    cfg.write_text(yaml.safe_dump({"api": {"token": TOKEN},
                                   "online": {"backend": "redis", "redis_url": redis_url, "redis_prefix": "k"}}))
    extra = ["--config", str(cfg), "--synthetic-notes", "200", "--seed", "1"]
    acked: Counter[str] = Counter()
    for _ in range(2):
        port = free_port()
        proc = start_server(tmp_path / "ws", port, extra=extra, timeout=120)
        try:
            base = f"http://127.0.0.1:{port}"
            kill9_while_writing(proc, lambda stop, base=base: _ingest_until_killed(base, stop, acked))
        finally:
            stop_server(proc)
    assert sum(acked.values()) >= 100
    port = free_port()
    proc = start_server(tmp_path / "ws", port, extra=extra, timeout=120)
    try:
        stream = Counter(r.user_id for r in RedisEventBus(redis_client, "k:events").replay())
        assert int(redis_client.get("k:events:applied")) == sum(stream.values())
        for u, n in stream.items():  # every stored event is in the state once; acknowledged ones are stored
            got = httpx.get(f"http://127.0.0.1:{port}/v1/users/{u}").json()["n_events"]
            assert got == n >= acked[u], (u, got, n, acked[u])
    finally:
        stop_server(proc)


def _other_db(redis_client):  # type: ignore[no-untyped-def]
    """A client on another database of the same server: not one transaction with db 0's keys."""
    import redis

    kw = dict(redis_client.connection_pool.connection_kwargs)
    kw["db"] = 1 if int(kw.get("db", 0) or 0) != 1 else 2
    return redis.Redis(**{k: v for k, v in kw.items() if k in ("host", "port", "path", "db", "password", "username")},
                       decode_responses=True)


@pytest.mark.parametrize("servers", ["one", "two"])
def test_erasing_entries_of_a_lagging_state_applies_no_entry_twice(redis_client, tmp_path: Path, servers: str) -> None:
    eng = Engine(DS, builtin_config(), tmp_path)  # only for its event -> state updates
    state_client = redis_client if servers == "one" else _other_db(redis_client)
    state_client.flushdb()
    try:
        bus, st = RedisEventBus(redis_client, "s:events"), RedisOnlineState(state_client, prefix="s")
        assert same_server(bus, st) == (servers == "one")
        for user, n in (("u1", 4), ("u2", 3)):  # applied with the stream
            recs = [EventRecord.from_event(e, 1.0) for e in _events(n, user)]
            append_and_apply(bus, st, recs, Engine._updates(eng, recs))
        # a kill between the writes on two servers: in the stream, not in the state
        bus.append([EventRecord.from_event(e, 2.0) for e in _events(2, "u1") + _events(5, "u9")])
        assert int(state_client.get(applied_key(bus))) == 7
        assert erase(bus, st, "u1", 3.0) == 6  # 4 applied and 2 not
        assert int(state_client.get(applied_key(bus))) == 9  # the 2 never to be applied count as done
        assert redis_client.xlen("s:events") == 8
        assert catch_up(bus, st, lambda recs: Engine._updates(eng, recs)) == 5  # u9's, and nothing again
        assert st.snapshot("u2").n_events == 3 and st.snapshot("u9").n_events == 5
        assert erase(bus, st, "u9", 3.0) == 5 and int(state_client.get(applied_key(bus))) == 14  # all applied: as it was
        assert erase(bus, st, "nobody", 3.0) == 0
    finally:
        eng.close()
        if servers == "two":
            state_client.flushdb()
            state_client.close()


def test_engine_erasure_keeps_the_applied_count(redis_url: str, redis_client, tmp_path: Path) -> None:
    eng = Engine(DS, _config(redis_url), tmp_path)
    try:
        eng.ingest(_events(4, "u1"))
        eng.ingest(_events(3, "u2"))
        eng.bus.append([EventRecord.from_event(e, time.time() - 1) for e in _events(2, "u1") + _events(5, "u9")])
        assert eng.erase_user("u1")["removed"]["events"] == 6
        assert int(redis_client.get(applied_key(eng.bus))) == 9
    finally:
        eng.close()
    eng = Engine(DS, _config(redis_url), tmp_path)
    try:
        assert eng.caught_up == 5 and eng.state.snapshot("u2").n_events == 3
    finally:
        eng.close()
