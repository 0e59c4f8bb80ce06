"""notefeed.threads: request-sized work runs one BLAS/OpenMP and one torch thread."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest
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


def test_fifo_gate_limits_holders_and_admits_in_arrival_order():
    import threading
    import time

    from notefeed.threads import FifoGate

    gate = FifoGate(1)
    order, active, peak = [], [0], [0]
    mu = threading.Lock()
    assert gate.acquire() == 0.0  # free: no wait

    def visitor(i: int) -> None:
        with gate.held() as waited:
            assert waited > 0
            with mu:
                order.append(i)
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.002)
            with mu:
                active[0] -= 1

    threads = []
    for i in range(6):  # each queued behind the previous one before the next starts
        t = threading.Thread(target=visitor, args=(i,))
        t.start()
        threads.append(t)
        while gate.waiting < i + 1:
            time.sleep(0.001)
    gate.release()
    for t in threads:
        t.join()
    assert order == list(range(6)) and peak[0] == 1 and gate.waiting == 0
    with pytest.raises(RuntimeError, match="without a holder"):
        gate.release()
    with pytest.raises(ValueError, match="limit"):
        FifoGate(-1)


@pytest.mark.parametrize(("limit", "expect"), [(2, 2), (0, 5)])
def test_fifo_gate_limit_two_and_unlimited(limit: int, expect: int):
    import threading
    import time

    from notefeed.threads import FifoGate

    gate, active, peak = FifoGate(limit), [0], [0]
    mu, start = threading.Lock(), threading.Barrier(5)

    def visitor() -> None:
        start.wait()
        with gate.held():
            with mu:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with mu:
                active[0] -= 1

    ts = [threading.Thread(target=visitor) for _ in range(5)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert peak[0] == expect


def test_async_fifo_gate_order_cancellation_and_handover():
    import asyncio

    from notefeed.threads import AsyncFifoGate

    async def main() -> None:
        gate = AsyncFifoGate(1)
        order: list[int] = []
        assert await gate.acquire() == 0.0

        async def visitor(i: int) -> None:
            waited = await gate.acquire()
            try:
                assert waited > 0
                order.append(i)
                await asyncio.sleep(0.001)
            finally:
                gate.release()

        tasks = [asyncio.create_task(visitor(i)) for i in range(5)]
        await asyncio.sleep(0.01)
        assert gate.waiting == 5
        tasks[2].cancel()  # cancelled while waiting: leaves the queue
        await asyncio.sleep(0)
        assert gate.waiting == 4
        await asyncio.sleep(0.01)
        gate.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert order == [0, 1, 3, 4] and gate.waiting == 0
        # handed the place in the same step as it is cancelled: the place passes on, not lost
        assert await gate.acquire() == 0.0
        late = asyncio.create_task(gate.acquire())
        after = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0.01)
        gate.release()  # hands the place to `late`...
        late.cancel()  # ...which is cancelled before it runs
        await asyncio.gather(late, return_exceptions=True)
        assert await asyncio.wait_for(after, 1.0) > 0  # `after` got it
        gate.release()
        assert await gate.acquire() == 0.0  # and it is free again: nothing leaked
        gate.release()
        with pytest.raises(RuntimeError, match="without a holder"):
            gate.release()

    asyncio.run(main())


def test_async_fifo_gate_limits():
    import asyncio

    from notefeed.threads import AsyncFifoGate

    async def peak_of(limit: int) -> int:
        gate, active, peak = AsyncFifoGate(limit), [0], [0]

        async def visitor() -> None:
            await gate.acquire()
            try:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                await asyncio.sleep(0.01)
                active[0] -= 1
            finally:
                gate.release()

        await asyncio.gather(*(visitor() for _ in range(5)))
        return peak[0]

    assert asyncio.run(peak_of(2)) == 2
    assert asyncio.run(peak_of(0)) == 5
    with pytest.raises(ValueError, match="limit"):
        AsyncFifoGate(-1)


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_trim_heap_hands_freed_memory_back() -> None:
    """glibc keeps freed heap blocks below a live one; ``trim_heap`` returns them (what a
    ``train --every`` round and a model swap call once they dropped their data)."""
    import numpy as np

    from notefeed.threads import trim_heap

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    blocks = [np.ones(2000, np.uint8) for _ in range(100_000)]  # ~200 MB of heap blocks, not mmap'd
    keep = blocks[-1]  # alive above the rest: the heap's top cannot shrink on its own
    del blocks
    held = rss_mb()
    ms = trim_heap()
    assert ms is not None and ms >= 0
    assert held - rss_mb() > 100, (held, rss_mb())
    assert keep.sum() == 2000


def test_keep_freed_memory_sets_the_allocator(monkeypatch) -> None:
    """``keep_freed_memory``: glibc's ``mallopt`` set to serve large blocks from the heap and
    keep freed ones there; nothing without glibc."""
    import notefeed.threads as th

    calls: list[tuple] = []

    class FakeLibc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

        def malloc_trim(self, pad: int) -> int:
            return 1

    monkeypatch.setattr(th, "_LIBC", [FakeLibc()])
    assert th.keep_freed_memory() is True
    assert calls == [(-4, 0), (-1, 1 << 30), (-2, 256 << 20)]
    monkeypatch.setattr(th, "_LIBC", [None])
    assert th.keep_freed_memory() is False and th.trim_heap() is None
