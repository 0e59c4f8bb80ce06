"""The Ray engine: batch jobs as Ray tasks, on this machine or on a cluster.

Ray is an optional extra (``pip install notefeed[ray]``) imported only when a
:class:`RayEngine` is created. ``shared`` inputs go to the object store once (``ray.put``);
numpy arrays in it reach the tasks zero-copy and read-only, which the kernels respect. Each
task reports its worker's pid, CPU seconds and peak RSS (the task's own where Linux lets the
peak be reset), kept in :attr:`RayEngine.task_stats` (what the
scaling study reads).

Worker recycling. A worker process that reads an object-store array maps its pages, and they
stay in its resident memory after the task (shared pages, but counted in its RSS), so a worker
that runs many large tasks grows with the objects it ever read or wrote, not with its task.
A map whose inputs are large (``recycle="auto"``: at least :data:`RECYCLE_BYTES` in its shared
inputs or its first item) therefore runs its tasks in worker processes that exit after
``worker_tasks`` tasks (Ray's ``max_calls``; default 4): a worker's memory is then that of at
most 4 tasks, and a map of n tasks starts about n / 4 workers. At 100M events (28 tasks) one
task per worker gave a peak RSS of 1.24 GiB per worker but 75 CPU-s of worker starts (1.51x the
local kernel per core by wall clock); four gave 1.66 GiB, 22 CPU-s and 1.26x
(``docs/results/batch/swing_scale_100m_recycle*.json``). Starting a worker costs seconds
(2.7 CPU-s each at 100M, mostly importing ``notefeed.recall``, which imports torch); small maps
keep their workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from notefeed.batch.base import TaskStats

__all__ = ["RECYCLE_BYTES", "RayEngine", "RayMissing", "payload_bytes"]

#: a map whose shared inputs or first item hold at least this many array bytes runs each task
#: in a fresh worker under ``recycle="auto"``
RECYCLE_BYTES = 64 * 2**20


class RayMissing(ImportError):
    """Ray is not installed; the message says how to install it."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissing("the ray engine needs Ray: pip install 'notefeed[ray]'") from None
    return ray


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5), so that the next reading is
    this task's own peak; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident memory (VmHWM; includes object-store pages this process touched), MiB."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024.0
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _private_mb() -> float:
    """Resident memory not shared with other processes (object-store pages excluded), MiB."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            kb = sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty")))
        return kb / 1024.0
    except OSError:
        return float("nan")


def _run(fn: Callable[..., Any], shared: dict[str, Any], item: Any, fresh: bool = False) -> tuple[Any, TaskStats]:
    """``fn(shared, item)`` with its stats; ``cpu_before_s`` is the CPU the worker process had
    used before the task (in a ``fresh`` worker started for it: its start, imports and the
    inputs' deserialisation), which dies with the worker unless a bench counts it here."""
    import os

    own_peak = _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(shared, item)
    return out, TaskStats(pid=os.getpid(), seconds=time.perf_counter() - t0, cpu_s=time.process_time() - c0,
                          cpu_before_s=c0, fresh=fresh, peak_rss_mb=_peak_rss_mb(), peak_is_task_own=own_peak,
                          private_mb=_private_mb())


def payload_bytes(x: Any, depth: int = 0) -> int:
    """Bytes of the numpy arrays and scipy sparse matrices in ``x`` (looked into through
    dicts, lists and tuples, three levels deep); other objects count 0."""
    if isinstance(x, np.ndarray):
        return int(x.nbytes)
    if sp.issparse(x):
        return sum(int(getattr(x, a).nbytes) for a in ("data", "indices", "indptr", "row", "col")
                   if isinstance(getattr(x, a, None), np.ndarray))
    if depth >= 3:
        return 0
    if isinstance(x, dict):
        return sum(payload_bytes(v, depth + 1) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(payload_bytes(v, depth + 1) for v in x)
    return 0


def _run_fresh(fn: Callable[..., Any], shared: dict[str, Any], item: Any) -> tuple[Any, TaskStats]:
    """:func:`_run`, registered with ``max_calls=worker_tasks``: its worker exits after that
    many tasks (Ray sets that per remote function, not per call)."""
    return _run(fn, shared, item, fresh=True)


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` / ``ray://host:port`` nobody listens on (Ray itself retries
    for minutes); ``auto`` and other forms are left to Ray."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {hostport} ({e.strerror or e})") from None


class RayEngine:
    """Batch jobs on Ray. ``address``: an existing cluster (``auto``, ``ray://host:10001``);
    without it a local Ray instance is started with ``num_cpus`` CPUs (all when None) and shut
    down by :meth:`close`. An already initialised Ray in this process is reused as is.
    ``recycle``: run each task in a fresh worker process -- ``"auto"`` (default) for maps with
    large inputs (see the module notes), ``True`` always, ``False`` never; ``worker_tasks``:
    the tasks a recycled worker runs before it exits (Ray's ``max_calls``; 1: a fresh worker
    per task)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, shards: int | None = None,
                 tasks_per_worker: int = 4, recycle: bool | str = "auto", worker_tasks: int = 4) -> None:
        if recycle not in (True, False, "auto"):
            raise ValueError(f"recycle must be True, False or 'auto', got {recycle!r}")
        if isinstance(worker_tasks, bool) or not isinstance(worker_tasks, int) or worker_tasks < 1:
            raise ValueError(f"worker_tasks must be an integer >= 1, got {worker_tasks!r}")
        ray = _ray()
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": "WARNING", "configure_logging": True}
            if address:
                _reachable(address)
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=num_cpus, **kw)
            self._owns = True
        self._remote = ray.remote(num_cpus=1)(_run)
        self._remote_fresh = ray.remote(num_cpus=1, max_calls=worker_tasks)(_run_fresh)
        self.worker_tasks = worker_tasks
        self.recycle = recycle
        self.shards = shards
        self.tasks_per_worker = int(tasks_per_worker)
        self.task_stats: list[TaskStats] = []

    @property
    def workers(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def map(self, fn: Callable[..., Any], items: Iterable[Any], shared: dict[str, Any] | None = None,
            desc: str | None = None) -> list[Any]:
        from tqdm.auto import tqdm

        ray = self._ray
        items = iter(items)
        first = next(items, None)
        recycle = self.recycle
        if recycle == "auto":
            recycle = max(payload_bytes(shared or {}), payload_bytes(first)) >= RECYCLE_BYTES
        remote = self._remote_fresh if recycle else self._remote
        ref = ray.put(shared or {})
        # a large item is copied into the object store by .remote(), so a generator's item
        # is dropped here before the next one is made
        futures = [] if first is None else [remote.remote(fn, ref, first)]
        del first
        futures += [remote.remote(fn, ref, it) for it in items]
        index = {f: k for k, f in enumerate(futures)}
        out: list[Any] = [None] * len(futures)
        pending = list(futures)
        with tqdm(total=len(futures), desc=desc, unit="task", disable=None if desc else True) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for f in done:
                    res, stats = ray.get(f)
                    out[index[f]] = res
                    self.task_stats.append(TaskStats(stats, job=getattr(fn, "__name__", "task")))
                    bar.update(1)
        del ref
        return out

    def cap_log(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int, n_items: int,
                item_cap: int, user_cap: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        from notefeed.batch.jobs import sharded_cap_log

        shards = self.shards or max(self.workers, -(-len(users) // 5_000_000))
        return sharded_cap_log(self, users, items, ts, n_users, n_items, item_cap, user_cap, shards=shards)

    def build_rows(self, kernel: str, hist: sp.csr_matrix, item_users: sp.csr_matrix, rows: np.ndarray,
                   top_n: int, block: int = 2048, progress: bool = False, **params: float) -> sp.csr_matrix:
        from notefeed.batch.jobs import sharded_rows

        return sharded_rows(self, kernel, hist, item_users, rows, top_n, block=block,
                            tasks_per_worker=self.tasks_per_worker, progress=progress, **params)

    def sequences(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int) -> list[np.ndarray]:
        from notefeed.batch.jobs import sharded_sequences

        shards = self.shards or max(self.workers, -(-len(users) // 5_000_000))
        return sharded_sequences(self, users, items, ts, n_users, shards=shards)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
