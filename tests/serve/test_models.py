"""Model directories and hot swap under concurrent requests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from notefeed.serve.engine import Engine
from notefeed.serve.models import FEATURES, LinearModel, ModelError, ModelHolder, ModelVersion, load_model_dir

from .conftest import AUTH


def _model(seed: int) -> LinearModel:
    base = LinearModel.default()
    rng = np.random.default_rng(seed)
    return LinearModel(base.tasks, (base.weights + rng.normal(0, 0.5, base.weights.shape)).astype(np.float32))


def test_roundtrip(tmp_path: Path) -> None:
    m = _model(1)
    m.save(tmp_path / "m", version="v7")
    version, loaded = load_model_dir(tmp_path / "m")
    assert version == "v7" and loaded.tasks == m.tasks
    np.testing.assert_array_equal(loaded.weights, m.weights)
    x = np.random.default_rng(0).random((4, len(FEATURES))).astype(np.float32)
    assert set(loaded.predict(x)) == set(m.tasks)


def test_bad_model_dirs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing model.json"):
        load_model_dir(tmp_path)
    d = _model(2).save(tmp_path / "m", "v1")
    (d / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="corrupt"):
        load_model_dir(d)
    (d / "model.json").write_text("{nope")
    with pytest.raises(ModelError, match="not JSON"):
        load_model_dir(d)
    d2 = _model(2).save(tmp_path / "m2", "v1")
    (d2 / "model.json").write_text('{"kind": "builtin/linear", "version": "x", "features": ["a"]}')
    with pytest.raises(ModelError, match="features"):
        load_model_dir(d2)
    (d2 / "model.json").write_text('{"kind": "no/such", "version": "x"}')
    with pytest.raises(ModelError, match="kind"):
        load_model_dir(d2)
    with pytest.raises(ModelError, match="shape"):
        LinearModel(("click",), np.zeros((2, 3), np.float32))


def test_failed_reload_keeps_old_version(tmp_path: Path) -> None:
    h = ModelHolder(ModelVersion("v0", LinearModel.default(), 0.0))
    with pytest.raises(ModelError):
        h.reload(tmp_path / "missing").result()
    assert h.current().version == "v0" and "missing" in (h.last_error or "")


def test_hot_swap_under_concurrent_requests(client: TestClient, engine: Engine, tmp_path: Path) -> None:
    dirs = [_model(i).save(tmp_path / f"m{i}", version=f"v{i}") for i in range(1, 4)]
    slow_loader_calls = []

    real_loader = engine.models._loader

    def slow_loader(path):  # loading takes a while: requests keep flowing meanwhile
        slow_loader_calls.append(path)
        time.sleep(0.05)
        return real_loader(path)

    engine.models._loader = slow_loader
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def hammer(uid: str) -> None:
        while not stop.is_set():
            r = client.get("/v1/feed", params={"user_id": uid, "n": 10, "explain": True})
            if r.status_code != 200 or r.json()["degraded"] or len(r.json()["items"]) != 10:
                failures.append(f"{r.status_code} {r.text[:200]}")
            else:
                versions.append(r.json()["model_version"])

    threads = [threading.Thread(target=hammer, args=(f"u{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for d in dirs:
            r = client.post("/v1/admin/models/reload", json={"path": str(d), "wait": True}, headers=AUTH)
            assert r.status_code == 200, r.text
            time.sleep(0.05)
        r = client.post("/v1/admin/models/reload", json={"path": str(tmp_path / "nope")}, headers=AUTH)
        assert r.status_code == 202
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert len(versions) > 10 and "v3" in versions
    assert len(slow_loader_calls) == 4
    assert engine.models.current().version == "v3"
    r = client.post("/v1/admin/models/reload", json={"path": str(tmp_path / "nope"), "wait": True}, headers=AUTH)
    assert r.status_code == 422 and engine.models.current().version == "v3"


def test_request_keeps_its_version_across_a_swap(engine: Engine, tmp_path: Path) -> None:
    """A request that started before a swap scores with the version it started with."""
    d = _model(9).save(tmp_path / "m9", version="v9")
    ctx = engine.context("u1")
    old = ctx.model
    engine.models.reload(d).result()
    assert engine.models.current().version == "v9" and ctx.model is old
    res = engine.pipelines["default"].run(ctx, 5)
    assert not res.errors and ctx.model.version == "builtin-default"


class FakeFine:
    """A rank-stage scorer kind that loads from the rank checkpoint layout."""

    name = "test/fake-fine"
    n_items = 2000  # fitted catalogue: later items get the neutral median

    def __init__(self, bias: float = 0.0) -> None:
        self.bias = bias

    @classmethod
    def load(cls, path) -> FakeFine:
        import json

        return cls(json.loads((Path(path) / "config.json").read_text())["config"]["bias"])

    def score(self, ctx, items: np.ndarray) -> dict[str, np.ndarray]:
        return {"click": (items % 7 / 7.0 + self.bias).astype(np.float32)}


def test_swap_to_rank_stage_checkpoint(engine: Engine, tmp_path: Path) -> None:
    import json

    from notefeed.rank.base import SCORERS

    if FakeFine.name not in SCORERS:
        SCORERS.register(FakeFine.name)(FakeFine)
    d = tmp_path / "fine-2026-01"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"kind": "test/fake-fine", "version": 1, "config": {"bias": 0.5}}))
    mv = engine.models.reload(d).result()
    assert mv.version == "fine-2026-01"
    ctx, res = engine.feed("u1", 50)
    assert not res.errors
    click = res.candidates.columns["fine.click"]
    np.testing.assert_allclose(click, res.items % 7 / 7.0 + 0.5, rtol=1e-6)
    (d / "config.json").write_text("{broken")
    with pytest.raises(ModelError, match="config.json"):
        engine.models.reload(d).result()


def test_loaded_model_must_score(engine: Engine, tmp_path: Path) -> None:
    import json

    from notefeed.rank.base import SCORERS

    class NoScore:
        name = "test/no-score"
        kind = "no_score_ckpt"

        @classmethod
        def load(cls, path) -> NoScore:
            return cls()

    if NoScore.name not in SCORERS:
        SCORERS.register(NoScore.name)(NoScore)
    d = tmp_path / "ns"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"kind": "no_score_ckpt", "config": {}}))
    with pytest.raises(ModelError, match="no score"):
        engine.models.reload(d).result()
    assert engine.models.current().version == "builtin-default"
