"""Thread pools for request-sized work.

A feed request multiplies a vector by a few thousand (up to a million) note vectors, solves a
64 x 64 system, runs a tiny transformer: work that one core does in well under a millisecond
to a few milliseconds. OpenBLAS (numpy's BLAS) splits even those products over its own
pool of spinning threads, one per core; on a 2-core machine that also runs the HTTP server,
the load generator or other jobs, every small product then waits for a core, and the whole
request slows 2-3x (measured on the `demo` workspace under load: the recall stage p50 74 ms
with the default pool against 31 ms with one thread). Serving, the training orchestration's
sample capture and the feed evaluation's workers therefore run BLAS and torch with one
thread per process; model fitting that is one large product (ALS, the rankers' epochs) keeps
its own settings.

A serving process also takes the heap it was built with out of the cyclic garbage collector's
reach (:func:`freeze_heap`): a trained 100k-note engine leaves ~450k tracked container objects,
and every full collection walked all of them (~150 ms of one core, a stall of every request in
flight) although none of them ever becomes garbage while it serves.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["gc_paused", "one_thread", "one_thread_for_process", "serving_process", "freeze_heap", "trim_heap", "keep_freed_memory", "default_workers",
           "forked_imap", "FifoGate", "AsyncFifoGate"]

_PROCESS_LIMITS: Any = None  # kept alive for the life of the process
_SERVING = False

#: ``NOTEFEED_GC_FREEZE=0`` keeps the built heap in the collector's reach (an A/B of the freeze)
ENV_GC_FREEZE = "NOTEFEED_GC_FREEZE"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside (back on after, if it was on).

    Indexing notes and building an engine make millions of small lists and strings, none in a
    cycle; each time enough of them survive, the collector walks every container the process
    holds. On 100k simulated notes that took ~40 % of the search analysis' CPU time; the cold-start
    pool's features of a million notes took 2.5 s with it, 1.4 s without.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def one_thread() -> Iterator[None]:
    """One BLAS/OpenMP thread (threadpoolctl) and one torch thread inside the block; the
    previous settings after it."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(1):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def one_thread_for_process() -> None:
    """One BLAS/OpenMP thread and one torch thread for the rest of this process (a serving
    process or a forked evaluation worker)."""
    import torch
    from threadpoolctl import threadpool_limits

    global _PROCESS_LIMITS, _SERVING
    _PROCESS_LIMITS = threadpool_limits(1)
    torch.set_num_threads(1)
    _SERVING = True


def serving_process() -> bool:
    """Whether this process serves requests (it called :func:`one_thread_for_process`): the
    engine it builds freezes its heap once built (:func:`freeze_heap`)."""
    return _SERVING


def freeze_heap() -> float | None:
    """Collect garbage once, then move every object alive now into the collector's permanent
    generation (``gc.freeze``): later collections walk only what requests allocate. Reference
    counting still frees frozen objects; only a reference cycle among them is never collected,
    so call it once a long-lived structure (the serving engine) is built, not per request.
    Returns the milliseconds it took, ``None`` when ``NOTEFEED_GC_FREEZE=0`` turns it off."""
    if os.environ.get(ENV_GC_FREEZE, "1") == "0":
        return None
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    return (time.perf_counter() - t0) * 1e3


def trim_heap() -> float | None:
    """Hand the C allocator's free memory back to the system (glibc ``malloc_trim(0)``) and
    return the milliseconds it took; ``None`` where there is no glibc (another libc, macOS,
    Windows). For a long-lived process after a large structure it built is dropped: a training
    round of ``notefeed train --every``, a model version swapped out. glibc keeps freed blocks
    in its arenas for reuse, so such a process's resident size stays near its high-water mark
    and creeps up as the free space fragments: 10 training rounds in one process (5,000 notes,
    the default channels without SASRec) went from 1,001 to 1,179 MB resident; with this after
    each round they stayed at 540-644 MB (``docs/results/train/memory_rounds/``)."""
    libc = _libc()
    if libc is None:
        return None
    t0 = time.perf_counter()
    libc.malloc_trim(0)
    return (time.perf_counter() - t0) * 1e3


