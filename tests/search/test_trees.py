"""Boosted trees (notefeed.search.trees) and the trees fusion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from notefeed.search import SearchError, trees
from notefeed.search.fusion import FEATURES, LearnedFusion, fit_logistic
from notefeed.search.trees import Forest, fit_forest, lambdarank_gradients


def _xor(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3))
    return x, ((x[:, 0] > 0.5) ^ (x[:, 1] > 0.5)).astype(float)


def test_trees_learn_an_interaction_a_linear_model_cannot() -> None:
    x, y = _xor(4000, 0)
    xt, yt = _xor(2000, 1)
    forest = fit_forest(x, y, n_trees=60, depth=3, lr=0.3)
    mse_trees = float(np.mean((forest.predict(xt) - yt) ** 2))
    w = fit_logistic(x, y)
    p = 1 / (1 + np.exp(-(xt @ w[:-1] + w[-1])))
    mse_linear = float(np.mean((p - yt) ** 2))
    assert mse_trees < 0.03 and mse_linear > 0.2
    used = np.bincount(forest.feature[forest.threshold < np.inf], minlength=3)
    assert used[2] < min(used[0], used[1])  # the noise column is split on least


def test_constant_target_and_min_leaf() -> None:
    x = np.random.default_rng(0).random((50, 2))
    f = fit_forest(x, np.full(50, 0.25), n_trees=5)
    np.testing.assert_allclose(f.predict(x), 0.25)
    assert np.isinf(f.threshold).all()  # nothing to gain: no split
    g = fit_forest(x, (x[:, 0] > 0.5).astype(float), n_trees=3, depth=3, min_leaf=30)
    assert np.isinf(g.threshold[:, 1:]).all()  # 50 rows cannot give two leaves of 30 below the root


def test_trees_fusion_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((600, len(FEATURES)))
    y = (x[:, FEATURES.index("lex_score")] * x[:, FEATURES.index("user_topic")] > 0.3).astype(float)
    f = LearnedFusion(model="trees").fit(x, y, n_trees=20)
    f.save(tmp_path / "fusion.json")
    g = LearnedFusion.load(tmp_path / "fusion.json")
    assert g.model == "trees" and g.tree_params["n_trees"] == 20
    np.testing.assert_array_equal(g.score(x), f.score(x))
    auc_like = np.mean(f.score(x)[y == 1]) - np.mean(f.score(x)[y == 0])
    assert auc_like > 0.5
    raw = json.loads((tmp_path / "fusion.json").read_text())
    raw["forest"]["value"] = raw["forest"]["value"][:-1]
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(SearchError, match="corrupt"):
        LearnedFusion.load(tmp_path / "bad.json")
    with pytest.raises(SearchError, match="model"):
        LearnedFusion(model="forest")
    with pytest.raises(SearchError, match="not fitted"):
        LearnedFusion(model="trees").score(x)


def test_forest_json_keeps_infinite_thresholds() -> None:
    f = Forest(np.zeros((1, 1), np.int64), np.array([[np.inf]]), np.array([[1.0, 2.0]]), 0.5)
    g = Forest.from_json(json.loads(json.dumps(f.to_json())))
    assert np.isinf(g.threshold).all()
    np.testing.assert_allclose(g.predict(np.array([[1e9], [-1.0]])), [1.5, 1.5])


def _ndcg_at(scores: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    order = np.argsort(-scores, kind="stable")[:k]
    disc = 1 / np.log2(np.arange(2, k + 2))
    ideal = float(((2 ** np.sort(y)[::-1][:k] - 1) * disc[: min(k, len(y))]).sum())
    return float(((2 ** y[order] - 1) * disc[: len(order)]).sum()) / ideal if ideal > 0 else 0.0


def _brute_lambdas(pred: np.ndarray, y: np.ndarray, sizes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair with different labels, its |change of NDCG@k| found by swapping the two rows'
    places in the ranking (ties in row order)."""
    g, h = np.zeros(len(pred)), np.zeros(len(pred))
    start = 0
    for size in sizes.tolist():
        s, r = pred[start: start + size], y[start: start + size]
        order = np.argsort(-s, kind="stable")
        places = -np.arange(size, dtype=float)  # scores that give the same ranking without ties
        base = np.empty(size)
        base[order] = places
        for i in range(size):
            for j in range(size):
                if r[i] <= r[j]:
                    continue
                sw = base.copy()
                sw[[i, j]] = sw[[j, i]]
                delta = abs(_ndcg_at(sw, r, k) - _ndcg_at(base, r, k))
                rho = 1 / (1 + np.exp(s[i] - s[j]))
                g[start + i] += rho * delta
                g[start + j] -= rho * delta
                h[start + i] += rho * (1 - rho) * delta
                h[start + j] += rho * (1 - rho) * delta
        start += size
    return g, h


