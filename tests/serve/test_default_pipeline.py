"""The shipped default config with the real stage components (recall channels, SSD)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from notefeed.schema import Note
from notefeed.serve.app import create_app
from notefeed.serve.config import ServeConfig
from notefeed.serve.engine import Engine

from .conftest import AUTH, TOKEN


def test_default_config_serves_with_real_components(small_ds, tmp_path: Path) -> None:
    cfg = ServeConfig().with_overrides(api={"token": TOKEN})
    eng = Engine(small_ds, cfg, tmp_path)
    names = [s.name for s in eng.pipelines["default"].steps]
    assert "item-to-item/swing" in names and "rerank/ssd" in names
    with TestClient(create_app(eng)) as c:
        for uid in ("u1", "u2", "brand-new"):
            body = c.get("/v1/feed", params={"user_id": uid, "n": 10, "explain": True}).json()
            assert len(body["items"]) == 10 and not body["degraded"], body["trace"]["errors"]
            authors = [x["author_id"] for x in body["items"]]
            assert len(set(authors)) == 10  # rules: one note per creator in 10 slots
        top = body["items"][0]["note_id"]
        c.post("/v1/events", json={"events": [{"user_id": "brand-new", "note_id": top, "ts": 1,
                                               "type": "like"}]}, headers=AUTH)
        tr = c.get("/v1/feed", params={"user_id": "brand-new", "n": 10, "explain": True}).json()["trace"]
        assert top not in [x["note_id"] for x in tr["items"]]
        # the like is now history: the item-to-item channel answers for this brand-new user
        swing = next(s for s in tr["stages"] if s["name"] == "item-to-item/swing")
        assert swing["n_out"] > 0 and swing.get("error") is None
    eng.close()


def test_rank_stage_fine_ranker_trained_and_hot_swapped(small_ds, tmp_path: Path) -> None:
    """fine.scorer rank/cgc trains at start-up; its checkpoint hot-swaps in via the API."""
    from .conftest import make_config

    cfg = make_config(fine={"scorer": "rank/cgc", "params": {"epochs": 1}})
    eng = Engine(small_ds, cfg, tmp_path / "a")
    assert eng.models.current().version == "rank/cgc@start"
    ctx, res = eng.feed("u1", 10)
    assert not res.errors and len(res.items) == 10
    assert {"fine.click", "fine.dwell"} <= set(res.candidates.columns)
    ckpt = eng.models.current().model.inner.ranker.save(tmp_path / "cgc-v2")
    eng.publish(Note(note_id="late", author_id="z"))  # past the ranker's catalogue: neutral score
    with TestClient(create_app(eng)) as c:
        r = c.post("/v1/admin/models/reload", json={"path": str(ckpt), "wait": True}, headers=AUTH)
        assert r.status_code == 200 and r.json()["version"] == "cgc-v2"
        body = c.get("/v1/feed", params={"user_id": "u2", "n": 10, "explain": True}).json()
        assert not body["degraded"] and body["model_version"] == "cgc-v2"
    eng.close()
