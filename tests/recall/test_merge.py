"""Merge: quotas, dedupe with full provenance, fail-open channels, unknown users."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.recall.base import CHANNELS, Candidates, UserContext
from notefeed.recall.merge import RecallStage, merge_answers, merge_candidates, merge_lists


def C(name, items):
    items = np.asarray(items)
    return Candidates(name, items, np.linspace(1, 0.1, len(items)))


def test_quotas_respected_and_dedupe_keeps_provenance():
    a = C("a/x", [1, 2, 3, 4, 5, 6])
    b = C("b/y", [2, 7, 8, 9])
    m = merge_candidates([a, b], {"a/x": 3, "b/y": 2}, total=100)
    # cut to quotas: a [1, 2, 3] (scores 1, 2/3, 1/3), b [2, 7] (1, 1/2); 2 keeps b's best score
    assert m.items.tolist() == [1, 2, 7, 3]
    assert m.scores.tolist() == pytest.approx([1, 1, 0.5, 1 / 3])
    assert m.counts == {"a/x": 2, "b/y": 2}  # credited to the channel that gave the best score
    assert [p[0] for p in m.provenance[2]] == ["a/x", "b/y"]
    assert m.provenance[2][1][1] == 0  # b's rank for item 2
    assert len(set(m.items.tolist())) == len(m.items)


def test_total_caps_and_equal_lists_take_turns():
    big = C("a/x", np.arange(1000))
    other = C("b/y", np.arange(1000, 2000))
    m = merge_candidates([big, other], {"a/x": 1000, "b/y": 1000}, total=20)
    assert len(m) == 20 and m.counts == {"a/x": 10, "b/y": 10}
    assert m.items[:4].tolist() == [0, 1000, 1, 1001]  # ties: channel order
    # a short list spans the same score range: its items come in proportion, not last
    small = C("b/y", np.arange(1000, 1010))
    m = merge_candidates([big, small], {"a/x": 1000, "b/y": 1000}, total=200)
    assert m.counts["b/y"] == 2 and m.items[1] == 1000


def test_drop_and_missing_quota():
    a, b = C("a/x", np.arange(10)), C("b/y", np.arange(10, 20))
    m = merge_candidates([a, b], {"a/x": 6, "b/y": 2}, total=8, drop=np.array([0]))
    assert m.counts == {"a/x": 6, "b/y": 2} and 0 not in m.items and 6 in m.items  # drop, then cut
    m = merge_candidates([a, b], {"a/x": 3}, total=8)
    assert m.items.tolist() == [0, 1, 2] and m.report()["b/y"]["contributed"] == 0


def test_one_merge_kernel_serving_and_evaluation_agree():
    """The recall stage's ranking is the served candidate set ordered by its ``recall`` column."""
    rng = np.random.default_rng(0)
    lists = [C(f"c/{k}", rng.integers(0, 80, int(rng.integers(1, 50)))) for k in range(4)]
    quotas = {"c/0": 30, "c/1": 5, "c/2": 50, "c/3": 12}
    items, channels, cols = merge_answers([(c, quotas[c.channel]) for c in lists])
    m = merge_candidates(lists, quotas, total=10_000)
    order = np.argsort(-cols["recall"], kind="stable")
    assert m.items.tolist() == items[order].tolist()
    np.testing.assert_array_equal(m.scores, cols["recall"][order])
    for j in order[:20]:
        assert [p[0] for p in m.provenance[int(items[j])]] == channels[j]


def test_merge_lists_kernel_shapes():
    mg = merge_lists([np.array([5, 6, 7]), np.array([], np.int64), np.array([7, 8])], [2, 3, 5])
    assert mg.items.tolist() == [5, 6, 7, 8]
    assert mg.row.tolist() == [0, 1, 2, 3] and mg.channel.tolist() == [0, 0, 2, 2]
    assert mg.rank.tolist() == [0, 1, 0, 1]
    assert mg.best.dtype == np.float32 and mg.best.tolist() == [1.0, 0.5, 1.0, 0.5]
    with pytest.raises(ValueError, match="quotas"):
        merge_lists([np.array([1])], [])


class _Boom:
    name = "test/boom"

    def fit(self, ds):
        return self

    def recall(self, ctx, k):
        raise RuntimeError("index offline")


if "test/boom" not in CHANNELS:
    CHANNELS.register("test/boom")(_Boom)


def test_failing_channel_reported_not_fatal(tiny):
    st = RecallStage({"test/boom": {"quota": 10}, "non-personalized/popular": {"quota": 10},
                      "item-to-item/swing": {"quota": 10}}).fit(tiny)
    m = st.retrieve(UserContext("u0", 0, history=np.array([0, 4, 8])), total=30)
    rep = m.report()
    assert "index offline" in rep["test/boom"]["error"] and rep["test/boom"]["contributed"] == 0
    assert rep["non-personalized/popular"]["contributed"] == 10 and len(m) > 10


def test_empty_channel_in_report_and_unknown_user_served(tiny):
    st = RecallStage({"social/follow": {"quota": 10}, "item-to-item/itemcf": {"quota": 10},
                      "non-personalized/popular": {"quota": 10}, "fresh/pool": {"quota": 10}}).fit(tiny)
    m = st.retrieve(UserContext("stranger", None), total=50)
    assert len(m) == 20 and set(m.counts) == {"non-personalized/popular", "fresh/pool"}
    m = st.retrieve(UserContext("u5", 5, history=np.empty(0, np.int64)), total=50)
    assert "item-to-item/itemcf" in m.report()  # empty, but reported


def test_filters_seen_hidden_blocked(tiny):
    st = RecallStage({"non-personalized/popular": {"quota": 100}}).fit(tiny)
    full = st.retrieve(UserContext("u1", 1), 100).items
    blocked_author = int(tiny.item_author[full[0]])
    ctx = UserContext("u1", 1, seen=full[:3], hidden=full[3:5], blocked_authors=np.array([blocked_author]))
    got = st.retrieve(ctx, 100).items
    assert not set(full[:5].tolist()) & set(got.tolist())
    assert (tiny.item_author[got] != blocked_author).all()


def test_bad_config():
    with pytest.raises(ValueError, match="quota"):
        RecallStage({"non-personalized/popular": {"quota": -1}})
    with pytest.raises(KeyError, match="unknown recall channel"):
        RecallStage({"nope/nothing": {"quota": 1}})
