"""``notefeed eval --stage feed``: the served page, side by side with baselines, per stage."""

from __future__ import annotations

import copy
import functools
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


@functools.lru_cache(maxsize=1)
def _default_rows() -> tuple[dict, ...]:
    """The default test config's evaluation on ``chain_log()`` with pop and ItemKNN, run once
    for the tests that read it (each gets its own copy)."""
    return tuple(evaluate_feed(chain_log(), _config(), models=["pop", "itemknn"], ks=(10,), progress=False))


def default_rows() -> list[dict]:
    return copy.deepcopy(list(_default_rows()))


def test_learned_funnel_beats_popularity_and_reports_every_stage():
    rows = default_rows()
    by = {r["model"]: r for r in rows}
    pipe = by["pipeline"]
    assert pipe["test_users"] == by["pop"]["test_users"] == 150
    assert pipe["hit@10"] > by["pop"]["hit@10"] + 0.3
    for stage in ("recall", "coarse", "fine", "page"):
        assert f"stage.{stage}.hit@10" in pipe
    # per user, the held-out note's page position: the page's HR@10 and NDCG@10 again
    ranks = np.array(pipe["page_rank"])
    assert ranks.shape == (150,) and ranks.min() >= -1 and ranks.max() < 10 and len(pipe["test_users_sha1"]) == 40
    assert (ranks >= 0).mean() == pytest.approx(pipe["hit@10"])
    assert np.where(ranks >= 0, 1 / np.log2(np.maximum(ranks, 0) + 2), 0).mean() == pytest.approx(pipe["ndcg@10"])
    assert pipe["stage.recall.hit@all"] >= pipe["stage.page.hit@10"]
    assert pipe["hit@10_ci95"] > 0 and pipe["best_baseline"] in ("pop", "itemknn")
    assert pipe["eval_s"] > pipe["fit_s"] + pipe["recommend_s"]  # the whole evaluation, timed
    # the rankers were trained on our own recall's candidates, with saved validation metrics
    rep = pipe["train_report"]
    assert rep["fine"]["valid_hr10_in_candidates"] >= 0 and rep["rank_users"] > 50


def test_ranking_off_is_worse_on_the_planted_pattern():
    # the default builtin ranking sorts by popularity priors: it must lose the chain's next item
    ds = chain_log()
    learned = default_rows()[-1]
    builtin = evaluate_feed(ds, _config(coarse={"scorer": "builtin/popularity", "keep": 60},
                                        fine={"scorer": "builtin/linear"}), models=[], ks=(10,), progress=False)[-1]
    assert learned["hit@10"] > builtin["hit@10"]


def test_a_coarse_ranker_that_fails_its_gate_serves_the_popularity_formula():
    ds = chain_log()
    # the coarse stage's figures do not depend on the fine stage: a builtin one for the two runs
    kw = {"models": [], "ks": (10,), "progress": False}
    fine = {"scorer": "builtin/linear"}
    gated = default_rows()[-1]
    rep = gated["train_report"]["coarse"]  # the chain is in the recall ranks: the ranker is kept
    assert rep["gate_passed"] == 1.0 and rep["gate_oof_hr10"] > rep["gate_oof_base_hr10"]
    # the gate asked for more than any evidence gives: the stage ranks exactly as builtin/popularity
    failed = evaluate_feed(ds, _config(coarse={"scorer": "rank/ltr", "keep": 60,
                                               "params": {"epochs": 8, "threads": 1, "gate_z": 1e9}},
                                       fine=fine), **kw)[-1]
    formula = evaluate_feed(ds, _config(coarse={"scorer": "builtin/popularity", "keep": 60}, fine=fine), **kw)[-1]
    assert failed["train_report"]["coarse"]["gate_passed"] == 0.0
    assert failed["stage.coarse.hit@10"] == formula["stage.coarse.hit@10"]
    assert gated["stage.coarse.hit@10"] > formula["stage.coarse.hit@10"]


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


def test_reseeded_sets_unset_channel_seeds_only():
    from notefeed.eval.feed import reseeded

    cfg = ServeConfig().with_overrides(recall={"channels": [
        {"name": "sequence/sasrec", "quota": 10, "params": {"min_steps": 5}},
        {"name": "embedding/als", "quota": 10, "params": {"seed": 7}},
        {"name": "item-to-item/swing", "quota": 10},
        {"name": "non-personalized/popular", "quota": 10}]})
    assert reseeded(cfg, 0) is cfg
    params = {c.name: c.params for c in reseeded(cfg, 3).recall.channels}
    assert params["sequence/sasrec"] == {"min_steps": 5, "seed": 3}
    assert params["embedding/als"] == {"seed": 7}  # the config's own seed wins
    assert "seed" not in params["item-to-item/swing"] and params["non-personalized/popular"] == {}
    assert cfg.recall.channels[0].params == {"min_steps": 5}  # the input is not changed


