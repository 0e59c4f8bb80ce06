"""`notefeed demo` end to end on the tiny preset: generate, `notefeed train`, serve; afterwards
`notefeed serve` on the same workspace serves the same version with the demo's events and note."""

import json

import yaml
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.models import ModelStore
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.config import ServeConfig, load_config
from notefeed.serve.versions import engine_from_store


def _fast_config(path):
    """The default config with training shortened for a test (same components)."""
    data = ServeConfig().model_dump(mode="json")
    for ch in data["recall"]["channels"]:
        if ch["name"] == "sequence/sasrec":
            ch["params"] = {"epochs": 1, "dim": 16, "max_len": 20, "layers": 1, "heads": 1}
    for stage in ("coarse", "fine"):
        if data[stage]["scorer"] == "rank/ltr":
            data[stage]["params"] = {"epochs": 3, "patience": 1}
    path.write_text(yaml.safe_dump(data))
    return path


def test_demo_trains_serves_and_leaves_a_servable_workspace(tmp_path):
    out = tmp_path / "demo.json"
    ws = tmp_path / "ws"
    cfg_file = _fast_config(tmp_path / "fast.yaml")
    res = CliRunner().invoke(app, ["demo", "--preset", "tiny", "--workspace", str(ws), "--steps", "2",
                                   "--requests", "15", "--config", str(cfg_file), "--rank-users", "120",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    for n in range(1, 7):
        assert f"{n}/6" in res.output  # every step announced
    assert "training on" in res.output and "stored version" in res.output  # `notefeed train`'s lines
    # the coarse ranker's gate decision (kept, or the builtin/popularity formula served) is said
    said = " ".join(res.output.split())
    assert "coarse ranker kept: out-of-fold HR@10" in said or "coarse ranker not kept, the stage serves" in said
    assert "warning: the coarse ranker" not in said  # gated: no warning about its few validation sets
    summary = json.loads(out.read_text())
    version = summary["model_version"]
    assert summary["served_version"] == version and summary["fallback"] == []
    api = summary["api"]
    assert api["clicked_note_left_feed"] is True
    assert api["published_note_in_fresh_pool"] is True
    assert api["follow_recalls_new_note"] is True and api["followed"] == ["demo-new-creator"]
    assert api["removed_note_gone"] is True and api["restored_note_back"] is True
    assert api["edited"] == ["tags", "title"]
    assert api["erased"] == {"events": 1, "searches": 0, "pages": 0, "ad_lines": 0, "relations": 0}
    assert len(api["related"]) == 5
    policies = [r["policy"] for r in summary["closed_loop"]]
    assert policies == ["pipeline", "popular", "random"]
    assert all(r["impressions"] > 0 for r in summary["closed_loop"])
    assert summary["machine_info"]["cpus"] >= 1 and "commit" in summary["machine_info"]
    assert ModelStore(ws).promoted() == version
    assert not (ws / "serving").exists()  # the state lives in the workspace itself

    # what `notefeed serve --workspace ws --config fast.yaml` does at start-up
    engine = engine_from_store(load_workspace_dataset(ws), load_config(cfg_file), ws)
    try:
        assert engine.model_version == version and not engine.served.fallback
        assert engine.replayed >= 1  # the demo's click, from the workspace's event log
        i = engine.catalog.item_of("demo-new-note")
        assert i is not None and i in engine.catalog.fresh
        _, res_feed = engine.feed("brand-new-user", 10)
        assert len(res_feed.items) == 10 and not res_feed.errors
    finally:
        engine.close()


def test_demo_rejects_a_bad_config_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("coarse: {nope: 1}\n")
    res = CliRunner().invoke(app, ["demo", "--preset", "tiny", "--workspace", str(tmp_path / "ws"),
                                   "--config", str(bad)])
    assert res.exit_code == 2 and "--config" in res.output
    assert not (tmp_path / "ws" / "notefeed.duckdb").exists()
