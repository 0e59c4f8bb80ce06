"""Merge: quotas, dedupe with full provenance, fail-open channels, unknown users."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.recall.base import CHANNELS, Candidates, UserContext
from notefeed.recall.merge import RecallStage, merge_candidates


def C(name, items):
    items = np.asarray(items)
    return Candidates(name, items, np.linspace(1, 0.1, len(items)))


def test_quotas_respected_and_dedupe_keeps_provenance():
    a = C("a/x", [1, 2, 3, 4, 5, 6])
    b = C("b/y", [2, 7, 8, 9])
    m = merge_candidates([a, b], {"a/x": 3, "b/y": 2}, total=100)
    assert m.counts == {"a/x": 3, "b/y": 2}
    # round robin: a 1, b 2, a skips 2 (in via b, provenance keeps both) and takes 3, b 7, a 4
    assert m.items.tolist() == [1, 2, 3, 7, 4]
    assert [p[0] for p in m.provenance[2]] == ["a/x", "b/y"]
    assert m.provenance[2][1][1] == 0  # b's rank for item 2
    assert len(set(m.items.tolist())) == len(m.items)


def test_total_caps_and_no_channel_starves():
    big = C("a/x", np.arange(1000))
    small = C("b/y", np.arange(1000, 1010))
    m = merge_candidates([big, small], {"a/x": 1000, "b/y": 1000}, total=20)
    assert len(m) == 20 and m.counts["b/y"] == 10  # alternating turns: the small one gets its share


def test_quota_fill_mode_and_drop():
    a, b = C("a/x", np.arange(10)), C("b/y", np.arange(10, 20))
    m = merge_candidates([a, b], {"a/x": 6, "b/y": 2}, total=8, fill="quota", drop=np.array([0]))
    assert m.counts == {"a/x": 6, "b/y": 2} and 0 not in m.items
    with pytest.raises(ValueError, match="fill"):
        merge_candidates([a], {}, 5, fill="zigzag")


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
