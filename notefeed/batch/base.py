"""One small seam for batch jobs: an engine that maps a function over shards.

A job is written once against :class:`BatchEngine` (``map`` a module-level function over a
list of work items, with large read-only inputs passed once as ``shared``); the engine decides
where it runs. :class:`LocalEngine` runs it in this process, :class:`~notefeed.batch.ray_jobs.RayEngine`
on a Ray cluster. Jobs shard so that every engine computes the same floats (see
:mod:`notefeed.batch.jobs`), which is what lets the tests demand exact equality.

``cap_log`` / ``build_rows`` have the signatures of :mod:`notefeed.recall.kernels` so an
item-to-item channel runs on any engine (``channel.engine = engine``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

__all__ = ["BatchEngine", "LocalEngine", "TaskStats", "open_engine", "ENGINES"]

ENGINES = ("local", "ray")


class TaskStats(dict):
    """Per-task measurements an engine may collect (``pid``, ``peak_rss_mb``, ``seconds``...)."""


@runtime_checkable
class BatchEngine(Protocol):
    """Where batch jobs run."""

    name: str

    @property
    def workers(self) -> int:
        """How many tasks run at once (CPUs the engine may use)."""

    def map(self, fn: Callable[..., Any], items: Iterable[Any], shared: dict[str, Any] | None = None,
            desc: str | None = None) -> list[Any]:
        """``[fn(shared, item) for item in items]`` in order; ``shared`` is sent once per
        worker (read-only), ``fn`` must be a module-level function. ``desc``: progress bar.
        ``items`` may be a generator: it is read once, in order, and an engine that sends
        items away drops each before taking the next."""

    def cap_log(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int, n_items: int,
                item_cap: int, user_cap: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """:func:`notefeed.recall.kernels.cap_log`, equal output."""

    def build_rows(self, kernel: str, hist: sp.csr_matrix, item_users: sp.csr_matrix, rows: np.ndarray,
                   top_n: int, block: int = 2048, progress: bool = False, **params: float) -> sp.csr_matrix:
        """:func:`notefeed.recall.kernels.build_rows`, equal output."""

    def sequences(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int) -> list[np.ndarray]:
        """:func:`notefeed.recall.sequential.training_sequences` of a time-ordered positive
        log, equal output."""

    def close(self) -> None: ...


class LocalEngine:
    """This process, one task after another (the default; what every job is tested against)."""

    name = "local"

    def __init__(self) -> None:
        self.task_stats: list[TaskStats] = []

    @property
    def workers(self) -> int:
        return 1

    def map(self, fn: Callable[..., Any], items: Iterable[Any], shared: dict[str, Any] | None = None,
            desc: str | None = None) -> list[Any]:
        from tqdm.auto import tqdm

        sh = shared or {}
        return [fn(sh, it) for it in tqdm(items, desc=desc, unit="task", disable=None if desc else True)]

    def cap_log(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int, n_items: int,
                item_cap: int, user_cap: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        from notefeed.recall.kernels import cap_log

        return cap_log(users, items, ts, n_users, n_items, item_cap, user_cap)

    def build_rows(self, kernel: str, hist: sp.csr_matrix, item_users: sp.csr_matrix, rows: np.ndarray,
                   top_n: int, block: int = 2048, progress: bool = False, **params: float) -> sp.csr_matrix:
        from notefeed.recall.kernels import build_rows

        return build_rows(kernel, hist, item_users, rows, top_n, block=block, progress=progress, **params)

    def sequences(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int) -> list[np.ndarray]:
        import pandas as pd

        from notefeed.recall.sequential import log_sequences

        return log_sequences(pd.DataFrame({"user": users, "item": items, "ts": ts}), n_users)

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_engine(name: str = "local", address: str | None = None, num_cpus: int | None = None,
                recycle: bool | str = "auto", worker_tasks: int = 4) -> Any:
    """The engine called ``name`` (``local`` or ``ray``). ``address``: an existing Ray cluster
    (``ray://host:10001`` or ``auto``); without it a local Ray instance with ``num_cpus`` CPUs
    is started. ``recycle``, ``worker_tasks``: Ray's worker recycling
    (:class:`~notefeed.batch.ray_jobs.RayEngine`).
    Raises ValueError for an unknown name, ImportError when Ray is missing."""
    if name == "local":
        return LocalEngine()
    if name == "ray":
        from notefeed.batch.ray_jobs import RayEngine

        return RayEngine(address=address, num_cpus=num_cpus, recycle=recycle, worker_tasks=worker_tasks)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
