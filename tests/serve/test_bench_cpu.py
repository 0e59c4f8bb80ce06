"""``bench serve`` records the load phase's CPU seconds of the server process."""

from __future__ import annotations

import os
import sys
import time

import pytest

from notefeed.serve.bench import _cpu_during, process_cpu_s


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_process_cpu_seconds_grow_with_work() -> None:
    before = process_cpu_s(os.getpid())
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:
        sum(range(10_000))
    after = process_cpu_s(os.getpid())
    assert before is not None and after is not None and after - before >= 0.2
    assert process_cpu_s(2**31 - 1) is None  # no such process


def test_cpu_per_request_counts_both_pipelines_and_event_posts() -> None:
    load = {"pipelines": {"default": {"requests": 30}, "popular": {"requests": 20}}, "events": {"batches": 10}}
    got = _cpu_during(1, load, 5.0, 5.6, 0.25)
    assert got["requests"] == 60 and got["server_cpu_s"] == pytest.approx(0.6)
    assert got["server_cpu_ms_per_request"] == pytest.approx(10.0) and got["client_cpu_s"] == 0.25
    assert _cpu_during(1, load, None, 5.6, 0.25)["server_cpu_ms_per_request"] is None
