"""``notefeed bench serve``'s load phase against a live server on loopback."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from notefeed.serve.app import create_app
from notefeed.serve.bench import TOKEN, _load, free_port
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine


def test_load_reports_both_pipelines_the_gate_wait_and_the_server_ratio(small_ds, tmp_path: Path) -> None:
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
        users = small_ds.users["user_id"].astype(str).tolist()
        out = _load(f"http://127.0.0.1:{port}", users, requests=30, concurrency=2, max_seconds=60)
    finally:
        srv.should_exit = True
        th.join(timeout=10)
        eng.close()
    for p in ("default", "popular"):
        got = out["pipelines"][p]
        assert got["requests"] == 30 and got["errors"] == 0
        assert {"total", "queue"} <= set(got["server_stages"])  # the gate's wait is reported apart
    assert out["events"]["batches"] >= 1 and out["events"]["errors"] == 0
    for k in ("p99_ratio_full_vs_popular", "p99_ratio_server_total_full_vs_popular"):
        assert math.isfinite(out[k]) and out[k] > 0
