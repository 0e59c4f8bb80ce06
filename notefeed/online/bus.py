"""The event bus: one contract, two backends, plus a never-blocking side-effect dispatcher.

``append`` returns only once the events are durable in the backend, and the API
acknowledges only after ``append`` returned: an acknowledged event survives ``kill -9``.

- :class:`SqliteEventBus` (embedded default): ``events.sqlite`` in the workspace, WAL mode,
  ``synchronous=FULL`` (each batch commit is fsynced), one transaction per batch.
- :class:`RedisEventBus`: ``XADD`` to a stream (durability is then Redis's persistence
  setting: use ``appendonly yes`` with ``appendfsync always`` for the same guarantee).

``erase(user_id, until)`` removes a user's events received up to ``until`` (an erased user,
:mod:`notefeed.serve.erasure`): a Redis stream deletes its entries (``XDEL``; positions are entry
ids); the SQLite log blanks their rows into tombstones of type :data:`ERASED`, which nothing
reads, so that its positions, which are counts, stay where they were.

``SqliteEventBus.compact(upto)`` deletes the log's oldest rows up to position ``upto`` (the
sync calls it, never past what the store holds: ``online.log_keep``) and keeps their count as
the log's ``base``: positions go on counting from it, and a server's start-up replays only what
is kept (it takes the rest from the store's dataset).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from notefeed.online.events import EventRecord

__all__ = ["EventBus", "SqliteEventBus", "RedisEventBus", "SideEffects", "open_bus", "ERASED", "immediate"]

log = logging.getLogger(__name__)

#: rows read at a time by :meth:`SqliteEventBus.entries`
_PAGE = 50_000
_COLS = ("user_id", "note_id", "ts", "type", "received_at", "dwell_s", "position", "request_id", "surface",
         "event_id")
#: the type of an erased event's row in the SQLite log (every other column blanked); never read
ERASED = "erased"


@runtime_checkable
class EventBus(Protocol):
    """Durable, ordered event log."""

    name: str

    def append(self, events: Sequence[EventRecord]) -> int:
        """Store ``events`` durably (all or none); return how many were stored."""
        ...

    def replay(self) -> Iterator[EventRecord]:
        """Every stored event, in append order."""
        ...

    def entries(self, after: Any = None) -> Iterator[tuple[Any, EventRecord]]:
        """``(position, event)`` of the events after position ``after`` (None: all), in
        append order; a position is the backend's own (a count, an entry id)."""
        ...

    def count(self) -> int: ...

    def erase(self, user_id: str, until: float) -> int:
        """Remove ``user_id``'s events received up to ``until``; returns how many."""
        ...

    def close(self) -> None: ...


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on an autocommit connection (``BEGIN IMMEDIATE``: the write lock
    from the start), committed when the block ends, rolled back when it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def open_wal(path: Path, synchronous: str, what: str, schema: str) -> sqlite3.Connection:
    """A thread-shareable SQLite connection in WAL mode with ``synchronous`` durability and
    ``schema`` applied; a file that is not such a database gives ``ValueError`` naming ``what``.
    Autocommit (``isolation_level=None``): callers open their own transactions."""
    if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
        raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute(schema)
    except sqlite3.DatabaseError as e:
        db.close()
        raise ValueError(f"{path}: not a {what} ({e})") from e
    return db


