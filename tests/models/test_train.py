"""``notefeed train``: fits what the config names, stores a version, ``serve`` loads it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.store import Workspace
from notefeed.models import ModelStore
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.versions import engine_from_store
from tests.eval.test_feed import _config, chain_log


def test_train_stores_a_version_that_serve_loads(tmp_path):
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(chain_log())
    cfg = _config()
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    out = tmp_path / "train.json"
    r = CliRunner().invoke(app, ["train", "--workspace", str(ws), "--config", str(cfg_file), "--json", str(out)])
    assert r.exit_code == 0, r.output
    store = ModelStore(ws)
    version = store.promoted()
    assert version is not None and f"stored version {version}" in r.output
    rec = json.loads(out.read_text())  # --json: the version, its data and where the time went
    assert rec["version"] == version and rec["data"]["n_events"] > 0 and rec["wall_s"] > 0
    rep = rec["train_report"]
    assert rep["fit_s"] <= rec["wall_s"] and rep["channels_cpu_s"] >= 0 and "recall.channels.0:" in next(
        iter(rep["channel_fit_s"]))
    man = store.manifest(version)
    assert set(man["components"]) == {"recall.channels.0", "coarse", "fine"}
    assert man["metrics"]["fine"]["valid_hr10_in_candidates"] >= 0
    assert man["data"]["n_events"] > 0
    ds = load_workspace_dataset(ws)
    eng = engine_from_store(ds, cfg, ws)
    try:
        assert eng.model_version == version and not eng.served.fallback
        names = [s.name for s in eng.pipelines["default"].steps]
        assert "coarse/ltr" in names and "features/channels" in names
        _, res = eng.feed("u3", 10)
        assert len(res.items) == 10 and not res.errors
    finally:
        eng.close()


def test_learned_config_without_a_version_says_fallback(tmp_path):
    from notefeed.serve.engine import Engine

    eng = Engine(chain_log(), _config(), tmp_path / "ws")
    try:
        reasons = " ".join(eng.served.fallback)
        assert "coarse: rank/ltr not trained" in reasons and "fine: rank/ltr not trained" in reasons
        _, res = eng.feed("u3", 10)  # the built-ins serve meanwhile
        assert len(res.items) == 10
    finally:
        eng.close()


def test_train_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(app, ["train", "--workspace", str(tmp_path)])
    assert r.exit_code == 2 and r.output.startswith("error: --workspace") and len(r.output.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("coarse: {nope: 1}\n")
    r = CliRunner().invoke(app, ["train", "--workspace", str(tmp_path), "--config", str(bad)])
    assert r.exit_code == 2 and "--config" in r.output