def test_summarize_seeds_means_intervals_and_ratios():
    from notefeed.eval.feed import summarize_seeds

    rows = []
    for seed, (pop, knn, pipe) in enumerate([(0.10, 0.20, 0.30), (0.10, 0.25, 0.30), (0.12, 0.15, 0.24)]):
        best = max(("pop", pop), ("itemknn", knn), key=lambda x: x[1])
        rows += [{"dataset": "d", "model": "pop", "seed": seed, "hit@10": pop},
                 {"dataset": "d", "model": "itemknn", "seed": seed, "hit@10": knn},
                 {"dataset": "d", "model": "pipeline", "seed": seed, "hit@10": pipe,
                  "hit@10_vs_best": pipe / best[1], "best_baseline": best[0]}]
    out = {r["model"]: r for r in summarize_seeds(rows)}
    assert out["itemknn"]["hit@10"] == pytest.approx(0.20)
    pipe = out["pipeline"]
    assert pipe["hit@10"] == pytest.approx(0.28) and pipe["n_seeds"] == 3
    assert pipe["hit@10_vs_best"] == pytest.approx(np.mean([1.5, 1.2, 1.6]))
    assert pipe["hit@10_vs_best_per_seed"] == pytest.approx([1.5, 1.2, 1.6])
    assert 0 < pipe["hit@10_vs_best_ci95_seeds"] < 1
    assert pipe["hit@10_vs_best_mean"] == pytest.approx(0.28 / 0.20)  # against the best mean baseline
    assert pipe["hit@10_best_mean_baseline"] == "itemknn"


def test_cli_feed_stage_seeds_adds_summary_rows(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps(_config().model_dump(mode="json")))
    log = tmp_path / "log.txt"
    ds = chain_log(60, 50)
    ev = ds.events.sort_values(["user", "ts"])
    ids = ds.notes["note_id"].to_numpy()
    log.write_text("\n".join(" ".join([f"u{u}", *ids[g["item"].to_numpy()]]) for u, g in ev.groupby("user")) + "\n")
    out = tmp_path / "feed.json"
    r = CliRunner().invoke(app, ["eval", "--stage", "feed", "--path", str(log), "--config", str(cfg),
                                 "--models", "pop", "--users", "30", "--k", "10", "--seeds", "0,1",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["rows"]
    runs = [(row["model"], row["seed"]) for row in rows if "summary" not in row]
    assert runs == [("pop", 0), ("pipeline", 0), ("pop", 1), ("pipeline", 1)]
    summary = {row["model"]: row for row in rows if "summary" in row}
    per_seed = [row["hit@10"] for row in rows if row["model"] == "pipeline" and "summary" not in row]
    assert summary["pipeline"]["hit@10"] == pytest.approx(np.mean(per_seed))
    assert summary["pipeline"]["hit@10_per_seed"] == pytest.approx(per_seed)
    assert "hit@10_vs_best_ci95_seeds" in summary["pipeline"]



def test_a_users_page_does_not_depend_on_who_was_served_before():
    """Asking the same users in another order, or over other workers, gives each the same
    page: no request leaves state that changes the next one's page (probe requests)."""
    from notefeed.eval.feed import run_feed
    from notefeed.models.train import train_components
    from notefeed.serve.engine import Engine

    ds = chain_log(n_users=80)
    cfg = _config(coldstart={"enabled": True, "slots": 3})
    fitted, _ = train_components(cfg, ds, progress=False)
    users = np.arange(ds.n_users)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(ds, cfg, Path(tmp), fitted=fitted)
        try:
            engine.at_end_of_log()
            a, _, _ = run_feed(engine, ds, users, 10, progress=False, workers=1, chunk=16)
            rev, _, _ = run_feed(engine, ds, users[::-1].copy(), 10, progress=False, workers=2, chunk=16)
        finally:
            engine.close()
    np.testing.assert_array_equal(a, rev[::-1])


def test_held_out_notes_nobody_else_engaged_with_are_left_out_of_scoring_and_training():
    """A note whose only positive is a user's held-out one has no history in training: offline
    it can only be a held-out target, so it is not scored (counted instead) and the rankers do
    not learn from such targets (the rankers would learn to find notes by their empty history)."""
    base = chain_log(n_users=100)
    ev = pd.DataFrame({"user_id": base.users["user_id"].to_numpy()[base.events["user"].to_numpy()],
                       "note_id": base.notes["note_id"].to_numpy()[base.events["item"].to_numpy()],
                       "ts": base.events["ts"].to_numpy(), "type": base.events["type"].astype(str).to_numpy()})
    late = pd.DataFrame({"user_id": [f"u{u}" for u in range(12)], "note_id": [f"solo{u}" for u in range(12)],
                         "ts": 1_700_000_000 + 10_000, "type": "click"})
    ds = Dataset.build("chains+solo", pd.concat([ev, late], ignore_index=True))
    rows = evaluate_feed(ds, _config(), models=["pop"], ks=(10,), progress=False)
    by = {r["model"]: r for r in rows}
    assert by["pipeline"]["unseen_targets_dropped"] == by["pop"]["unseen_targets_dropped"] == 12
    assert by["pipeline"]["test_users"] == by["pop"]["test_users"] == 88
    assert by["pipeline"]["train_report"]["rank_targets_unseen"] >= 12


def test_baselines_fitted_in_a_forked_process_give_the_same_rows():
    """The baselines fit in a forked process while the funnel trains (``workers > 1``): the
    same lists as fitting them here, in the requested order, before the pipeline row."""
    from notefeed.eval.feed import _baselines
    from notefeed.eval.splits import make_split

    ds = chain_log(n_users=80)
    split = make_split(ds, "loo")
    train = split.train.interactions()
    names = ["itemknn", "pop", "als"]
    with _baselines(names, split, train, 10, 0, background=False) as here:
        assert [n for n, _, _ in here] == names  # filled before the block
    with _baselines(names, split, train, 10, 0, background=True) as forked:
        assert forked == []  # filled when the block ends
    assert [n for n, _, _ in forked] == names
    for (_, t1, a), (_, t2, b) in zip(here, forked, strict=True):
        assert t1 > 0 and t2 > 0
        np.testing.assert_array_equal(a, b)
    with pytest.raises(KeyError), _baselines(["pop"], split, train, 10, 0, background=True):
        raise KeyError("a failing fit in the block stops the forked process")
