import json

from typer.testing import CliRunner

from notefeed.cli import app

runner = CliRunner()


def test_sim_run_prints_table_and_json(tmp_path):
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["sim", "run", "--preset", "tiny", "--policy", "random,popular", "--steps", "3",
                              "--requests", "20", "--seed", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "small_creator_share" in res.output and "popular" in res.output
    data = json.loads(out.read_text())
    assert [r["policy"] for r in data["results"]] == ["random", "popular"]
    assert len(data["results"][0]["series"]) == 3


def test_sim_run_unknown_policy():
    res = runner.invoke(app, ["sim", "run", "--policy", "random,bogus", "--steps", "1"])
    assert res.exit_code != 0
    assert "bogus" in res.output


def test_sim_generate_into_workspace(tmp_path):
    res = runner.invoke(app, ["sim", "generate", "--preset", "tiny", "--workspace", str(tmp_path / "ws")])
    assert res.exit_code == 0, res.output
    from notefeed.data.store import Workspace

    with Workspace.open(tmp_path / "ws", create=False) as ws:
        ds = ws.load_dataset()
    assert ds.n_items == 1000 and ds.n_users == 300
    assert set(ds.events["type"].astype(str).unique()) >= {"impression", "click", "like", "hide"}
