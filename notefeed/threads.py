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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["one_thread", "one_thread_for_process"]

_PROCESS_LIMITS: Any = None  # kept alive for the life of the process


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

    global _PROCESS_LIMITS
    _PROCESS_LIMITS = threadpool_limits(1)
    torch.set_num_threads(1)
