"""Item-to-item channels compute a request's similarity sums once for recall and score_items:
the same answers as computing them afresh, and never a stale answer after the matrix changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from notefeed.recall._common import candidates_from_scores, recency_weights, weighted_row_sum
from notefeed.recall.base import UserContext
from notefeed.recall.item2item import ItemCFChannel, SwingChannel


def _fresh(ch, ctx: UserContext, k: int, items: np.ndarray):
    hist = np.asarray(ctx.history, np.int64)[-ch.n_recent:]
    cols, vals = weighted_row_sum(ch.sim, hist, recency_weights(hist.size, ch.decay))
    cand = candidates_from_scores(ch.name, cols, vals, ctx, k)
    dense = np.zeros(ch.sim.shape[1] + 1, np.float32)
    dense[cols] = vals
    return cand, dense[items]


@pytest.mark.parametrize("cls", [SwingChannel, ItemCFChannel])
def test_memoised_sums_equal_fresh_ones(tiny, cls) -> None:
    ch = cls().fit(tiny)
    rng = np.random.default_rng(0)
    items = np.arange(tiny.n_items)
    for u in range(0, 40, 3):
        hist = rng.choice(tiny.n_items, size=int(rng.integers(1, 30)))
        ctx = UserContext(user_id=f"u{u}", user=u, history=hist, seen=hist[:3])
        for _ in range(2):  # the second call answers from the memo
            got, got_x = ch.recall(ctx, 20), ch.score_items(ctx, items)
            want, want_x = _fresh(ch, ctx, 20, items)
            np.testing.assert_array_equal(got.items, want.items)
            np.testing.assert_array_equal(got.scores, want.scores)
            np.testing.assert_array_equal(got_x, want_x)
    # new events replace the matrix: the memo must not answer for the old one
    ctx = UserContext(user_id="u1", user=1, history=np.array([0, 1, 2]), seen=np.empty(0, np.int64))
    before = ch.score_items(ctx, items)
    ev = pd.DataFrame({"user": np.arange(30) % 12, "item": np.r_[np.zeros(15, np.int64), np.full(15, 7)],
                       "ts": np.full(30, 10**10)})
    ch.update(ev)
    after = ch.score_items(ctx, items)
    np.testing.assert_array_equal(after, _fresh(ch, ctx, 20, items)[1])
    assert not np.array_equal(before, after)
