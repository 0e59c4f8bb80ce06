"""``notefeed models list | promote | rollback``."""

from __future__ import annotations

from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.models import ModelStore


def _run(*args: str):
    return CliRunner().invoke(app, ["models", *args], env={"COLUMNS": "200"})


def test_list_promote_rollback(tmp_path, components):
    ws = str(tmp_path)
    r = _run("list", "--workspace", ws)
    assert r.exit_code == 0 and "no model versions" in r.output
    store = ModelStore(tmp_path)
    comp = {"recall.channels.1": components["recall.channels.1"]}
    a = store.save(comp, {"data": {"n_events": 1234}, "metrics": {"recall.channels.1": {"recall@50": 0.31}}})
    b = store.save(comp)
    r = _run("promote", a, "--workspace", ws)
    assert r.exit_code == 0 and f"promoted {a}" in r.output
    r = _run("promote", b, "--workspace", ws)
    assert r.exit_code == 0 and f"(was {a})" in r.output
    r = _run("list", "--workspace", ws)
    assert r.exit_code == 0, r.output
    assert a in r.output and b in r.output and "1,234" in r.output and "recall@50=0.31" in r.output
    star = next(line for line in r.output.splitlines() if b in line)
    assert "*" in star
    r = _run("rollback", "--workspace", ws)
    assert r.exit_code == 0 and f"rolled back to {a}" in r.output
    assert store.promoted() == a


def test_errors_are_one_line(tmp_path, components):
    r = _run("promote", "nope", "--workspace", str(tmp_path))
    assert r.exit_code == 2 and r.output.strip().startswith("error: VERSION:") and len(r.output.strip().splitlines()) == 1
    r = _run("rollback", "--workspace", str(tmp_path))
    assert r.exit_code == 2 and "nothing to roll back" in r.output
    r = _run("list", "--workspace", str(tmp_path / "missing"))
    assert r.exit_code == 2 and "--workspace" in r.output
    v = ModelStore(tmp_path).save({"recall.channels.1": components["recall.channels.1"]})
    (tmp_path / "models" / v / "manifest.json").write_text("{")
    r = _run("list", "--workspace", str(tmp_path))
    assert r.exit_code == 2 and "manifest.json" in r.output and "Traceback" not in r.output
