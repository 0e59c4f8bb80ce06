"""The built-in model's training schedule, time cap, pooling options and the eval's phase timings."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from notefeed.llm import BuiltinLM, train_builtin
from notefeed.llm.train import lr_factor
from tests.llm.conftest import tiny_config


def test_lr_factor_warms_up_then_anneals_to_the_floor():
    assert lr_factor(0.0) == pytest.approx(0.01)
    assert lr_factor(0.05) == pytest.approx(0.5)
    assert lr_factor(0.1) == pytest.approx(1.0)
    xs = [lr_factor(f) for f in np.linspace(0.1, 1.0, 50)]
    assert all(a >= b for a, b in zip(xs, xs[1:], strict=False))  # monotone after the warm-up
    assert lr_factor(1.0) == pytest.approx(0.05) and lr_factor(2.0) == pytest.approx(0.05)
    assert math.isclose(lr_factor(0.55), 0.05 + 0.95 * 0.5)


def test_time_cap_stops_training_and_reports_it(corpus):
    pairs = np.array([[i, i + 3] for i in range(len(corpus) - 3)], np.int64)
    lm = train_builtin(corpus, pairs, tiny_config(epochs=10_000, max_time_s=1.0))
    assert lm.info["capped"] is True
    assert 0 < lm.info["steps"] < lm.info["planned_steps"]
    assert lm.info["train_cpu_s"] < 30 and lm.info["epochs_done"] == pytest.approx(lm.info["steps"] / 4, abs=0.01)
    full = train_builtin(corpus, pairs, tiny_config(epochs=2))
    assert full.info["capped"] is False and full.info["steps"] == full.info["planned_steps"] == 8


@pytest.mark.parametrize("pool", ["emb+mean", "emb+bow"])
def test_pool_options_train_save_and_load(corpus, pool, tmp_path):
    pairs = np.array([[i, i + 3] for i in range(len(corpus) - 3)], np.int64)
    lm = train_builtin(corpus, pairs, tiny_config(epochs=2, pool=pool))
    z = lm.embed(corpus.texts())
    assert z.shape == (len(corpus), 16) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    back = BuiltinLM.load(lm.save(tmp_path / "m"))
    assert back.config.pool == pool
    assert np.allclose(back.embed(corpus.texts()[:5]), z[:5], atol=1e-5)
    with pytest.raises(Exception, match="pool"):
        train_builtin(corpus, pairs, tiny_config(epochs=1, pool="max"))


def test_related_note_eval_reports_phases():
    from notefeed.eval.datasets import load_eval_dataset
    from notefeed.llm.evaluate import eval_config, related_note_eval

    ds = load_eval_dataset("sim-tiny", 0, quick=True).subsample_users(100, seed=0)
    # far more epochs than 2 CPU-s can run, so the cap (not a fast machine finishing the one
    # quick epoch first) is what ends training
    cfg = dataclasses.replace(eval_config(True, 0, 2.0), epochs=1000)
    rows = related_note_eval(ds, 0, quick=True, methods=("tfidf", "notellm"), config=cfg)
    assert {r["method"] for r in rows} == {"tfidf", "notellm", "random"}
    ph = rows[0]["phases"]
    for key in ("split_and_pairs", "tfidf_fit", "notellm_train", "notellm_embed", "rank_tfidf_warm"):
        assert ph[key]["wall_s"] >= 0 and ph[key]["cpu_s"] >= 0
    assert rows[0]["eval_cpu_s"] >= ph["notellm_train"]["cpu_s"]
    nl = next(r for r in rows if r["method"] == "notellm")
    assert nl["capped"] is True and nl["steps"] >= 1
