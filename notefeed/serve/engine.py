"""The serving engine: catalogue, pipelines, online state, event bus and models, wired from
one :class:`~notefeed.serve.config.ServeConfig`. The HTTP layer (``app.py``) is a thin shell.

Accepting events: validate (unknown notes are rejected with their batch index), append to
the bus (durable), then update the online state and popularity synchronously (in Redis mode
the stream append and the state update are one transaction, and start-up folds any stream
entries the state missed into it: :mod:`notefeed.online.redis_sync`), then hand the
batch to side effects (never blocking). So once ``ingest`` returns, the same user's next
feed reflects the events.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.models.sync import event_log_key
from notefeed.online.bus import EventBus, RedisEventBus, SideEffects, SqliteEventBus, open_bus
from notefeed.online.events import EventRecord, StateUpdate
from notefeed.online.ltr import OnlineLTR, OnlineLTRConfig
from notefeed.online.redis_sync import append_and_apply, catch_up
from notefeed.online.state import WINDOWS, MemoryOnlineState, OnlineState, RedisOnlineState
from notefeed.schema import POSITIVE_TYPES, Event, Note
from notefeed.serve.catalog import Catalog, NoteLog
from notefeed.serve.coldstart import STATE_FILE, ColdStartHub, Snapshotter, StaleState
from notefeed.serve.components import ServeContext
from notefeed.serve.config import ServeConfig
from notefeed.serve.experiments import Experiment, arm_pipeline
from notefeed.serve.metrics import Metrics
from notefeed.serve.models import ModelHolder, ModelVersion
from notefeed.serve.pipeline import FeedResult, Pipeline, StageRecord
from notefeed.serve.relations import MAX_PER_USER, RELATIONS_FILE, RelationLog
from notefeed.serve.versions import Served, VersionedContext, VersionReloader, build_served
from notefeed.threads import freeze_heap, serving_process

log = logging.getLogger(__name__)

__all__ = ["Engine", "NoteRemoved", "UnknownNote", "Rejection", "empty_dataset", "popular_config", "DUPLICATE", "ERASED_USER",
           "EVENT_ID_WINDOW"]

#: :class:`Rejection` reason of an event whose ``event_id`` is already stored (a client retry)
DUPLICATE = "duplicate event_id"
#: why an event is refused that was sent before its user's erasure, written meanwhile
ERASED_USER = "user erased after this event was sent"
#: how many recent client event ids are remembered for de-duplicating retries
EVENT_ID_WINDOW = 200_000
#: the most notes remembered as hidden per user from the event log (the newest kept)
MAX_ONLINE_HIDES = 10_000


class UnknownNote(KeyError):
    """The catalogue holds no note of that id."""


class NoteRemoved(KeyError):
    """The note was taken down (:meth:`Engine.remove_note`)."""


def _remember(table: dict[str, tuple[Any, ...]], user_id: str, value: Any, most: int) -> None:
    """Add ``value`` to ``user_id``'s tuple in ``table`` (once; the newest ``most`` kept). The
    tuple is replaced whole, so a reader never sees one change under it."""
    have = table.get(user_id, ())
    if value not in have:
        table[user_id] = (*have, value)[-most:]


def _relate(table: dict[str, dict[str, tuple[float, bool]]], user_id: str, creator_id: str, at: float,
            active: bool) -> None:
    """Record that at ``at`` ``user_id`` set (``active``) or lifted a relation to ``creator_id``
    unless a newer record holds; at most :data:`MAX_PER_USER` creators a user (the newest
    kept). The user's map is replaced whole, so a reader never sees one change under it."""
    have = table.get(user_id, {})
    old = have.get(creator_id)
    if old is not None and old[0] > at:
        return
    new = {**have, creator_id: (float(at), bool(active))}
    if len(new) > MAX_PER_USER:
        new = dict(sorted(new.items(), key=lambda kv: kv[1][0])[-MAX_PER_USER:])
    table[user_id] = new


def _held(table: dict[str, dict[str, tuple[float, bool]]], user_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the creators ``user_id`` holds in ``table``, those they lifted), each oldest first."""
    have = table.get(user_id)
    if not have:
        return (), ()
    ordered = sorted(have.items(), key=lambda kv: kv[1][0])
    return tuple(c for c, (_, on) in ordered if on), tuple(c for c, (_, on) in ordered if not on)


def _active(table: dict[str, dict[str, tuple[float, bool]]], user_id: str) -> tuple[str, ...]:
    """The creators ``user_id`` holds in ``table``, oldest first."""
    return _held(table, user_id)[0]


def _position_le(a: Any, b: Any) -> bool:
    """Whether event-log position ``a`` is at or before ``b``: counts (SQLite) or Redis stream
    entry ids (``<ms>-<seq>``)."""
    if isinstance(a, str) or isinstance(b, str):
        ta, tb = (tuple(int(x) for x in str(v).split("-")) for v in (a, b))
        return ta <= tb
    return int(a) <= int(b)


def _trim_overlap(hist: np.ndarray, online: np.ndarray) -> np.ndarray:
    """``hist`` less its longest suffix that starts ``online``: the dataset's newest positives
    that the online state also holds (synced into the store, read by a restart, and in the
    online state again: the replayed log, or Redis, which outlives a restart)."""
    if not len(hist) or not len(online):
        return hist
    tail = hist[-len(online):]
    for start in np.flatnonzero(tail == online[0]).tolist():  # the longest overlap first
        k = len(tail) - start
        if np.array_equal(tail[start:], online[:k]):
            return hist[: len(hist) - k]
    return hist


def popular_config(config: ServeConfig) -> ServeConfig:
    """Popularity-only variant of ``config``: one channel, no scorers, no re-ranker."""
    return config.with_overrides(
        recall={"channels": [{"name": "non-personalized/popular", "quota": 300}]},
        coarse={"scorer": None}, fine={"scorer": None, "model_dir": None}, rerank={"name": None},
        coldstart={"enabled": False},
    )


def empty_dataset(name: str = "empty") -> Dataset:
    """A dataset with no notes, users or events (a brand-new workspace)."""
    ev = pd.DataFrame({"user_id": [], "note_id": [], "ts": [], "type": []})
    return Dataset.build(name, ev)


@dataclass
class Rejection:
    index: int
    note_id: str
    reason: str


def _csr_by_user(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Items grouped by user (input order kept within a user): (indptr (n_users+1,), items)."""
    order = np.argsort(users, kind="stable")
    indptr = np.zeros(n_users + 1, np.int64)
    np.add.at(indptr, users + 1, 1)
    return np.cumsum(indptr), items[order].astype(np.int64)


