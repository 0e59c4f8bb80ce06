"""``api.feed_concurrency``: how many feed pipelines one server process runs at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from notefeed.serve.app import create_app
from notefeed.serve.engine import Engine

from .conftest import make_config


@pytest.mark.parametrize("limit", [1, 0])
def test_feed_pipelines_at_once(small_ds, tmp_path: Path, limit: int) -> None:
    eng = Engine(small_ds, make_config(api={"feed_concurrency": limit}), tmp_path / "ws")
    inner, mu, active, peak = eng.feed, threading.Lock(), [0], [0]

    def feed(*a, **k):  # the pipeline, held open long enough for the requests to overlap
        with mu:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        try:
            return inner(*a, **k)
        finally:
            with mu:
                active[0] -= 1

    eng.feed = feed  # type: ignore[method-assign]
    timings: list[str] = []
    try:
        with TestClient(create_app(eng)) as c:
            def get(i: int) -> None:
                r = c.get("/v1/feed", params={"user_id": f"u{i}", "n": 5})
                assert r.status_code == 200 and len(r.json()["items"]) == 5
                timings.append(r.headers["server-timing"])

            ts = [threading.Thread(target=get, args=(i,)) for i in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
    finally:
        eng.close()
    assert len(timings) == 4
    queued = [float(h.split("queue;dur=")[1].split(",")[0]) for h in timings]
    if limit == 1:
        assert peak[0] == 1
        assert max(queued) >= 40  # the last one waited for the others' 50 ms pipelines
    else:
        assert peak[0] > 1 and max(queued) == 0


def test_feed_concurrency_is_validated() -> None:
    from notefeed.serve.config import ConfigError, builtin_config

    with pytest.raises((ConfigError, ValueError), match="feed_concurrency"):
        builtin_config().with_overrides(api={"feed_concurrency": -1})


def test_queued_pages_hold_no_worker_thread(small_ds, tmp_path: Path) -> None:
    """With two worker threads in all and five slow pages queued, /healthz still answers at
    once: a page waiting for its turn does not hold a thread."""
    import anyio.to_thread

    eng = Engine(small_ds, make_config(api={"feed_concurrency": 1}), tmp_path / "ws")
    inner = eng.feed

    def slow_feed(*a, **k):
        time.sleep(0.25)
        return inner(*a, **k)

    eng.feed = slow_feed  # type: ignore[method-assign]
    try:
        with TestClient(create_app(eng)) as c:
            async def two_threads() -> None:
                anyio.to_thread.current_default_thread_limiter().total_tokens = 2

            c.portal.call(two_threads)  # type: ignore[union-attr]
            ts = [threading.Thread(target=c.get, args=("/v1/feed",), kwargs={"params": {"user_id": f"u{i}", "n": 3}})
                  for i in range(5)]
            for t in ts:
                t.start()
            time.sleep(0.1)  # the first page is being built, four wait
            t0 = time.perf_counter()
            assert c.get("/healthz").status_code == 200
            health_s = time.perf_counter() - t0
            for t in ts:
                t.join()
    finally:
        eng.close()
    assert health_s < 0.5, health_s  # not behind the 4 x 0.25 s of queued pages (about 1 s)
