"""The filter-bubble experiment and the ``sim bubble`` / ``sim online-train`` commands, on tiny sizes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from notefeed.sim.experiments import default_variants, explore_config, filter_bubble

ROW_KEYS = {"variant", "channels", "explore_channels", "ctr", "interest_coverage", "coverage_series",
            "ctr_series", "diversity", "diversity_series", "small_creator_share", "explore_share",
            "explore_only_share", "wall_s"}


def _two_variants() -> dict:
    v = default_variants()
    return {"no-explore": v["no-explore"], "es-0.3": v["es-0.3"]}


def test_explore_config_appends_channels_and_keeps_defaults() -> None:
    base = explore_config([])
    cfg = explore_config(default_variants()["es-0.3+multi-interest"])
    names = [c.name for c in cfg.recall.channels]
    assert names[: len(base.recall.channels)] == [c.name for c in base.recall.channels]
    assert names[-2:] == ["explore/es-noise", "explore/multi-interest"]
    assert not any(n.startswith("explore/") for n in (c.name for c in base.recall.channels))


def test_filter_bubble_reports_each_variant() -> None:
    out = filter_bubble("tiny", steps=3, requests=10, seed=0, variants=_two_variants())
    assert {"preset", "steps", "variants", "best", "baseline", "best_vs_baseline", "tower_fit_s"} <= set(out)
    rows = {r["variant"]: r for r in out["variants"]}
    assert set(rows) == {"no-explore", "es-0.3"}
    for r in rows.values():
        assert ROW_KEYS <= set(r)
        assert len(r["coverage_series"]) == 3
        assert 0.0 <= r["interest_coverage"] <= 1.0 and 0.0 <= r["ctr"] <= 1.0
        assert r["coverage_series"][-1] == pytest.approx(r["interest_coverage"])
    assert "explore/es-noise" in rows["es-0.3"]["channels"]
    assert not any(c.startswith("explore/") for c in rows["no-explore"]["channels"])
    # the exploration channel really reaches pages in the explore variant, never in the baseline
    assert rows["es-0.3"]["explore_share"] > 0.0
    assert rows["no-explore"]["explore_share"] == 0.0
    assert out["baseline"] == "no-explore" and out["best"] == "es-0.3"


def test_filter_bubble_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="steps"):
        filter_bubble("tiny", steps=0, requests=10)
    with pytest.raises(ValueError, match="variants"):
        filter_bubble("tiny", steps=1, requests=1, variants={})
    with pytest.raises(Exception, match="quota"):
        filter_bubble("tiny", steps=1, requests=1, variants={"x": [{"name": "explore/es-noise", "quota": 0}]})


def test_cli_bubble_and_online_train(tmp_path) -> None:
    from notefeed.cli import app

    runner = CliRunner()
    p = tmp_path / "bubble.json"
    r = runner.invoke(app, ["sim", "bubble", "--preset", "tiny", "--steps", "2", "--requests", "5", "--no-train",
                            "--variants", "no-explore", "--json", str(p)])
    assert r.exit_code == 0, r.output
    assert "interest coverage over time" in r.output
    data = json.loads(p.read_text())
    assert [v["variant"] for v in data["variants"]] == ["no-explore"] and data["best"] is None
    r = runner.invoke(app, ["sim", "bubble", "--steps", "1", "--variants", "no-explore,nope"])
    assert r.exit_code != 0 and "nope" in r.output
    q = tmp_path / "online.json"
    r = runner.invoke(app, ["sim", "online-train", "--preset", "tiny", "--steps", "2", "--requests", "10",
                            "--retrain-every", "1", "--epochs", "1", "--modes", "frozen,online", "--json", str(q)])
    assert r.exit_code == 0, r.output
    rows = json.loads(q.read_text())["rows"]
    assert [row["mode"] for row in rows] == ["frozen", "online"]
    for row in rows:
        assert {"ctr", "updates", "median_update_latency_s"} <= set(row)
    assert rows[1]["updates"] > 0


def test_filter_bubble_reports_coverage_first_last_and_growth() -> None:
    out = filter_bubble("tiny", steps=3, requests=10, seed=0, variants={"no-explore": []})
    (r,) = out["variants"]
    cov = r["coverage_series"]
    assert r["coverage_first"] == cov[0] and r["coverage_last"] == cov[-1]
    assert r["coverage_growth"] == pytest.approx(cov[-1] - cov[0])
    assert out["trained"] is False and out["train_s"] == 0.0


def test_filter_bubble_trains_the_default_config_once_per_seed(monkeypatch) -> None:
    import notefeed.models.train as train_mod

    calls = []

    def counting(config, ds, *args, **kwargs):  # what it trains, not the training (minutes on a busy box;
        calls.append([c.name for c in config.recall.channels])  # sim run's tests train for real)
        return {}, {}

    monkeypatch.setattr(train_mod, "train_components", counting)
    out = filter_bubble("tiny", steps=1, requests=5, seed=0, variants=_two_variants(), train=True)
    # one fit of the default config (no exploration channel), shared by both variants
    assert len(calls) == 1 and not any(n.startswith("explore/") for n in calls[0])
    assert out["trained"] is True and out["train_s"] >= 0
    assert {r["variant"] for r in out["variants"]} == {"no-explore", "es-0.3"}


def test_cli_bubble_and_online_train_over_seeds(tmp_path) -> None:
    from notefeed.cli import app

    runner = CliRunner()
    p = tmp_path / "bubble.json"
    r = runner.invoke(app, ["sim", "bubble", "--preset", "tiny", "--steps", "2", "--requests", "5", "--no-train",
                            "--variants", "no-explore,es-0.3", "--seeds", "0,1", "--json", str(p)])
    assert r.exit_code == 0, r.output
    data = json.loads(p.read_text())
    assert data["seeds"] == [0, 1] and data["trained"] is False and len(data["per_seed"]) == 2
    assert [v["name"] for v in data["policies"]] == ["no-explore", "es-0.3"]
    (d,) = data["differences"]
    assert (d["a"], d["b"]) == ("no-explore", "es-0.3")
    rows = [{v["variant"]: v for v in o["variants"]} for o in data["per_seed"]]
    growth = [x["es-0.3"]["coverage_growth"] - x["no-explore"]["coverage_growth"] for x in rows]
    assert d["metrics"]["coverage_growth"]["values"] == pytest.approx(growth)
    first = [x["no-explore"]["coverage_series"][0] for x in rows]
    assert data["policies"][0]["summary"]["coverage_first"]["values"] == pytest.approx(first)
    r = runner.invoke(app, ["sim", "bubble", "--steps", "1", "--seeds", "0,1", "--pairs", "no-explore:nope"])
    assert r.exit_code == 2 and "--pairs" in r.output

    q = tmp_path / "online.json"
    r = runner.invoke(app, ["sim", "online-train", "--preset", "tiny", "--steps", "2", "--requests", "10",
                            "--epochs", "1", "--modes", "popular,frozen,online", "--seeds", "0,1", "--json", str(q)])
    assert r.exit_code == 0, r.output
    data = json.loads(q.read_text())
    assert data["seeds"] == [0, 1] and len(data["rows"]) == 6
    assert [(x["a"], x["b"]) for x in data["differences"]] == [("frozen", "popular"), ("frozen", "online")]
    ctr = {m: [row["ctr"] for row in data["rows"] if row["mode"] == m] for m in ("frozen", "online")}
    assert data["differences"][1]["metrics"]["ctr"]["values"] == pytest.approx(
        [o - f for f, o in zip(ctr["frozen"], ctr["online"], strict=True)])
    assert data["policies"][2]["summary"]["updates"]["mean"] > 0
