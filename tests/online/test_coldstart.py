"""The cold-start pool: seed audience, look-alike expansion, hand-over, bandit boost, state, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from notefeed.online.coldstart import ColdStartConfig, ColdStartPool

# catalogue: items 0-2 are food, 3-5 travel; users 0-4 like food, 5-9 like travel
TAGS = [["food", "noodles"], ["food"], ["food", "cake"], ["travel"], ["travel", "beach"], ["travel", "hiking"]]
CATS = ["food"] * 3 + ["travel"] * 3
T0 = 1_700_000_000


def _events(rows: list[tuple[int, int, str]], ts: int = T0) -> pd.DataFrame:
    return pd.DataFrame({"user": np.array([r[0] for r in rows], np.int64),
                         "item": np.array([r[1] for r in rows], np.int64),
                         "type": [r[2] for r in rows], "ts": np.full(len(rows), ts, np.int64)})


def _pool(**params: object) -> ColdStartPool:
    pool = ColdStartPool(**params)
    pool.index_items(np.arange(6), TAGS, CATS)
    hist = [(u, i, "click") for u in range(5) for i in (0, 1, 2)] + \
           [(u, i, "like") for u in range(5, 10) for i in (3, 4, 5)]
    pool.observe(_events(hist))
    return pool


def _audience(pool: ColdStartPool, item: int, users=range(10)) -> set[int]:
    rng = np.random.default_rng(0)
    return {u for u in users if item in pool.candidates_for(u, 5, rng)[0].tolist()}


def test_seed_audience_matches_interests():
    pool = _pool(seed_size=5)
    pool.publish(np.array([100, 101]), None, [["food", "noodles"], ["beach"]], ["food", "travel"], ts=T0)
    assert _audience(pool, 100) == {0, 1, 2, 3, 4}
    assert _audience(pool, 101) == {5, 6, 7, 8, 9}
    items, scores, stages = pool.candidates_for(0, 5, np.random.default_rng(0))
    assert items.tolist() == [100] and stages == ["seed"] and scores[0] > 0
    # seen notes are excluded; k = 0 returns nothing; an unknown user falls back without raising
    assert len(pool.candidates_for(0, 5, np.random.default_rng(0), exclude=np.array([100]))[0]) == 0
    assert len(pool.candidates_for(0, 0, np.random.default_rng(0))[0]) == 0
    pool.candidates_for(10_000, 5, np.random.default_rng(0))


def test_lookalike_expansion_reaches_users_like_the_engagers():
    pool = _pool(seed_size=5, lookalike_size=5, lookalike_after_clicks=1)
    pool.publish(np.array([100]), None, [["travel"]], ["travel"], ts=T0)
    assert _audience(pool, 100) == {5, 6, 7, 8, 9}
    # a food lover engages (e.g. via search): the audience expands to users like them
    rep = pool.observe(_events([(2, 100, "impression"), (2, 100, "click")], ts=T0 + 60))
    assert rep.new_note_events == 2 and rep.stage_changes == {"lookalike": 1}
    assert pool.notes[100].engagers == [2]
    assert _audience(pool, 100) == set(range(10))
    assert "lookalike" in pool.candidates_for(0, 5, np.random.default_rng(0))[2]


def test_handover_after_n_impressions():
    pool = _pool(seed_size=5, handover_impressions=10)
    pool.publish(np.array([100]), None, [["food"]], ["food"], ts=T0)
    pool.observe(_events([(u % 5, 100, "impression") for u in range(9)], ts=T0 + 60))
    assert pool.notes[100].stage == 0 and 0 in _audience(pool, 100)
    rep = pool.observe(_events([(0, 100, "impression")], ts=T0 + 120))
    assert rep.stage_changes == {"handed_over": 1}
    assert pool.summary()["handed_over"] == 1 and pool.summary()["median_s_to_handover"] == 120
    assert _audience(pool, 100) == set()
    # notes past max_age leave the pool too
    pool.publish(np.array([101]), None, [["food"]], ["food"], ts=T0)
    pool.observe(_events([(0, 1, "click")], ts=T0 + 73 * 3600))
    assert pool.summary()["expired"] == 1


@pytest.mark.parametrize(("bandit", "lo", "hi"), [("thompson", 0.95, 1.0), ("uniform", 0.4, 0.6)])
def test_bandit_boosts_the_engaging_note(bandit, lo, hi):
    pool = _pool(seed_size=5, bandit=bandit)
    pool.publish(np.array([100, 101]), None, [["food"], ["food"]], ["food", "food"], ts=T0)
    ev = [(u % 5, 100, "impression") for u in range(40)] + [(u % 5, 100, "click") for u in range(12)] + \
         [(u % 5, 101, "impression") for u in range(40)]
    pool.observe(_events(ev, ts=T0 + 60))
    rng = np.random.default_rng(3)
    wins = sum(pool.candidates_for(0, 1, rng)[0][0] == 100 for _ in range(400))
    assert lo <= wins / 400 <= hi


def test_state_json_round_trip(tmp_path):
    pool = _pool(seed_size=5, lookalike_size=5, lookalike_after_clicks=1)
    vec = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    pool.publish(np.array([100, 101]), vec, [["travel"], ["food"]], ["travel", "food"], ts=T0)
    pool.observe(_events([(2, 100, "impression"), (2, 100, "click"), (1, 101, "impression")], ts=T0 + 60))
    state = json.loads(json.dumps(pool.to_state()))
    back = ColdStartPool.from_state(state)
    assert back.to_state() == pool.to_state()
    for u in range(10):
        a = pool.candidates_for(u, 2, np.random.default_rng(u))
        b = back.candidates_for(u, 2, np.random.default_rng(u))
        assert a[0].tolist() == b[0].tolist() and a[2] == b[2]
        np.testing.assert_allclose(a[1], b[1])
    path = pool.save(tmp_path / "pool.json")
    assert ColdStartPool.load(path).to_state() == pool.to_state()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read state file"):
        ColdStartPool.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="corrupt"):
        ColdStartPool.from_state({**state, "notes": [{"item": 1}]})


def test_bad_input():
    pool = _pool()
    # events on items the pool never saw are ignored and counted (the pool sees the whole stream)
    rep = pool.observe(_events([(0, 999, "click"), (0, 1, "click")]))
    assert rep.ignored == 1 and rep.profile_updates == 1
    with pytest.raises(ValueError, match="'ts'"):
        pool.observe(_events([(0, 1, "click")]).drop(columns="ts"))
    with pytest.raises(ValueError, match="'item'"):
        pool.observe(_events([(0, 1, "click")]).assign(item=[-1]))
    with pytest.raises(ValueError, match="already in the pool"):
        pool.publish(np.array([100, 100]), None, [["a"], ["a"]])
    with pytest.raises(ValueError, match="tags"):
        pool.publish(np.array([200]), None, [["a"], ["b"]])
    with pytest.raises(ValueError, match="vectors"):
        pool.publish(np.array([201]), np.full((1, 3), np.nan), [["a"]])
    with pytest.raises(ValueError, match="ColdStartConfig.seed_size"):
        ColdStartPool(seed_size=0)
    with pytest.raises(ValueError, match="ColdStartConfig.bandit"):
        ColdStartConfig(bandit="greedy").validate()
    with pytest.raises(ValueError, match="k must be"):
        pool.candidates_for(0, -1, np.random.default_rng(0))


def test_content_vector_alone_finds_the_audience():
    """A note with no tags and no category still reaches the right users through its content vector."""
    pool = ColdStartPool(seed_size=5, content_weight=1.0)
    vecs = np.repeat(np.eye(2, dtype=np.float32), 3, axis=0)  # food items -> e0, travel -> e1
    pool.index_items(np.arange(6), TAGS, CATS, vecs)
    pool.observe(_events([(u, i, "click") for u in range(5) for i in (0, 1)] +
                         [(u, i, "click") for u in range(5, 10) for i in (4, 5)]))
    pool.publish(np.array([100]), np.array([[0.1, 0.9]], np.float32), [[]], None, ts=T0)
    assert _audience(pool, 100) == {5, 6, 7, 8, 9}


def test_recall_channel_face():
    from notefeed.data.dataset import Dataset
    from notefeed.recall.base import UserContext

    notes = pd.DataFrame({"note_id": [f"n{i}" for i in range(6)], "author_id": ["c0"] * 6,
                          "tags": TAGS, "category": CATS})
    ev = pd.DataFrame({"user_id": [f"u{u}" for u in range(10) for _ in range(2)],
                       "note_id": [f"n{i}" for u in range(10) for i in ((0, 1) if u < 5 else (4, 5))],
                       "type": "click", "ts": T0})
    ds = Dataset.build("cs-test", ev, notes=notes)
    pool = ColdStartPool(seed_size=5).fit(ds)
    pool.publish(np.array([6]), None, [["food"]], ["food"], ts=T0)
    food_user = ds.user_index["u0"]
    cand = pool.recall(UserContext("u0", user=food_user), 5)
    assert cand.channel == "coldstart/bandit" and cand.items.tolist() == [6]
    assert len(pool.recall(UserContext("u0", user=food_user, seen=np.array([6])), 5)) == 0
    assert len(pool.recall(UserContext("new-user"), 5)) == 0


def test_profiles_survive_a_clock_jump():
    # a dataset from years ago, then live events today: the old interests must still choose the seed audience
    pool = _pool(seed_size=5)
    pool.observe(_events([(11, 0, "click")], ts=T0 + 3 * 365 * 86400))
    pool.publish(np.array([100]), None, [["travel"]], ["travel"], ts=T0 + 3 * 365 * 86400)
    assert _audience(pool, 100) == {5, 6, 7, 8, 9}


def test_a_clock_jump_moves_the_profile_scale_not_every_stored_value():
    """The first live event after a years-old dataset rebases the reference time. That used to
    multiply the whole (U, F) profile (a gigabyte at 100k users, seconds under the serving
    lock), drop the buffer's spare rows (so the next new user copied it all) and make the next
    snapshot re-read every row. Now only the scale moves; profiles in the reference's units are
    what an eager rescale gave."""
    pool, eager = _pool(seed_size=5), _pool(seed_size=5)
    buf, before = id(pool._pbuf), pool._prof.copy()
    pool.baseline()
    jump = T0 + 3 * 365 * 86400
    for p in (pool, eager):
        p.observe(_events([(11, 0, "click")], ts=jump))
    eager._fold_scale()
    assert id(pool._pbuf) == buf and pool._trip is not None  # no copy, the snapshot base stays
    np.testing.assert_array_equal(pool._prof[:10], before[:10])  # rows without events untouched
    assert pool._pscale < 1.0
    np.testing.assert_allclose(pool._prof * pool._pscale, eager._prof, rtol=1e-5, atol=1e-30)
    n = len(pool._prof)
    pool.observe(_events([(n, 1, "click")], ts=jump + 60))  # a new user after the jump: room for it
    assert id(pool._pbuf) == buf and len(pool._prof) == n + 1
    assert set(pool.capture()["profile_rows"].tolist()) <= {11, n}  # changed rows only


def test_repeated_clock_jumps_fold_the_scale_and_match_eager_rescaling():
    pool, eager = _pool(seed_size=5), _pool(seed_size=5)
    ts = T0
    for k in range(6):  # each jump scales by at most 2^-40: the scale folds before float32 runs out
        ts += 20 * 86400 * (k + 1)
        for p in (pool, eager):
            p.observe(_events([(11 - k, k % 3, "click"), (k, 4, "like")], ts=ts))
        eager._fold_scale()
        assert 2.0**-50 <= pool._pscale <= 1.0 and np.isfinite(pool._prof).all()
        np.testing.assert_allclose(pool._prof * pool._pscale, eager._prof, rtol=1e-4, atol=1e-37)
    # kept up to date through folds (cells of ~1e-40 lose digits as float32 subnormals)
    np.testing.assert_allclose(pool._rnorm, np.linalg.norm(pool._prof, axis=1), rtol=1e-2)
    for p in (pool, eager):
        p.publish(np.array([100]), None, [["travel"]], ["travel"], ts=ts)
    assert _audience(pool, 100, range(12)) == _audience(eager, 100, range(12))
    state = json.loads(json.dumps(pool.to_state()))
    back = ColdStartPool.from_state(state)
    assert back._pscale == pool._pscale and back.to_state() == state
    with pytest.raises(ValueError, match="profile_scale"):
        ColdStartPool.from_state({**state, "profile_scale": 0.0})


def test_profile_update_gathers_each_events_features_as_a_loop_would():
    """_update_profiles gathers the features of every event's note with ragged-array indexing
    (start-up folds millions of events in): it must add exactly what a per-event loop adds,
    notes without tags or category included."""
    rng = np.random.default_rng(3)
    pool = ColdStartPool(seed_size=5)
    n_items = 40
    tags = [[f"t{k}" for k in rng.choice(12, rng.integers(0, 4), replace=False)] for _ in range(n_items)]
    cats = [None if rng.random() < 0.2 else f"c{rng.integers(3)}" for _ in range(n_items)]
    pool.index_items(np.arange(n_items), tags, cats)
    users = rng.integers(0, 25, 500).astype(np.int64)
    items = rng.integers(0, n_items, 500).astype(np.int64)
    ts = np.sort(rng.integers(0, 10_000, 500)).astype(np.int64)
    pool._update_profiles(users, items, ts)
    want = np.zeros_like(pool._prof)
    w = pool._weights(ts)
    for u, i, wt in zip(users, items, w, strict=True):
        for f in pool.item_feats[int(i)]:
            want[u, f] += wt
    np.testing.assert_allclose(pool._prof, want, rtol=1e-5, atol=1e-6)
    assert pool.item_feats[0] == [pool.vocab[f"tag:{t}"] for t in tags[0]] + (
        [pool.vocab[f"cat:{cats[0]}"]] if cats[0] else [])


def test_state_files_written_as_json_lists_still_load():
    # the format before the profile went as base64: a file saved then must restore the same pool
    pool = _pool(seed_size=5, lookalike_size=5, lookalike_after_clicks=1)
    vec = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    pool.publish(np.array([100, 101]), vec, [["travel"], ["food"]], ["travel", "food"], ts=T0)
    pool.observe(_events([(2, 100, "impression"), (2, 100, "click"), (1, 101, "click")], ts=T0 + 60))
    state = pool.to_state()
    assert isinstance(state["profile"]["value"], str)  # base64: quick to write, whatever its size
    u, f = np.nonzero(pool._prof)
    old = {**state, "profile": {"user": u.tolist(), "feat": f.tolist(), "value": pool._prof[u, f].tolist()},
           "content_profile": None if pool._cprof is None else pool._cprof.ravel().tolist()}
    back = ColdStartPool.from_state(json.loads(json.dumps(old)))
    np.testing.assert_array_equal(back._prof, pool._prof)
    assert back.to_state() == state
    with pytest.raises(ValueError, match="corrupt"):
        ColdStartPool.from_state({**state, "profile": {**state["profile"], "value": "not base64!"}})


def _dense(state: dict) -> np.ndarray:
    from notefeed.online.coldstart.pool import _decode

    p = state["profile"]
    u, f = _decode(p["user"], np.int32), _decode(p["feat"], np.int32)
    assert len(np.unique(u.astype(np.int64) * 1_000_003 + f)) == len(u)  # each cell once: no stale base cells
    out = np.zeros(state["profile_shape"], np.float32)
    out[u, f] = _decode(p["value"], np.float32)
    return out


def test_snapshots_copy_changed_rows_only_and_always_equal_the_profile():
    from notefeed.online.coldstart.pool import encode_state

    pool = _pool()
    rng = np.random.default_rng(0)
    for step in range(12):
        users = rng.integers(0, 14, 5)  # new users too: the profile grows
        pool.observe(_events([(int(u), int(rng.integers(6)), "click") for u in users], ts=T0 + 600 * step))
        if step == 7:  # a clock jump: every profile is rescaled, the next snapshot takes all rows
            pool.observe(_events([(1, 2, "like")], ts=T0 + 400 * 24 * 3600))
        c = pool.capture()
        if step > 0 and step != 7:
            assert set(c["profile_rows"].tolist()) <= set(users.tolist()) | {1}  # the changed rows only
        live = pool._prof.copy()
        late = int(users[0])  # an event after the capture: not in this snapshot, in the next one
        pool.observe(_events([(late, 5, "collect")], ts=T0 + 600 * step + 1))
        state = encode_state(c)
        np.testing.assert_array_equal(_dense(state), live)
        pool.settle(c, saved=bool(step % 3))  # a failed write leaves its rows for the next one
        np.testing.assert_array_equal(_dense(pool.to_state()), pool._prof)
    np.testing.assert_allclose(pool._rnorm, np.linalg.norm(pool._prof, axis=1), rtol=1e-5)


def test_new_users_and_tags_grow_the_profile_without_copying_it_each_time():
    from notefeed.online.coldstart.pool import _member

    pool = _pool()
    bufs, n0 = set(), len(pool._prof)
    for u in range(n0, n0 + 300):  # one new user per event, as a live server sees them
        pool.observe(_events([(u, u % 6, "click")], ts=T0 + u))
        bufs.add(id(pool._pbuf))
        assert pool._prof.shape[0] == u + 1
    assert len(bufs) <= 6  # amortised: a handful of reallocations, not one per new user
    pool.index_items(np.array([6]), [["brand-new-tag"]], ["new-cat"])
    pool.observe(_events([(3, 6, "like")], ts=T0 + 999))
    assert pool._prof.shape[1] == len(pool.vocab) and pool._prof[3, pool.vocab["tag:brand-new-tag"]] > 0
    np.testing.assert_array_equal(_dense(pool.to_state()), pool._prof)
    back = ColdStartPool.from_state(json.loads(json.dumps(pool.to_state())))
    np.testing.assert_array_equal(back._prof, pool._prof)
    buf = id(back._pbuf)  # a restored pool has room for new users too
    back.observe(_events([(len(back._prof), 1, "click")], ts=T0 + 1000))
    assert id(back._pbuf) == buf and len(back._prof) == len(pool._prof) + 1
    np.testing.assert_allclose(pool._rnorm, np.linalg.norm(pool._prof, axis=1), rtol=1e-5)
    keys = {i: None for i in range(0, 1000, 2)}  # many keys, few items: a dict probe each
    np.testing.assert_array_equal(_member(np.array([4, 5, 998, 5000]), keys), [True, False, True, False])
    np.testing.assert_array_equal(_member(np.arange(6), {1: 0, 3: 0}), [False, True, False, True, False, False])


@pytest.mark.parametrize("order", ["ascending", "shuffled"])
def test_a_snapshot_takes_exactly_the_notes_from_min_item_on(order):
    """capture(min_item) finds the late notes by bisection when indices only grew, by a scan
    otherwise: both give what filtering every indexed note gives, in the same order."""
    pool = _pool()
    rng = np.random.default_rng(3)
    new = np.arange(6, 60)
    if order == "shuffled":
        rng.shuffle(new)
    for chunk in np.array_split(new, 9):
        pool.publish(chunk, rng.random((len(chunk), 4)).astype(np.float32),
                     [["food"]] * len(chunk), ["travel"] * len(chunk), ts=T0)
    pool.index_items(np.array([2, 40]), [["cake"], ["beach"]], ["food", "travel"])  # re-indexed: order kept
    assert pool._feat_ascending == (order == "ascending")
    for lo in (0, 3, 6, 30, 59, 60, 1000):
        got = pool.capture(lo)
        want = [i for i in pool.item_feats if i >= lo]
        assert list(got["item_feats"]) == want
        assert got["item_feats"] == {i: pool.item_feats[i] for i in want}
        assert list(got["item_vecs"]) == [i for i in pool.item_vecs if i >= lo]
        pool.settle(got, saved=False)
    back = ColdStartPool.from_state(json.loads(json.dumps(pool.to_state(6))))
    assert back._feat_keys == [i for i in pool.item_feats if i >= 6]


def test_new_users_grow_the_content_profile_and_row_norms_amortised():
    """With content vectors, each new user's first event lengthens the (users, d) content
    profile, the row norms and the changed-rows mask by a view of a buffer with spare rows,
    not a copy of every row; what was there stays, the new rows start at zero."""
    pool = ColdStartPool()
    vecs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    pool.index_items(np.arange(6), TAGS, CATS, vecs)
    pool.observe(_events([(u, u % 6, "click") for u in range(10)]))
    before = pool._cprof.copy()
    bases = {"cprof": set(), "rnorm": set(), "dirty": set()}
    n0 = len(pool._prof)
    for u in range(n0, n0 + 400):
        pool.observe(_events([(u, u % 6, "click")], ts=T0 + u))
        for name in bases:
            arr = getattr(pool, f"_{name}")
            assert len(arr) == u + 1
            bases[name].add(id(arr.base))
    assert all(len(b) <= 8 for b in bases.values()), {k: len(v) for k, v in bases.items()}
    np.testing.assert_allclose(pool._cprof[: len(before)] / np.linalg.norm(pool._cprof[: len(before)], axis=1,
                                                                           keepdims=True),
                               before / np.linalg.norm(before, axis=1, keepdims=True), rtol=1e-5)
    for u in range(n0, n0 + 400):  # one click each on an item with a unit vector: its direction
        np.testing.assert_allclose(pool._cprof[u] / np.linalg.norm(pool._cprof[u]), vecs[u % 6], atol=1e-6)
    np.testing.assert_allclose(pool._rnorm, np.linalg.norm(pool._prof, axis=1), rtol=1e-5)


def _index_one_by_one(pool: ColdStartPool, items, tags, cats) -> None:
    """The definition index_items keeps: a vocab.setdefault per feature, item by item."""
    for i, t, c in zip(items, tags, cats, strict=True):
        ids = [pool.vocab.setdefault(f"tag:{x}", len(pool.vocab)) for x in t]
        if c:
            ids.append(pool.vocab.setdefault(f"cat:{c}", len(pool.vocab)))
        if i not in pool.item_feats:
            pool._note_keys([i])
        pool.item_feats[i] = ids


def test_index_items_gives_the_ids_of_a_setdefault_per_feature():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    words = st.sampled_from(["food", "travel", "笔记", "a b", "", "1", 1, "cake", "x:y", None, "None",
                             float("nan"), "nan"])
    batch = st.lists(st.tuples(st.integers(0, 12), st.lists(words, max_size=4),
                               st.sampled_from([None, "", "food", "travel", "旅行", float("nan"), "nan", 0, 2])),
                     max_size=15)

    @settings(max_examples=150, deadline=None)
    @given(st.lists(batch, min_size=1, max_size=3))
    def check(batches):
        fast, ref = ColdStartPool(), ColdStartPool()
        for b in batches:  # later batches meet a vocabulary and items already known
            items = np.array([r[0] for r in b], np.int64)
            tags, cats = [r[1] for r in b], [r[2] for r in b]
            fast.index_items(items, tags, cats)
            _index_one_by_one(ref, items.tolist(), tags, cats)
            assert fast.vocab == ref.vocab and list(fast.vocab) == list(ref.vocab)
            assert fast.item_feats == ref.item_feats and fast._feat_keys == ref._feat_keys
            assert fast._feat_ascending == ref._feat_ascending

    check()
