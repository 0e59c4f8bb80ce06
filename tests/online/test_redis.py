"""The Redis backends against a real redis-server."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from notefeed.online.bus import RedisEventBus
from notefeed.online.events import EventRecord, StateUpdate
from notefeed.online.state import RedisOnlineState
from notefeed.serve.app import create_app
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine
from notefeed.serve.synth import synthetic_community


def test_redis_bus_stream(redis_client) -> None:
    bus = RedisEventBus(redis_client, stream="t:events")
    recs = [EventRecord(f"u{i}", f"n{i}", i, "like", 5.0 + i, dwell_s=2.0, position=i) for i in range(2500)]
    assert bus.append(recs[:1000]) == 1000 and bus.append(recs[1000:]) == 1500
    assert bus.count() == 2500
    assert list(bus.replay()) == recs  # paging across 1000-entry pages keeps order, no duplicates
    assert redis_client.type("t:events") == "stream"


def test_redis_state(redis_client) -> None:
    st = RedisOnlineState(redis_client, prefix="t", seq_len=3)
    st.apply([StateUpdate("a", "n1", "impression", "food", 1000.0)]
             + [StateUpdate("a", f"m{i}", "click", "travel" if i % 2 else "food", 1000.0 + i) for i in range(5)])
    snap = st.snapshot("a", now=1010.0)
    assert snap.seen == {"n1", "m0", "m1", "m2", "m3", "m4"}
    assert snap.short_seq == ["m2", "m3", "m4"]
    assert snap.counts["5m"] == {"food": 3, "travel": 2} and snap.n_events == 6
    assert st.snapshot("a", now=1000.0 + 1800).counts["5m"] == {}
    assert st.snapshot("a", now=1000.0 + 1800).counts["1h"] == {"food": 3, "travel": 2}
    assert redis_client.type("t:u:a:cnt") == "hash"
    # old minute buckets are pruned on write
    st.apply([StateUpdate("a", "z", "click", "food", 1000.0 + 3 * 3600)])
    assert all(int(f.rsplit("|", 1)[1]) >= (1000 + 2 * 3600) // 60 for f in redis_client.hkeys("t:u:a:cnt"))
    assert st.snapshot("nobody").n_events == 0


def test_engine_on_redis_realtime(redis_url: str, redis_client, tmp_path: Path) -> None:
    ds = synthetic_community(500, n_users=50, n_events=1500, seed=2)
    cfg = builtin_config().with_overrides(api={"token": "redis-test-token"},
                                       online={"backend": "redis", "redis_url": redis_url, "redis_prefix": "e"})
    eng = Engine(ds, cfg, tmp_path)
    assert eng.bus.name == "redis" and eng.state.name == "redis"
    with TestClient(create_app(eng)) as c:
        top = c.get("/v1/feed", params={"user_id": "u3", "n": 5}).json()["items"][0]["note_id"]
        r = c.post("/v1/events", json={"events": [{"user_id": "u3", "note_id": top, "ts": 1, "type": "click"}]},
                   headers={"Authorization": "Bearer redis-test-token"})
        assert r.json()["accepted"] == 1
        assert top not in [x["note_id"] for x in c.get("/v1/feed", params={"user_id": "u3"}).json()["items"]]
        assert c.get("/v1/users/u3").json()["short_seq"] == [top]
    eng.close()
    assert redis_client.xlen("e:events") == 1
    # a second server process sharing the Redis sees the same state without replay
    eng2 = Engine(ds, cfg, tmp_path / "other")
    assert eng2.state.snapshot("u3").short_seq == [top]
    eng2.close()