class Engine:
    """Everything a request needs. Thread-safe for concurrent feeds and ingests."""

    def __init__(self, ds: Dataset, config: ServeConfig, workspace: str | Path,
                 state: OnlineState | None = None, bus: EventBus | None = None,
                 fitted: dict[str, Any] | None = None, model_version: str | None = None,
                 fit_offline: bool = False) -> None:
        """``fitted``: trained components by config place (``recall.channels.<i>``, ``coarse``,
        ``fine``), e.g. those of model store version ``model_version``; without them the
        config's components are fitted on ``ds`` here and the engine reports itself as the
        fallback (``notefeed serve`` uses :func:`~notefeed.serve.versions.engine_from_store`).
        ``fit_offline``: also fit the channels that only ``notefeed train`` fits (the training
        orchestration's own engine)."""
        self.config = config
        self.fit_offline = fit_offline
        _one_intra_op_thread()
        #: components trained beforehand (``notefeed train``), keyed by config place
        self.fitted = dict(fitted or {})
        self.ds = ds
        #: what start-up could not restore and started afresh instead (``/healthz``)
        self.startup_warnings: list[str] = []
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        on = config.online
        self.catalog = Catalog(ds, config.recall.fresh_pool_size)
        self.note_log = NoteLog(self.workspace / "notes.sqlite", on.synchronous)
        self._notes_lock = threading.Lock()
        def replay_notes() -> None:  # no pipelines yet: the catalogue alone
            for _, note, followers in self.note_log.since(self.note_log.last_seq):
                if self.catalog.item_of(note.note_id) is None:  # not in the dataset (`notefeed train` syncs them in)
                    self.catalog.add_note(note, followers)

        self._read_note_log(replay_notes)
        self.bus = bus or open_bus(on.backend, self.workspace, on.redis_url, on.synchronous,
                                   stream=f"{on.redis_prefix}:events")
        if state is None:
            if on.backend == "redis":
                state = RedisOnlineState.from_url(str(on.redis_url), prefix=on.redis_prefix,
                                                  seq_len=on.seq_len, max_seen=on.max_seen)
            else:
                state = MemoryOnlineState(seq_len=on.seq_len, max_seen=on.max_seen)
        self.state = state
        self.side_effects = SideEffects()
        if on.mirror_to_workspace:
            self.side_effects.subscribe(self._mirror)
        self._ingest_lock = threading.Lock()
        #: recent client event ids (insertion order), rebuilt by the replay
        self._event_ids: OrderedDict[str, None] = OrderedDict()
        #: user id -> {creator id: (time, on)}: the user's follows and unfollows, from the
        #: event log's ``follow`` events (rebuilt by the replay) and the relation log
        #: (:mod:`notefeed.serve.relations`), the newer deciding; each value replaced whole.
        #: ``ctx.followed`` / ``ctx.unfollowed`` give them to ``social/follow``
        self._follows: dict[str, dict[str, tuple[float, bool]]] = {}
        #: the same for the creators each user blocked (relation log only): ``ctx.blocked_authors``
        self._blocks: dict[str, dict[str, tuple[float, bool]]] = {}
        #: user id -> the notes (items) the log shows them hiding, newest last (at most
        #: :data:`MAX_ONLINE_HIDES`), rebuilt by the replay: ``ctx.hidden``, which recall and
        #: the seen filter drop for good. The online state's seen set is bounded (``max_seen``;
        #: Redis drops random members past it), so a hidden note could come back through it
        self._hides: dict[str, tuple[int, ...]] = {}
        #: user id -> the time of their latest erasure (:mod:`notefeed.serve.erasure`), from the
        #: relation log: their events up to it are never applied, the dataset's and trained
        #: versions' rows for the id never used
        self._erased: dict[str, float] = {}
        self.relation_log = RelationLog(self.workspace / RELATIONS_FILE, on.synchronous)
        self._relations_lock = threading.Lock()
        self._add_relations()
        #: the engine's clock (request time, event receive time): the simulator swaps in its
        #: own so that a run is reproducible and online windows follow simulated time
        self.clock: Callable[[], float] = time.time
        self.started_at = time.time()
        #: the new-note cold-start pool (None when ``coldstart.enabled`` is off)
        self.coldstart: ColdStartHub | None = None
        self._cs_skip = 0
        self._cs_fitted = False
        #: the dataset's positives the online state holds (:meth:`_warm`), left out of its history
        self._in_state: pd.Index | None = None
        #: the dataset holds entries of the event log that a Redis online state, which outlives
        #: restarts, holds too: :meth:`context` trims the history's overlap with it
        self._trim_history = False
        try:
            self.coldstart = self._start_coldstart()
        except BaseException:
            self._close_io()
            raise
        if int(getattr(self.bus, "base", 0)) > 0:
            self._dataset_follows_and_hides()  # those the compacted entries held
        self.replayed = self._replay()
        if self.coldstart is not None:
            self.coldstart.prepare_snapshots()
        #: stream entries the Redis online state had not applied, folded in at start-up
        self.caught_up = catch_up(self.bus, self.state, self._updates) if self._redis_pair else 0
        #: periodic cold-start pool snapshots (``coldstart.snapshot_s`` / ``snapshot_events``)
        self.snapshots = None if self.coldstart is None else Snapshotter(
            self.save_coldstart, self.config.coldstart.snapshot_s, self.config.coldstart.snapshot_events)
        #: the ``until_ts`` of :meth:`warm_state` (None: not warmed)
        self.warmed_until: float | None = None
        self._hist = self._histories()
        self._seen = _csr_by_user(ds.events["user"].to_numpy(np.int64), ds.events["item"].to_numpy(), ds.n_users)
        self.metrics = _make_metrics()
        #: the A/B experiment of ``config.experiments`` (None: none)
        self.experiment: Experiment | None = None
        #: called with (user_id, pipeline, result) after every page (the console's exposure
        #: tracker); must be quick and never raise
        self.page_observers: list[Callable[[str, str, FeedResult], None]] = []
        try:
            if not fit_offline:  # the training orchestration's engine serves no experiment
                self.experiment = Experiment.start(self)
            #: what requests are served with (pipelines, fine model, store version): replaced
            #: as one reference by a reload, read once per request
            self.served: Served = build_served(self, self.fitted, model_version)
            self._index_catalogue(self.served)  # the note log's notes, added above
        except BaseException:
            self._close_io()
            raise
        self.reloader = VersionReloader(self)
        #: the fine ranker's online trainer (``online.train``; None: off)
        self.online_ltr: OnlineLTR | None = None
        if config.online.train and not fit_offline:
            self.online_ltr = OnlineLTR(OnlineLTRConfig(**config.online.train_params), self._served_fine,
                                        self._publish_fine, self.catalog.item_of)
            if self.online_ltr.cfg.background:
                self.side_effects.subscribe(self.online_ltr.observe)
        #: called (no arguments) after the follower added notes other workers published or
        #: applied their edits (the search index registers its catch-up here)
        self.note_hooks: list[Callable[[], None]] = []
        #: events of other workers folded in (:meth:`_follow`; Redis backend only)
        self.followed = 0
        self._stop_follow = threading.Event()
        self._follower: threading.Thread | None = None
        if isinstance(self.bus, RedisEventBus) and not fit_offline:
            self._follower = threading.Thread(target=self._follow, name="notefeed-follow", daemon=True)
            self._follower.start()
        #: ms spent taking the built heap out of the cyclic collector's reach (a serving
        #: process: :func:`notefeed.threads.freeze_heap`); None where it was not done
        self.heap_frozen_ms = freeze_heap() if serving_process() and not fit_offline else None

    def refreeze_heap(self) -> None:
        """After a swap (a model version, a config): a heap frozen once built keeps the old
        version's reference cycles out of the collector's reach, and the new one's in it.
        Unfreeze, collect, freeze again (once per swap, in the thread that swapped)."""
        if self.heap_frozen_ms is None:
            return
        gc.unfreeze()
        self.heap_frozen_ms = freeze_heap()

    def _served_fine(self) -> tuple[str, Any]:
        mv = self.served.models.current()
        return mv.version, mv.model

    def _publish_fine(self, model: Any, meta: dict[str, Any]) -> None:
        """The online trainer's new fine ranker: the next requests are scored with it."""
        self.served.models.set(ModelVersion(model.version, model, time.time(), "online"))
        self.metrics.inc("online_train_updates_total")

    @property
    def pipelines(self) -> dict[str, Pipeline]:
        return self.served.pipelines

    @property
    def models(self) -> ModelHolder:
        return self.served.models

    @property
    def model_version(self) -> str | None:
        """The model store version served (``None``: the fallback, or components given directly)."""
        return self.served.version

    # ------------------------------------------------------------------ start-up
    def _set_aside(self, path: Path, why: Exception) -> None:
        """Keep a state file this start cannot use beside it (``<name>.unused-<time>``), never
        deleted; the state is rebuilt as on a first start, and the warning is in ``/healthz``."""
        aside = path.with_name(f"{path.name}.unused-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        try:
            path.replace(aside)
            kept = f"kept as {aside.name}"
        except OSError as e:  # another worker moved it first, or the folder is read-only
            kept = f"could not be moved aside ({e})"
        msg = f"{why}; {kept}; started afresh from the dataset and the event log"
        log.warning("%s", msg)
        self.startup_warnings.append(msg)

    @property
    def coldstart_path(self) -> Path:
        return self.workspace / STATE_FILE

    def _start_coldstart(self) -> ColdStartHub | None:
        """The pool: restored from WORKSPACE/coldstart.json, else fitted on the dataset; notes
        published but missing from it (no state saved) join it; the bus replay then feeds it
        the events it has not seen."""
        cfg = self.config.coldstart
        if not cfg.enabled:
            return None
        hub = ColdStartHub(cfg, self.ds, self.catalog)
        restored = False
        base = int(getattr(self.bus, "base", 0))  # entries compacted away (online.log_keep)
        if self.coldstart_path.exists():
            try:
                hub.restore(self.coldstart_path)
                if hub.events_seen < base:  # saved before the log was compacted past it
                    raise StaleState(f"{self.coldstart_path}: saved at event-log position {hub.events_seen:,}, "
                                     f"the log keeps entries after {base:,} only")
                restored = True
            except StaleState as e:  # the data grew (a sync, an import): derived state, rebuilt and saved anew
                log.info("%s; rebuilt from the dataset and the event log", e)
                hub = ColdStartHub(cfg, self.ds, self.catalog)
            except ValueError as e:  # unreadable: kept for a look, never overwritten unseen
                self._set_aside(self.coldstart_path, e)
                hub = ColdStartHub(cfg, self.ds, self.catalog)
        #: the pool was fitted on the dataset here (not restored): the log entries it holds are not fed again
        self._cs_fitted = not restored
        if not restored:  # as on a first start: fitted on the dataset, then fed the bus replay past it
            hub.fit()
        hub.publish_missing()
        for seq, user, _ in self.relation_log.erasures_after(hub.erasure_seq):  # since the state was saved
            hub.forget(user, seq)
        # a position counts compacted entries (and SQLite tombstones), the replay neither
        tomb = self.bus.erased_within(hub.events_seen) if isinstance(self.bus, SqliteEventBus) else 0
        self._cs_skip = max(0, hub.events_seen - base - tomb)
        hub.events_seen = 0  # counted again as the replay passes them
        return hub
    def _replay(self) -> int:
        """Rebuild in-memory state and popularity from the durable log. The entries the dataset
        holds already (synced into the store before it was read: ``ds.log_marks``) come first:
        they give follows, hides and event ids, but popularity, exposure counts and a cold-start
        pool fitted on the dataset have them already, and the online state is warmed from the
        dataset's last hour instead (as offline, :meth:`warm_state`), so that the history holds
        each positive once. A Redis online state outlives restarts and holds them too:
        :meth:`context` trims the history's overlap with its short sequence."""
        n, last = 0, None
        to_state = isinstance(self.state, MemoryOnlineState)
        synced = self.ds.log_marks.get(event_log_key(self.bus))
        in_ds = synced is not None
        self._trim_history = in_ds and not to_state
        batch: list[EventRecord] = []

        def leave_dataset() -> None:  # the dataset's last hour into the state, as offline (warm_state)
            nonlocal n, batch, in_ds
            n += self._apply(batch, False, in_dataset=True)  # the state is warmed from the dataset instead
            batch, in_ds = [], False
            if to_state and last is not None:  # the log held entries the dataset has (not an empty log)
                n += self._warm(self.clock())

        for pos, rec in self.bus.entries():
            if in_ds and not _position_le(pos, synced):
                leave_dataset()
            batch.append(rec)
            last = pos
            if len(batch) == 10_000:
                n += self._apply(batch, to_state and not in_ds, in_dataset=in_ds)
                batch = []
        if in_ds:
            leave_dataset()
        n += self._apply(batch, to_state, in_dataset=False)
        if isinstance(self.bus, RedisEventBus) and last is not None:
            self.bus.last_id = str(last)  # the follower reads what others add past it
        if self.coldstart is not None and isinstance(self.bus, SqliteEventBus):
            self.coldstart.events_seen = self.bus.count()  # a position: tombstones included
        elif self.coldstart is not None:  # a stream position: the trimmed entries too
            self.coldstart.events_seen += int(getattr(self.bus, "base", 0))
        return n

    def _dataset_follows_and_hides(self) -> None:
        """The dataset's ``follow`` and ``hide`` events into the follows and hidden notes the
        event log's replay rebuilds otherwise: entries compacted out of the log are in the
        store's dataset (``online.log_keep``)."""
        ev = self.ds.events
        if not len(ev):
            return
        users = self.ds.users["user_id"].astype(str).to_numpy()
        authors, creators = self.catalog.authors(), self.catalog.creator_ids
        for kind in ("follow", "hide"):
            rows = ev[ev["type"] == kind].sort_values("ts", kind="stable")
            for u, i, t in zip(rows["user"].tolist(), rows["item"].tolist(), rows["ts"].tolist(), strict=True):
                if str(users[u]) in self._erased:  # a store not synced since the erasure
                    continue
                if kind == "follow":
                    _relate(self._follows, str(users[u]), creators[int(authors[i])], float(t), True)
                else:
                    _remember(self._hides, str(users[u]), int(i), MAX_ONLINE_HIDES)

    def at_end_of_log(self) -> float:
        """Freeze this engine just after its dataset's last event, as an offline run needs it
        (training capture, feed evaluation): the clock stops there, popularity is never served
        from a stale cache, and the online state is warmed from the log's last window (see
        :meth:`warm_state`). Returns that moment (now, for an empty log)."""
        ev = self.ds.events
        t_end = float(ev["ts"].max()) + 1.0 if len(ev) else time.time()
        self.clock = lambda: t_end
        self.catalog.top_max_age_s = 0.0
        self.warm_state(t_end)
        return t_end

    def warm_state(self, until_ts: float) -> int:
        """Warm the online state from the dataset's own recent events, as if they had come
        through :meth:`ingest` at their own timestamps; returns the number of updates.

        An engine on a dataset (training capture, feed evaluation: its clock set just after the
        log) otherwise has an empty online state, so the real-time features (the windowed
        category counters behind ``cat_1h``, the short sequence) would be 0 offline and live in
        serving. The events within the longest online window before ``until_ts`` (the engine
        clock) are applied to the state; popularity is not bumped (the catalogue already counts
        the dataset). The positives the short sequence now holds leave the dataset history
        :meth:`context` reads, so ``ctx.history`` has each of them once, as when they arrive
        online. Call once, right after setting ``clock``, on an engine without a replayed log.
        """
        if self.replayed:
            raise RuntimeError("warm_state: the online state was rebuilt from the event log")
        if self.warmed_until is not None:
            raise RuntimeError(f"warm_state: already warmed until {self.warmed_until}")
        self.warmed_until = float(until_ts)
        n = self._warm(until_ts)
        self._hist = self._histories()
        return n

    def _warm(self, until_ts: float) -> int:
        """Apply the dataset's events of the longest online window before ``until_ts`` to the
        online state; the positives its short sequence then holds go to :attr:`_in_state`, out
        of the dataset history (:meth:`_histories`). Returns the number of updates."""
        ev = self.ds.events
        if not len(ev) or self.ds.meta.get("ts_is_position"):
            return 0  # a sequence file's ts is a position, not a clock: no real-time window
        ts = ev["ts"].to_numpy(np.int64)
        win = ev.iloc[np.flatnonzero((ts >= until_ts - max(WINDOWS.values())) & (ts <= until_ts))]
        win = win.sort_values("ts", kind="stable")
        user_ids = self.ds.users["user_id"].astype(str).to_numpy()
        ups = [StateUpdate(str(user_ids[u]), self.catalog.note_ids[i], str(t), self.catalog.category_name(i), float(at))
               for u, i, t, at in zip(win["user"].tolist(), win["item"].tolist(), win["type"].astype(str).tolist(),
                                      win["ts"].tolist(), strict=True)]
        self.state.apply(ups)
        # the short sequence keeps each user's last ``seq_len`` of these positives: those leave
        # the dataset history (they are read from the state now, like online ones)
        seq_len = int(getattr(self.state, "seq_len", self.config.online.seq_len))
        self._in_state = win[win["type"].isin(POSITIVE_TYPES)].groupby("user", sort=False).tail(seq_len).index
        return len(ups)

    def _histories(self) -> tuple[np.ndarray, np.ndarray]:
        """Each user's dataset positives (CSR by user) less those the online state holds
        (:attr:`_in_state`)."""
        pos = self.ds.select_events(POSITIVE_TYPES) if len(self.ds.events) else self.ds.events
        if self._in_state is not None:
            pos = pos[~pos.index.isin(self._in_state)]
        return _csr_by_user(pos["user"].to_numpy(np.int64), pos["item"].to_numpy(), self.ds.n_users)

    @property
    def _redis_pair(self) -> bool:
        """Event stream and online state both in Redis: written in one transaction, and the
        state caught up with the stream at start-up (:mod:`notefeed.online.redis_sync`)."""
        return isinstance(self.bus, RedisEventBus) and isinstance(self.state, RedisOnlineState)

    def _updates(self, recs: Sequence[EventRecord]) -> list[StateUpdate]:
        """The online state's updates for ``recs`` (events on unknown notes have none)."""
        ups = []
        for r in recs:
            i = self.catalog.item_of(r.note_id)
            if i is not None:
                ups.append(StateUpdate(r.user_id, r.note_id, r.type, self.catalog.category_name(i), r.received_at))
        return ups

    def _apply(self, recs: Sequence[EventRecord], to_state: bool = True, in_dataset: bool = False) -> int:
        """Fold accepted (or replayed) events in; ``in_dataset``: entries the dataset holds
        already (its popularity and exposure counts, and a cold-start pool fitted on it, have
        them)."""
        ups, pos_items, impr_items, click_items = [], [], [], []
        erased = self._erased
        for r in recs:
            if erased and self._erased_event(r):
                continue  # an erased user's (written by another worker while the erasure was)
            if r.event_id is not None:
                self._event_ids[r.event_id] = None
                if len(self._event_ids) > EVENT_ID_WINDOW:
                    self._event_ids.popitem(last=False)
            i = self.catalog.item_of(r.note_id)
            if i is None:
                continue
            cat = self.catalog.category_name(i)
            ups.append(StateUpdate(r.user_id, r.note_id, r.type, cat, r.received_at))
            if r.type == "follow":  # a follow is posted on a note: it follows the note's author
                _relate(self._follows, r.user_id, self.catalog.creator_ids[int(self.catalog.authors()[i])],
                        r.received_at, True)
            elif r.type == "hide":
                _remember(self._hides, r.user_id, i, MAX_ONLINE_HIDES)
            if r.positive:
                pos_items.append(i)
            if r.type == "impression":
                impr_items.append(i)
            elif r.type == "click":
                click_items.append(i)
        if to_state:
            self.state.apply(ups)
        if not in_dataset:
            self.catalog.bump(np.asarray(pos_items, np.int64))
            self.catalog.count_exposure(np.asarray(impr_items, np.int64), np.asarray(click_items, np.int64))
            if pos_items and hasattr(self, "served"):  # at start-up the channels take the counts when built
                self._observe_positives(self.served, np.asarray(pos_items, np.int64))
        if self.coldstart is not None and in_dataset and self._cs_fitted:
            self.coldstart.events_seen += len(recs)  # counted (a bus position), in the pool by its fit
        elif self.coldstart is not None:
            skip = min(self._cs_skip, len(recs))  # a restored pool already saw these
            self._cs_skip -= skip
            self.coldstart.events_seen += skip
            rest = recs[skip:]
            if erased:  # counted (a bus position), not observed
                fresh = [r for r in rest if not self._erased_event(r)]
                self.coldstart.events_seen += len(rest) - len(fresh)
                rest = fresh
            self.coldstart.observe(rest)
        return len(ups)

    def _mirror(self, _work: object = None) -> None:
        """``online.mirror_to_workspace``: copy the logs into the store past its marks (the sync
        ``notefeed train`` runs, :mod:`notefeed.models.sync`), so a batch the side-effect queue
        dropped is copied by the next one, and nothing twice. Through its own connections to
        the logs: a Redis replay must not move the follower's stream position."""
        from notefeed.data.store import WorkspaceLocked
        from notefeed.models.sync import sync_workspace

        try:  # never waits: the side-effect thread serves others too
            sync_workspace(self.workspace, self.config, lock_wait_s=0.0)
        except WorkspaceLocked as e:
            log.debug("mirror: the store is busy (%s); the next batch copies this one too", e)

    # ------------------------------------------------------------------ reads
    def context(self, user_id: str, served: Served | None = None) -> ServeContext:
        served = served or self.served
        now = self.clock()
        snap = self.state.snapshot(user_id, now)
        u = self._user_index(user_id, served)
        hist = seen = np.empty(0, np.int64)
        if u is not None and u < self.ds.n_users:  # the dataset's history (a user it lacks has only online state)
            ip, it = self._hist
            hist = it[ip[u]: ip[u + 1]]
            ip, it = self._seen
            seen = it[ip[u]: ip[u + 1]]
        idx = self.catalog.index
        online = [idx[n] for n in snap.short_seq if n in idx]
        if online:
            on = np.asarray(online, np.int64)
            hist = np.concatenate([_trim_overlap(hist, on) if self._trim_history else hist, on])
        if snap.seen:  # channels skip ctx.seen themselves (recall contract): include online
            seen = np.concatenate([seen, np.fromiter((idx[n] for n in snap.seen if n in idx), np.int64)])
        followed, unfollowed = _held(self._follows, user_id)  # one sort of the user's follows
        return VersionedContext(user_id=user_id, user=u, history=hist, seen=seen, ts=int(now),
                                followed=followed, unfollowed=unfollowed,
                                hidden=np.asarray(self._hides.get(user_id, ()), np.int64),
                                blocked_authors=self._blocked_authors(user_id),
                                snapshot=snap, model=served.models.current(), seen_ids=snap.seen,
                                served_version=served.version, fallback=bool(served.fallback))

    def _user_index(self, user_id: str, served: Served) -> int | None:
        """The user's index: the dataset's, else the served version's for a user it was
        trained on that the dataset lacks (:attr:`Served.extra_users`), else ``None`` (also for
        an erased user: what the dataset and the trained versions hold on the id is not used)."""
        if user_id in self._erased:
            return None
        u = self.ds.user_index.get(user_id)
        return served.extra_users.get(user_id) if u is None else u

    def feed(self, user_id: str, n: int, pipeline: str = "default", probe: bool = False) -> tuple[ServeContext, FeedResult]:
        served = self.served  # one version for the whole request, even across a swap
        arm = None
        if pipeline == "default" and self.experiment is not None:  # served by the user's arm
            arm = self.experiment.arm_of(user_id).name
            pipeline = arm_pipeline(arm)
        p = served.pipelines.get(pipeline)
        if p is None:
            raise KeyError(f"unknown pipeline {pipeline!r} (field 'pipeline'); known: {sorted(served.pipelines)}")
        t0 = time.perf_counter()
        ctx = self.context(user_id, served)
        if arm is not None:
            ctx.arm = arm  # type: ignore[attr-defined]
            if pipeline in served.arm_models:
                ctx.model = served.arm_models[pipeline].current()
        ctx_ms = (time.perf_counter() - t0) * 1e3
        learn = self.online_ltr is not None and pipeline == "default" and not probe
        if learn:
            ctx.feature_log = self.online_ltr.log_request  # type: ignore[attr-defined, union-attr]
        res = p.run(ctx, n, probe=probe)
        if learn:
            self.online_ltr.log_page(user_id, res.items)  # type: ignore[union-attr]
        self.metrics.observe("stage_latency_ms", ctx_ms, pipeline=pipeline, stage="context")
        for s in res.stages:
            self.metrics.observe("stage_latency_ms", s.ms, pipeline=pipeline, stage=f"{s.kind}:{s.name}")
        self.metrics.observe("feed_latency_ms", res.total_ms + ctx_ms, pipeline=pipeline)
        for e in res.errors:
            self.metrics.inc("stage_errors_total", stage=e.split(":", 1)[0])
        res.stages.insert(0, StageRecord("context", "online-state", ctx_ms, 0, 0))
        res.total_ms += ctx_ms
        if arm is not None and self.experiment is not None:
            self.experiment.record(arm, user_id, res.items, res.total_ms)
        for observe in self.page_observers:
            observe(user_id, pipeline, res)
        return ctx, res

    def related(self, note_id: str, n: int, user_id: str | None = None) -> list[tuple[int, float]]:
        """Notes related to ``note_id``: the served pipeline's item-to-item neighbours (Swing,
        ItemCF) blended with learned-vector cosine neighbours; catalogue category/author
        vectors for a note newer than the models (:mod:`notefeed.serve.related`). Never a
        removed note, nor, with ``user_id``, a note of a creator that user blocked."""
        from notefeed.serve.itemvectors import learned_vectors, vector_source
        from notefeed.serve.related import related_items

        i = self.live_item(note_id)
        comps = [st.component for st in self.served.pipelines["default"].sources]
        i2i = [c for c in comps if callable(getattr(c, "neighbours", None))]
        blocked = self.blocked_items(user_id) if user_id is not None else None  # the asker's blocked creators
        return related_items(self.catalog, i, n, i2i, learned_vectors(vector_source(comps), self.catalog), blocked)

    def user(self, user_id: str) -> dict[str, Any]:
        snap = self.state.snapshot(user_id)
        u = self._user_index(user_id, self.served)
        out = snap.to_dict()
        out["history_len"] = 0 if u is None or u >= self.ds.n_users else int(self._hist[0][u + 1] - self._hist[0][u])
        out["followed"] = list(_active(self._follows, user_id))  # followed through the API or the log, newest last
        out["n_hidden"] = len(self._hides.get(user_id, ()))  # notes hidden in the log (never served again)
        out["blocked"] = list(_active(self._blocks, user_id))  # creators blocked, newest last
        out["known"] = u is not None or snap.n_events > 0 or bool(out["blocked"])
        out["erased_at"] = self.erased_at(user_id)
        return out

    # ------------------------------------------------------------------ writes
    def ingest(self, events: Sequence[Event]) -> tuple[int, list[Rejection]]:
        """Accept the valid events of a batch durably; reject unknown notes by index. An event
        whose ``event_id`` is already stored (or earlier in the batch) is a :data:`DUPLICATE`."""
        now = self.clock()
        recs: list[EventRecord] = []
        rejected: list[Rejection] = []
        for j, ev in enumerate(events):
            if self.catalog.item_of(ev.note_id) is None:
                rejected.append(Rejection(j, ev.note_id, "unknown note_id"))
                continue
            recs.append(EventRecord.from_event(ev, now))
        with self._ingest_lock:  # bus order == state order
            if self._erased:  # sent before the user's erasure, which was written meanwhile
                recs = self._drop_erased(events, recs, rejected)
            if any(r.event_id is not None for r in recs):
                recs = self._drop_duplicates(events, recs, rejected)
            if self._redis_pair:  # stream and state in one transaction: no kill falls between
                append_and_apply(self.bus, self.state, recs, self._updates(recs))  # type: ignore[arg-type]
                self._apply(recs, to_state=False)
            else:
                self.bus.append(recs)  # durable before anything else sees the events
                self._apply(recs)
        if self.snapshots is not None:
            self.snapshots.note(len(recs))
        self.side_effects.publish(recs)
        if self.online_ltr is not None and not self.online_ltr.cfg.background:
            self.online_ltr.observe(recs)  # reproducible mode: joins (and trains) in this call
        self.metrics.inc("events_accepted_total", len(recs))
        self.metrics.inc("events_rejected_total", len(rejected))
        return len(recs), rejected

    def _erased_event(self, r: EventRecord) -> bool:
        """Whether ``r`` is an erased user's, received at or before their erasure."""
        at = self._erased.get(r.user_id)
        return at is not None and r.received_at <= at

    @staticmethod
    def _refuse(events: Sequence[Event], recs: list[EventRecord], rejected: list[Rejection],
                why: Callable[[EventRecord], str | None]) -> list[EventRecord]:
        """``recs`` (the batch ``events`` less those already in ``rejected``, in order) less those
        ``why`` gives a reason for; those go to ``rejected`` with it, kept in batch order."""
        gone = {r.index for r in rejected}
        index = [j for j in range(len(events)) if j not in gone]
        keep = []
        for j, r in zip(index, recs, strict=True):
            reason = why(r)
            if reason is None:
                keep.append(r)
            else:
                rejected.append(Rejection(j, r.note_id, reason))
        rejected.sort(key=lambda r: r.index)
        return keep

    def _drop_erased(self, events: Sequence[Event], recs: list[EventRecord],
                     rejected: list[Rejection]) -> list[EventRecord]:
        """``recs`` less those of a user erased at or after their receive time (:data:`ERASED_USER`)."""
        return self._refuse(events, recs, rejected, lambda r: ERASED_USER if self._erased_event(r) else None)

    def _drop_duplicates(self, events: Sequence[Event], recs: list[EventRecord],
                         rejected: list[Rejection]) -> list[EventRecord]:
        """``recs`` less those whose event id is stored or repeated in the batch (:data:`DUPLICATE`)."""
        ids: set[str] = set()

        def why(r: EventRecord) -> str | None:
            if r.event_id is None:
                return None
            if r.event_id in self._event_ids or r.event_id in ids:
                return DUPLICATE
            ids.add(r.event_id)
            return None

        return self._refuse(events, recs, rejected, why)

    def publish(self, note: Note, followers: int | None = None) -> int:
        if self.catalog.item_of(note.note_id) is not None:
            raise ValueError(f"note_id {note.note_id!r} already exists (field 'note_id')")
        with self._notes_lock:  # the follower must not add it between the log and the catalogue
            self.note_log.append(note, followers)
            # the notes logged before it first (other workers', not yet followed): every worker's
            # catalogue then holds the published notes in the note log's order, as the store
            # appends them when `notefeed train` syncs, so each can serve a version trained on them
            self._read_note_log()
            i = self.catalog.item_of(note.note_id)
            assert i is not None
        if self.config.online.mirror_to_workspace:
            self.side_effects.submit(self._mirror, None)
        self.metrics.inc("notes_published_total")
        return i

    def remove_note(self, note_id: str, reason: str | None = None) -> tuple[int, bool]:
        """Take ``note_id`` down: logged durably in the note log, then no feed, related list or
        search of any worker on this workspace shows it again (restarts included). Returns
        (its item, whether it was removed already); :class:`UnknownNote` for a note the catalogue lacks.
        Its rows stay in the store and its events stay in the logs: the models still learn
        from what happened."""
        i = self._item(note_id)
        new = self._write_note_log(lambda: self.note_log.remove(note_id, reason), "notes_removed_total")
        return i, not new

    def _item(self, note_id: str) -> int:
        """``note_id``'s item; :class:`UnknownNote` when the catalogue lacks it."""
        i = self.catalog.item_of(note_id)
        if i is None:
            raise UnknownNote(note_id)
        return i

    def live_item(self, note_id: str) -> int:
        """``note_id``'s item; :class:`UnknownNote` when the catalogue lacks it, :class:`NoteRemoved`
        when it was taken down."""
        i = self._item(note_id)
        if self.catalog.is_removed(np.array([i]))[0]:
            raise NoteRemoved(note_id)
        return i

    def _write_note_log(self, write: Callable[[], Any], metric: str | None = None) -> Any:
        """``write()`` to the note log, then this engine applies what the log holds (this write
        and any other worker's before it); ``metric`` is counted when ``write`` returned a true
        value. Returns what ``write`` returned."""
        with self._notes_lock:
            out = write()
            self._read_note_log()
        if out and metric is not None:
            self.metrics.inc(metric)
        return out

    def edit_note(self, note_id: str, changes: dict[str, Any]) -> tuple[int, list[str]]:
        """Edit ``note_id``'s ``title``, ``text``, ``tags`` or ``category`` (the creator changed
        the note): logged durably in the note log, then every worker's catalogue (what pages and
        related lists show, the category diversity and the small-creator rule read), search
        index (its text, category, tags and vectors) and the recall channels that keep notes'
        fields (``replace_items``: tag interests, two-tower side info) have the new fields,
        restarts included;
        ``notefeed train``'s sync copies the edit into the store, so the next version learns
        from it. Returns (its item, the fields that changed; none logged when nothing did).
        :class:`UnknownNote`, :class:`NoteRemoved` (a taken-down note is not edited)."""
        i = self.live_item(note_id)

        def write() -> list[str]:
            self._read_note_log()  # the catalogue's fields as the log has them
            return self.note_log.edit(note_id, changes, self.catalog.fields(i))

        return i, self._write_note_log(write, "notes_edited_total")

    def _add_edits(self, add_notes: Callable[[], None] | None = None) -> None:
        """Apply the edits logged (by any worker) past what this one read, in order; a note this
        catalogue lacks is read from the note log first (``add_notes``, default
        :meth:`_add_logged_notes`). Under ``_notes_lock``, or before serving starts."""
        rows = self.note_log.edits_since(self.note_log.last_edits_seq)
        if any(self.catalog.item_of(n) is None for _, n, _, _ in rows):
            (add_notes or self._add_logged_notes)()
        edited = []
        for seq, note_id, body, _ in rows:
            i = self.catalog.item_of(note_id)
            if i is not None:
                self.catalog.edit(i, body["before"], body["after"], seq)
                edited.append(i)
        if edited and hasattr(self, "served"):  # at start-up the served channels take them when built
            self._reindex_edits(self.served, sorted(set(edited)))

    def _to_sources(self, served: Served, method: str, what: str, call: Callable[[Any, Callable[..., Any]], None]) -> None:
        """``call(component, component.<method>)`` for each of ``served``'s default-pipeline
        sources that has ``method`` (the channels' hooks for notes and events). A failure is
        logged (``what``) and counted (``stage_errors_total``, stage ``method:name``), never
        raised: the logs, the catalogue and the fresh pool hold the change already."""
        for st in served.pipelines["default"].sources:
            fn = getattr(st.component, method, None)
            if fn is None:
                continue
            try:
                call(st.component, fn)
            except Exception:
                log.exception("%s: %s.%s failed", what, st.name, method)
                self.metrics.inc("stage_errors_total", stage=f"{method}:{st.name}")

    def _observe_positives(self, served: Served, items: np.ndarray) -> None:
        """Give ``served``'s channels that follow engagement (``observe_positives``, e.g.
        ``tag/interest``) the items of accepted positive events."""
        self._to_sources(served, "observe_positives", "events", lambda _, observe: observe(items))

    def _edited_frame(self, items: list[int]) -> pd.DataFrame:
        """The notes ``items`` as a ``Dataset.notes``-shaped frame, edited fields as they are now."""
        return pd.DataFrame([{"note_id": self.catalog.note_ids[i], "author_id": self.catalog.note_json(i)["author_id"],
                              **self.catalog.fields(i)} for i in items])

    def _reindex_edits(self, served: Served, items: list[int]) -> None:
        """Give ``served``'s channels that keep notes' fields (the default pipeline's sources
        with ``replace_items``: ``tag/interest``, ``embedding/two-tower``, ``llm/interest``) the
        fields of the edited ``items`` as they are now; items a channel has not indexed yet are
        left to its ``add_items``."""
        def replace(component: Any, replace_items: Callable[..., Any]) -> None:
            have = getattr(component, "n_indexed", None)
            mine = [i for i in items if have is not None and i < have]
            if mine:
                replace_items(np.asarray(mine, np.int64), self._edited_frame(mine))

        self._to_sources(served, "replace_items", "edit", replace)

    def restore_note(self, note_id: str, reason: str | None = None) -> tuple[int, bool]:
        """Undo ``note_id``'s takedown (an appeal granted, a moderation mistake): logged durably
        in the note log, then every worker's feeds, related lists and search show it again
        (restarts included). Returns (its item, whether it was removed); :class:`UnknownNote`
        for a note the catalogue lacks."""
        i = self._item(note_id)
        return i, self._write_note_log(lambda: self.note_log.restore(note_id, reason), "notes_restored_total")

    def set_followers(self, creator_id: str, followers: int) -> None:
        """The app's follower count of ``creator_id`` (between publishes): logged durably in the
        note log, then every worker's small-creator rule reads it; ``notefeed train`` copies it
        into the store."""
        self._write_note_log(lambda: self.note_log.set_followers(creator_id, followers))

    def _add_follower_counts(self) -> None:
        """Apply the follower counts logged (by any worker) past what this one read, in order."""
        for _, creator, n in self.note_log.followers_since(self.note_log.last_followers_seq):
            self.catalog.set_followers(creator, n)

    def _add_removed(self, add_notes: Callable[[], None] | None = None) -> None:
        """Apply the takedowns and restores logged (by any worker) past what this one read:
        the restores first, then the removals (the log's removals are the notes down now, see
        :meth:`NoteLog.moderation_since`). A removed note this catalogue lacks was published (by
        another worker) after this one last read the note log: ``add_notes`` (default
        :meth:`_add_logged_notes`) reads it first. Under ``_notes_lock``, or before serving starts."""
        back, ids = self.note_log.moderation_since()
        if any(self.catalog.item_of(n) is None for n in ids):
            (add_notes or self._add_logged_notes)()
        for names, apply in ((back, self.catalog.unmark_removed), (ids, self.catalog.mark_removed)):
            items = [self.catalog.item_of(n) for n in names]
            apply(np.asarray([i for i in items if i is not None], np.int64))

    def relate(self, user_id: str, creator_id: str, kind: str, active: bool = True) -> tuple[str, ...]:
        """``user_id`` follows / blocks (``kind``) ``creator_id``, or stops (``active`` false):
        logged durably in the relation log, then every worker applies it from the next request
        (restarts included). Returns the creators the user holds in that relation now.
        Repeating it logs nothing. (An unfollow of a creator this engine holds no record of is
        logged: the follow may be one ``social/follow`` was trained with.)"""
        table = self._follows if kind == "follow" else self._blocks
        with self._relations_lock:
            held = table.get(user_id, {}).get(creator_id)
            if held is None or held[1] != active:
                self.relation_log.append(user_id, creator_id, kind, active, self.clock())
            self._add_relations()
            return _active(table, user_id)

    def _add_relations(self) -> None:
        """Apply the relation log's rows past what this engine read (any worker's), then its
        erasures."""
        for user, creator, kind, active, at in self.relation_log.since(self.relation_log.last_seq):
            _relate(self._follows if kind == "follow" else self._blocks, user, creator, at, active)
        for seq, user, at in self.relation_log.erasures_since(self.relation_log.last_erasure_seq):
            self._forget_user(user, at, seq)

    def erased_at(self, user_id: str) -> float | None:
        """When ``user_id`` was last erased (None: never)."""
        return self._erased.get(user_id)

    def erased_users(self) -> list[str]:
        """The ids erased (any worker's, restarts included)."""
        return list(self._erased)

    def _forget_user(self, user_id: str, at: float, seq: int) -> None:
        """What this engine holds on ``user_id`` up to time ``at``, dropped (the relation log's
        erasure ``seq``)."""
        self._erased[user_id] = max(at, self._erased.get(user_id, at))
        for table in (self._follows, self._blocks):
            kept = {c: v for c, v in table.get(user_id, {}).items() if v[0] > at}
            if kept:
                table[user_id] = kept
            else:
                table.pop(user_id, None)
        self._hides.pop(user_id, None)
        if isinstance(self.state, MemoryOnlineState):  # this process's own (a shared one: erase_user)
            self.state.forget(user_id)
        ads = getattr(self, "ad_server", None)  # built with the first page that shows ads
        if ads is not None:
            ads.forget(user_id)
        hub = getattr(self, "coldstart", None)  # None until start-up made it (which applies the erasures)
        if hub is not None and seq > hub.erasure_seq:
            hub.forget(user_id, seq)

    def erase_user(self, user_id: str) -> dict[str, Any]:
        """Erase ``user_id`` (:mod:`notefeed.serve.erasure`): logged durably with the deletion
        of their relation rows, their rows purged from the serving logs, their state dropped
        here and, from the relation log, on every worker. Returns the time and what each log lost."""
        from notefeed.serve.erasure import purge_logs

        with self._relations_lock, self._ingest_lock:  # an ingest is before the erasure or refused by it
            _, at, relations = self.relation_log.erase(user_id, self.clock())
            if not isinstance(self.state, MemoryOnlineState):
                self.state.forget(user_id)  # shared by the workers
            self._add_relations()
        # the logs' purge (a pass over a Redis stream) holds no lock: events up to the erasure
        # are all in the logs by now, later ones are a new account's and stay
        search = getattr(self, "search", None)
        removed = purge_logs(self.workspace, user_id, at, self.bus, getattr(search, "log", None),
                             self.experiment.log if self.experiment is not None else None,
                             getattr(self, "ad_server", None), self.state)
        if self.coldstart is not None and isinstance(self.bus, RedisEventBus):
            self.coldstart.unsee(removed["events"])  # its stream position: deleted entries no longer count
        self.save_coldstart()  # the saved pool no longer holds the user either
        self.metrics.inc("users_erased_total")
        return {"user_id": user_id, "erased_at": at, "removed": {**removed, "relations": relations}}

    def blocked_items(self, user_id: str) -> np.ndarray:
        """(k,) sorted items of the creators ``user_id`` blocked (empty without blocks)."""
        authors = self._blocked_authors(user_id)
        if not len(authors):
            return np.empty(0, np.int64)
        return np.flatnonzero(np.isin(self.catalog.authors(), authors)).astype(np.int64)

    def _blocked_authors(self, user_id: str) -> np.ndarray:
        idx = self.catalog.creator_index
        return np.asarray([i for c in _active(self._blocks, user_id) if (i := idx.get(c)) is not None], np.int64)

    def swap_served(self, new: Served, config: ServeConfig | None = None) -> Served:
        """Serve ``new`` from the next request on (with ``config``: a hot config reload); returns
        the replaced one. ``new``'s ANN channels first index the catalogue's notes they lack,
        under the notes lock, so that no publish falls between that and the swap."""
        with self._notes_lock:
            self._index_catalogue(new)
            if config is not None:
                self.config = config
            old, self.served = self.served, new  # the swap: one reference assignment
        with self._ingest_lock:  # the counts of events applied to the old one meanwhile (few: quick)
            self._sync_positives(new)
        return old

    def _index_catalogue(self, served: Served) -> None:
        """Index in ``served``'s ANN channels (the default pipeline's sources with ``add_items``
        and ``n_indexed``) the catalogue's notes they lack: those published since the data they
        were fitted on (before a restart, or after ``notefeed train`` began); give the channels
        with ``replace_items`` the catalogue's edits first, and those with ``sync_positives`` its
        positive counts last. A publish adds to
        the pipelines being served only (see :meth:`swap_served`). Without it the next
        publish's vector went in under the index of the first missing note."""
        n = self.catalog.n_items
        # the edits (logged before or since the data the channels were fitted on) first, to the
        # notes the channels hold; the notes added below come with their fields as they are now
        self._reindex_edits(served, sorted(self.catalog.edited))

        def add(component: Any, add_items: Callable[..., Any]) -> None:  # (the fresh pool serves them meanwhile)
            have = getattr(component, "n_indexed", None)
            if have is None or have >= n:
                return
            got = np.asarray(add_items(self.catalog.notes_frame(have, n)))
            if got.tolist() != list(range(have, n)):
                raise RuntimeError(f"add_items gave indices {got[:3].tolist()}..., catalogue has {have}..{n - 1}")

        self._to_sources(served, "add_items", "indexing the catalogue", add)
        self._sync_positives(served)

    def _sync_positives(self, served: Served) -> None:
        """Give ``served``'s channels with ``sync_positives`` the catalogue's positive counts (the
        events since the data they were fitted on). With no ingest running meanwhile (start-up,
        or under the ingest lock), or a count may be lost."""
        self._to_sources(served, "sync_positives", "indexing the catalogue",
                         lambda _, sync: sync(self.catalog.popularity().copy()))


    def _read_note_log(self, add_notes: Callable[[], None] | None = None) -> None:
        """Apply what the note log holds (by any worker) past what this engine read: the
        published notes (``add_notes``, default :meth:`_add_logged_notes`), then the removals,
        then the follower counts, then the edits (each in the log's order; a publish's count is
        a row of the counts too). Under ``_notes_lock``, or before serving starts."""
        add = add_notes or self._add_logged_notes
        add()
        self._add_removed(add)
        self._add_follower_counts()
        self._add_edits(add)

    def _add_logged_notes(self) -> None:
        """Add to the catalogue, in the note log's order, the notes logged (by any worker) past
        what this one has read and does not hold yet. Under ``_notes_lock``."""
        for _, note, followers in self.note_log.since(self.note_log.last_seq):
            if self.catalog.item_of(note.note_id) is None:
                self._add_note(note, followers)

    def _add_note(self, note: Note, followers: int | None) -> int:
        """A logged note into the catalogue, the ANN channels and the cold-start pool."""
        i = self.catalog.add_note(note, followers)

        def add(_: Any, add_items: Callable[..., Any]) -> None:  # an ANN channel indexes the note at once
            got = np.asarray(add_items(pd.DataFrame([note.model_dump()])))
            if got.tolist() != [i]:  # the channel's catalogue drifted from ours
                raise RuntimeError(f"add_items gave index {got.tolist()}, catalogue has {i}")

        self._to_sources(self.served, "add_items", "publish", add)
        if self.coldstart is not None:
            try:
                self.coldstart.publish(i, note)
            except Exception:  # the note is durable and served by fresh/recent: never fail a publish
                log.exception("publish: cold-start pool failed")
                self.metrics.inc("stage_errors_total", stage="publish:coldstart/bandit")
        return i

    # ------------------------------------------------------------------ many workers
    def _follow(self) -> None:
        """Serving workers sharing one Redis stream and workspace: fold what the *other*
        workers accepted into this one's in-memory parts (popularity, cold-start pool, online
        trainer; the Redis online state is shared already) and add the notes they published
        (from the workspace's note log), within one ``tail`` timeout (0.2 s)."""
        bus = self.bus
        assert isinstance(bus, RedisEventBus)
        while not self._stop_follow.is_set():
            try:
                recs = bus.tail(block_ms=200)
                with self._notes_lock:  # notes first: an event read here never precedes its note
                    n0, e0 = self.catalog.n_items, len(self.catalog.edit_log)
                    self._read_note_log()
                    grew = self.catalog.n_items > n0 or len(self.catalog.edit_log) > e0
                for hook in self.note_hooks if grew else ():  # e.g. search indexes them
                    hook()
                with self._relations_lock:
                    self._add_relations()
                if self.experiment is not None:  # the others' pages, then their events: a click counts
                    self.experiment.follow(recs)   # on a page another worker served
                if recs:
                    with self._ingest_lock:
                        self._apply(recs, to_state=False)
                    if self.online_ltr is not None:
                        self.online_ltr.observe(recs)
                    self.followed += len(recs)
            except Exception:  # a Redis hiccup: retry, never take serving down
                if self._stop_follow.is_set():
                    return
                log.exception("following the other workers failed; retrying")
                self._stop_follow.wait(1.0)

    def save_coldstart(self) -> Path | None:
        """Write the cold-start pool's state to WORKSPACE/coldstart.json (also done on close)."""
        if self.coldstart is None:
            return None
        # captured under the ingest lock (events_seen must match the bus position), written after
        return self.coldstart.save(self.coldstart_path, hold=self._ingest_lock)

    def close(self) -> None:
        snapshots = getattr(self, "snapshots", None)
        if snapshots is not None:
            snapshots.close()
        try:
            self.save_coldstart()
        except Exception:  # losing the pool state must not block a shutdown; the replay rebuilds
            log.exception("close: saving the cold-start state failed")
        if getattr(self, "_follower", None) is not None:
            self._stop_follow.set()
            self._follower.join(timeout=5.0)  # type: ignore[union-attr]
        if getattr(self, "online_ltr", None) is not None:
            self.online_ltr.close()  # type: ignore[union-attr]
        self.reloader.close()
        if getattr(self, "live_config", None) is not None:
            self.live_config.close()  # type: ignore[attr-defined]
        self.served.close()  # the arms' model holders too
        search = getattr(self, "search", None)  # the app's search service: its index copy, its log
        if search is not None:
            try:
                search.close()
            except Exception:  # the index is rebuilt or caught up at the next start
                log.exception("close: closing the search index failed")
        self._close_io()

    def _close_io(self) -> None:
        if getattr(self, "experiment", None) is not None:
            self.side_effects.drain(2.0)  # the page log's last rows
            self.experiment.close()  # type: ignore[union-attr]
        self.side_effects.close()
        self.bus.close()
        self.state.close()
        self.note_log.close()
        if getattr(self, "relation_log", None) is not None:
            self.relation_log.close()


def _one_intra_op_thread() -> None:
    """Request-time inference (SASRec, the learned rankers) is many tiny tensor ops: with
    more than one intra-op thread each op waits on a thread barrier, which on a busy 2-core
    machine measured 100x slower (130 ms instead of 1 ms per SASRec call). Requests run in
    parallel on the server's threads instead. Training sets its own thread count."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)


def _make_metrics() -> Metrics:
    m = Metrics()
    m.counter("requests_total", "HTTP requests", ("endpoint", "status"))
    m.histogram("request_latency_ms", "HTTP request latency (ms)", ("endpoint",))
    m.histogram("feed_latency_ms", "feed pipeline latency (ms)", ("pipeline",))
    m.histogram("stage_latency_ms", "pipeline stage latency (ms)", ("pipeline", "stage"))
    m.counter("stage_errors_total", "failed pipeline steps (fail open)", ("stage",))
    m.counter("events_accepted_total", "events accepted")
    m.counter("events_rejected_total", "events rejected")
    m.counter("notes_published_total", "notes published")
    m.counter("notes_removed_total", "takedowns (DELETE /v1/notes/{id}; a repeat of one is not counted)")
    m.counter("notes_edited_total", "notes edited (PATCH /v1/notes/{id} that changed a field)")
    m.counter("notes_restored_total", "takedowns undone (POST /v1/notes/{id}/restore; each undo once)")
    m.counter("users_erased_total", "users erased (DELETE /v1/users/{id}; each request counted)")
    m.counter("model_swaps_total", "model versions swapped in")
    m.counter("config_reloads_total", "serving configs hot-reloaded")
    m.counter("online_train_updates_total", "fine ranker versions trained beside serving and swapped in")
    return m
