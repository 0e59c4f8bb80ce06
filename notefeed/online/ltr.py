"""The online trainer of the ``rank/ltr`` fine ranker, beside serving.

Feature logging, not feature recomputation: the serving path hands over the exact feature
matrix the fine ranker scored for each request (:meth:`OnlineLTR.log_request`), then the page
it served (:meth:`OnlineLTR.log_page`), which keeps the rows of the notes shown. A positive
event (click, like, collect, comment, share) on a shown note, within ``window_s`` of event
time after the page, makes that page one listwise training group: the engaged note against
the page's other notes, the same loss the ranker was trained with offline, on impressions
instead of held-out next notes. A page with several engaged notes gives one group each.

A daemon thread (``background``; else the :meth:`OnlineLTR.observe` call itself, once
``min_groups`` are ready: reproducible, for the simulator) updates a *copy* of the currently served ranker once ``min_groups`` new
groups are ready, or once the oldest ready group has waited ``max_wait_s`` (wall time), with
``passes`` passes over the new groups plus up to ``replay`` x as many older ones (against
forgetting), and hands it to ``publish(model, meta)``, which swaps it in for the next
requests. Serving never waits on training; the trainer never holds a lock a request needs
for longer than a dictionary update.

Stats (:meth:`OnlineLTR.stats`): pages logged, groups, updates, the published version and,
per update, the wall seconds from each group's event arrival to the publish of the model
that learned from it (``event_to_model_s``, median and max).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from notefeed.rank.ltr import Group

__all__ = ["OnlineLTRConfig", "OnlineLTR", "ENGAGED_TYPES"]

log = logging.getLogger(__name__)

#: events that make a shown note the chosen one of its page (``follow`` is about the creator)
ENGAGED_TYPES = frozenset({"click", "like", "collect", "comment", "share"})


@dataclass
class OnlineLTRConfig:
    """When and how the online trainer updates (config ``online.train_params``)."""

    min_groups: int = 32          # update once this many new labelled pages are ready
    max_wait_s: float = 20.0      # ... or once the oldest of them waited this long (wall seconds)
    window_s: float = 3600.0      # an engagement counts for a page served at most this long before it
    passes: int = 2
    lr: float = 1e-3
    replay: float = 1.0           # older groups mixed into an update, per new group
    max_pages: int = 50_000       # served pages remembered (oldest forgotten)
    max_groups: int = 20_000      # labelled groups kept for replay
    poll_s: float = 0.5           # how often the trainer thread looks for work
    background: bool = True       # False: update inside the ingest call once min_groups are ready (reproducible)

    def __post_init__(self) -> None:
        for key in ("min_groups", "passes", "max_pages", "max_groups"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"online.train_params.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("max_wait_s", "window_s", "lr", "poll_s"):
            if float(getattr(self, key)) <= 0:
                raise ValueError(f"online.train_params.{key}: must be > 0, got {getattr(self, key)}")
        if self.replay < 0:
            raise ValueError(f"online.train_params.replay: must be >= 0, got {self.replay}")


@dataclass
class _Page:
    ts: float                 # request time (event-time clock)
    items: np.ndarray         # shown notes, page order
    x: np.ndarray             # their feature rows
    engaged: set[int]


class OnlineLTR:
    """See the module docstring. ``current()`` returns ``(version, model)`` being served (a
    ``rank/ltr`` model, or anything else, which pauses training); ``publish(model, meta)``
    swaps the trained copy in; ``item_of(note_id)`` maps an event's note to its index."""

    def __init__(self, cfg: OnlineLTRConfig, current: Callable[[], tuple[str, Any]],
                 publish: Callable[[Any, dict[str, Any]], None], item_of: Callable[[str], int | None],
                 ) -> None:
        self.cfg = cfg
        self._current, self._publish, self._item_of = current, publish, item_of
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}
        self._pages: OrderedDict[int, _Page] = OrderedDict()
        self._by_user: dict[str, deque[int]] = {}
        self._next_page = 0
        self._ready: list[tuple[Group, float]] = []       # (group, wall time its event arrived)
        self._replay: deque[Group] = deque(maxlen=cfg.max_groups)
        self.pages_logged = 0
        self.groups = 0
        self.updates = 0
        self.failed = 0
        self.version: str | None = None
        self.last: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if cfg.background:
            self._thread = threading.Thread(target=self._run, name="notefeed-online-ltr", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ serving side
    def log_request(self, user_id: str, ts: float, items: np.ndarray, x: np.ndarray) -> None:
        """The fine ranker's input for one request: candidates (n,) and their feature rows
        (n, f), kept until the request's page is logged."""
        with self._lock:
            self._pending[user_id] = (float(ts), np.asarray(items, np.int64), x)
            if len(self._pending) > self.cfg.max_pages:  # requests whose page never came
                self._pending.pop(next(iter(self._pending)))

    def log_page(self, user_id: str, page: np.ndarray) -> None:
        """The page served for the request :meth:`log_request` saw last for ``user_id``."""
        with self._lock:
            req = self._pending.pop(user_id, None)
        if req is None:
            return
        ts, items, x = req
        page = np.asarray(page, np.int64)
        pos = {int(it): j for j, it in enumerate(items)}
        rows = [pos.get(int(it), -1) for it in page]
        keep = [j for j, r in enumerate(rows) if r >= 0]
        if len(keep) < 2:
            return
        entry = _Page(ts, page[keep], x[[rows[j] for j in keep]], set())
        with self._lock:
            pid = self._next_page
            self._next_page += 1
            self._pages[pid] = entry
            self._by_user.setdefault(user_id, deque(maxlen=64)).append(pid)
            while len(self._pages) > self.cfg.max_pages:
                self._pages.popitem(last=False)
            self.pages_logged += 1

    def observe(self, events: Sequence[Any]) -> int:
        """Join accepted events (:class:`~notefeed.online.events.EventRecord`) with the pages
        logged for their users; returns the number of new training groups."""
        new: list[tuple[Group, float]] = []
        now = time.time()
        with self._lock:
            for ev in events:
                if ev.type not in ENGAGED_TYPES:
                    continue
                pids = self._by_user.get(ev.user_id)
                item = self._item_of(ev.note_id)
                if not pids or item is None:
                    continue
                for pid in reversed(pids):  # the newest page that showed it
                    page = self._pages.get(pid)
                    if page is None:
                        continue
                    if not (page.ts <= ev.ts + 1.0 and ev.ts - page.ts <= self.cfg.window_s):
                        continue
                    hit = np.flatnonzero(page.items == item)
                    if hit.size == 0:
                        continue
                    if item not in page.engaged:  # a like after a click is the same choice
                        page.engaged.add(item)
                        new.append((Group(page.x, int(hit[0]), float(ev.ts)), now))
                    break
            self._ready.extend(new)
            self.groups += len(new)
            ready = len(self._ready)
        if not self.cfg.background and ready >= self.cfg.min_groups:
            self.update_now()
        return len(new)

    # ------------------------------------------------------------------ training side
    def due(self) -> bool:
        with self._lock:
            if not self._ready:
                return False
            return len(self._ready) >= self.cfg.min_groups or time.time() - self._ready[0][1] >= self.cfg.max_wait_s

    def update_now(self) -> dict[str, Any] | None:
        """Train on the ready groups and publish; ``None`` when there was nothing to do or the
        served model is not a ``rank/ltr`` ranker."""
        with self._lock:
            ready, self._ready = self._ready, []
        if not ready:
            return None
        version, model = self._current()
        if not (callable(getattr(model, "update", None)) and callable(getattr(model, "copy", None))):
            return None
        groups = [g for g, _ in ready]
        width = len(model.feature_names)
        groups = [g for g in groups if g.x.shape[1] == width]
        rng = np.random.default_rng(self.updates)
        old = list(self._replay)
        n_old = min(len(old), int(round(self.cfg.replay * len(groups))))
        mix = groups + ([old[i] for i in rng.choice(len(old), n_old, replace=False)] if n_old else [])
        t0 = time.perf_counter()
        new = model.copy()
        fit = new.update(mix, passes=self.cfg.passes, lr=self.cfg.lr, seed=self.updates)
        base = version.split("+online.")[0]
        self.updates += 1
        new.version = f"{base}+online.{self.updates}"
        self._replay.extend(groups)
        meta = {"version": new.version, "groups": len(groups), "replayed": n_old, "train_s": time.perf_counter() - t0,
                **{k: v for k, v in fit.items() if k != "groups"}}
        self._publish(new, meta)
        published = time.time()
        lat = np.array([published - arrived for _, arrived in ready])
        meta.update(published_at=published, event_to_model_s_median=float(np.median(lat)),
                    event_to_model_s_max=float(lat.max()))
        self.version, self.last = new.version, meta
        return meta

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.poll_s):
            if not self.due():
                continue
            try:
                self.update_now()
            except Exception:  # the trainer must never take serving down
                self.failed += 1
                log.exception("online rank/ltr update failed")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            ready = len(self._ready)
        return {"pages_logged": self.pages_logged, "groups": self.groups, "ready": ready, "updates": self.updates,
                "failed": self.failed, "version": self.version, "last_update": dict(self.last)}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
