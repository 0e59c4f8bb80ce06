"""What serving wrote, into the training store: ``notefeed train`` learns from live traffic.

``notefeed serve`` keeps what clients send in two durable logs of the workspace: the event
log (``events.sqlite``, or the Redis stream with ``online.backend: redis``) and the note log
(``notes.sqlite``, notes published with ``POST /v1/notes``), and what users say about creators
in a third, the relation log (``relations.sqlite``: follows, unfollows and blocks through the
API; the store keeps its rows in ``relations`` and gives training the newest per pair as
``Dataset.social`` edges), with the erased users (``DELETE /v1/users/{id}``): an erasure is
applied to the store before the events of its sync are copied, deleting the user's rows there,
and the serving logs are purged of the user once more (:mod:`notefeed.serve.erasure`).
Training reads the DuckDB store
(``notefeed.duckdb``: imported or generated data). :func:`sync_logs` appends to the store
the log entries it does not hold yet, notes first (so events find them): each log's position
(a count of SQLite events, a Redis entry id, a note-log sequence number) is kept in the store
with the rows (``Workspace.mark``, one transaction per batch), so a
sync copies every entry once, whether it is interrupted, repeated, or run by ``notefeed
train`` while the server writes. Entries the store's checks refuse (an id written before a
rule existed) are skipped and counted.

``notefeed train`` syncs before it loads the data (``--no-sync`` skips it), and with
``online.mirror_to_workspace`` the server syncs in the background after every accepted batch.
``data import --replace`` starts the store afresh, positions included: the next sync appends
the logs again from their start.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["SyncReport", "sync_logs", "sync_workspace", "sync_first", "logged_edits", "pending", "event_log_key", "EVENT_LOG", "NOTE_LOG",
           "FOLLOWERS_LOG", "RELATION_LOG", "EDITS_LOG", "ERASURE_LOG"]

#: :meth:`Workspace.mark` keys of the two logs (and of the note log's follower counts, and of
#: the relation log: follows, unfollows and blocks sent through the API)
EVENT_LOG, NOTE_LOG, FOLLOWERS_LOG, RELATION_LOG = "event_log", "note_log", "note_log.followers", "relation_log"
#: the mark of the note log's edits
EDITS_LOG = "note_log.edits"
#: the mark of the relation log's erasures
ERASURE_LOG = "relation_log.erasures"
#: log entries appended per transaction
BATCH = 50_000
#: the fewest entries a compacted SQLite event log keeps: a server remembers the client event
#: ids of this many (``notefeed.serve.engine.EVENT_ID_WINDOW``) to refuse a retry twice
MIN_LOG_KEEP = 200_000


@dataclass(frozen=True)
class SyncReport:
    notes: int = 0
    events: int = 0
    skipped: int = 0  # entries the store's checks refused
    relations: int = 0  # follows, unfollows, blocks and unblocks sent through the API
    edits: int = 0  # note edits (PATCH /v1/notes/{id})
    erased: int = 0  # users erased (DELETE /v1/users/{id})
    compacted: int = 0  # event-log entries deleted after the copy (``online.log_keep``)
    missing: int = 0  # entries compacted out of the log before this store held them (a replaced store)

    def line(self) -> str:
        skipped = f" ({self.skipped:,} refused by the store's checks, skipped)" if self.skipped else ""
        more = [f"{self.edits:,} note edits"] * bool(self.edits) + \
            [f"{self.relations:,} follows, unfollows or blocks"] * bool(self.relations) + \
            [f"{self.erased:,} user erasures"] * bool(self.erased)
        parts = [f"{self.notes:,} notes", f"{self.events:,} events", *more]
        said = ", ".join(parts[:-1]) + " and " + parts[-1]
        kept = f"; the event log keeps its newest entries ({self.compacted:,} older ones, in the store, deleted)" \
            if self.compacted else ""
        gone = (f"; {self.missing:,} event-log entries were compacted away before this store held them (it was "
                "replaced or restored since): they are not in it") if self.missing else ""
        return f"synced the serving logs: {said}{skipped}{kept}{gone}"

    @property
    def copied(self) -> bool:
        """Whether the sync copied anything (or skipped something)."""
        return bool(self.notes or self.events or self.relations or self.edits or self.erased or self.skipped
                    or self.compacted or self.missing)


def _valid(frame: pd.DataFrame, check: Any) -> tuple[pd.DataFrame, int]:
    bad = {p.row for p in check(frame)}
    if not bad:
        return frame, 0
    return frame.drop(index=sorted(bad)).reset_index(drop=True), len(bad)


def event_log_key(bus: Any) -> str:
    """The mark of ``bus``'s log: SQLite positions are counts, a Redis stream's are its entry
    ids (one key per stream: another backend is another log)."""
    return EVENT_LOG if bus.name == "sqlite" else f"{EVENT_LOG}.{bus.name}:{bus.stream}"


def sync_logs(ws: Any, bus: Any | None, note_log: Any | None, batch: int = BATCH,
              relation_log: Any | None = None, log_keep: int = 0, keep_from: float | None = None,
              state: Any | None = None) -> SyncReport:
    """Append to the open :class:`~notefeed.data.store.Workspace` ``ws`` what ``note_log`` (a
    :class:`~notefeed.serve.catalog.NoteLog`), ``bus`` (an event bus) and ``relation_log`` (a
    :class:`~notefeed.serve.relations.RelationLog`) hold past its marks; then, with
    ``log_keep``, delete the event log's entries older than its newest ``log_keep`` (at least
    :data:`MIN_LOG_KEEP`) that the store holds, none received at or after ``keep_from`` (a
    SQLite log keeps its positions; a Redis stream is trimmed). ``state``: the Redis online
    state beside a Redis ``bus``, whose count of applied entries an erasure's purge keeps right
    (:func:`notefeed.online.redis_sync.erase`)."""
    from notefeed.data.importer import check_events, check_notes

    notes = events = skipped = edits = 0
    if note_log is not None:
        rows = note_log.since(int(ws.mark(NOTE_LOG) or 0))  # positions are the log's own sequence numbers
        for i in range(0, len(rows), batch):
            part = rows[i:i + batch]
            followers = {n.author_id: f for _, n, f in part if f is not None}  # published with a count
            if followers:  # notes are written idempotently, so before the mark
                ws.upsert_creators(pd.DataFrame({"creator_id": list(followers), "followers": list(followers.values())}))
            frame, bad = _valid(pd.DataFrame([n.model_dump() for _, n, _ in part]), check_notes)
            if len(frame):
                ws.append_notes(frame, marks={NOTE_LOG: part[-1][0]})
            else:
                ws.set_marks({NOTE_LOG: part[-1][0]})
            notes, skipped = notes + len(frame), skipped + bad
        # edits (after the notes: a note published and edited since the last sync is there now)
        for part in iter(lambda: note_log.edits_since(int(ws.mark(EDITS_LOG) or 0), move=False, limit=batch), []):
            frame = pd.DataFrame([{"note_id": n, **{k: b["after"][k] for k in ("title", "text", "tags", "category")},
                                   "edited_at": at} for _, n, b, at in part])
            ws.edit_notes(frame, marks={EDITS_LOG: part[-1][0]})
            edits += len(part)
        # follower counts the app sent (with a publish or on their own), the newest per creator
        counts = note_log.followers_since(int(ws.mark(FOLLOWERS_LOG) or 0))
        if counts:
            last = {c: f for _, c, f in counts}
            ws.upsert_creators(pd.DataFrame({"creator_id": list(last), "followers": list(last.values())}),
                               marks={FOLLOWERS_LOG: counts[-1][0]})
    erased, gone = 0, {}
    if relation_log is not None:  # erasures before this sync's events: a user's later events are a new account's
        erased, gone = _apply_erasures(ws, relation_log, bus, batch, state)
    compacted = missing = 0
    if bus is not None:
        key = event_log_key(bus)
        mark = ws.mark(key)
        if bus.name == "sqlite" and int(mark or 0) < bus.base:  # compacted before this store held them
            missing = bus.base - int(mark or 0)
            ws.set_marks({key: bus.base})
            mark = bus.base
        it = bus.entries(mark)
        while part := list(itertools.islice(it, batch)):
            frame = pd.DataFrame([{"user_id": r.user_id, "note_id": r.note_id, "ts": r.ts, "type": r.type,
                                   "dwell_s": r.dwell_s, "position": r.position, "request_id": r.request_id,
                                   "surface": r.surface} for _, r in part
                                  if not (r.user_id in gone and r.received_at <= gone[r.user_id])],
                                 columns=["user_id", "note_id", "ts", "type", "dwell_s", "position", "request_id",
                                          "surface"])
            frame, bad = _valid(frame, check_events)
            # the position after the batch's last event; the rows were just checked (not twice)
            ws.append_events(frame, marks={key: part[-1][0]}, checked=True)
            events, skipped = events + len(frame), skipped + bad
        if log_keep > 0:  # only what the store holds, never the newest
            compacted = bus.compact_synced(ws.mark(key), max(int(log_keep), MIN_LOG_KEEP), keep_from)
    relations = 0
    if relation_log is not None:  # positions are the log's own sequence numbers
        for part in iter(lambda: relation_log.after(int(ws.mark(RELATION_LOG) or 0), batch), []):
            frame = pd.DataFrame([r[1:] for r in part], columns=["user_id", "creator_id", "kind", "active", "at"])
            relations += ws.append_relations(frame, marks={RELATION_LOG: part[-1][0]})
    return SyncReport(notes, events, skipped, relations, edits, erased, compacted, missing)


def _apply_erasures(ws: Any, relation_log: Any, bus: Any | None, batch: int,
                    state: Any | None = None) -> tuple[int, dict[str, float]]:
    """Apply the relation log's erasures past the store's mark (:meth:`Workspace.erase_users`),
    purging the serving logs of each user once more; returns (how many, every erased user with
    their latest erasure time: their events up to it are not copied)."""
    from notefeed.serve.erasure import purge_logs

    n = 0
    for part in iter(lambda: relation_log.erasures_after(int(ws.mark(ERASURE_LOG) or 0), batch), []):
        for _, user, at in part:  # what another worker accepted while the erasure was written
            purge_logs(relation_log.path.parent, user, at, bus, state=state)
        frame = pd.DataFrame([r[1:] for r in part], columns=["user_id", "erased_at"])
        ws.erase_users(frame, marks={ERASURE_LOG: part[-1][0]})
        n += len(part)
    return n, relation_log.erased()


def pending(ws: Any, workspace: str | Path) -> dict[str, int]:
    """What ``workspace``'s SQLite logs hold past the open store ``ws``'s marks (what the next
    sync copies): ``notes``, ``events`` (the SQLite event log; a Redis stream is not counted
    here), ``follower_counts``, ``relations`` (follows, unfollows, blocks and unblocks),
    ``edits`` (note edits) and ``erasures`` (users erased). A
    log that does not exist counts 0; the store is only read (a note log from before this
    version gets its new, empty tables)."""
    from notefeed.online.bus import SqliteEventBus
    from notefeed.serve.catalog import NoteLog
    from notefeed.serve.relations import RELATIONS_FILE, RelationLog

    workspace = Path(workspace)
    out = {"notes": 0, "events": 0, "follower_counts": 0, "relations": 0, "edits": 0, "erasures": 0}
    if (workspace / "notes.sqlite").exists():
        log = NoteLog(workspace / "notes.sqlite")
        try:
            out["notes"] = len(log.since(int(ws.mark(NOTE_LOG) or 0)))
            out["edits"] = len(log.edits_since(int(ws.mark(EDITS_LOG) or 0), move=False))
            out["follower_counts"] = len(log.followers_since(int(ws.mark(FOLLOWERS_LOG) or 0)))
        finally:
            log.close()
    if (workspace / "events.sqlite").exists():
        bus = SqliteEventBus(workspace / "events.sqlite")
        try:  # a SQLite position is a count of events
            out["events"] = max(0, bus.count() - int(ws.mark(EVENT_LOG) or 0))
        finally:
            bus.close()
    if (workspace / RELATIONS_FILE).exists():
        rel = RelationLog(workspace / RELATIONS_FILE)
        try:
            out["relations"] = rel.count_after(int(ws.mark(RELATION_LOG) or 0))
            out["erasures"] = len(rel.erasures_after(int(ws.mark(ERASURE_LOG) or 0)))
        finally:
            rel.close()
    return out


def sync_workspace(workspace: str | Path, config: Any = None, lock_wait_s: float = 30.0) -> SyncReport:
    """:func:`sync_logs` on ``workspace``'s store and logs (``config``: the serving config,
    whose ``online`` section names the event log's backend; default config when ``None``),
    waiting up to ``lock_wait_s`` for another writer of the store."""
    from notefeed.data.store import Workspace
    from notefeed.online.bus import open_bus
    from notefeed.serve.catalog import NoteLog
    from notefeed.serve.config import ServeConfig
    from notefeed.serve.relations import RELATIONS_FILE, RelationLog

    workspace = Path(workspace)
    on = (config if config is not None else ServeConfig()).online
    has_events = on.backend != "sqlite" or (workspace / "events.sqlite").exists()
    has_notes = (workspace / "notes.sqlite").exists()
    has_relations = (workspace / RELATIONS_FILE).exists()
    if not (has_events or has_notes or has_relations):  # never served: nothing to copy, nothing to open
        return SyncReport()
    bus = open_bus(on.backend, workspace, on.redis_url, on.synchronous, stream=f"{on.redis_prefix}:events") \
        if has_events else None
    state = None
    if on.backend == "redis" and has_relations:  # erasures purge the stream: keep the state's count right
        from notefeed.online.state import RedisOnlineState

        state = RedisOnlineState.from_url(str(on.redis_url), prefix=on.redis_prefix)
    note_log = NoteLog(workspace / "notes.sqlite", on.synchronous) if has_notes else None
    relation_log = RelationLog(workspace / RELATIONS_FILE, on.synchronous) if has_relations else None
    try:  # created for a community that began empty, all through the API; another writer (a
        # server's mirror, `notefeed data`) may hold the store a moment
        with Workspace.open_waiting(workspace, lock_wait_s) as ws:
            return sync_logs(ws, bus, note_log, relation_log=relation_log, log_keep=on.log_keep,
                             keep_from=_experiment_start(workspace), state=state)
    finally:
        for one in (bus, note_log, relation_log, state):
            if one is not None:
                one.close()


def _experiment_start(workspace: Path) -> float | None:
    """When the newest experiment of the workspace's page log started (its report counts the
    events received since: compaction keeps them), or None without one."""
    import sqlite3
    from contextlib import closing

    from notefeed.serve.experiments import PAGE_LOG

    path = workspace / PAGE_LOG
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT max(started_at) FROM experiments").fetchone()
    except sqlite3.DatabaseError:
        return 0.0  # unreadable: keep the whole log rather than guess
    return None if row is None or row[0] is None else float(row[0])


def logged_edits(workspace: str | Path, after: int) -> list[tuple[int, str, dict[str, Any], dict[str, Any]]]:
    """(position, note id, fields before, fields after) of the note edits ``workspace``'s note
    log holds after position ``after``, in order (none without a note log)."""
    from notefeed.serve.catalog import NoteLog

    path = Path(workspace) / "notes.sqlite"
    if not path.exists():
        return []
    log = NoteLog(path)
    try:
        return [(q, n, b["before"], b["after"]) for q, n, b, _ in log.edits_since(int(after), move=False)]
    finally:
        log.close()


def sync_first(workspace: str | Path, echo: Any, fail: Any) -> SyncReport | None:
    """What the commands that read the store run first (``search``, ``llm embed``, ``data lake
    export``; ``--no-sync`` skips it): :func:`sync_workspace` with the default serving config
    (the SQLite event log; a Redis stream is synced by ``notefeed models sync --config``),
    ``echo`` its line when it copied something, ``fail`` a one-line error when a log or the
    store cannot be read. ``None`` when the workspace holds no store."""
    from notefeed.data.dataset import DataError
    from notefeed.data.store import DB_NAME

    if not (Path(workspace) / DB_NAME).exists():
        return None
    try:
        report = sync_workspace(workspace)
    except (DataError, ValueError, OSError) as e:
        fail(f"--workspace: syncing the serving logs into the store failed ({e}); --no-sync reads the store as it is")
        return None
    if report.copied:
        echo(report.line())
    return report
