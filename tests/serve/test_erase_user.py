"""Erasing a user (``DELETE /v1/users/{id}``): their events, follows, blocks, searches and
experiment pages leave the serving logs; the server forgets their online state, their dataset
history and a trained version's rows for the id; a restart keeps it so; events sent afterwards
start a new account; other users are untouched. Before, nothing could remove a user."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from notefeed.data.dataset import Dataset
from notefeed.online.bus import ERASED, SqliteEventBus
from notefeed.online.events import EventRecord
from notefeed.schema import Event
from notefeed.search.querylog import SearchLog
from notefeed.serve.app import create_app
from notefeed.serve.engine import ERASED_USER, Engine
from notefeed.serve.experiments import PageLog
from notefeed.serve.relations import RELATIONS_FILE

from .conftest import AUTH, make_config


def _rows(ws: Path, user: str) -> int:
    with sqlite3.connect(ws / "events.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM events WHERE user_id = ?", (user,)).fetchone()[0])


def test_an_erased_user_is_forgotten_by_the_server_its_logs_and_a_restart(small_ds: Dataset, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    user, other = small_ds.users["user_id"].iat[3], small_ds.users["user_id"].iat[4]
    notes = small_ds.notes["note_id"].tolist()
    creator, blocked = small_ds.notes["author_id"].iat[0], small_ds.notes["author_id"].iat[1]
    now = int(time.time())
    eng = Engine(small_ds, make_config(), ws)
    try:
        with TestClient(create_app(eng)) as c:
            events = [{"user_id": u, "note_id": notes[j], "ts": now, "type": "like"}
                      for u in (user, other) for j in range(5, 9)]
            events.append({"user_id": user, "note_id": notes[10], "ts": now, "type": "hide"})
            assert c.post("/v1/events", json={"events": events}, headers=AUTH).json()["accepted"] == 9
            c.put(f"/v1/users/{user}/follows/{creator}", headers=AUTH)
            c.put(f"/v1/users/{user}/blocks/{blocked}", headers=AUTH)
            c.put(f"/v1/users/{other}/follows/{creator}", headers=AUTH)
            ctx = eng.context(user)
            assert len(ctx.history) > 4 and ctx.followed == (creator,) and len(ctx.blocked_authors) == 1
            assert len(ctx.hidden) == 1 and ctx.user is not None
            before_other = eng.context(other)

            assert c.delete(f"/v1/users/{user}").status_code == 401  # the write token
            assert c.delete("/v1/users/a%01b", headers=AUTH).status_code == 422
            assert c.delete(f"/v1/users/{'x' * 129}", headers=AUTH).status_code == 422
            r = c.delete(f"/v1/users/{user}", headers=AUTH)
            assert r.status_code == 200
            body = r.json()
            assert body["user_id"] == user and body["removed"] == {"events": 5, "searches": 0, "pages": 0,
                                                                   "ad_lines": 0, "relations": 2}
            assert body["erased_at"] >= now
            ctx = eng.context(user)  # served as a new user: nothing from before is used
            assert ctx.user is None and len(ctx.history) == 0 and len(ctx.seen) == 0
            assert ctx.followed == () and len(ctx.blocked_authors) == 0 and len(ctx.hidden) == 0
            assert c.get(f"/v1/users/{user}").status_code == 404
            page = c.get("/v1/feed", params={"user_id": user, "n": 10})
            assert page.status_code == 200 and len(page.json()["items"]) == 10
            assert _rows(ws, user) == 0 and _rows(ws, other) == 4  # the other user's events stay
            with sqlite3.connect(ws / "events.sqlite") as db:  # tombstones keep the log's positions
                assert db.execute("SELECT count(*) FROM events WHERE type = ?", (ERASED,)).fetchone()[0] == 5
            bus = SqliteEventBus(ws / "events.sqlite")
            assert {r.user_id for r in bus.replay()} == {other}
            assert [p for p, _ in bus.entries()] == [5, 6, 7, 8]  # counts, tombstones included (the 9th)
            bus.close()
            after_other = eng.context(other)
            assert after_other.followed == before_other.followed == (creator,)
            assert np.array_equal(after_other.history, before_other.history)
            # again, and an id never seen: harmless, nothing to remove
            assert c.delete(f"/v1/users/{user}", headers=AUTH).json()["removed"] == {
                "events": 0, "searches": 0, "pages": 0, "ad_lines": 0, "relations": 0}
            assert c.delete("/v1/users/never-seen", headers=AUTH).status_code == 200
            # an event sent after the erasure starts a new account
            later = {"user_id": user, "note_id": notes[20], "ts": now + 1, "type": "like"}
            assert c.post("/v1/events", json={"events": [later]}, headers=AUTH).json()["accepted"] == 1
            assert eng.context(user).history.tolist() == [20]
            assert "users_erased_total 3" in c.get("/metrics").text
            assert c.get("/v1/admin/erasures").status_code == 401  # it lists user ids: the write token
            log = c.get("/v1/admin/erasures", params={"limit": 2}, headers=AUTH).json()
            assert log["erasures"] == 3 and [u["user_id"] for u in log["users"]] == ["never-seen", user]
            assert log["users"][1]["erased_at"] >= body["erased_at"]
            assert c.get("/v1/admin/erasures", params={"limit": 0}, headers=AUTH).status_code == 422
    finally:
        eng.close()
    eng = Engine(small_ds, make_config(), ws)  # a restart replays the logs: still erased
    try:
        ctx = eng.context(user)
        assert ctx.user is None and ctx.history.tolist() == [20] and ctx.followed == ()
        assert len(ctx.blocked_authors) == 0 and len(ctx.hidden) == 0
        assert eng.context(other).followed == (creator,)
        assert eng.user(user)["erased_at"] is not None and eng.user(other)["erased_at"] is None
    finally:
        eng.close()


def test_an_event_sent_before_the_erasure_and_stored_after_it_is_refused(small_ds: Dataset, tmp_path: Path) -> None:
    """The event's receive time is taken before the ingest lock; an erasure written meanwhile
    (here: its time set in the future) refuses it instead of storing it after the purge."""
    user = small_ds.users["user_id"].iat[3]
    eng = Engine(small_ds, make_config(), tmp_path / "ws")
    try:
        eng.relation_log.erase(user, time.time() + 60)
        with eng._relations_lock:
            eng._add_relations()
        ev = [Event(user_id=user, note_id=small_ds.notes["note_id"].iat[5], ts=int(time.time()), type="like"),
              Event(user_id="someone", note_id=small_ds.notes["note_id"].iat[5], ts=int(time.time()), type="like")]
        accepted, rejected = eng.ingest(ev)
        assert accepted == 1 and [(r.index, r.reason) for r in rejected] == [(0, ERASED_USER)]
        assert _rows(tmp_path / "ws", user) == 0
    finally:
        eng.close()


def test_the_search_and_page_logs_lose_only_that_users_rows(tmp_path: Path) -> None:
    log = SearchLog(tmp_path / "search_log.sqlite")
    log.log_query("r1", "gone", "cats", ["n1", "n2"], ts=100.0)
    log.log_query("r2", "kept", "dogs", ["n3"], ts=100.0)
    log.log_query("r3", "gone", "later", ["n1"], ts=300.0)  # after the erasure: a new account's
    log.log_clicks([("r1", "n1", "gone", 101.0, "click", 0), ("r2", "n3", "kept", 101.0, "click", 0)])
    assert log.erase("gone", 200.0) == 1
    assert [p["request_id"] for p in log.pages()] == ["r2", "r3"]
    assert log.query_of("r2")["clicks"] and log.query_of("r1") is None
    log.close()
    pages = PageLog(tmp_path / "experiments.sqlite")
    pages.add(("exp", "a", "gone", 100.0, 10, 5, 1.0))
    pages.add(("exp", "a", "kept", 100.0, 10, 5, 1.0))  # still buffered: erase flushes first
    assert pages.erase("gone", 200.0) == 1
    assert [r[1] for r in pages.pages("exp")] == ["kept"]
    pages.close()


def test_an_erasure_on_one_worker_reaches_the_others(small_ds: Dataset, tmp_path: Path, redis_url: str,
                                                      redis_client) -> None:
    """Two engines on one workspace and one Redis stream (``--workers 2``): the erasure answered
    by A deletes the user's stream entries and shared online state; B forgets its own part
    (follows, hides, the dataset history) within its follower's next read."""
    cfg = make_config(online={"backend": "redis", "redis_url": redis_url, "redis_prefix": "erase"})
    ws = tmp_path / "ws"
    user, other = small_ds.users["user_id"].iat[3], small_ds.users["user_id"].iat[4]
    note = small_ds.notes["note_id"].iat[0]
    a, b = Engine(small_ds, cfg, ws), Engine(small_ds, cfg, ws)
    try:
        now = int(time.time())
        a.ingest([Event(user_id=u, note_id=note, ts=now, type="follow") for u in (user, other)])
        deadline = time.time() + 10
        while b.context(user).followed == () and time.time() < deadline:
            time.sleep(0.05)
        assert b.context(user).followed != () and len(b.context(user).history) > 0
        out = a.erase_user(user)
        assert out["removed"]["events"] == 1
        assert {r.user_id for r in a.bus.replay()} == {other}  # the stream entry is gone
        assert not redis_client.exists(f"erase:u:{user}:seq", f"erase:u:{user}:seen")
        deadline = time.time() + 10
        while b.erased_at(user) is None and time.time() < deadline:
            time.sleep(0.05)
        ctx = b.context(user)
        assert b.erased_at(user) == out["erased_at"] and ctx.followed == () and len(ctx.history) == 0
        assert b.context(other).followed != ()
    finally:
        a.close()
        b.close()
    assert (ws / RELATIONS_FILE).exists()


