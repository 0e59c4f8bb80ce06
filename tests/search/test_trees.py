"""Boosted trees (notefeed.search.trees) and the trees fusion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from notefeed.search import SearchError
from notefeed.search.fusion import FEATURES, LearnedFusion, fit_logistic
from notefeed.search.trees import Forest, fit_forest


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
