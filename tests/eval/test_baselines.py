"""The Recommender contract for every registered baseline, and quality on structured data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from notefeed.data.dataset import Dataset
from notefeed.eval.baselines import MODELS, Recommender, item_cosine_topk, sparse_row_topk
from notefeed.eval.ranking import rank_all, topk
from notefeed.eval.runner import evaluate_dataset
from notefeed.eval.splits import leave_last_out

FAST = {"als": {"iterations": 5}, "bpr": {"iterations": 30}}


def test_topk() -> None:
    s = np.array([[0.1, 0.5, 0.3, -np.inf], [1.0, -np.inf, -np.inf, -np.inf]])
    idx, vals = topk(s, 3)
    assert idx.tolist() == [[1, 2, 0], [0, -1, -1]]
    assert vals[0].tolist() == pytest.approx([0.5, 0.3, 0.1])
    assert topk(s, 10)[0].shape == (2, 4)
    with pytest.raises(ValueError, match="k"):
        topk(s, 0)


@settings(max_examples=200)
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 45), st.integers(0, 2**32 - 1), st.booleans())
def test_topk_is_the_stable_sort_ties_in_column_order(n, m, k, seed, nan) -> None:
    """The first k of each row's stable descending sort, whatever the CPU's partition
    algorithm does with ties (few distinct values, -inf, and NaN as -inf)."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 4, (n, m)).astype(np.float32)
    s[rng.random((n, m)) < 0.2] = -np.inf
    if nan:
        s[rng.random((n, m)) < 0.1] = np.nan
    idx, vals = topk(s, k)
    ref = np.argsort(-np.where(np.isnan(s), -np.inf, s), axis=1, kind="stable")[:, :k]
    ref_vals = np.take_along_axis(np.where(np.isnan(s), -np.inf, s), ref, axis=1)
    assert idx.tolist() == np.where(np.isneginf(ref_vals), -1, ref).tolist()
    assert vals.tolist() == ref_vals.tolist()


def test_rank_all_masks_seen_in_batches() -> None:
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], np.float32))
    items, _ = rank_all(lambda u: np.tile(np.array([4.0, 3, 2, 1]), (len(u), 1)), np.array([0, 1, 2]), 2, seen, 4, batch=2)
    assert items.tolist() == [[1, 2], [0, 1], [0, 1]]


@pytest.mark.parametrize("name", ["random", "pop", "itemknn", "als", "bpr"])
def test_contract(name: str, synth: Dataset) -> None:
    ui = synth.interactions()
    m = MODELS.create(name, seed=0, **FAST.get(name, {}))
    assert isinstance(m, Recommender) and m.name == name
    with pytest.raises(RuntimeError, match="fit"):
        m.recommend(np.array([0]), 5)
    assert m.fit(ui) is m
    users = np.array([0, 3, 7])
    items, scores = m.recommend(users, 10)
    assert items.shape == scores.shape == (3, 10) and items.dtype == np.int64
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    for r, u in enumerate(users):  # seen items filtered
        assert not np.isin(items[r], ui[u].indices).any()
    unfiltered, _ = m.recommend(users, 10, filter_seen=False)
    assert unfiltered.shape == (3, 10)
    sim, _ = m.similar_items(5, 4)
    assert len(sim) == 4 and 5 not in sim.tolist()
    with pytest.raises(ValueError, match="users"):
        m.recommend(np.array([synth.n_users]), 5)
    with pytest.raises(ValueError, match="k"):
        m.recommend(np.array([0]), 0)


def test_pop_exact_ranking() -> None:
    # item popularity 3 > 2 > 1 > 0 users
    ui = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    m = MODELS.create("pop").fit(ui)
    items, scores = m.recommend(np.array([3, 2]), 3)
    assert items.tolist() == [[0, 1, 2], [1, 2, 3]]
    assert scores[0].tolist() == [3.0, 2.0, 1.0]


def test_itemknn_similarity_by_hand() -> None:
    # items 0 and 1 share both users; item 2 shares one user with item 0
    ui = sp.csr_matrix(np.array([[1, 1, 1], [1, 1, 0]], np.float32))
    sim = item_cosine_topk(ui, k=2, shrink=0.0).toarray()
    assert sim[0, 1] == pytest.approx(1.0)
    assert sim[0, 2] == pytest.approx(1 / np.sqrt(2))
    assert np.diag(sim).tolist() == [0, 0, 0]
    shrunk = item_cosine_topk(ui, k=2, shrink=2.0).toarray()
    assert shrunk[0, 1] == pytest.approx(2 / 4)
    with pytest.raises(TypeError, match="user_items"):
        MODELS.create("itemknn").fit(np.ones((2, 2)))