class WalLog:
    """A workspace log in one SQLite WAL file that every serving process appends to and reads
    (the note log, the relation log): one connection behind one lock, rows read after a position."""

    def __init__(self, path: str | Path, synchronous: str, what: str, schema: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_wal(self.path, synchronous, what, schema)

    def _after(self, table: str, columns: str, seq: int, mark: str | None = None,
               limit: int | None = None) -> list[tuple[Any, ...]]:
        """``table``'s rows (``seq``, ``columns``) after position ``seq``, in order, the first
        ``limit`` of them; the attribute ``mark`` (when given) becomes the last position read."""
        sql = f"SELECT seq, {columns} FROM {table} WHERE seq > ? ORDER BY seq" + (" LIMIT ?" if limit else "")
        with self._lock:
            rows = self._db.execute(sql, (int(seq), int(limit)) if limit else (int(seq),)).fetchall()
        if rows and mark is not None:
            setattr(self, mark, max(getattr(self, mark), int(rows[-1][0])))
        return rows

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:  # pragma: no cover - closing twice
                pass


class SqliteEventBus:
    """Append-only SQLite log in WAL mode; safe to share across threads (one lock)."""

    name = "sqlite"

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_wal(
            self.path, synchronous, "notefeed event log",
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "user_id TEXT NOT NULL, note_id TEXT NOT NULL, ts INTEGER NOT NULL, type TEXT NOT NULL, "
            "received_at REAL NOT NULL, dwell_s REAL, position INTEGER, request_id TEXT, surface TEXT, "
            "event_id TEXT)",
        )
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
        if "event_id" not in cols:  # a log written before client event ids existed
            self._db.execute("ALTER TABLE events ADD COLUMN event_id TEXT")
        # rows compacted away from the front (:meth:`compact`): positions count them
        self._db.execute("CREATE TABLE IF NOT EXISTS log_base (id INTEGER PRIMARY KEY CHECK (id = 0), "
                         "base INTEGER NOT NULL)")

    @property
    def base(self) -> int:
        """How many rows :meth:`compact` deleted from the front: the position before the first kept row."""
        with self._lock:
            return self._base()

    def _base(self) -> int:
        row = self._db.execute("SELECT base FROM log_base WHERE id = 0").fetchone()
        return int(row[0]) if row else 0

    def _seq_of(self, k: int) -> int | None:
        """The sequence number of the ``k``-th kept row (from 1), None past the log's end. Under the lock."""
        row = self._db.execute("SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?", (int(k) - 1,)).fetchone()
        return None if row is None else int(row[0])

    def _position(self, where: str = "", args: tuple[Any, ...] = ()) -> int:
        """:attr:`base` plus the kept rows (those matching ``where``): a position. Under the lock."""
        return self._base() + int(self._db.execute(f"SELECT count(*) FROM events {where}", args).fetchone()[0])

    def position_before(self, received_at: float) -> int:
        """The position of the last row before the first one received at or after
        ``received_at`` (the log's end when none is)."""
        with self._lock:
            row = self._db.execute("SELECT min(seq) FROM events WHERE received_at >= ?", (float(received_at),)).fetchone()
            if row is None or row[0] is None:
                return self._position()
            return self._position("WHERE seq < ?", (int(row[0]),))

    def compact_synced(self, mark: Any, keep: int, keep_from: float | None = None) -> int:
        """Delete the rows up to position ``mark`` (what the store holds) but the newest
        ``keep`` and any received at or after ``keep_from``; returns how many."""
        upto = min(int(mark or 0), self.count() - int(keep))
        if keep_from is not None:
            upto = min(upto, self.position_before(keep_from))
        return self.compact(upto) if upto > self.base else 0

    def compact(self, upto: int) -> int:
        """Delete the rows at positions up to ``upto`` (those already in the store), in one
        transaction; returns how many. Positions stay: the count moves into :attr:`base`."""
        with self._lock, immediate(self._db):
            base = self._base()
            n = max(0, int(upto) - base)
            if n:
                last = self._seq_of(n)
                if last is None:
                    raise ValueError(f"compact: position {upto} is past the log's end")
                n = self._db.execute("DELETE FROM events WHERE seq <= ?", (last,)).rowcount
                self._db.execute("INSERT OR REPLACE INTO log_base (id, base) VALUES (0, ?)", (base + n,))
        return int(n)

    def append(self, events: Sequence[EventRecord]) -> int:
        if not events:
            return 0
        rows = [tuple(getattr(e, c) for c in _COLS) for e in events]
        with self._lock, immediate(self._db):
            self._db.executemany(f"INSERT INTO events ({','.join(_COLS)}) VALUES ({','.join('?' * len(_COLS))})", rows)
        return len(rows)

    def replay(self) -> Iterator[EventRecord]:
        """Every kept event in order (:meth:`entries` without the positions)."""
        for _, rec in self.entries():
            yield rec

    def entries(self, after: int | None = 0) -> Iterator[tuple[int, EventRecord]]:
        """``(position, event)`` from the ``after``-th event on, a page at a time (a copy of a
        long log holds little); a position is the count of events up to and including this
        one (what a copy of the log resumes from). Pages follow the sequence number (the
        ``after``-th row is found once), so reading a long log is linear. Positions up to
        :attr:`base` were compacted away: ``after`` below it starts at the first kept row."""
        cols = ",".join(_COLS)
        with self._lock:
            base = self._base()
            pos = max(int(after or 0), base)
            last = self._seq_of(pos - base) if pos > base else 0
        if last is None:  # fewer rows than ``after``
            return
        while True:
            with self._lock:
                rows = self._db.execute(f"SELECT seq, {cols} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                        (last, _PAGE)).fetchall()
            for r in rows:
                pos += 1  # a tombstone keeps its place: positions are counts
                if r[4] != ERASED:
                    yield pos, EventRecord(**dict(zip(_COLS, r[1:], strict=True)))
            if len(rows) < _PAGE:
                return
            last = int(rows[-1][0])

    def count(self) -> int:
        """The position of the last row: rows in the log, tombstones of erased events and rows
        compacted away included (positions count them)."""
        with self._lock:
            return self._position()

    def erased_within(self, position: int) -> int:
        """How many of the kept rows up to ``position`` are tombstones."""
        with self._lock:
            n = max(0, int(position) - self._base())
            return int(self._db.execute("SELECT count(*) FROM (SELECT type FROM events ORDER BY seq LIMIT ?) "
                                        "WHERE type = ?", (n, ERASED)).fetchone()[0])

    def erase(self, user_id: str, until: float) -> int:
        """Blank ``user_id``'s events received up to ``until`` into :data:`ERASED` tombstones, in
        one transaction; returns how many."""
        with self._lock:
            return int(self._db.execute(
                "UPDATE events SET user_id = '', note_id = '', ts = 0, type = ?, received_at = 0, dwell_s = NULL, "
                "position = NULL, request_id = NULL, surface = NULL, event_id = NULL "
                "WHERE user_id = ? AND received_at <= ?", (ERASED, user_id, float(until))).rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisEventBus:
    """Events as entries of a Redis stream (``XADD``, one MULTI/EXEC per batch)."""

    name = "redis"

    def __init__(self, client: Any, stream: str = "nf:events", maxlen: int | None = None) -> None:
        self.r, self.stream, self.maxlen = client, stream, maxlen
        #: this process's mark on the entries it writes: :meth:`tail` skips them
        self.origin = uuid.uuid4().hex[:12]
        #: the id of the last entry :meth:`replay` or :meth:`tail` read ("0-0": none)
        self.last_id = "0-0"

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> RedisEventBus:
        import redis

        return cls(redis.Redis.from_url(url, decode_responses=True), **kw)

    def append(self, events: Sequence[EventRecord]) -> int:
        if not events:
            return 0
        p = self.r.pipeline(transaction=True)
        self.queue_append(p, events)
        p.execute()
        return len(events)

    def queue_append(self, pipeline: Any, events: Sequence[EventRecord]) -> None:
        """Queue the ``XADD`` of ``events`` on ``pipeline`` (a transaction that may also hold
        other writes: :func:`notefeed.online.redis_sync.append_and_apply`)."""
        for e in events:
            pipeline.xadd(self.stream, {"e": json.dumps(e.to_dict()), "w": self.origin}, maxlen=self.maxlen,
                          approximate=True)

    def replay(self) -> Iterator[EventRecord]:
        last = "-"
        while True:
            batch = self.r.xrange(self.stream, min=last, max="+", count=1000)
            if last != "-":
                batch = batch[1:]  # xrange is inclusive of the last id already yielded
            if not batch:
                return
            for _id, fields in batch:
                yield EventRecord(**json.loads(fields["e"]))
            last = self.last_id = batch[-1][0]

    def entries(self, after: str | None = None) -> Iterator[tuple[str, EventRecord]]:
        """``(entry id, event)`` after the entry ``after`` (None: from the start), in stream
        order, a page at a time; does not move :attr:`last_id`. An id, not a count, is the
        position: resuming reads only what is new, and a trimmed stream does not shift it."""
        low = "-" if after is None else f"({after}"
        while True:
            batch = self.r.xrange(self.stream, min=low, max="+", count=1000)
            if not batch:
                return
            for entry_id, fields in batch:
                yield entry_id, EventRecord(**json.loads(fields["e"]))
            low = f"({batch[-1][0]}"

    def tail(self, block_ms: int = 200, count: int = 1000) -> list[EventRecord]:
        """Entries added after :attr:`last_id` by *other* processes (serving workers sharing
        this stream), waiting up to ``block_ms`` for one; advances :attr:`last_id`."""
        got = self.r.xread({self.stream: self.last_id}, count=count, block=block_ms)
        out: list[EventRecord] = []
        for _stream, entries in got or []:
            for entry_id, fields in entries:
                self.last_id = entry_id
                if fields.get("w") != self.origin:
                    out.append(EventRecord(**json.loads(fields["e"])))
        return out

    def count(self) -> int:
        """Entries in the stream plus those :meth:`compact_synced` trimmed (not those an erasure deleted)."""
        return int(self.r.xlen(self.stream)) + self.base

    @property
    def base(self) -> int:
        """How many entries :meth:`compact_synced` trimmed from the front."""
        return int(self.r.get(f"{self.stream}:base") or 0)

    def compact_synced(self, mark: Any, keep: int, keep_from: float | None = None,
                       clock_margin_s: float = 60.0) -> int:
        """Trim the entries up to id ``mark`` (what the store holds) but the newest ``keep`` and
        any added at or after ``keep_from`` (an entry id is the Redis server's clock when it was
        added: ``clock_margin_s`` earlier, for the clocks' difference), with ``XTRIM MINID``;
        the count goes to :attr:`base` in the same transaction. Returns how many."""
        if mark is None:
            return 0
        newest = self.r.xrevrange(self.stream, "+", "-", count=max(1, int(keep)))
        if len(newest) < int(keep) or not newest:
            return 0
        first_kept = newest[-1][0]  # the oldest of the newest ``keep``
        after_mark = self.r.xrange(self.stream, f"({mark}", "+", count=1)
        cut = [_entry_id(first_kept)]
        if after_mark:
            cut.append(_entry_id(after_mark[0][0]))
        if keep_from is not None:
            cut.append((max(0, int((keep_from - clock_margin_s) * 1000)), 0))
        ms, seq = min(cut)
        return int(self.r.eval(_TRIM, 2, self.stream, f"{self.stream}:base", f"{ms}-{seq}") or 0)

    def erase(self, user_id: str, until: float) -> int:
        """Delete ``user_id``'s entries received up to ``until`` from the stream (``XDEL``,
        after one pass over it); returns how many. (With a Redis online state that counts the
        entries it applied, :func:`notefeed.online.redis_sync.erase` keeps that count right.)"""
        gone = self.entry_ids_of(user_id, until)
        self.delete(gone)
        return len(gone)

    def entry_ids_of(self, user_id: str, until: float) -> list[str]:
        """The ids of ``user_id``'s entries received up to ``until`` (one pass over the stream)."""
        return [entry_id for entry_id, r in self.entries() if r.user_id == user_id and r.received_at <= until]

    def delete(self, entry_ids: Sequence[str], pipe: Any | None = None) -> None:
        """``XDEL`` ``entry_ids`` (1,000 a command), on ``pipe`` when given."""
        for i in range(0, len(entry_ids), 1000):
            (pipe if pipe is not None else self.r).xdel(self.stream, *entry_ids[i:i + 1000])

    def close(self) -> None:
        self.r.close()


#: XTRIM MINID and the count of trimmed entries, in one atomic step
_TRIM = ("local n = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1]) "
         "if n > 0 then redis.call('INCRBY', KEYS[2], n) end return n")


def _entry_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = str(entry_id).partition("-")
    return int(ms), int(seq or 0)


def open_bus(backend: str, workspace: str | Path | None = None, redis_url: str | None = None,
             synchronous: str = "FULL", stream: str = "nf:events") -> EventBus:
    """Open the configured backend: ``"sqlite"`` needs ``workspace``, ``"redis"`` ``redis_url``."""
    if backend == "sqlite":
        if workspace is None:
            raise ValueError("event bus 'sqlite' needs a workspace directory (field 'workspace')")
        return SqliteEventBus(Path(workspace) / "events.sqlite", synchronous=synchronous)
    if backend == "redis":
        if not redis_url:
            raise ValueError("event bus 'redis' needs online.redis_url (field 'redis_url')")
        return RedisEventBus.from_url(redis_url, stream=stream)
    raise ValueError(f"unknown event bus backend {backend!r} (field 'backend'); known: sqlite, redis")


class SideEffects:
    """Runs side effects on one background thread, in submission order. Never blocks the
    caller: when the queue is full the work is dropped and counted (serving matters more
    than a side effect); a failing side effect is logged and counted, never raised."""

    def __init__(self, maxsize: int = 1000) -> None:
        self._q: queue.Queue[tuple[Callable[[Any], None], Any] | None] = queue.Queue(maxsize=maxsize)
        self._subs: list[Callable[[Sequence[EventRecord]], None]] = []
        self.dropped = 0
        self.failed = 0
        self._t = threading.Thread(target=self._run, name="notefeed-side-effects", daemon=True)
        self._t.start()

    def subscribe(self, fn: Callable[[Sequence[EventRecord]], None]) -> None:
        """Call ``fn(batch)`` for every accepted event batch (see :meth:`publish`)."""
        self._subs.append(fn)

    def submit(self, fn: Callable[[Any], None], arg: Any) -> bool:
        """Queue ``fn(arg)``; ``False`` (and counted in ``dropped``) when the queue is full."""
        try:
            self._q.put_nowait((fn, arg))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def publish(self, events: Sequence[EventRecord]) -> None:
        for fn in self._subs:
            self.submit(fn, events)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, arg = item
            try:
                fn(arg)
            except Exception:  # a side effect must never take serving down
                self.failed += 1
                log.exception("side effect %r failed", fn)
            finally:
                self._q.task_done()

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until queued work is done (tests, shutdown)."""
        done = threading.Event()

        def wait() -> None:
            self._q.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait(timeout)

    def close(self) -> None:
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
