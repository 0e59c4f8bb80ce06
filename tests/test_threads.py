"""notefeed.threads: request-sized work runs one BLAS/OpenMP and one torch thread."""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_info

from notefeed.threads import one_thread


def test_one_thread_limits_inside_and_restores_after():
    torch.set_num_threads(2)
    before = [p["num_threads"] for p in threadpool_info()]
    with one_thread():
        assert torch.get_num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert torch.get_num_threads() == 2
    assert [p["num_threads"] for p in threadpool_info()] == before
