"""Evaluation protocol pieces: leave-last-out split, greedy quota tuning, stage registration."""

from __future__ import annotations

import numpy as np

from notefeed.eval.stages import EVAL_STAGES
from notefeed.recall.base import Candidates
from notefeed.recall.evaluate import evaluate_recall, leave_last_out, tune_quotas


def test_leave_last_out_holds_out_latest(tiny):
    train, users, targets = leave_last_out(tiny)
    assert users.size == tiny.n_users
    ev = tiny.select_events()
    for u, t in zip(users[:10], targets[:10], strict=True):
        mine = ev[ev["user"] == u]
        assert mine.sort_values("ts")["item"].iloc[-1] == t
        assert not ((train.events["user"] == u) & (train.events["item"] == t)).any()


def test_tune_quotas_prefers_the_channel_that_covers_targets():
    targets = np.arange(10)
    good = [Candidates("a/good", np.array([t, 100]), np.array([2.0, 1.0])) for t in targets]
    bad = [Candidates("b/bad", np.array([100, 101]), np.array([2.0, 1.0])) for _ in targets]
    q = tune_quotas({"a/good": good, "b/bad": bad}, targets, k=20, steps=4)
    assert q["a/good"] >= 5 and sum(q.values()) == 20


def test_recall_stage_registered_and_rows(tiny):
    assert "recall" in EVAL_STAGES
    rows = evaluate_recall(tiny, {"item-to-item/itemcf": {}, "non-personalized/popular": {}}, max_users=60)
    methods = {r["method"] for r in rows}
    assert {"item-to-item/itemcf", "pop", "merged-even", "merged-tuned"} <= methods
    for r in rows:
        assert 0.0 <= r["recall@100"] <= r["recall@500"] <= r["recall@1000"] <= 1.0
