"""rank/ltr: the listwise ranker learns a planted signal and keeps a planted top item."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.rank.ltr import Group, ListwiseRanker, LTRConfig


def _groups(n: int, m: int, seed: int, planted: bool = True) -> list[Group]:
    rng = np.random.default_rng(seed)
    out = []
    for g in range(n):
        x = rng.standard_normal((m, 4)).astype(np.float32)
        pos = int(rng.integers(m))
        if planted:  # feature 2 (not the first!) marks the chosen item, with noise
            x[pos, 2] += 3.5
        out.append(Group(x, pos, float(g)))
    return out


def _hr1(model: ListwiseRanker, groups: list[Group]) -> float:
    return float(np.mean([np.argmax(model.predict(g.x)) == g.pos for g in groups]))


def test_learns_planted_feature_and_beats_chance():
    cfg = LTRConfig(epochs=15, negatives=20, hidden=16, threads=1)
    model = ListwiseRanker(["a", "b", "planted", "d"], cfg).fit(_groups(400, 30, 0), progress=False)
    test = _groups(200, 30, 1)
    assert _hr1(model, test) > 0.6  # chance is 1/30
    assert model.metrics["valid_hr10_in_candidates"] > 0.8
    # control: with nothing planted the same training finds nothing
    null = ListwiseRanker(["a", "b", "planted", "d"], cfg).fit(_groups(400, 30, 2, planted=False), progress=False)
    assert _hr1(null, _groups(200, 30, 3, planted=False)) < 0.15


def test_state_round_trip_identical_scores():
    model = ListwiseRanker(["a", "b", "c", "d"], LTRConfig(epochs=2, threads=1)).fit(_groups(50, 10, 0), progress=False)
    params, arrays = model.to_state()
    back = ListwiseRanker.from_state(params, arrays)
    x = np.random.default_rng(5).standard_normal((7, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), back.predict(x))
    assert back.feature_names == ["a", "b", "c", "d"] and back.metrics == model.metrics


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="need >= 10"):
        ListwiseRanker(["a"]).fit([Group(np.zeros((3, 1), np.float32), 0)])
    model = ListwiseRanker(["a", "b", "c", "d"], LTRConfig(epochs=1, threads=1)).fit(_groups(20, 5, 0), progress=False)
    with pytest.raises(ValueError, match="expected"):
        model.predict(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="does not match"):
        ListwiseRanker.from_state({"feature_names": ["a"]}, {})
