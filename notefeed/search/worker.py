"""The search build's worker process: one spawned process that runs the build's tasks in the
order they are given, and tasks not yet sent to it can be taken back by the build.

:class:`concurrent.futures.ProcessPoolExecutor` alone cannot take work back safely: a queued
future can be cancelled, but on Python 3.11 a worker that then dies (killed for memory) makes
the executor's manager thread fail on that cancelled future (``InvalidStateError`` in
``terminate_broken``), so the other futures never complete and the queue's writer thread stays
blocked on a pipe nobody reads: the build, or the interpreter's exit, hangs. So
:class:`BuildWorker` keeps the tasks itself and hands the executor at most :data:`AHEAD` at a
time from a feeding thread; a task still held here is taken back by simply not sending it
(:meth:`BuildWorker.take_back`), and the executor never has a cancelled future.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BuildWorker", "WorkerGone", "AHEAD"]

log = logging.getLogger(__name__)

#: tasks sent to the process ahead of its results (the one it runs and the next, already
#: written to its pipe so it starts without waiting)
AHEAD = 2


class WorkerGone(RuntimeError):
    """The worker process cannot run the task (it died, or the worker was closed first)."""


@dataclass(eq=False)
class Task:
    """A task given to the :class:`BuildWorker`: ``fn(*args)``, its ``future`` completed with
    the worker's result (or :class:`WorkerGone`, a ``BrokenProcessPool``)."""

    fn: Callable[..., Any]
    args: tuple
    future: Future = field(default_factory=Future)
    state: str = "queued"  # queued -> sent, or queued -> taken back


class BuildWorker:
    """One spawned worker process (``initializer`` runs in it first) fed the tasks in order.

    :meth:`submit` queues a task; a thread sends it once fewer than :data:`AHEAD` are in the
    process. :meth:`take_back` removes a task not sent yet (the caller then runs it itself).
    :meth:`close` lets the process go after the tasks sent (``terminate``: at once); the tasks
    still held are completed with :class:`WorkerGone`.
    """

    def __init__(self, initializer: Callable[[], object] | None = None) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the caller may hold threads (tantivy, a web server)
        self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=initializer)
        self._cond = threading.Condition()
        self._queue: deque[Task] = deque()
        self._sent = 0
        self._closed = False
        self._started = threading.Event()  # the first task handed to the executor (its process started)
        self._thread = threading.Thread(target=self._feed, name="search-build-worker-feed", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: object) -> Task:
        task = Task(fn, args)
        with self._cond:
            if self._closed:
                task.future.set_exception(WorkerGone("the build worker is closed"))
                return task
            self._queue.append(task)
            self._cond.notify_all()
        return task

    def take_back(self, task: Task) -> bool:
        """Whether ``task`` was still held here (now taken back: the caller runs it)."""
        with self._cond:
            if task.state != "queued" or task.future.done():
                return False
            self._queue.remove(task)
            task.state = "taken back"
            return True

    def _feed(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._queue or self._sent >= AHEAD):
                    self._cond.wait()
                if self._closed:
                    return
                task = self._queue.popleft()
                task.state = "sent"
                self._sent += 1
            try:
                fut = self._pool.submit(task.fn, *task.args)
            except RuntimeError as e:  # the pool is broken (its process died) or shut down
                self._done(task, None, WorkerGone(str(e)))
                continue
            finally:
                self._started.set()
            fut.add_done_callback(lambda f, task=task: self._done(task, f, None))

    def _done(self, task: Task, fut: Future | None, error: BaseException | None) -> None:
        """A sent task finished (in the executor's thread): its future completed, a place freed."""
        if fut is not None:
            error = fut.exception() if not fut.cancelled() else WorkerGone("cancelled")
        if error is None:
            task.future.set_result(fut.result())  # type: ignore[union-attr]
        else:
            task.future.set_exception(error)
        with self._cond:
            self._sent -= 1
            self._cond.notify_all()

    def processes(self, timeout: float = 30.0) -> list[Any]:
        """The worker's process objects (``multiprocessing.Process``), once the first task has
        been handed over (the executor starts its process then; up to ``timeout`` seconds)."""
        self._started.wait(timeout)
        return self._processes()

    def _processes(self) -> list[Any]:
        return list((getattr(self._pool, "_processes", None) or {}).values())

    def close(self, terminate: bool = False) -> None:
        """Stop feeding; the held tasks fail with :class:`WorkerGone`; the process ends after
        the tasks sent (at once with ``terminate``)."""
        with self._cond:
            self._closed = True
            held = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for task in held:
            task.future.set_exception(WorkerGone("the build worker was closed before the task was sent"))
        if terminate:
            for proc in self._processes():
                proc.terminate()
        self._thread.join()
        self._pool.shutdown(wait=True)  # at most AHEAD tasks in it, none cancelled
