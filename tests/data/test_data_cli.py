"""``notefeed data import`` / ``notefeed data stats`` end to end on tiny folders."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from notefeed.cli import app

runner = CliRunner()
TAOBAO = "1,10,5,pv,1511544070\n1,11,5,buy,1511544080\n2,10,6,fav,1511630470\n"


def test_import_dataset_then_stats_json(tmp_path):
    src = tmp_path / "tb"
    src.mkdir()
    (src / "UserBehavior.csv").write_text(TAOBAO)
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["data", "import", "--dataset", "taobao", "--path", str(src), "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    assert "events 3" in res.output
    out = tmp_path / "stats.json"
    res = runner.invoke(app, ["data", "stats", "--workspace", str(ws), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "sparsity" in res.output and "events: collect" in res.output
    stats = json.loads(out.read_text())
    assert (stats["users"], stats["notes"], stats["events"]) == (2, 2, 3)
    assert stats["events_by_type"] == {"click": 1, "collect": 1, "share": 1}
    assert stats["span_days"] == 1.0
    # what a data window would read: half a day holds only user 2's event (a day later than
    # user 1's two); keep_per_user 1 adds user 1's newest
    res = runner.invoke(app, ["data", "stats", "--workspace", str(ws), "--window-days", "0.5", "--keep-per-user",
                              "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "serve and train would read 2 of 3 events" in " ".join(res.output.split())
    assert json.loads(out.read_text())["window"] == {"window_days": 0.5, "keep_per_user": 1, "events_read": 2}
    res = runner.invoke(app, ["data", "stats", "--workspace", str(ws), "--window-days", "-1"])
    assert res.exit_code == 2 and "--window-days" in res.output
    # the same figures straight from the folder
    res = runner.invoke(app, ["data", "stats", "--dataset", "taobao", "--path", str(src), "--json", str(out)])
    assert res.exit_code == 0 and json.loads(out.read_text())["events"] == 3


def test_import_csv_strict_and_skip_bad(tmp_path):
    src = tmp_path / "mine"
    src.mkdir()
    (src / "events.csv").write_text("user_id,note_id,ts,type\nu1,n1,1,click\nu2,n1,oops,click\n")
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["data", "import", "--csv", str(src), "--workspace", str(ws)])
    assert res.exit_code == 1
    assert "events.csv:3: ts: expected an integer" in res.output.replace("\n", "")
    res = runner.invoke(app, ["data", "import", "--csv", str(src), "--workspace", str(ws), "--skip-bad"])
    assert res.exit_code == 0, res.output
    assert "1 bad row(s) skipped" in res.output and "events 1" in res.output


def test_usage_errors(tmp_path):
    res = runner.invoke(app, ["data", "stats"])
    assert res.exit_code == 1 and "exactly one of" in res.output
    res = runner.invoke(app, ["data", "stats", "--dataset", "beauty", "--path", str(tmp_path)])
    assert res.exit_code == 1 and "Beauty.txt" in res.output
    res = runner.invoke(app, ["data", "stats", "--dataset", "nope"])
    assert res.exit_code == 1 and "unknown dataset loader" in res.output
