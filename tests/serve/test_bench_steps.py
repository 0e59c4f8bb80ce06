"""``notefeed bench steps``: the served pipeline's time per step, in process."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.store import Workspace
from notefeed.serve.synth import synthetic_community


def test_bench_steps_times_every_step_of_the_served_pipeline(tmp_path):
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(synthetic_community(300, n_users=40, n_events=2000, seed=2))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({
        "recall": {"channels": [{"name": "item-to-item/swing", "quota": 50},
                                {"name": "non-personalized/popular", "quota": 50}]},
        "coarse": {"scorer": "builtin/popularity", "keep": 40}, "fine": {"scorer": "builtin/linear"},
        "coldstart": {"enabled": False}}))
    out = tmp_path / "steps.json"
    r = CliRunner().invoke(app, ["bench", "steps", "--workspace", str(ws), "--config", str(cfg), "--users", "15",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["users"] == 15 and doc["model_version"] is None and doc["fallback"]  # no trained version
    steps = doc["steps"]
    assert {"source:item-to-item/swing", "source:non-personalized/popular", "filter:builtin/seen"} <= set(steps)
    assert all(s["n"] == 15 for s in steps.values())
    assert doc["total"]["p99_ms"] >= doc["total"]["median_ms"] > 0
    p99 = [s["p99_ms"] for s in steps.values()]
    assert p99 == sorted(p99, reverse=True)  # slowest step first


def test_bench_steps_flags_are_one_line_errors(tmp_path):
    r = CliRunner().invoke(app, ["bench", "steps", "--workspace", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "--workspace" in r.output