def test_baselines_beat_random_and_pop_on_structure(synth: Dataset) -> None:
    rows = {r["model"]: r for r in evaluate_dataset(synth, ["random", "pop", "itemknn", "als", "bpr"], "loo", (10,))}
    for name in ("pop", "itemknn", "als", "bpr"):
        assert rows[name]["ndcg@10"] > rows["random"]["ndcg@10"], name
    for name in ("itemknn", "als", "bpr"):  # personalised models see the group structure
        assert rows[name]["recall@10"] > 1.5 * rows["pop"]["recall@10"], name
    assert rows["pop"]["coverage@10"] < rows["random"]["coverage@10"]


def test_split_then_fit_never_recommends_train_items(synth: Dataset) -> None:
    s = leave_last_out(synth)
    train = s.train.interactions()
    items, _ = MODELS.create("itemknn").fit(train).recommend(s.test_users, 20)
    hits_train = [np.isin(items[r], train[u].indices).any() for r, u in enumerate(s.test_users)]
    assert not any(hits_train)


def test_sparse_row_topk_matches_dense() -> None:
    rng = np.random.default_rng(0)
    dense = rng.random((30, 40)).astype(np.float32) * (rng.random((30, 40)) < 0.3)
    kept = sparse_row_topk(sp.csr_matrix(dense), 3).toarray()
    for r in range(30):
        nz = np.sort(dense[r][dense[r] > 0])[::-1][:3]
        assert np.sort(kept[r][kept[r] > 0])[::-1].tolist() == pytest.approx(nz.tolist())


def test_itemknn_blocks_do_not_change_the_result(synth: Dataset) -> None:
    ui = synth.interactions()
    a = item_cosine_topk(ui, k=20, shrink=5.0, block=7).toarray()
    b = item_cosine_topk(ui, k=20, shrink=5.0, block=10_000).toarray()
    assert np.allclose(a, b)
    assert ((a > 0).sum(1) <= 20).all()


def test_itemknn_dense_and_sparse_paths_agree() -> None:
    # a block of fully co-occurring items takes the dense path; a wide sparse one the other
    rng = np.random.default_rng(1)
    dense_ui = sp.csr_matrix((rng.random((50, 30)) < 0.6).astype(np.float32))
    sparse_ui = sp.csr_matrix((rng.random((400, 600)) < 0.004).astype(np.float32))
    for ui in (dense_ui, sparse_ui):
        got = item_cosine_topk(ui, k=5, shrink=1.0).toarray()
        x = ui.toarray()
        n = np.sqrt((x * x).sum(0))
        ref = (x.T @ x) / (n[:, None] * n[None, :] + 1.0 + 1e-12)
        np.fill_diagonal(ref, 0)
        for r in range(ref.shape[0]):
            top = np.sort(ref[r][ref[r] > 0])[::-1][:5]
            assert np.sort(got[r][got[r] > 0])[::-1] == pytest.approx(top, rel=1e-5)


def test_runner_prefers_fit_dataset(synth: Dataset) -> None:
    from notefeed.eval.baselines import PopularityRecommender
    from notefeed.eval.runner import evaluate_model

    seen: list[str] = []

    class LastItemsPop(PopularityRecommender):
        name = "eval-test-fit-dataset"

        def fit_dataset(self, train: Dataset) -> LastItemsPop:
            seen.append(train.name)
            return self.fit(train.interactions())  # type: ignore[return-value]

    if LastItemsPop.name not in MODELS:
        MODELS.register(LastItemsPop.name)(LastItemsPop)
    row = evaluate_model(LastItemsPop.name, leave_last_out(synth), (5,))
    assert seen == [synth.name] and row["model"] == LastItemsPop.name


@pytest.mark.parametrize("name", ["random", "pop", "itemknn", "als", "bpr"])
def test_short_catalogue_pads_instead_of_returning_seen(name: str) -> None:
    ui = sp.csr_matrix((np.random.default_rng(0).random((20, 8)) < 0.3).astype(np.float32))
    m = MODELS.create(name, **({"iterations": 3} if name in ("als", "bpr") else {})).fit(ui)
    items, scores = m.recommend(np.arange(5), 12)
    for u in range(5):
        real = items[u][items[u] >= 0]
        assert not np.isin(real, ui[u].indices).any()
        assert (items[u] == -1).sum() >= ui[u].nnz + 4  # 12 asked, 8 items, seen ones removed
        assert np.isneginf(scores[u][items[u] == -1]).all()
