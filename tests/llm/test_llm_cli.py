"""`notefeed llm embed --json`: the training run's figures come from the command itself."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from notefeed.cli import app


def test_embed_writes_phases_and_reuses_the_model(tmp_path):
    r = CliRunner()
    ws = tmp_path / "ws"
    assert r.invoke(app, ["sim", "generate", "--preset", "tiny", "--workspace", str(ws)]).exit_code == 0
    out = tmp_path / "embed.json"
    res = r.invoke(app, ["llm", "embed", "--workspace", str(ws), "--max-time-s", "2", "--json", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads(out.read_text())
    assert set(info["phases"]) == {"load", "train", "embed"}
    assert info["model_info"]["capped"] and info["model_info"]["train_cpu_s"] >= 2.0
    assert info["config"]["max_time_s"] == 2.0 and info["notes"] == 1000
    assert info["total_cpu_s"] >= info["phases"]["train"]["cpu_s"] > 0
    # a second run without --retrain loads the model instead of training it
    res = r.invoke(app, ["llm", "embed", "--workspace", str(ws), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert set(json.loads(out.read_text())["phases"]) == {"load", "load_model", "embed"}
