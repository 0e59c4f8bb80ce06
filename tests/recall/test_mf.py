"""``embedding/als``: implicit ALS note factors, user vectors folded in from the request's history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from notefeed.data.dataset import Dataset
from notefeed.models.artifacts import load_component, save_component
from notefeed.recall.base import UserContext
from notefeed.recall.mf import ALSChannel, fold_in


def two_camps(n_users: int = 80, n_items: int = 60, seed: int = 0) -> Dataset:
    """Even users click only even notes, odd users only odd notes."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(np.arange(u % 2, n_items, 2), 8, replace=False)):
            rows.append((f"u{u}", f"n{i}", 1_700_000_000 + 10 * t, "click"))
    return Dataset.build("camps", pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"]))


def _item_parity(ds: Dataset, items: np.ndarray) -> np.ndarray:
    ids = ds.notes["note_id"].astype(str).to_numpy()[items]
    return np.array([int(s[1:]) % 2 for s in ids])


def test_folded_in_history_recalls_the_users_camp_and_skips_the_history():
    ds = two_camps()
    ch = ALSChannel(factors=2, iterations=15).fit(ds)
    ids = ds.notes["note_id"].astype(str).to_numpy()
    odd = np.flatnonzero([int(s[1:]) % 2 == 1 for s in ids])
    ctx = UserContext("new-user", None, history=odd[:5])  # a user the fit never saw
    c = ch.recall(ctx, 10)
    assert len(c) == 10 and (_item_parity(ds, c.items) == 1).mean() >= 0.9
    assert not np.isin(c.items, odd[:5]).any()
    assert np.all(np.diff(c.scores) <= 0)
    # score_items agrees with recall's scores, and without history nothing is recalled
    np.testing.assert_allclose(ch.score_items(ctx, c.items), c.scores, rtol=1e-5)
    assert len(ch.recall(UserContext("x", None), 10)) == 0
    assert (ch.score_items(UserContext("x", None), c.items) == 0).all()


def test_fold_in_solves_the_als_user_problem():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(30, 4))
    h = np.array([3, 7, 7, 12])
    x = fold_in(y, y.T @ y, h, alpha=5.0, reg=0.1)
    # the ALS user objective: sum_i c_i (p_i - x.y_i)^2 + reg |x|^2, c = 1 + alpha on the history
    p = np.zeros(30)
    p[[3, 7, 12]] = 1
    c = 1 + 5.0 * p

    def loss(v: np.ndarray) -> float:
        return float((c * (p - y @ v) ** 2).sum() + 0.1 * v @ v)

    for _ in range(20):  # no nearby point is better
        assert loss(x) <= loss(x + rng.normal(scale=1e-3, size=4)) + 1e-12
    assert (fold_in(y, y.T @ y, np.empty(0, np.int64), 5.0, 0.1) == 0).all()


def test_state_round_trip_gives_the_same_scores(tmp_path):
    ds = two_camps()
    ch = ALSChannel(factors=8, iterations=5).fit(ds)
    back = load_component(save_component(ch, tmp_path / "als"))
    ctx = UserContext("u0", 0, history=np.array([0, 2, 4]))
    np.testing.assert_array_equal(ch.recall(ctx, 20).items, back.recall(ctx, 20).items)
    with pytest.raises(ValueError, match="factors"):
        ALSChannel.from_state({"n_items": 3, "params": {"factors": 5}}, {"item_factors": np.zeros((3, 4))})


@pytest.mark.parametrize("bad", [{"factors": 0}, {"iterations": 0}, {"alpha": -1.0}])
def test_bad_params_name_the_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad)) if "alpha" not in bad else "alpha"):
        ALSChannel(**bad)


def test_hnsw_above_the_threshold_recalls_what_exact_scoring_does():
    ds = two_camps(n_users=200, n_items=400)
    exact = ALSChannel(factors=8, iterations=5).fit(ds)
    ann = ALSChannel(factors=8, iterations=5, hnsw_min=100).fit(ds)
    assert ann._ann is not None and exact._ann is None
    ctx = UserContext("u1", 1, history=np.array([1, 3, 5, 7]))
    a, b = exact.recall(ctx, 20), ann.recall(ctx, 20)
    assert len(np.intersect1d(a.items, b.items)) >= 18 and not np.isin(b.items, ctx.history).any()


def test_unfitted_channel_recalls_nothing_and_never_raises():
    ch = ALSChannel()  # serving an empty workspace: nothing to fit on
    ctx = UserContext("u", None, history=np.array([1, 2]))
    assert len(ch.recall(ctx, 10)) == 0 and (ch.score_items(ctx, np.array([1, 2])) == 0).all()
    assert ch.item_vectors is None


def test_a_stored_hnsw_index_loads_without_a_rebuild_and_is_checked(monkeypatch):
    from notefeed.recall.ann import ANN_KEY, AnnIndex

    ds = two_camps(n_users=200, n_items=400)
    ann = ALSChannel(factors=8, iterations=5, hnsw_min=100).fit(ds)
    params, arrays = ann.to_state()
    assert arrays[ANN_KEY].dtype == np.uint8
    calls = []
    real = AnnIndex.of_rows
    monkeypatch.setattr(AnnIndex, "of_rows", classmethod(lambda cls, *a, **k: calls.append(1) or real(*a, **k)))
    back = ALSChannel.from_state(params, arrays)
    assert calls == [] and back._ann is not None and back._ann.kind == "hnsw"
    ctx = UserContext("u1", 1, history=np.array([1, 3, 5, 7]))
    np.testing.assert_array_equal(back.recall(ctx, 20).items, ann.recall(ctx, 20).items)
    # an index of other notes than the stored factors is an error, not a silent mismatch
    params2, arrays2 = ALSChannel(factors=8, iterations=5, hnsw_min=100).fit(
        two_camps(n_users=200, n_items=300)).to_state()
    with pytest.raises(ValueError, match=r"index of \d+ x 8 vectors, expected \d+ x 8"):
        ALSChannel.from_state(params, {**arrays, ANN_KEY: arrays2[ANN_KEY]})
    with pytest.raises(ValueError, match="not a FAISS index"):
        ALSChannel.from_state(params, {**arrays, ANN_KEY: np.zeros(64, np.uint8)})
    # without a stored index (an older version) it is built as before
    del arrays[ANN_KEY]
    calls.clear()
    assert ALSChannel.from_state(params, arrays)._ann is not None and calls == [1]