def test_a_redis_stream_loses_the_users_entries_up_to_the_time(redis_client, redis_url: str) -> None:
    from notefeed.online.bus import RedisEventBus

    bus = RedisEventBus.from_url(redis_url, stream="erase-test")
    rec = {"note_id": "n", "ts": 1, "type": "click"}
    bus.append([EventRecord(user_id="u", received_at=10.0, **rec), EventRecord(user_id="v", received_at=10.0, **rec),
                EventRecord(user_id="u", received_at=30.0, **rec)])
    assert bus.erase("u", 20.0) == 1
    assert [(r.user_id, r.received_at) for r in bus.replay()] == [("v", 10.0), ("u", 30.0)]
    bus.close()


def test_the_ads_logs_keep_their_lines_without_the_user(small_ds: Dataset, tmp_path: Path, redis_url: str,
                                                        redis_client) -> None:
    """What advertisers were charged for stays (impressions, clicks), the erased user's id
    leaves every line of theirs up to the erasure, in the files, in the impressions a process
    holds for clicks and in the shared ones in Redis; other lines stay byte for byte."""
    import json

    from notefeed.ads.spend import RedisImpressions, RedisSpendLedger

    ws = tmp_path / "ws"
    ads = ws / "ads"
    ads.mkdir(parents=True)
    now = time.time()
    imp = [{"t": "imp", "id": f"i{k}", "ad_id": "a1", "campaign_id": "c1", "price": 0.5, "user_id": u, "ts": now - 10}
           for k, u in enumerate(("gone", "kept", "gone"))]
    lines = [json.dumps(e, separators=(",", ":")) for e in imp] + ['{"t":"click","id":"i0","ts":1}', "torn{"]
    (ads / "impressions.jsonl").write_text("\n".join(lines) + "\n")
    (ads / "clicks.jsonl").write_text(json.dumps({"query": "q", "ad_id": "a1", "user_id": "gone", "ts": now - 5}) + "\n")
    ledger = RedisSpendLedger.from_url(redis_url, prefix="erase-ads")
    shared = RedisImpressions(ledger, 3600)
    shared.put({"i0": {**imp[0]}, "i1": {**imp[1]}})
    eng = Engine(small_ds, make_config(), ws)
    try:
        out = eng.erase_user("gone")
        assert out["removed"]["ad_lines"] == 3
        got = (ads / "impressions.jsonl").read_text().splitlines()
        assert [json.loads(x)["user_id"] for x in got[:3]] == ["", "kept", ""]
        assert got[1] == lines[1] and got[3:] == lines[3:]  # untouched lines stay byte for byte
        assert json.loads((ads / "clicks.jsonl").read_text())["user_id"] == ""
        shared.blank_user(["i0", "missing"])
        assert shared.get("i0")["user_id"] == "" and shared.get("i1")["user_id"] == "kept"
        assert not redis_client.exists("erase-ads:ads:imp:missing")  # no key made for an expired one
    finally:
        eng.close()
    from notefeed.ads.auction import FrequencyCap

    cap = FrequencyCap(1)
    cap.record("gone", "c1", now)
    cap.record("kept", "c1", now)
    cap.forget("gone")
    assert cap.allowed("gone", "c1", now) and not cap.allowed("kept", "c1", now)
