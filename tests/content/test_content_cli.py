from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from notefeed.content import cli


def _app() -> typer.Typer:
    app, bench = typer.Typer(), typer.Typer()
    app.add_typer(bench, name="bench")
    cli.register(app, bench)
    return app


def test_train_then_similar_for_a_new_note(tmp_path):
    app = _app()
    r = CliRunner().invoke(app, ["content", "train", "--dataset", "synthetic", "--out", str(tmp_path / "m"),
                                 "--dim", "16", "--epochs", "1", "--quick"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["content", "similar", str(tmp_path / "m"), "--text", "w3_1 w3_2 w3_5 love", "--k", "3"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert len(out["neighbours"]) == 3 and out["tags"][0][0] == "topic3"
