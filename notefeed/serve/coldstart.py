"""The new-note cold-start flow in the serving pipeline.

A freshly published note has no engagement, so ranking drops it even when ``fresh/recent``
recalls it. The engine owns a :class:`ColdStartHub` (a
:class:`~notefeed.online.coldstart.ColdStartPool` plus the id mappings and persistence); two
pipeline steps use it:

- :class:`ColdStartSource` (``coldstart/bandit``): a *side* candidate source. Its candidates
  skip merge and ranking (filters still apply) and carry their bandit score and stage.
- :class:`ColdStartSlots` (``coldstart/slots``): a selector after re-ranking that places up
  to ``slots`` of them into the page at spread positions. That is the whole boost; once a
  note is handed over it leaves the pool and competes like any other note.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.online.coldstart import STAGES, ColdStartConfig, ColdStartPool
from notefeed.online.coldstart.pool import encode_state
from notefeed.online.events import EventRecord
from notefeed.recall.base import SideCandidates, UserContext
from notefeed.schema import Note
from notefeed.serve.catalog import Catalog
from notefeed.serve.config import ColdStartServeConfig
from notefeed.serve.slots import SideSlots, SlotPart

log = logging.getLogger(__name__)

__all__ = ["ColdStartHub", "ColdStartSource", "ColdStartSlots", "Snapshotter", "STATE_FILE", "StaleState",
           "write_atomic"]

STATE_FILE = "coldstart.json"
_STATE_VERSION = 1


class ColdStartHub:
    """The engine's cold-start pool: fed by ``publish`` and ``ingest``, read by the pipeline.

    Users are the pool's integer rows: dataset users keep their index, users first seen online
    get the next free row (kept in the state) so their impressions count towards hand-over.
    Thread-safe: one lock around the pool (observe mutates what ``candidates_for`` reads).
    """

    def __init__(self, config: ColdStartServeConfig, ds: Dataset, catalog: Catalog) -> None:
        self.config = config
        self.ds = ds
        self.catalog = catalog
        self.pool = ColdStartPool(**config.pool_params())
        self.new_users: dict[str, int] = {}
        #: bus records already applied to the pool (a restored state skips them on replay)
        self.events_seen = 0
        #: the relation log's last erasure this state reflects (:meth:`forget`)
        self.erasure_seq = 0
        self.rng = np.random.default_rng(config.seed)
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one writer of the state file at a time
        self._n_base = ds.n_items

    # ------------------------------------------------------------------ start-up
    def fit(self) -> ColdStartHub:
        """Index the dataset's notes and build interest profiles from its positives."""
        with self._lock:
            self._index_base()
            if len(self.ds.events):
                self.pool.observe(self.ds.select_events())
        return self

    def _index_base(self) -> None:
        if not self._n_base:
            return
        vecs = self.catalog.vectors()[: self._n_base] if self.config.vectors else None
        self.pool.index_items(np.arange(self._n_base), self.ds.notes["tags"].tolist(),  # read, not kept
                              self.ds.notes["category"].astype(str).tolist(), vecs)

    def publish_missing(self) -> int:
        """Publish catalogue notes past the dataset the pool does not know (a lost state file)."""
        missing = [i for i in range(self._n_base, self.catalog.n_items) if i not in self.pool.item_feats]
        for i in missing:
            note = self.catalog.published.get(i)
            if note is not None:
                self.publish(i, note)
        return len(missing)

    # ------------------------------------------------------------------ feeding
    def user_row(self, user_id: str, create: bool = False) -> int | None:
        u = self.ds.user_index.get(user_id)
        if u is not None:
            return int(u)
        r = self.new_users.get(user_id)
        if r is None and create:
            r = self.new_users[user_id] = self.ds.n_users + len(self.new_users)
        return r

    def forget(self, user_id: str, seq: int) -> None:
        """Forget erased ``user_id`` (the relation log's erasure ``seq``): their interest
        profile and engagements in the pool; a user first met online keeps their row under an
        anonymous key, so rows never collide."""
        with self._lock:
            row = self.user_row(user_id)
            if row is not None:
                self.pool.forget_user(int(row))
            if user_id in self.new_users:
                self.new_users[f"~erased:{self.new_users.pop(user_id)}"] = int(row)  # type: ignore[arg-type]
            self.erasure_seq = max(self.erasure_seq, int(seq))

    def unsee(self, n: int) -> None:
        """``n`` bus records this state had seen were deleted (an erasure on a Redis stream):
        ``events_seen`` is a position in the stream."""
        with self._lock:
            self.events_seen = max(0, self.events_seen - int(n))

    def publish(self, item: int, note: Note) -> None:
        self._publish(item, list(note.tags), note.category, note.created_at)

    def _publish(self, item: int, tags: list[str], category: str, created_at: int) -> None:
        ts = created_at if created_at > 0 else int(time.time())
        vec = self.catalog.vectors()[item: item + 1] if self.config.vectors else None
        with self._lock:
            self.pool.publish(np.array([item]), vec, [tags], [category] if category else None, ts=ts)

    def observe(self, recs: Sequence[EventRecord]) -> None:
        """Events -> the pool's index-based frame (user row, item, type, ts); unknown notes skipped."""
        users, items, types, ts = [], [], [], []
        for r in recs:
            i = self.catalog.item_of(r.note_id)
            if i is None:
                continue
            users.append(self.user_row(r.user_id, create=True))
            items.append(i)
            types.append(r.type)
            # client clocks can be missing or absurd: fall back to the server's receive time
            ts.append(int(r.ts) if r.ts > 0 else int(r.received_at))
        with self._lock:
            self.events_seen += len(recs)
            if items:
                self.pool.observe(pd.DataFrame({"user": np.asarray(users, np.int64), "item": np.asarray(items, np.int64),
                                                "type": types, "ts": np.asarray(ts, np.int64)}))

    # ------------------------------------------------------------------ serving
    def candidates(self, ctx: UserContext, k: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Up to ``k`` bandit-chosen pool notes for this user: (items, scores desc, stages)."""
        # the pool's own row (the dataset's index, or the row it gave a user it met online):
        # ``ctx.user`` may be a served version's index for a user the dataset lacks
        u = self.user_row(ctx.user_id)
        if u is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), []
        exclude = np.concatenate([ctx.seen, ctx.history, ctx.hidden]).astype(np.int64)
        with self._lock:
            return self.pool.candidates_for(int(u), k, self.rng, exclude)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return self.pool.summary()

    def boosted(self, item: int) -> bool:
        """Whether ``item`` is in the pool and still boosted (seed or look-alike stage)."""
        with self._lock:
            note = self.pool.notes.get(int(item))
            return note is not None and STAGES[note.stage] in ("seed", "lookalike")

    # ------------------------------------------------------------------ state
    def save(self, path: str | Path, hold: AbstractContextManager[Any] | None = None) -> Path:
        """JSON state; the dataset's own notes' features are left out (re-indexed on load).
        ``hold`` is held while the state is captured (the engine's ingest lock: ``events_seen``
        must match the bus position), not while it is written."""
        path = Path(path)
        with self._save_lock:
            with hold or nullcontext(), self._lock:  # copies only: ingest waits for no encoding
                captured = self.pool.capture(min_item=self._n_base)
                body = {"version": _STATE_VERSION, "n_base_items": self._n_base, "n_users": self.ds.n_users,
                        "notes": {str(i): self.catalog.note_ids[i] for i in self.pool.notes},
                        "new_users": dict(self.new_users), "events_seen": self.events_seen,
                        "erasure_seq": self.erasure_seq}
            saved = False
            try:
                body["pool"] = encode_state(captured)
                write_atomic(path, json.dumps(body))
                saved = True
            finally:
                with self._lock:  # the written profile becomes the next snapshot's base
                    self.pool.settle(captured, saved)
        return path

    def prepare_snapshots(self) -> None:
        """The whole profile as the snapshots' base, taken once here at start-up (a pass
        over every row), so that no snapshot does it under the ingest lock."""
        with self._lock:
            self.pool.baseline()

    def restore(self, path: str | Path) -> None:
        """Load a saved state; a corrupt file is a clear error (:class:`ValueError`), one saved
        for other data (before a sync or an import changed the dataset) :class:`StaleState`."""
        path = Path(path)
        try:
            body = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read the cold-start state ({e})") from None
        if not isinstance(body, dict) or body.get("version") != _STATE_VERSION:
            raise ValueError(f"{path}: not a notefeed cold-start state (field 'version')")
        if body.get("n_base_items") != self._n_base or body.get("n_users") != self.ds.n_users:
            raise StaleState(f"{path}: cold-start state is for another dataset (fields 'n_base_items'/'n_users': "
                             f"{body.get('n_base_items')}/{body.get('n_users')}, workspace has "
                             f"{self._n_base}/{self.ds.n_users}); delete it to start the pool afresh")
        for i, nid in dict(body.get("notes") or {}).items():
            if int(i) >= self.catalog.n_items or self.catalog.note_ids[int(i)] != nid:
                raise StaleState(f"{path}: cold-start note {nid!r} (field 'notes.{i}') is not in the catalogue")
        try:
            pool = ColdStartPool.from_state(body["pool"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path}: field 'pool': {e}") from None
        # the current config's pool settings win over the saved ones (a changed hand-over applies)
        pool.config = ColdStartConfig(**self.config.pool_params()).validate()
        with self._lock:
            self.pool = pool
            self._index_base()
            self.new_users = {str(k): int(v) for k, v in dict(body.get("new_users") or {}).items()}
            self.events_seen = int(body.get("events_seen", 0))
            self.erasure_seq = int(body.get("erasure_seq", 0))


class StaleState(ValueError):
    """A readable cold-start state saved for other data (notes or users added to the store
    since: ``notefeed train``'s sync, ``data import``): rebuilt from the logs, not kept."""


def write_atomic(path: Path, text: str) -> None:
    """``path`` holds either its previous content or ``text``, whatever kill or power loss
    comes: written to a temporary file, fsynced, renamed over ``path``, directory fsynced."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # a platform without directory handles: the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Snapshotter:
    """Saves the cold-start pool every ``every_s`` seconds or every ``every_events`` accepted
    events, whichever comes first (0 turns a trigger off), on a background thread, so that a
    kill -9 replays at most that much into the pool at the next start. The thread starts with
    the first event and ends with :meth:`close` or when the engine is gone."""

    def __init__(self, save: Callable[[], object], every_s: float, every_events: int) -> None:
        self._save = weakref.WeakMethod(save) if hasattr(save, "__self__") else (lambda: save)
        self.every_s, self.every_events = float(every_s), int(every_events)
        self._pending = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        #: snapshots written, and failed (logged; the next one tries again)
        self.saved = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.every_s > 0 or self.every_events > 0

    def note(self, n: int) -> None:
        """``n`` more events reached the pool."""
        if not self.enabled or n <= 0 or self._stop.is_set():
            return
        self._pending += n
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="notefeed-coldstart-snapshots",
                                                    daemon=True)
                    self._thread.start()
        if self.every_events and self._pending >= self.every_events:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every_s if self.every_s > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self._pending:
                continue
            save = self._save()
            if save is None:  # the engine was dropped without close
                return
            self._pending = 0
            try:
                save()
                self.saved += 1
            except Exception:  # serving goes on; the next snapshot (or close) tries again
                self.failed += 1
                log.exception("cold-start snapshot failed")
            del save

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)


class ColdStartSource:
    """``coldstart/bandit``: a side source (bypasses ranking) of bandit-chosen pool notes."""

    name = "coldstart/bandit"
    side = True
    #: the page mixer's part (:mod:`notefeed.serve.slots`): ``slots`` notes by this column
    slot_score = "coldstart.score"
    slot_name = "coldstart/slots"

    def __init__(self, hub: ColdStartHub, slots: int = 0) -> None:
        self.hub = hub
        self.slots = int(slots)

    def fit(self, ds: Any) -> ColdStartSource:
        return self  # the engine fits the hub once; it is shared with publish/ingest

    def recall(self, ctx: UserContext, k: int) -> SideCandidates:
        items, scores, stages = self.hub.candidates(ctx, k)
        codes = np.asarray([STAGES.index(s) for s in stages], np.float32)
        return SideCandidates(self.name, items, scores, columns={self.slot_score: scores, "coldstart.stage": codes})


class ColdStartSlots(SideSlots):
    """``coldstart/slots``: after re-ranking, up to ``slots`` pool notes into the page.

    Sees the re-ranked page (rows with ``main`` = 1, in order) plus the side candidates
    (``side`` = 1); pool notes that made the page on their own count against the slots.
    The cold-start part of :class:`~notefeed.serve.slots.SideSlots`, alone.
    """

    def __init__(self, slots: int) -> None:
        super().__init__([SlotPart(ColdStartSource.name, int(slots), ColdStartSource.slot_score,
                                   ColdStartSource.slot_name)])
