"""Closed-loop comparison of serving configs over seeds: intervals, paired differences, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.serve.config import ServeConfig, builtin_config
from notefeed.sim.compare import PolicySpec, compare_policies, mean_interval, paired_differences
from notefeed.sim.policies import make_policy


def test_mean_interval_is_student_t():
    r = mean_interval([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.3027; sd = 1; half = 4.3027 / sqrt(3)
    assert r["mean"] == pytest.approx(2.0) and r["half"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert r["lo"] < 2.0 < r["hi"] and r["n"] == 3
    one = mean_interval([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["half"])
    assert mean_interval([1.0, float("nan"), 3.0])["n"] == 2  # NaN runs are left out


def test_paired_differences_remove_the_shared_seed_effect():
    a = [{"ctr": 0.10}, {"ctr": 0.20}, {"ctr": 0.30}]
    b = [{"ctr": 0.11}, {"ctr": 0.21}, {"ctr": 0.31}]
    d = paired_differences(a, b)["ctr"]
    assert d["mean"] == pytest.approx(0.01) and d["half"] == pytest.approx(0.0, abs=1e-9)
    # unpaired, the same data would give an interval far wider than the difference
    assert mean_interval([r["ctr"] for r in b])["half"] > 0.1


def test_compare_policies_runs_every_policy_on_every_seed():
    specs = [PolicySpec(n, lambda s, _h, n=n: make_policy(n, seed=s)) for n in ("random", "popular")]
    out = compare_policies("tiny", specs, [0, 1], steps=2, requests_per_step=10)
    assert out["seeds"] == [0, 1]
    assert [(r["policy"], r["seed"]) for r in out["results"]] == [("random", 0), ("popular", 0),
                                                                  ("random", 1), ("popular", 1)]
    ctr = out["policies"][1]["summary"]["ctr"]
    assert ctr["n"] == 2 and ctr["values"] == [r["ctr"] for r in out["results"] if r["policy"] == "popular"]
    diff = out["differences"][0]
    assert diff["a"] == "random" and diff["b"] == "popular"
    assert diff["metrics"]["ctr"]["mean"] == pytest.approx(ctr["mean"] - out["policies"][0]["summary"]["ctr"]["mean"])
    with pytest.raises(ValueError):
        compare_policies("tiny", [specs[0], specs[0]], [0], steps=1)


def _write(path, cfg: ServeConfig):
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def test_sim_run_compares_two_serving_configs_over_seeds(tmp_path, monkeypatch):
    import notefeed.models.train as train_mod

    calls = []
    real = train_mod.train_components

    def counting(config, ds, *args, **kwargs):
        calls.append((config.fine.scorer, ds.name))
        return real(config, ds, *args, **kwargs)

    monkeypatch.setattr(train_mod, "train_components", counting)
    chans = [{"name": "fresh/recent", "quota": 20}, {"name": "item-to-item/swing", "quota": 100},
             {"name": "non-personalized/popular", "quota": 100}]
    a = _write(tmp_path / "heuristic.yaml", builtin_config().with_overrides(recall={"channels": chans}))
    b = _write(tmp_path / "learned.yaml", builtin_config().with_overrides(
        recall={"channels": chans}, fine={"scorer": "rank/ltr", "params": {"epochs": 2, "patience": 1}}))
    out = tmp_path / "cmp.json"
    res = CliRunner().invoke(app, ["sim", "run", "--preset", "tiny", "--config", f"{a},{b}", "--seeds", "0,1",
                                   "--steps", "2", "--requests", "10", "--new-notes", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "learned - heuristic" in res.output
    # both configs trained on each seed's logged history, with the code `notefeed train` runs
    assert sorted(calls) == [("builtin/linear", "sim-tiny")] * 2 + [("rank/ltr", "sim-tiny")] * 2
    data = json.loads(out.read_text())
    assert data["seeds"] == [0, 1]
    assert [p["name"] for p in data["policies"]] == ["heuristic", "learned"]
    assert [p["source"] for p in data["policies"]] == [str(a), str(b)]
    ctr = data["differences"][0]["metrics"]["ctr"]
    assert ctr["n"] == 2 and np.isfinite(ctr["lo"]) and ctr["lo"] <= ctr["mean"] <= ctr["hi"]
    assert all(r["impressions"] > 0 for r in data["results"]) and len(data["results"]) == 4


def test_sim_run_config_errors_name_the_flag(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fine: {nope: 1}\n")
    res = CliRunner().invoke(app, ["sim", "run", "--config", str(bad), "--steps", "1"])
    assert res.exit_code == 2 and "--config" in res.output
    res = CliRunner().invoke(app, ["sim", "run", "--policy", "random", "--seeds", "0,x", "--steps", "1"])
    assert res.exit_code == 2 and "--seeds" in res.output


def test_registered_pipeline_policies_train_before_serving(tmp_path):
    from notefeed.serve.simpolicy import EnginePolicy
    from notefeed.sim import SimEnvironment, generate

    assert make_policy("pipeline").train and make_policy("pipeline-nocoldstart").train
    assert not make_policy("pipeline-popular").train
    chans = [{"name": "fresh/recent", "quota": 20}, {"name": "item-to-item/swing", "quota": 100},
             {"name": "non-personalized/popular", "quota": 100}]
    cfg = builtin_config().with_overrides(recall={"channels": chans},
                                          fine={"scorer": "rank/ltr", "params": {"epochs": 2, "patience": 1}})
    comm = generate("tiny", seed=0)
    env = SimEnvironment(comm, seed=0, dataset=comm.history())
    untrained = EnginePolicy(config=cfg, workspace=tmp_path / "a")
    trained = EnginePolicy(config=cfg, workspace=tmp_path / "b", train=True)
    try:
        for p in (untrained, trained):
            assert len(p.recommend(env, 0, 10)) == 10
        assert any("rank/ltr not trained" in r for r in untrained.engine.served.fallback)
        assert trained.engine.served.fallback == () and "fine" in trained.engine.fitted
    finally:
        untrained.close()
        trained.close()


def test_parse_pairs_and_aggregate_runs_take_the_named_differences():
    from notefeed.sim.compare import aggregate_runs, parse_pairs

    names = ["a", "b", "c"]
    assert parse_pairs(None, names) is None and parse_pairs(" ", names) is None
    assert parse_pairs("a:b, b:c", names) == [("a", "b"), ("b", "c")]
    for bad in ("a", "a:b:c", "a:x", "a:a", ":b"):
        with pytest.raises(ValueError):
            parse_pairs(bad, names)
    runs = {"a": [{"ctr": 0.1, "seed": 0}, {"ctr": 0.3, "seed": 1}],
            "b": [{"ctr": 0.2, "seed": 0}, {"ctr": 0.5, "seed": 1}],
            "c": [{"ctr": 0.4, "seed": 0}, {"ctr": 0.6, "seed": 1}]}
    out = aggregate_runs(runs, [0, 1])  # default: the first arm against each other one
    assert [(d["a"], d["b"]) for d in out["differences"]] == [("a", "b"), ("a", "c")]
    out = aggregate_runs(runs, [0, 1], pairs=[("b", "c")])
    (d,) = out["differences"]
    assert (d["a"], d["b"]) == ("b", "c") and d["metrics"]["ctr"]["values"] == pytest.approx([0.2, 0.1])
    assert d["metrics"]["ctr"]["mean"] == pytest.approx(0.15) and "seed" not in d["metrics"]
    assert d["relative"]["ctr"]["values"] == pytest.approx([1.0, 0.2])  # 0.4 / 0.2 - 1, 0.6 / 0.5 - 1
    assert [p["summary"]["ctr"]["mean"] for p in out["policies"]] == pytest.approx([0.2, 0.35, 0.5])
    with pytest.raises(ValueError):
        aggregate_runs(runs, [0, 1], pairs=[("a", "x")])
    with pytest.raises(ValueError):
        aggregate_runs(runs, [0, 1, 2])


def test_sim_run_pairs_report_the_named_differences(tmp_path):
    out = tmp_path / "pairs.json"
    res = CliRunner().invoke(app, ["sim", "run", "--preset", "tiny", "--policy", "random,popular,oracle",
                                   "--seeds", "0,1", "--steps", "2", "--requests", "10", "--pairs",
                                   "popular:oracle", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    (d,) = data["differences"]
    assert (d["a"], d["b"]) == ("popular", "oracle")
    ctr = {p: [r["ctr"] for r in data["results"] if r["policy"] == p] for p in ("popular", "oracle")}
    assert d["metrics"]["ctr"]["values"] == pytest.approx([o - p for p, o in zip(ctr["popular"], ctr["oracle"], strict=True)])
    assert data["git"]["commit"] and isinstance(data["git"]["modified"], list)
    res = CliRunner().invoke(app, ["sim", "run", "--policy", "random,popular", "--seeds", "0,1", "--steps", "1",
                                   "--pairs", "random:nope"])
    assert res.exit_code == 2 and "--pairs" in res.output
