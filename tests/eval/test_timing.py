"""Latency summaries: the p99's distribution-free interval."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.eval.timing import latency_stats, quantile_interval


def test_p99_interval_covers_the_true_quantile_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    truth = -np.log(0.01)  # exponential(1)'s 99th percentile
    hits = 0
    for _ in range(2000):
        lo, hi = quantile_interval(rng.exponential(1.0, 1000), 0.99)
        hits += lo <= truth < hi
    # binomial sd at 2000 trials is 0.005: an interval built to cover 95% lands above 0.94
    assert 0.94 <= hits / 2000 <= 0.985


def test_too_few_samples_give_no_interval() -> None:
    assert quantile_interval(np.arange(367.0), 0.99) is None
    lo, hi = quantile_interval(np.arange(368.0), 0.99)
    assert lo < hi == 367.0  # the largest sample is the upper end at the smallest n
    assert "p99_lo95_ms" not in latency_stats(np.ones(100))
    assert quantile_interval([], 0.5) is None
    with pytest.raises(ValueError, match="q and level"):
        quantile_interval([1.0], 1.0)


def test_latency_stats_reports_the_interval_around_the_p99() -> None:
    s = latency_stats(np.random.default_rng(1).exponential(0.01, 1200))
    assert s["p99_lo95_ms"] <= s["p99_ms"] <= s["p99_hi95_ms"]
    # the median's interval from the same rule is narrow and holds the median
    lo, hi = quantile_interval(np.arange(1001.0), 0.5)
    assert lo <= 500.0 <= hi and hi - lo < 80


def test_machine_info_names_the_packages_commit_and_cpu_that_ran() -> None:
    import importlib.metadata
    import subprocess
    from pathlib import Path

    from notefeed.eval.timing import RESULT_PACKAGES, machine_info

    info = machine_info()
    assert set(info["packages"]) == set(RESULT_PACKAGES)
    assert info["packages"]["numpy"] == importlib.metadata.version("numpy") == np.__version__
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout (CI's clean clone is one)
        assert info["commit"].split("+")[0] == head.stdout.strip()
    assert info["cpu_model"] is None or isinstance(info["cpu_model"], str)
    import torch

    from notefeed.recall.sequential import _use_bf16

    # whether SASRec trains in bf16 on this machine, as its fit decides it
    assert info["cpu_bf16"] is _use_bf16(torch.device("cpu"))
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_time_method_records_every_call_also_a_failed_one() -> None:
    import types

    from notefeed.eval.timing import time_method

    mod = types.SimpleNamespace(f=lambda x: 2 * x)

    class Thing:
        def g(self, y: int) -> int:
            if y < 0:
                raise ValueError("negative")
            return y + 1

    got: list[tuple[float, float, float]] = []
    time_method(mod, "f", lambda *r: got.append(r))
    time_method(Thing, "g", lambda *r: got.append(r))
    assert mod.f(3) == 6 and Thing().g(1) == 2
    with pytest.raises(ValueError, match="negative"):
        Thing().g(-1)
    assert len(got) == 3
    assert all(wall >= 0 and cpu >= 0 for _, wall, cpu in got)
    assert got[0][0] <= got[1][0] <= got[2][0]  # starts, in call order
