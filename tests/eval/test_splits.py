"""Split invariants on a synthetic community and on a hand-built one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from notefeed.data.dataset import DataError, Dataset
from notefeed.eval.splits import leave_last_out, make_split, ratio_split, temporal_split
from notefeed.schema import POSITIVE_TYPES


def _keys(ev: pd.DataFrame, n_items: int) -> np.ndarray:
    return ev["user"].to_numpy(np.int64) * n_items + ev["item"].to_numpy(np.int64)


def test_loo_hand_case() -> None:
    ev = pd.DataFrame(
        [
            ("a", "x", 1, "click"),
            ("a", "y", 2, "like"),
            ("a", "x", 3, "like"),  # repeat of x: y stays the last *new* item... until z
            ("a", "z", 4, "click"),
            ("a", "z", 5, "impression"),
            ("b", "x", 1, "click"),  # one positive: train only
            ("c", "y", 1, "impression"),
        ],
        columns=["user_id", "note_id", "ts", "type"],
    )
    ds = Dataset.build("hand", ev)
    s = leave_last_out(ds, valid=True)
    a, z, y = ds.user_index["a"], ds.item_index["z"], ds.item_index["y"]
    assert s.test_users.tolist() == [a]
    assert s.test_item_lists()[0].tolist() == [z]
    assert s.valid_users.tolist() == [a] and s.valid_items is not None
    assert s.valid_items[0].indices.tolist() == [y]
    tr = s.train.events
    # every event of a on z and y is gone (the impression too); b and c untouched
    assert not ((tr["user"] == a) & tr["item"].isin([z, y])).any()
    assert len(tr) == 7 - 3
    assert s.train.n_items == ds.n_items  # same catalogue and indices


def test_loo_no_test_positive_in_train(synth: Dataset) -> None:
    s = leave_last_out(synth)
    truth = s.test_items.tocoo()
    test_keys = s.test_users[truth.row] * synth.n_items + truth.col
    assert not np.isin(test_keys, _keys(s.train.events, synth.n_items)).any()
    # one test item per test user, and each is that user's last new positive
    assert (np.diff(s.test_items.indptr) == 1).all()
    pos = synth.select_events(POSITIVE_TYPES)
    for u, it in list(zip(s.test_users, s.test_items.indices, strict=True))[:20]:
        first = pos[pos["user"] == u].drop_duplicates("item")
        assert first["item"].iloc[-1] == it
    assert s.summary()["test_users"] == len(s.test_users)


def test_temporal_no_future_in_train(synth: Dataset) -> None:
    s = temporal_split(synth, q=0.8)
    cut = s.params["cutoff_ts"]
    assert s.train.events["ts"].max() < cut
    truth = s.test_items.tocoo()
    users, items = s.test_users[truth.row], truth.col
    train_pos = s.train.select_events(POSITIVE_TYPES)
    # test users and items are known from training positives; no pair was already seen
    assert np.isin(users, train_pos["user"]).all() and np.isin(items, train_pos["item"]).all()
    assert not np.isin(users * synth.n_items + items, _keys(train_pos, synth.n_items)).any()
    # every test pair is a positive event at or after the cut-off
    later = synth.select_events(POSITIVE_TYPES)
    later = later[later["ts"] >= cut]
    assert np.isin(users * synth.n_items + items, _keys(later, synth.n_items)).all()
    assert len(users) > 0


def test_bad_split_input(synth: Dataset) -> None:
    with pytest.raises(ValueError, match="q"):
        temporal_split(synth, q=1.5)
    with pytest.raises(ValueError, match="unknown kind"):
        make_split(synth, "random")
    only_imp = Dataset.build("imp", pd.DataFrame([("a", "x", 1, "impression")], columns=["user_id", "note_id", "ts", "type"]))
    with pytest.raises(DataError, match="no positive events"):
        leave_last_out(only_imp)


def test_ratio_split(synth: Dataset) -> None:
    s = ratio_split(synth, test_frac=0.2, seed=3)
    truth = s.test_items.tocoo()
    keys = s.test_users[truth.row] * synth.n_items + truth.col
    assert not np.isin(keys, _keys(s.train.events, synth.n_items)).any()
    n_pos = synth.interactions().getnnz(axis=1)
    per_user = np.diff(s.test_items.indptr)
    assert np.allclose(per_user, np.clip(np.rint(0.2 * n_pos[s.test_users]), 1, None))
    again = ratio_split(synth, test_frac=0.2, seed=3)
    assert (again.test_items != s.test_items).nnz == 0  # seeded
    with pytest.raises(ValueError, match="test_frac"):
        ratio_split(synth, test_frac=0.0)