def test_lambdarank_gradients_match_swapping_each_pair() -> None:
    rng = np.random.default_rng(3)
    sizes = np.array([0, 1, 7, 14, 25, 4])
    n = int(sizes.sum())
    pred = rng.normal(size=n).round(1)  # some ties: they rank in row order, as swapping sees them
    y = rng.integers(0, 4, n).astype(float)
    y[1:8] = 0  # a group with nothing relevant: no gradient
    g, h = lambdarank_gradients(pred, y, sizes, k=5)
    gb, hb = _brute_lambdas(pred, y, sizes, 5)
    np.testing.assert_allclose(g, gb, atol=1e-12)
    np.testing.assert_allclose(h, hb, atol=1e-12)
    assert np.abs(g[1:8]).max() == 0 and np.abs(g).max() > 0


def _groups(n_groups: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups whose top 3 rows (grade 3) and next 5 (grade 1) are those of the highest first
    feature; the second is noise."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 40, n_groups)
    xs, ys = [], []
    for size in sizes.tolist():
        signal = rng.random(size)
        x = np.c_[signal, rng.random(size)]
        ranks = np.argsort(np.argsort(-signal))
        ys.append(np.select([ranks < 3, ranks < 8], [3.0, 1.0], 0.0))
        xs.append(x)
    return np.concatenate(xs), np.concatenate(ys), sizes


def test_lambdarank_learns_a_planted_ranking() -> None:
    x, y, sizes = _groups(120, 0)
    xt, yt, st = _groups(60, 1)
    off = np.r_[0, np.cumsum(st)]

    def mean_ndcg(p: np.ndarray) -> float:
        return float(np.mean([_ndcg_at(p[a:b], yt[a:b]) for a, b in zip(off[:-1], off[1:], strict=True)]))

    ranker = fit_forest(x, y, objective="lambdarank", groups=sizes, n_trees=30, depth=3, lr=0.2, min_leaf=5)
    assert mean_ndcg(ranker.predict(xt)) > 0.95 > 0.7 > mean_ndcg(xt[:, 1])
    assert ranker.base == 0.0  # scores, not labels
    with pytest.raises(ValueError, match="groups"):
        fit_forest(x, y, objective="lambdarank")
    with pytest.raises(ValueError, match="summing"):
        fit_forest(x, y, objective="lambdarank", groups=sizes[:-1])
    with pytest.raises(ValueError, match="objective"):
        fit_forest(x, y, objective="pairwise")


def test_trees_fusion_lambdarank_keeps_its_objective(tmp_path: Path) -> None:
    x, y, sizes = _groups(40, 2)
    xf = np.zeros((len(x), len(FEATURES)))
    xf[:, FEATURES.index("lex_score")] = x[:, 0]
    f = LearnedFusion(model="trees").fit(xf, y, groups=sizes, n_trees=10)
    assert f.tree_params["objective"] == "lambdarank"
    f.save(tmp_path / "fusion.json")
    g = LearnedFusion.load(tmp_path / "fusion.json")
    assert g.tree_params["objective"] == "lambdarank"
    np.testing.assert_array_equal(g.score(xf), f.score(xf))
    assert LearnedFusion(model="trees").fit(xf, y / 3, n_trees=2).tree_params["objective"] == "squared"
    with pytest.raises(SearchError, match="groups"):
        LearnedFusion(model="trees").fit(xf, y, objective="lambdarank")


def test_lambdarank_leaves_take_newton_steps() -> None:
    x, y, sizes = _groups(30, 4)
    f = fit_forest(x, y, objective="lambdarank", groups=sizes, n_trees=1, depth=1, lr=0.5, l2=2.0, min_leaf=5)
    g, h = lambdarank_gradients(np.zeros(len(y)), y, sizes, 10)
    right = x[:, f.feature[0, 0]] > f.threshold[0, 0]
    for leaf, rows in enumerate((~right, right)):
        assert f.value[0, leaf] == pytest.approx(0.5 * g[rows].sum() / (h[rows].sum() + 2.0))


def test_lambdarank_gradients_in_runs_of_groups_equal_all_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(0, 30, 40)
    pred, y = rng.normal(size=int(sizes.sum())), rng.integers(0, 4, int(sizes.sum())).astype(float)
    whole = lambdarank_gradients(pred, y, sizes, 10)
    monkeypatch.setattr(trees, "_PAIR_CELLS", 700)  # about 2 groups a run
    runs = lambdarank_gradients(pred, y, sizes, 10)
    np.testing.assert_allclose(runs[0], whole[0], rtol=0, atol=1e-14)  # padding widths differ: summation order
    np.testing.assert_allclose(runs[1], whole[1], rtol=0, atol=1e-14)
    assert np.abs(whole[0]).max() > 0
