"""The served feed's array fast paths give exactly what the plain per-candidate Python path gives.

Serving keeps each candidate's channels as a hit matrix (:class:`ChannelLists`), mixes the
cold-start side candidates in with arrays (``_mix_arrays``) and counts channels without lists.
The plain path (channels as Python lists: ``CandidateSet.take`` and ``_mix`` fall back to their
list code) is the reference: pages, every column, channel lists and the learned ranker's
feature columns must be identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from notefeed.recall.base import Candidates
from notefeed.recall.merge import ChannelLists, channel_counts, merge_answers
from notefeed.serve import pipeline as pl
from notefeed.serve.config import ServeConfig
from notefeed.serve.engine import Engine
from notefeed.serve.learned import candidate_features
from notefeed.serve.pipeline import CandidateSet, SideCandidates, _merge, _mix

from .conftest import TOKEN


def _plain(cs: CandidateSet) -> CandidateSet:
    return CandidateSet(cs.items, [list(c) for c in cs.channels], dict(cs.columns))


def _assert_same(got: CandidateSet, want: CandidateSet) -> None:
    assert got.items.tolist() == want.items.tolist()
    assert [list(c) for c in got.channels] == [list(c) for c in want.channels]
    assert list(got.columns) == list(want.columns)
    for k, v in want.columns.items():
        assert got.columns[k].dtype == v.dtype, k
        np.testing.assert_array_equal(got.columns[k], v, err_msg=k)


def _answers(rng: np.random.Generator, names: list[str], side: bool = False) -> list[tuple[Candidates, int]]:
    out: list[tuple[Candidates, int]] = []
    for name in names:
        items = rng.permutation(60)[: int(rng.integers(0, 25))]
        if rng.random() < 0.2 and items.size:  # a channel that repeats an item
            items = np.r_[items, items[:1]]
        cols = {"coldstart.score": rng.random(items.size)} if side else {}
        out.append((SideCandidates(name, items, rng.random(items.size), columns=cols), int(rng.integers(1, 30))))
    return out


def test_channel_lists_read_as_the_per_hit_lists() -> None:
    ch = ChannelLists(("a/x", "b/y", "a/x"), np.array([[1, 0, 1], [0, 2, 0], [0, 0, 0]]))
    assert ch == [["a/x", "a/x"], ["b/y", "b/y"], []] and len(ch) == 3
    assert ch[-1] == [] and ch[0:2] == [["a/x", "a/x"], ["b/y", "b/y"]]
    assert channel_counts(ch).tolist() == [2, 2, 0] == channel_counts(list(ch)).tolist()
    assert ch.take(np.array([1, 1])) == [["b/y", "b/y"]] * 2
    assert ch != [["a/x"], ["b/y", "b/y"], []]
    with pytest.raises(ValueError, match="names"):
        ChannelLists(("a/x",), np.zeros((2, 2)))


@pytest.mark.parametrize("seed", range(30))
def test_merge_take_and_mix_match_the_list_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ranked = _answers(rng, ["a/one", "b/two", "c/three"])
    side = _answers(rng, ["coldstart/bandit"], side=True)
    items, chans, _ = merge_answers(ranked)
    # the list a per-hit loop builds, in hit order
    want: list[list[str]] = [[] for _ in items]
    pos = {int(it): j for j, it in enumerate(items.tolist())}
    for cand, q in ranked:
        for it in cand.items[:q].tolist():
            want[pos[it]].append(cand.channel)
    assert chans == want
    cs, sd = _merge(ranked), _merge(side)
    keep = np.sort(rng.permutation(len(cs))[: len(cs) * 2 // 3])
    keep_side = rng.permutation(len(sd))[: len(sd) // 2]
    cs, sd = cs.take(keep), sd.take(keep_side)
    _assert_same(cs, _plain(_merge(ranked)).take(keep))
    _assert_same(_mix(cs, sd), _mix(_plain(cs), _plain(sd)))
    empty = CandidateSet(np.zeros(0, np.int64), ChannelLists((), np.zeros((0, 0))), {})
    _assert_same(_mix(cs, empty), _mix(_plain(cs), CandidateSet(np.zeros(0, np.int64), [], {})))


def test_mix_with_shared_channel_names_keeps_the_list_semantics() -> None:
    a = Candidates("a/one", np.array([1, 2, 3]), np.zeros(3))
    cs, side = _merge([(a, 3)]), _merge([(Candidates("a/one", np.array([3, 4]), np.zeros(2)), 2)])
    out = _mix(cs, side)
    assert out.channels == [["a/one"], ["a/one"], ["a/one"], ["a/one"]]  # no duplicate name added


def test_served_feed_equals_the_plain_path(small_ds, tmp_path: Path, monkeypatch) -> None:
    """The default pipeline (real recall channels, filters, SSD, cold-start slots) on a
    synthetic community: every page, column, channel list and feature column as the plain
    per-candidate list path gives them."""
    cfg = ServeConfig().with_overrides(api={"token": TOKEN})
    eng = Engine(small_ds, cfg, tmp_path)
    eng.clock = lambda: 1_800_000_000.0
    users = ["u1", "u2", "u7", "u40", "u99", "brand-new"]
    try:
        fast = [eng.feed(u, 10) for u in users]
        merge = pl._merge
        monkeypatch.setattr(pl, "_merge", lambda results: _plain(merge(results)))
        plain = [eng.feed(u, 10) for u in users]
    finally:
        eng.close()
    assert any(isinstance(r.candidates.channels, ChannelLists) for _, r in fast)
    assert not any(isinstance(r.candidates.channels, ChannelLists) for _, r in plain)
    for (ctx, f), (_, p) in zip(fast, plain, strict=True):
        assert f.items.tolist() == p.items.tolist() and not f.errors
        _assert_same(f.candidates, p.candidates)
        got = candidate_features(eng.catalog, ctx, f.candidates)
        want = candidate_features(eng.catalog, ctx, p.candidates)
        assert list(got) == list(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_a_serving_engine_freezes_its_heap(small_ds, tmp_path: Path, monkeypatch) -> None:
    """A serving process's engine takes its built heap out of the cyclic collector's reach;
    other engines (tests, training) leave the collector as it is."""
    import gc

    from notefeed import threads

    gc.unfreeze()
    cfg = ServeConfig().with_overrides(api={"token": TOKEN})
    eng = Engine(small_ds, cfg, tmp_path / "a")
    eng.close()
    assert eng.heap_frozen_ms is None and gc.get_freeze_count() == 0
    monkeypatch.setattr(threads, "_SERVING", True)
    try:
        monkeypatch.setenv(threads.ENV_GC_FREEZE, "0")
        eng = Engine(small_ds, cfg, tmp_path / "b")
        eng.close()
        assert eng.heap_frozen_ms is None and gc.get_freeze_count() == 0
        monkeypatch.delenv(threads.ENV_GC_FREEZE)
        eng = Engine(small_ds, cfg, tmp_path / "c")
        assert eng.heap_frozen_ms is not None and gc.get_freeze_count() > 0
        frozen_before = gc.get_freeze_count()
        eng.feed("u1", 10)
        assert gc.get_freeze_count() <= frozen_before  # requests do not grow the frozen heap
        eng.close()
    finally:
        gc.unfreeze()
