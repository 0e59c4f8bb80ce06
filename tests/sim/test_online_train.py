"""The online trainer's simulator study (notefeed/sim/online_train.py)."""

from __future__ import annotations

import torch

from notefeed.sim.online_train import compare_update_modes


def test_compare_update_modes_runs_side_by_side() -> None:
    torch.set_num_threads(1)
    rows = compare_update_modes("tiny", steps=3, seed=0, requests_per_step=10, epochs=1, modes=("frozen", "online"))
    by = {r["mode"]: r for r in rows}
    assert set(by) == {"frozen", "online"}
    assert by["frozen"]["updates"] == 0 and by["online"]["updates"] == 2  # steps 0 and 1 trained at steps 1, 2
    for r in rows:
        assert 0.0 <= r["ctr"] <= 1.0 and r["impressions"] > 0
    assert by["online"]["median_update_latency_s"] < 60
