"""``notefeed eval`` end to end on a synthetic dataset registered as a loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.eval.report import write_report
from notefeed.eval.stages import EVAL_STAGES, run_stage

runner = CliRunner()


def test_cli_json_and_report(synth_loader: str, tmp_path: Path) -> None:
    out = tmp_path / "res.json"
    rep = tmp_path / "rep"
    res = runner.invoke(
        app,
        ["eval", "--dataset", synth_loader, "--models", "pop,itemknn", "--k", "5,10",
         "--split", "temporal", "--quick", "--json", str(out), "--report", str(rep)],
    )
    assert res.exit_code == 0, res.output
    assert "itemknn" in res.output and "NDCG@5" in res.output
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert doc["stage"] == "model"
    assert set(doc["meta"]) >= {"machine_info", "split", "k", "seed"}
    assert doc["meta"]["split"] == "temporal" and doc["meta"]["k"] == [5, 10]
    assert [r["model"] for r in doc["rows"]] == ["pop", "itemknn"]
    for r in doc["rows"]:
        assert r["dataset"] == synth_loader and r["split"] == "temporal"
        for key in ("recall@5", "ndcg@10", "hit@10", "mrr@5", "coverage@10", "novelty@5", "fit_s"):
            assert isinstance(r[key], float), key
        assert 0.0 <= r["ndcg@10"] <= 1.0
    page = (rep / "index.html").read_text()
    pngs = sorted(p.name for p in rep.glob("*.png"))
    assert len(pngs) >= 4 and all((rep / p).stat().st_size > 1000 for p in pngs)
    assert all(p in page for p in pngs) and "itemknn" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "pop,nosuch"], "unknown model(s) nosuch"),
        (["--k", "0"], "--k: cut-offs must be positive"),
        (["--k", "ten"], "not an integer"),
        (["--split", "weird"], "unknown kind 'weird'"),
        (["--stage", "nosuch"], "unknown eval stage 'nosuch'"),
        (["--models", "pop", "--param", "pop"], "expected MODEL.KEY=VALUE"),
        (["--models", "pop", "--param", "bpr.factors=8"], "not being evaluated"),
        (["--models", "pop", "--param", "pop.nosuch=1"], "model pop: bad parameter(s) ['nosuch']"),
    ],
)
def test_cli_bad_input(synth_loader: str, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["eval", "--dataset", synth_loader, "--quick", *args])
    assert res.exit_code == 2
    assert message in res.output


def test_cli_unknown_dataset() -> None:
    res = runner.invoke(app, ["eval", "--dataset", "no-such-data", "--models", "pop"])
    assert res.exit_code == 2
    assert "unknown dataset loader 'no-such-data'" in res.output


def test_run_stage_rejects_undeclared_options(tmp_path: Path) -> None:
    name = "eval-test-plain"
    if name not in EVAL_STAGES:
        EVAL_STAGES.register(name)(lambda d, m, s, q, r: [{"dataset": x, "score": 1.0} for x in d])
    assert run_stage(name, ["a"], None, 0, True, None) == [{"dataset": "a", "score": 1.0}]
    with pytest.raises(ValueError, match="does not take option"):
        run_stage(name, ["a"], None, 0, True, None, split="loo")
    # the CLI writes a table-only page for a stage that draws no figures
    res = runner.invoke(app, ["eval", "--dataset", "a,b", "--stage", name, "--report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "score" in (tmp_path / "index.html").read_text()


def test_write_report_inputs(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = tmp_path / "given.png"
    fig.savefig(png)
    plt.close(fig)

    def make() -> plt.Figure:
        f, a = plt.subplots()
        a.bar([0], [1])
        return f

    path = write_report(tmp_path / "r", "t <&>", [{"a": 1.0, "b": "x<y"}], {"made": make, "given": png}, meta={"seed": 0})
    text = path.read_text()
    assert (tmp_path / "r" / "made.png").exists() and (tmp_path / "r" / "given.png").exists()
    assert "t &lt;&amp;&gt;" in text and "x&lt;y" in text
    with pytest.raises(FileNotFoundError, match="no PNG"):
        write_report(tmp_path / "r2", "t", [], {"missing": tmp_path / "nope.png"})
    with pytest.raises(TypeError, match="not a Figure"):
        write_report(tmp_path / "r3", "t", [], {"bad": lambda: 3})


def test_cli_model_params_reach_the_factory(synth_loader: str, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    res = runner.invoke(
        app,
        ["eval", "--dataset", synth_loader, "--models", "itemknn", "--k", "5", "--quick",
         "--param", "itemknn.neighbors=3", "--param", "itemknn.shrink=0", "--json", str(out)],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["rows"][0]["params"] == {"neighbors": 3, "shrink": 0}
    assert doc["meta"]["params"] == {"itemknn": {"neighbors": 3, "shrink": 0}}


def test_cli_json_has_no_bare_nan(tmp_path: Path) -> None:
    name = "eval-test-nan"
    if name not in EVAL_STAGES:
        EVAL_STAGES.register(name)(lambda d, m, s, q, r: [{"dataset": d[0], "auc": float("nan"), "n": [float("inf")]}])
    out = tmp_path / "n.json"
    res = runner.invoke(app, ["eval", "--dataset", "a", "--stage", name, "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert doc["rows"] == [{"dataset": "a", "auc": None, "n": [None]}]


def test_cli_path_reads_a_sequence_file(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    lines = [" ".join([f"user{u}", *(f"i{j}" for j in rng.choice(60, 12, replace=False))]) for u in range(80)]
    log = tmp_path / "log.txt"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "res.json"
    res = runner.invoke(app, ["eval", "--path", str(log), "--models", "pop,itemknn", "--quick", "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["meta"]["datasets"] == ["seqfile"] and doc["meta"]["path"] == str(log)
    assert [r["model"] for r in doc["rows"]] == ["pop", "itemknn"]
    assert all(r["dataset"] == "seqfile" and r["test_users"] == 80 for r in doc["rows"])
    res = runner.invoke(app, ["eval", "--dataset", "seqfile,beauty", "--path", str(log), "--quick"])
    assert res.exit_code == 2 and "--path: reads one dataset" in res.output