# glibc's mallopt parameters (<malloc.h>)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """From now on glibc's malloc serves large blocks from its heap too and keeps what is freed
    there (up to 1 GB at the heap's top), instead of mapping every large block from the kernel
    and unmapping it when freed. Work that makes and drops many arrays of tens to hundreds of MB
    (a search index build: the analysis, the dense encoder, the topic EM) otherwise pays each
    fresh mapping again in page faults: about 17 of the dense worker's 26 system CPU-seconds on
    the 1M search bench. False (nothing changed) without glibc.

    Only for a process that lives for such work and then ends (the search build's worker). In
    the building process itself, kept for the build and restored after, it saved about 7
    system CPU-seconds of the 1M build, but the queries served after it were slower: p99 13.9
    to 30 ms against 6.5 ms at 1M notes (the thresholds glibc had adapted were gone;
    ``docs/search.md``, session 40)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    libc.mallopt(_M_MMAP_MAX, 0)  # no mmap for large blocks: the heap serves them
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # give the heap's top back only past 1 GB free
    libc.mallopt(_M_TOP_PAD, 256 << 20)  # grow the heap 256 MB at a time
    return True


def _libc() -> Any:
    """The C library when it is glibc (has ``malloc_trim``), else None."""
    import ctypes
    import ctypes.util

    if not _LIBC:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            _LIBC.append(libc if libc is not None and hasattr(libc, "malloc_trim") else None)
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


_LIBC: list[Any] = []


def default_workers() -> int:
    """Forked processes for request-sized work (the feed evaluation's pages, the rankers'
    training samples): every core, at most 4; 1 where ``fork`` is not available."""
    import multiprocessing as mp

    return max(1, min(4, os.cpu_count() or 1)) if "fork" in mp.get_all_start_methods() else 1


def forked_imap(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int) -> Iterator[Any]:
    """``fn(task)`` for every task, in order: in ``min(workers, len(tasks))`` forked processes
    when that is more than one (and ``fork`` exists), otherwise here. The workers inherit the
    caller's memory at the fork (set module state before the first item is asked for, and keep
    it until the last), and run one BLAS/torch thread each: OpenBLAS re-creates its spinning
    pool after a fork, and a pool per worker stalls every small product."""
    import multiprocessing as mp

    n = min(workers, len(tasks))
    if n > 1 and "fork" in mp.get_all_start_methods():
        with mp.get_context("fork").Pool(n, initializer=one_thread_for_process) as pool:
            yield from pool.imap(fn, tasks)
    else:
        for t in tasks:
            yield fn(t)


class FifoGate:
    """At most ``limit`` holders at once (0: no limit); the others wait and enter in the order
    they arrived. A leaving holder hands its place to the longest waiter, so a thread that
    leaves and comes straight back cannot overtake it (``threading.Lock`` and ``Semaphore``
    let it: the waiter's tail latency then grows with the others' load).

    Why serving builds one feed page at a time per process: the pipeline is mostly Python
    holding the GIL, and two of them interleaved each take over twice as long, spending more
    CPU in all than one after the other (``docs/results/serve/round22/``, measured with this
    gate in process; the HTTP server uses :class:`AsyncFifoGate`, which holds no thread while
    a request waits)."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit: must be >= 0 (0: no limit), got {limit}")
        self.limit = int(limit)
        self._active = 0
        self._waiting: deque[threading.Event] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Enter, waiting for a place if need be; returns the seconds waited."""
        if self.limit == 0:
            return 0.0
        with self._lock:
            if self._active < self.limit and not self._waiting:
                self._active += 1
                return 0.0
            turn = threading.Event()
            self._waiting.append(turn)
        t0 = time.perf_counter()
        turn.wait()  # the place is handed over by release(): the count already includes us
        return time.perf_counter() - t0

    def release(self) -> None:
        if self.limit == 0:
            return
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            elif self._active > 0:
                self._active -= 1
            else:
                raise RuntimeError("FifoGate.release() without a holder")

    @property
    def waiting(self) -> int:
        """Threads waiting to enter now."""
        return len(self._waiting)

    @contextmanager
    def held(self) -> Iterator[float]:
        """``with gate.held() as waited_s:`` inside the gate."""
        waited = self.acquire()
        try:
            yield waited
        finally:
            self.release()


class AsyncFifoGate:
    """:class:`FifoGate` for coroutines on one event loop: at most ``limit`` holders (0: no
    limit), the others awaiting in arrival order, a leaving holder handing its place to the
    longest waiter. Waiting holds no thread, so the server's worker threads stay free for the
    other endpoints (events, health) while pages queue. A waiter cancelled before its turn
    leaves the queue; one cancelled just as it was handed the place passes it on.

    ``/v1/feed`` awaits it before building the page in a worker thread (``api.feed_concurrency``)."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit: must be >= 0 (0: no limit), got {limit}")
        self.limit = int(limit)
        self._active = 0
        self._waiting: deque[Any] = deque()  # asyncio futures, resolved with the place

    async def acquire(self) -> float:
        """Enter, awaiting a place if need be; returns the seconds waited."""
        import asyncio

        if self.limit == 0:
            return 0.0
        if self._active < self.limit and not self._waiting:
            self._active += 1
            return 0.0
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        t0 = time.perf_counter()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed the place as it was cancelled
                self.release()
            else:
                try:
                    self._waiting.remove(turn)
                except ValueError:
                    pass
            raise
        return time.perf_counter() - t0

    def release(self) -> None:
        if self.limit == 0:
            return
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the place passes on: the count stays
                return
        if self._active <= 0:
            raise RuntimeError("AsyncFifoGate.release() without a holder")
        self._active -= 1

    @property
    def waiting(self) -> int:
        """Coroutines awaiting a place now."""
        return sum(not t.done() for t in self._waiting)
