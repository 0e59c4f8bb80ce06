"""`notefeed demo` end to end on the tiny preset: every step runs and its checks hold."""

import json

from typer.testing import CliRunner

from notefeed.cli import app


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo.json"
    res = CliRunner().invoke(app, ["demo", "--preset", "tiny", "--workspace", str(tmp_path / "ws"),
                                   "--steps", "3", "--requests", "20", "--fine", "none", "--json", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads(out.read_text())
    api = summary["api"]
    assert api["clicked_note_left_feed"] is True
    assert api["published_note_in_fresh_pool"] is True
    policies = [r["policy"] for r in summary["closed_loop"]]
    assert policies == ["pipeline", "popular", "random"]
    assert all(r["impressions"] > 0 for r in summary["closed_loop"])
    assert (tmp_path / "ws" / "notefeed.duckdb").exists()
