import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.rank.features import DENSE_NAMES, FeatureBuilder
from notefeed.rank.samples import build_samples
from notefeed.rank.timeindex import TimeIndex


def _feats(ds, u, i, t):
    return FeatureBuilder(ds).features(np.array(u), np.array(i), np.array(t))


def test_no_leakage_events_at_or_after_t_are_invisible(feed):
    s = build_samples(feed)
    rows = np.random.default_rng(0).choice(len(s), 200, replace=False)
    t_cut = int(np.median(s.ts))
    t = np.full(len(rows), t_cut)
    ev = feed.events
    past = feed.with_events(ev[ev["ts"] < t_cut])
    full = FeatureBuilder(feed).features(s.users[rows], s.items[rows], t)
    cut = FeatureBuilder(past).features(s.users[rows], s.items[rows], t)
    # global smoothing priors are whole-log constants; every counter and sequence must match
    rate_cols = [k for k, n in enumerate(DENSE_NAMES) if n.startswith("note_rate_")]
    other = [k for k in range(len(DENSE_NAMES)) if k not in rate_cols]
    np.testing.assert_array_equal(full["dense"][:, other], cut["dense"][:, other])
    for k in ("seq_items", "seq_types", "long_items", "long_types"):
        np.testing.assert_array_equal(full[k], cut[k])
    # and the future is actually there (the test would catch a leak)
    assert (ev["ts"] >= t_cut).sum() > 100


def test_realtime_counter_windows():
    ev = pd.DataFrame({"user_id": ["a"] * 4, "note_id": ["x", "x", "x", "y"],
                       "ts": [100, 3500, 3790, 3800], "type": ["click"] * 4})
    notes = pd.DataFrame({"note_id": ["x", "y"], "category": ["c", "c"]})
    ds = Dataset.build("t", ev, notes)
    f = _feats(ds, [0], [0], [3800])["dense"][0]
    col = {n: round(float(np.expm1(f[k])), 4) for k, n in enumerate(DENSE_NAMES)}
    assert col["rt_note_pos_5m"] == 2  # 3500 and 3790, not 3800 (== t)
    assert col["rt_note_pos_1h"] == 2  # 100 is more than 1h before 3800
    assert col["rt_user_cat_1h"] == 2
    assert col["user_pos_log"] == 3


def test_sequences_are_latest_first_padded_and_sim_matches_category(feed):
    fb = FeatureBuilder(feed)
    s = build_samples(feed)
    f = fb.features(s.users[-50:], s.items[-50:], s.ts[-50:])
    assert f["seq_items"].shape == (50, 50) and f["long_items"].shape == (50, 20)
    li = f["long_items"]
    tgt_cat = fb.item_cat[f["item"]]
    assert np.all((li == 0) | (fb.item_cat[li] == tgt_cat[:, None]))
    # padding is on the left
    seq = f["seq_items"]
    assert np.all(np.diff((seq > 0).astype(int), axis=1) >= 0)


def test_timeindex_last_k_and_errors():
    idx = TimeIndex(np.array([0, 0, 0, 1]), np.array([5, 1, 3, 2]))
    pos = idx.last_k(np.array([0]), np.array([5]), 3)
    assert list(idx.ts[pos[0][pos[0] >= 0]]) == [1, 3]
    assert pos[0][0] == -1
    import pytest

    with pytest.raises(ValueError, match="seg"):
        TimeIndex(np.array([0, 1]), np.array([1]))


def test_bad_items_named(feed):
    import pytest

    with pytest.raises(ValueError, match="items"):
        FeatureBuilder(feed).features(np.array([0]), np.array([10**6]), np.array([0]))


def test_sampled_exposures_without_impressions():
    rng = np.random.default_rng(0)
    n = 400
    ev = pd.DataFrame({"user_id": rng.integers(0, 20, n).astype(str), "note_id": rng.integers(0, 60, n).astype(str),
                       "ts": np.sort(rng.integers(0, 20_000, n)), "type": rng.choice(["click", "collect"], n, p=[.8, .2])})
    notes = pd.DataFrame({"note_id": [str(i) for i in range(60)], "category": [f"c{i % 3}" for i in range(60)]})
    ds = Dataset.build("nb", ev, notes)
    s = build_samples(ds, neg_per_pos=3)
    assert "sampled" in s.source
    assert 0 < s.labels["click"].mean() < 1
    assert np.isnan(s.labels["dwell"]).all() and np.isnan(s.labels["like"]).all()
    neg = s.labels["click"] == 0
    cats = ds.item_category[0]
    assert neg.sum() > 0 and set(np.unique(cats[s.items[neg]])) <= set(np.unique(cats))
