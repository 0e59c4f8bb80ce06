"""``notefeed eval --stage feed``: the served page, side by side with baselines, per stage."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.dataset import Dataset
from notefeed.eval.feed import evaluate_feed
from notefeed.serve.config import ServeConfig

CHANNELS = [{"name": "item-to-item/swing", "quota": 100}, {"name": "non-personalized/popular", "quota": 50}]


def chain_log(n_users: int = 150, n_items: int = 120, length: int = 8, seed: int = 0) -> Dataset:
    """Every user walks a chain i, i+1, i+2, ... from a random start, with popular noise: the
    next item is known from the last one, popularity knows nothing about it."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(length):
            rows.append((f"u{u}", f"n{(start + t) % n_items}", 1_700_000_000 + 100 * t, "click"))
            if rng.random() < 0.3:  # noise: a popular note in between, not part of the chain
                rows.append((f"u{u}", f"n{int(rng.integers(5))}", 1_700_000_000 + 100 * t + 1, "click"))
    ev = pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"])
    return Dataset.build("chains", ev)


def _config(**over: dict) -> ServeConfig:
    sections = {
        "recall": {"channels": CHANNELS}, "coldstart": {"enabled": False},
        "coarse": {"scorer": "rank/ltr", "keep": 60, "params": {"epochs": 8, "threads": 1}},
        "fine": {"scorer": "rank/ltr", "params": {"epochs": 8, "threads": 1}},
        "rerank": {"name": "rerank/ssd",
                   "params": {"gamma": 0.1, "rules": {"author_max": 100}, "fairness": {"mode": "off"}}},
    }
    return ServeConfig().with_overrides(**{**sections, **over})


def test_learned_funnel_beats_popularity_and_reports_every_stage():
    ds = chain_log()
    rows = evaluate_feed(ds, _config(), models=["pop", "itemknn"], ks=(10,), progress=False)
    by = {r["model"]: r for r in rows}
    pipe = by["pipeline"]
    assert pipe["test_users"] == by["pop"]["test_users"] == 150
    assert pipe["hit@10"] > by["pop"]["hit@10"] + 0.3
    for stage in ("recall", "coarse", "fine", "page"):
        assert f"stage.{stage}.hit@10" in pipe
    assert pipe["stage.recall.hit@all"] >= pipe["stage.page.hit@10"]
    assert pipe["hit@10_ci95"] > 0 and pipe["best_baseline"] in ("pop", "itemknn")
    # the rankers were trained on our own recall's candidates, with saved validation metrics
    rep = pipe["train_report"]
    assert rep["fine"]["valid_hr10_in_candidates"] >= 0 and rep["rank_users"] > 50


def test_ranking_off_is_worse_on_the_planted_pattern():
    # the default builtin ranking sorts by popularity priors: it must lose the chain's next item
    ds = chain_log()
    learned = evaluate_feed(ds, _config(), models=[], ks=(10,), progress=False)[-1]
    builtin = evaluate_feed(ds, _config(coarse={"scorer": "builtin/popularity", "keep": 60},
                                        fine={"scorer": "builtin/linear"}), models=[], ks=(10,), progress=False)[-1]
    assert learned["hit@10"] > builtin["hit@10"]


def test_cli_feed_stage_json(tmp_path):
    log = tmp_path / "log.txt"
    ds = chain_log(80, 60)
    ev = ds.events.sort_values(["user", "ts"])
    ids = ds.notes["note_id"].to_numpy()
    lines = [" ".join([f"u{u}", *ids[g["item"].to_numpy()]]) for u, g in ev.groupby("user")]
    log.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps(_config().model_dump(mode="json")))
    out = tmp_path / "feed.json"
    r = CliRunner().invoke(app, ["eval", "--stage", "feed", "--path", str(log), "--config", str(cfg),
                                 "--models", "pop", "--users", "40", "--k", "10", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert [row["model"] for row in doc["rows"]] == ["pop", "pipeline"]
    assert doc["rows"][1]["test_users"] == 40


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_cli_users_flag_is_checked(bad):
    r = CliRunner().invoke(app, ["eval", "--stage", "feed", "--dataset", "movielens-100k", "--users", bad])
    assert r.exit_code == 2 and "--users" in r.output


def test_forked_workers_serve_the_same_pages_as_one_process():
    from notefeed.eval.feed import run_feed
    from notefeed.models.train import train_components
    from notefeed.serve.engine import Engine

    ds = chain_log(n_users=120)
    cfg = _config()
    fitted, _ = train_components(cfg, ds, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(ds, cfg, Path(tmp), fitted=fitted)
        try:
            engine.at_end_of_log()
            users = np.arange(ds.n_users)
            one, st1, t1 = run_feed(engine, ds, users, 10, progress=False, workers=1, chunk=32)
            two, st2, t2 = run_feed(engine, ds, users, 10, progress=False, workers=2, chunk=32)
        finally:
            engine.close()
    assert one.shape == (120, 10) and (one >= 0).all()
    np.testing.assert_array_equal(one, two)
    assert st1.keys() == st2.keys() and all(np.array_equal(st1[k], st2[k]) for k in st1)
    assert t2["feed_workers"] == 2 and t2["requests_with_errors"] == 0


def feed_both_ways(batch, tmp_path):
    """(pages, stage orders) asked of the fitted system in this process, and on ``batch``
    through the model store, for the chain log's test users."""
    from notefeed.eval.feed import _store_fitted, run_feed, run_feed_sharded
    from notefeed.eval.splits import leave_last_out
    from notefeed.models.train import train_components
    from notefeed.serve.engine import Engine

    split = leave_last_out(chain_log())
    cfg = _config()
    fitted, _ = train_components(cfg, split.train, progress=False)
    engine = Engine(split.train, cfg, tmp_path / "one", fitted=fitted)
    try:
        engine.at_end_of_log()
        want = run_feed(engine, split.train, split.test_users, 10, progress=False)
    finally:
        engine.close()
    ws, version = _store_fitted(tmp_path / "ws", split.train, cfg, fitted)
    got = run_feed_sharded(batch, ws, version, cfg, split.train, split.test_users, 10, progress=False, chunk=40)
    return want, got


def test_sharded_feed_through_the_model_store_gives_the_same_pages(tmp_path):
    from notefeed.batch import LocalEngine

    (pages, stages, timing), (pages2, stages2, timing2) = feed_both_ways(LocalEngine(), tmp_path)
    np.testing.assert_array_equal(pages, pages2)
    assert set(stages) == set(stages2) and len(stages) >= 3
    for k in stages:
        np.testing.assert_array_equal(stages[k], stages2[k])
    assert timing2["requests_with_errors"] == 0 and timing2["feed_workers"] == 1


def test_feed_engine_flag_errors_name_the_flag():
    from notefeed.eval.feed import feed_stage

    with pytest.raises(ValueError, match="--engine: must be one of"):
        feed_stage(["movielens-100k"], None, 0, True, None, engine="spark")
    with pytest.raises(ValueError, match="--address: only with --engine ray"):
        feed_stage(["movielens-100k"], None, 0, True, None, address="auto")
