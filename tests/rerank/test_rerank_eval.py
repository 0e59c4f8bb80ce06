"""The rerank eval stage and bench run end to end on small inputs (no figures asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from notefeed.eval.stages import EVAL_STAGES
from notefeed.rerank.bench import run_bench
from notefeed.rerank.evaluate import evaluate_rerank, frontier_gap


def test_frontier_gap_sign() -> None:
    rows = [
        {"method": "a", "ilad@20": 0.1, "ndcg@20": 0.5},
        {"method": "a", "ilad@20": 0.5, "ndcg@20": 0.3},
        {"method": "b", "ilad@20": 0.3, "ndcg@20": 0.2},  # a interpolates to 0.4 there
        {"method": "b", "ilad@20": 0.9, "ndcg@20": 0.0},  # outside a's range: ignored
    ]
    assert frontier_gap(rows, "a", "b") == pytest.approx(0.2)
    assert frontier_gap(rows, "b", "a") != frontier_gap(rows, "a", "b")
    assert math.isnan(frontier_gap(rows, "a", "missing"))


def test_eval_stage_on_the_simulator(tmp_path: Path) -> None:
    pytest.importorskip("notefeed.sim.community")
    assert "rerank" in EVAL_STAGES
    rows = evaluate_rerank(["sim"], ["topk", "ssd", "dpp"], seed=0, quick=True, report_dir=tmp_path)
    methods = {r["method"] for r in rows}
    assert methods == {"topk", "ssd", "dpp"}
    for r in rows:
        assert 0.0 <= r["ndcg@20"] <= 1.0 and 0.0 <= r["small@80"] <= 1.0
        assert 0.0 < r["catcov@20"] <= 1.0
    fair = [r for r in rows if r["setting"] == "fair-0.5"]
    assert fair and all("ndcg_drop_vs_unfair" in r for r in fair)
    # diversity rises with SSD's gamma (ILAD in the space SSD diversifies)
    ssd = sorted((r["value"], r["ilad@20"]) for r in rows if r["method"] == "ssd" and r["setting"] == "")
    assert ssd[-1][1] > ssd[0][1]
    saved = json.loads((tmp_path / "rerank_eval.json").read_text())
    assert saved["summary"]["sim"].keys() >= {"ssd_minus_dpp_ndcg_at_equal_ilad"}
    assert list(tmp_path.glob("*.png"))


def test_bench_smoke() -> None:
    res = run_bench(n=60, d=8, k=10, window=4, reps=3, scaling=False)
    assert set(res["core"]) >= {"ssd", "dpp", "dpp-window", "mmr", "topk"}
    assert all(np.isfinite(v["median_ms"]) and v["p99_ms"] >= v["median_ms"] for v in res["core"].values())
    assert "ssd_over_dpp_median" in res["ratios"]
