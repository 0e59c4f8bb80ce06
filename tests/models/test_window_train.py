"""``data.window_days``: ``notefeed train`` trains on, and ``serve`` starts from, the events of
the window (the store keeps them all)."""

from __future__ import annotations

import json

import pandas as pd
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.dataset import Dataset
from notefeed.data.store import Workspace
from notefeed.models import ModelStore
from notefeed.serve.app import create_app
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.versions import engine_from_store
from tests.eval.test_feed import _config, chain_log

DAY = 86_400


def _log_with_an_away_user() -> Dataset:
    """``chain_log`` (one day) and a user whose five clicks were a month before it."""
    base = chain_log()
    ev = base.events.assign(user_id=base.users["user_id"].to_numpy()[base.events["user"]],
                            note_id=base.notes["note_id"].to_numpy()[base.events["item"]])
    t0 = int(ev["ts"].min())
    away = pd.DataFrame({"user_id": "away", "note_id": [f"old{k}" for k in range(5)],
                         "ts": [t0 - 30 * DAY + k for k in range(5)], "type": "click"})
    cols = ["user_id", "note_id", "ts", "type"]
    return Dataset.build("chains+away", pd.concat([ev[cols], away], ignore_index=True))


def test_train_and_serve_read_the_window(tmp_path):
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(_log_with_an_away_user())
    whole = load_workspace_dataset(ws)
    cfg = _config(data={"window_days": 7, "keep_per_user": 3})
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.model_dump(mode="json")))
    out = tmp_path / "train.json"
    r = CliRunner().invoke(app, ["train", "--workspace", str(ws), "--config", str(tmp_path / "cfg.json"),
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    # trained on the window: every chain event, and the away user's 3 newest clicks of 5
    assert json.loads(out.read_text())["data"]["n_events"] == len(whole.events) - 2
    ds = load_workspace_dataset(ws, data=cfg.data)
    assert len(ds.events) == len(whole.events) - 2 and ds.n_items == whole.n_items
    eng = engine_from_store(ds, cfg, ws)
    try:
        assert eng.model_version == ModelStore(ws).promoted() and not eng.served.fallback
        items = [eng.catalog.item_of(f"old{k}") for k in range(5)]
        assert eng.context("away").history.tolist() == items[2:]  # a history though a month away
        pop = eng.catalog.popularity()
        assert pop[items[:2]].tolist() == [0, 0] and (pop[items[2:]] > 0).all()
        _, res = eng.feed("away", 10)
        assert len(res.items) == 10 and not res.errors
        health = TestClient(create_app(eng)).get("/healthz").json()
        assert health["dataset_events"] == len(ds.events) and health["data_window_days"] == 7
    finally:
        eng.close()
