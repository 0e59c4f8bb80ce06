"""``notefeed bench serve``'s load phase against a live server on loopback."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from notefeed.serve.app import create_app
from notefeed.serve.bench import TOKEN, _load, free_port
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine


@pytest.fixture()
def live(small_ds, tmp_path: Path):
    """A live uvicorn server on loopback: (base url, user ids)."""
    import uvicorn

    eng = Engine(small_ds, builtin_config().with_overrides(api={"token": TOKEN}), tmp_path / "ws")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(eng), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    try:
        for _ in range(200):
            if srv.started:
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", small_ds.users["user_id"].astype(str).tolist()
    finally:
        srv.should_exit = True
        th.join(timeout=10)
        eng.close()


def test_load_reports_both_pipelines_the_gate_wait_and_the_server_ratio(live) -> None:
    base, users = live
    out = _load(base, users, requests=30, concurrency=2, max_seconds=60)
    for p in ("default", "popular"):
        got = out["pipelines"][p]
        assert got["requests"] == 30 and got["errors"] == 0
        assert {"total", "queue"} <= set(got["server_stages"])  # the gate's wait is reported apart
    assert out["events"]["batches"] >= 1 and out["events"]["errors"] == 0
    for k in ("p99_ratio_full_vs_popular", "p99_ratio_server_total_full_vs_popular"):
        assert math.isfinite(out[k]) and out[k] > 0


def test_open_loop_clock_starts_after_the_clients_are_ready(live, monkeypatch) -> None:
    """Building each thread's HTTP client is not the server's latency: with clients that take
    0.6 s to build, no request of an open-loop run may count that time (the clock used to start
    before the threads built their clients, so the first requests started 0.6 s late)."""
    import httpx

    base, users = live
    real_init = httpx.Client.__init__

    def slow_init(self, *args, **kwargs):
        time.sleep(0.6)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", slow_init)
    out = _load(base, users, requests=10, concurrency=3, max_seconds=60, rate=20.0)
    for p in ("default", "popular"):
        got = out["pipelines"][p]
        assert got["requests"] == 10 and got["errors"] == 0
        assert got["end_to_end"]["p99_ms"] < 500, got["end_to_end"]
