"""The search build's worker process: tasks run in order, the ones not sent yet can be taken
back, closing fails the held ones, and a dead process fails the rest (never a hang)."""

from __future__ import annotations

import os

import pytest

from notefeed.search.worker import AHEAD, BuildWorker, WorkerGone


def test_tasks_in_order_taken_back_and_closed() -> None:
    w = BuildWorker()
    tasks = [w.submit(pow, 2, k) for k in range(6)]
    # the first AHEAD may be sent already; the last ones are still held here
    assert w.take_back(tasks[-1]) and not w.take_back(tasks[-1])
    assert [t.future.result(timeout=60) for t in tasks[:-1]] == [2**k for k in range(5)]
    assert not w.take_back(tasks[0])  # done there
    held = [w.submit(pow, 3, k) for k in range(AHEAD + 3)]
    w.close()
    got = []
    for t in held:
        try:
            got.append(t.future.result(timeout=60))
        except WorkerGone:
            got.append(None)
    # sent before the close (at most AHEAD): run; still held: failed with WorkerGone, never lost
    assert all(g in (None, 3**k) for k, g in enumerate(got))
    assert sum(g is None for g in got) >= len(held) - AHEAD
    late = w.submit(pow, 2, 2)
    with pytest.raises(WorkerGone):
        late.future.result(timeout=5)


def test_a_dead_process_fails_its_tasks() -> None:
    from concurrent.futures.process import BrokenProcessPool

    w = BuildWorker()
    first = w.submit(os.getpid)
    pid = first.future.result(timeout=60)
    assert pid != os.getpid()
    for proc in w.processes():
        proc.kill()
    after = [w.submit(pow, 2, k) for k in range(3)]
    for t in after:
        with pytest.raises((BrokenProcessPool, WorkerGone)):
            t.future.result(timeout=60)
    w.close()
