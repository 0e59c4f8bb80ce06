"""The executor with fake components: step order, trace, timings, counts, fail-open."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.recall.base import Candidates, UserContext
from notefeed.serve.pipeline import CandidateSet, FilterResult, Pipeline, Step


class FakeChannel:
    def __init__(self, name: str, items: list[int], fail: bool = False) -> None:
        self.name, self.items, self.fail = name, items, fail

    def fit(self, ds: object) -> FakeChannel:
        return self

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if self.fail:
            raise RuntimeError("index offline")
        its = self.items[:k]
        return Candidates(self.name, np.array(its), np.linspace(1, 0, len(its)))


class DropOdd:
    name = "fake/drop-odd"

    def apply(self, ctx: UserContext, cs: CandidateSet) -> FilterResult:
        odd = cs.items % 2 == 1
        return FilterResult(np.flatnonzero(~odd), np.flatnonzero(odd))


class ItemScorer:
    """fine.click = item / 100, fine.like = 1 - item / 100."""

    name = "fake/scorer"

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        return {"fine.click": cs.items / 100.0, "fine.like": 1 - cs.items / 100.0}


class BadShapeScorer:
    name = "fake/bad-shape"

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        return {"fused": np.zeros(len(cs) + 1)}


class SumFusion:
    name = "fake/fusion"

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        return {"fused": 2 * cs.columns["fine.click"] + 0.5 * cs.columns["fine.like"]}


class Reverse:
    name = "fake/reverse"

    def select(self, ctx: UserContext, cs: CandidateSet, n: int) -> np.ndarray:
        return np.arange(len(cs))[::-1][:n]


def _pipe(*extra: Step, fail: bool = False) -> Pipeline:
    return Pipeline("t", [
        Step("source", FakeChannel("a/one", [10, 11, 12, 13, 14]), 3),
        Step("source", FakeChannel("b/two", [12, 20, 22], fail=fail), 10),
        *extra,
    ])


CTX = UserContext(user_id="u")


def test_merge_channels_and_quota() -> None:
    res = _pipe().run(CTX, 100)
    assert res.items.tolist() == [10, 11, 12, 20, 22]  # quota 3 on a/one
    assert res.candidates.channels[2] == ["a/one", "b/two"]
    assert [s.kind for s in res.stages] == ["source", "source", "merge"]
    assert res.stages[2].n_in == 6 and res.stages[2].n_out == 5


def test_filter_counts_scorer_columns_selector_and_trace() -> None:
    p = _pipe(Step("filter", DropOdd()), Step("scorer", ItemScorer()), Step("scorer", SumFusion()),
              Step("selector", Reverse()))
    res = p.run(CTX, 2)
    filt = next(s for s in res.stages if s.kind == "filter")
    assert (filt.n_in, filt.n_out, filt.removed) == (5, 4, 1)
    assert res.items.tolist() == [22, 20]
    tr = res.trace([f"n{i}" for i in range(100)])
    assert tr["items"][0]["note_id"] == "n22"
    assert tr["items"][0]["channels"] == ["b/two"]
    assert tr["items"][0]["fine_scores"] == pytest.approx({"click": 0.22, "like": 0.78})
    assert tr["items"][0]["fused_score"] == pytest.approx(2 * 0.22 + 0.5 * 0.78)
    assert tr["items"][1]["position"] == 1
    assert all(s["ms"] >= 0 for s in tr["stages"])
    t = res.timings()
    assert set(t) >= {"source", "filter", "scorer", "selector", "total"}
    assert t["total"] >= t["source"]


def test_failing_channel_degrades_feed() -> None:
    res = _pipe(fail=True).run(CTX, 10)
    assert res.items.tolist() == [10, 11, 12]
    assert len(res.errors) == 1 and "b/two" in res.errors[0] and "index offline" in res.errors[0]
    bad = [s for s in res.stages if s.error]
    assert [s.name for s in bad] == ["b/two"]


def test_failing_scorer_keeps_order_and_reports() -> None:
    res = _pipe(Step("scorer", BadShapeScorer())).run(CTX, 10)
    assert res.items.tolist() == [10, 11, 12, 20, 22]
    assert "fused" not in res.candidates.columns
    assert "shape" in res.errors[0]


def test_step_order_validated() -> None:
    with pytest.raises(ValueError, match="source steps must come first"):
        Pipeline("x", [Step("source", FakeChannel("a/b", [1]), 1), Step("filter", DropOdd()),
                       Step("source", FakeChannel("c/d", [1]), 1)])
    with pytest.raises(ValueError, match="at least one source"):
        Pipeline("x", [Step("filter", DropOdd())])
    with pytest.raises(ValueError, match="quota"):
        Pipeline("x", [Step("source", FakeChannel("a/b", [1]), 0)])


def test_page_truncation() -> None:
    assert len(_pipe().run(CTX, 2).items) == 2


def test_seen_filter_contract(engine) -> None:
    from notefeed.serve.components import SeenFilter

    cs = CandidateSet(np.array([1, 2, 3, 4]), [["x"]] * 4)
    authors = engine.catalog.authors()
    ctx = UserContext(user_id="u", seen=np.array([2]), hidden=np.array([3]),
                      blocked_authors=np.array([authors[4]]))
    res = SeenFilter(engine.catalog).apply(ctx, cs)
    kept = set(cs.items[res.kept].tolist())
    assert kept == ({1} if authors[1] != authors[4] else set())
    assert len(res.kept) + len(res.removed) == 4
