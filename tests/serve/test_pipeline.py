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


# ---------------------------------------------------------------- the served merge, pinned
# The learned ranker (rank/ltr) was trained on these columns: the merge must keep writing them
# bit for bit. ``_reference_merge`` is the serving merge as it was before it moved into
# notefeed/recall/merge.py, kept here only as the oracle.


def _reference_merge(results):
    seen, items, chans, best, extra = {}, [], [], [], {}
    for cand, quota in results:
        its = cand.items[:quota].tolist()
        cols = getattr(cand, "columns", {})
        m = max(1, len(its))
        for r, it in enumerate(its):
            s = 1.0 - r / m
            j = seen.get(it)
            if j is None:
                j = seen[it] = len(items)
                items.append(it)
                chans.append([cand.channel])
                best.append(s)
                for col in extra.values():
                    col.append(float("nan"))
            else:
                chans[j].append(cand.channel)
                best[j] = max(best[j], s)
            for k, v in cols.items():
                col = extra.setdefault(k, [float("nan")] * len(items))
                col[j] = float(v[r])
    out = CandidateSet(np.asarray(items, np.int64), chans, {"recall": np.asarray(best, np.float32)})
    out.columns.update({k: np.asarray(v, np.float32) for k, v in extra.items()})
    pos = {it: j for j, it in enumerate(items)}
    for cand, quota in results:
        its = cand.items[:quota].tolist()
        col = out.columns.setdefault(f"recall.{cand.channel}", np.zeros(len(items), np.float32))
        m = max(1, len(its))
        col[[pos[it] for it in its]] = 1.0 - np.arange(len(its), dtype=np.float32) / m
    return out


def _assert_same_set(got: CandidateSet, want: CandidateSet) -> None:
    assert got.items.dtype == np.int64 and got.items.tolist() == want.items.tolist()
    assert got.channels == want.channels
    assert list(got.columns) == list(want.columns)  # column order too
    for k, v in want.columns.items():
        assert got.columns[k].dtype == np.float32, k
        np.testing.assert_array_equal(got.columns[k], v, err_msg=k)  # bit for bit, NaN == NaN


def test_served_merge_columns_pinned() -> None:
    from notefeed.serve.pipeline import SideCandidates, _merge

    a = Candidates("a/one", np.array([10, 11, 12, 13, 14]), np.zeros(5))
    b = Candidates("b/two", np.array([12, 20, 22]), np.zeros(3))
    side = SideCandidates("coldstart/bandit", np.array([22, 30]), np.zeros(2),
                          columns={"coldstart.score": np.array([0.5, 0.25])})
    cs = _merge([(a, 3), (b, 10), (side, 5)])
    assert cs.items.tolist() == [10, 11, 12, 20, 22, 30]
    assert cs.channels == [["a/one"], ["a/one"], ["a/one", "b/two"], ["b/two"], ["b/two", "coldstart/bandit"],
                           ["coldstart/bandit"]]
    assert list(cs.columns) == ["recall", "coldstart.score", "recall.a/one", "recall.b/two",
                                "recall.coldstart/bandit"]
    third = np.float32(1) - np.float32(1) / np.float32(3)
    np.testing.assert_array_equal(cs.columns["recall"], np.array([1, 1 - 1 / 3, 1, 1 - 1 / 3, 1, 0.5], np.float32))
    np.testing.assert_array_equal(cs.columns["recall.a/one"], [1, third, 1 - 2 * np.float32(1) / 3, 0, 0, 0])
    np.testing.assert_array_equal(cs.columns["recall.b/two"], [0, 0, 1, third, 1 - 2 * np.float32(1) / 3, 0])
    np.testing.assert_array_equal(cs.columns["recall.coldstart/bandit"], [0, 0, 0, 0, 1, 0.5])
    np.testing.assert_array_equal(cs.columns["coldstart.score"], [np.nan] * 4 + [0.5, 0.25])
    _assert_same_set(cs, _reference_merge([(a, 3), (b, 10), (side, 5)]))
    empty = _merge([])
    assert empty.items.dtype == np.int64 and len(empty) == 0 and list(empty.columns) == ["recall"]


@pytest.mark.parametrize("seed", range(20))
def test_served_merge_equals_reference_on_random_answers(seed: int) -> None:
    from notefeed.serve.pipeline import SideCandidates, _merge

    rng = np.random.default_rng(seed)
    answers = []
    for c in range(int(rng.integers(0, 6))):
        n = int(rng.integers(0, 40))
        items = rng.integers(0, 60, n)  # overlaps across channels, some repeats within one
        if rng.random() < 0.3:
            cols = {f"side.{c % 2}": rng.random(n), "side.shared": rng.random(n).astype(np.float32)}
            cand = SideCandidates(f"ch/{c % 4}", items, rng.random(n), columns=cols)
        else:
            cand = Candidates(f"ch/{c % 4}", items, rng.random(n))  # a repeated name shares its column
        answers.append((cand, int(rng.integers(1, 50))))
    _assert_same_set(_merge(answers), _reference_merge(answers))
