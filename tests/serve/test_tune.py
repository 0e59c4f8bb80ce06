"""Fusion tuning against the simulator: the objective runs the serving pipeline in closed loop."""

import pytest

from notefeed.serve.tune import sim_fusion_objective


def test_sim_objective_is_deterministic_and_penalises_small_creator_shortfall():
    log: list[dict] = []
    weights = {"click": 1.0, "like": 0.5, "collect": 0.5, "comment": 0.3, "share": 0.3, "dwell": 0.2}
    obj = sim_fusion_objective("tiny", seed=0, steps=2, requests=10, min_small_share=0.0, log=log)
    a, b = obj(weights), obj(weights)
    assert a == b and a > 0  # same seeds, same weights -> same closed loop
    strict = sim_fusion_objective("tiny", seed=0, steps=2, requests=10, min_small_share=1.0, penalty=2.0)
    share = log[0]["small_creator_share"]
    assert strict(weights) == pytest.approx(a - 2.0 * (1.0 - share))


def test_sim_objective_rejects_bad_settings():
    with pytest.raises(ValueError, match="min_small_share"):
        sim_fusion_objective("tiny", min_small_share=1.5)
    with pytest.raises(ValueError, match="positive"):
        sim_fusion_objective("tiny", steps=0)
