"""The workspace: an embedded DuckDB file holding one community with external string ids.

``Workspace.open(DIR)`` uses ``DIR/notefeed.duckdb`` with tables ``notes``, ``users``,
``creators``, ``events``, ``social`` and ``meta``. Ids are the external strings (``"n123"``);
dense indices exist only in the :class:`~notefeed.data.Dataset` that :meth:`load_dataset`
builds. Note columns beyond the core ones (Qilin ``media``, MovieLens ``genres``...) and user
attributes are stored as a JSON object per row (``extra`` / ``attributes``); ``meta`` keeps the
JSON-serialisable entries of ``Dataset.meta`` (DataFrames such as Qilin's ``queries`` are not
stored).

Guarantees:

- every write is one transaction, committed before the method returns (DuckDB's write-ahead
  log), so a process killed right after ``append_events`` returned keeps the rows;
- appended rows are validated first (:func:`notefeed.data.importer.check_events`); a bad batch
  raises :class:`DataError` naming the batch index and field and writes nothing;
- unknown ids in appended events: with ``require_known=False`` (default, the bulk/offline
  path) unseen notes and users are created as stubs (author ``"unknown"``) in the same
  transaction; with ``require_known=True`` (the HTTP API) the batch is rejected with a
  DataError naming the first offending batch index;
- a file that is not a DuckDB database, or lacks our tables, raises :class:`DataError`.

DuckDB allows one writing process per file; a second process gets a DataError saying the file
is locked.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import duckdb
import numpy as np
import pandas as pd

from notefeed.data.dataset import LASTING_TYPES, NOTE_COLUMNS, DataError, Dataset, window_seconds
from notefeed.data.importer import EVENT_REQUIRED, check_creators, check_events, check_notes, check_users
from notefeed.schema import EVENT_TYPES, POSITIVE_TYPES, SURFACES, Creator, Event, Note, User

__all__ = ["Workspace", "WorkspaceLocked", "DB_NAME"]

DB_NAME = "notefeed.duckdb"
_EVENT_COLS = ("user_id", "note_id", "ts", "type", "dwell_s", "position", "request_id", "surface")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (note_id VARCHAR PRIMARY KEY, author_id VARCHAR NOT NULL, title VARCHAR,
    text VARCHAR, tags VARCHAR[], category VARCHAR, created_at BIGINT, extra VARCHAR);
CREATE TABLE IF NOT EXISTS users (user_id VARCHAR PRIMARY KEY, attributes VARCHAR);
CREATE TABLE IF NOT EXISTS creators (creator_id VARCHAR PRIMARY KEY, followers BIGINT NOT NULL);
CREATE SEQUENCE IF NOT EXISTS event_seq;
CREATE TABLE IF NOT EXISTS events (seq BIGINT DEFAULT nextval('event_seq'), user_id VARCHAR NOT NULL,
    note_id VARCHAR NOT NULL, ts BIGINT NOT NULL, type VARCHAR NOT NULL, dwell_s DOUBLE, position INTEGER,
    request_id VARCHAR, surface VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS social (user_id VARCHAR NOT NULL, target_id VARCHAR NOT NULL, kind VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS relations (user_id VARCHAR NOT NULL, creator_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    active BOOLEAN NOT NULL, said_at DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS note_edits (note_id VARCHAR PRIMARY KEY, title VARCHAR, text VARCHAR, tags VARCHAR[],
    category VARCHAR, edited_at DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS erasures (user_id VARCHAR NOT NULL, erased_at DOUBLE NOT NULL);
"""
_TABLES = ("notes", "users", "creators", "events", "social", "meta")
#: tables a store written by an older version lacks until a read-write open creates them
_LATER_TABLES = ("relations", "note_edits", "erasures")
#: what a relation row (kind, active) is in ``Dataset.social``; an unblock is no edge
_RELATION_EDGE = {("follow", True): "follow", ("follow", False): "unfollow", ("block", True): "block"}


_MARK = "sync."  # meta keys of Workspace.mark (not dataset metadata)


def _mark_steps(marks: dict[str, int | str] | None) -> list[tuple[str, pd.DataFrame | None]]:
    if not marks:
        return []
    rows = pd.DataFrame({"key": [_MARK + k for k in marks], "value": [json.dumps(v) for v in marks.values()]})
    return [("INSERT OR REPLACE INTO meta SELECT * FROM df", rows)]


def _with_json_columns(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``frame`` with its JSON-object ``column`` spread into columns (empty objects, the
    common case, are not parsed one by one)."""
    raw = frame.pop(column).tolist()  # plain str: iterating Arrow-backed strings is slow
    rows = [json.loads(x) if x and x != "{}" else None for x in raw]
    if not any(rows):
        return frame
    return pd.concat([frame, pd.DataFrame([r or {} for r in rows], index=frame.index)], axis=1)


def _jsonable(v: object) -> object:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def _row_json(df: pd.DataFrame, cols: Sequence[str]) -> list[str]:
    if not cols:
        return ["{}"] * len(df)
    recs = df[list(cols)].to_dict("records")
    return [json.dumps({k: _jsonable(v) for k, v in r.items()}, ensure_ascii=False, default=str) for r in recs]


def _positions(pos: np.ndarray) -> pd.Series:
    """Dataset positions (-1 = unknown) -> nullable Int32 for the database."""
    out = pd.Series(pos, dtype="Int32")
    out[pos < 0] = pd.NA
    return out


def _first_problem(problems: list, what: str) -> None:
    if problems:
        p = min(problems, key=lambda q: q.row)
        raise DataError(f"{what}[{p.row}]: field '{p.field}': {p.reason} ({len(problems)} problem(s); nothing written)")


def _window_sql(window_days: float, keep_per_user: int) -> str:
    """The ``WHERE`` clause over ``events`` that keeps what
    :func:`~notefeed.data.dataset.window_mask` keeps (newest first by ``ts``, then ``seq``)."""
    def listed(types: tuple[str, ...]) -> str:
        return ", ".join(f"'{t}'" for t in types)

    keep = (f" OR seq IN (SELECT seq FROM (SELECT seq, row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, "
            f"seq DESC) AS r FROM events WHERE type IN ({listed(POSITIVE_TYPES)})) WHERE r <= {int(keep_per_user)})"
            if keep_per_user > 0 else "")
    return (f"WHERE ts >= (SELECT max(ts) FROM events) - {window_seconds(window_days)} "
            f"OR type IN ({listed(LASTING_TYPES)}){keep}")


class WorkspaceLocked(DataError):
    """Another process holds the workspace's DuckDB file for writing (DuckDB allows one writer)."""


class Workspace:
    """One community on disk. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, tables: set[str] | None = None) -> None:
        self.path = path
        self._con: duckdb.DuckDBPyConnection | None = con
        #: the tables the file holds (a read-only open of an older store lacks the later ones)
        self.tables: set[str] = set(tables) if tables is not None else set(_TABLES) | set(_LATER_TABLES)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, directory: str | Path, create: bool = True, read_only: bool = False) -> Workspace:
        """Open ``directory/notefeed.duckdb`` (creating folder and schema when ``create``).
        ``read_only``: an existing workspace, for reading only; several processes may hold it
        so at once (a read-write open locks it)."""
        d = Path(directory)
        db = d / DB_NAME
        if not db.exists():
            if not create or read_only:
                raise FileNotFoundError(f"workspace: expected file {db} (create it with `notefeed data import`)")
            d.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(db), read_only=read_only)
        except duckdb.Error as e:
            msg = str(e).splitlines()[0]
            if "lock" in msg.lower():
                raise WorkspaceLocked(f"workspace {db}: locked by another process ({msg})") from None
            raise DataError(f"workspace {db}: not a readable DuckDB database ({msg})") from None
        try:
            if not read_only:
                con.execute(_SCHEMA)
            have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        except duckdb.Error as e:
            con.close()
            raise DataError(f"workspace {db}: cannot initialise schema ({str(e).splitlines()[0]})") from None
        missing = set(_TABLES) - have
        if missing:
            con.close()
            raise DataError(f"workspace {db}: missing tables {sorted(missing)}")
        return cls(db, con, have)

    @classmethod
    def open_waiting(cls, directory: str | Path, lock_wait_s: float, create: bool = True,
                     read_only: bool = False) -> Workspace:
        """:meth:`open`, retried while another process holds the file for writing, for up to
        ``lock_wait_s`` seconds (then :class:`WorkspaceLocked`)."""
        deadline = time.monotonic() + lock_wait_s
        while True:
            try:
                return cls.open(directory, create=create, read_only=read_only)
            except WorkspaceLocked:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2 + 0.3 * random.random())

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise DataError(f"workspace {self.path} is closed")
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _tx(self, statements: list[tuple[str, pd.DataFrame | None]]) -> None:
        """Run ``(sql, frame)`` pairs in one transaction; a frame is visible as ``df``."""
        con = self.con
        con.begin()
        try:
            for sql, frame in statements:
                if frame is not None:
                    con.register("df", frame)
                con.execute(sql).fetchall()
                if frame is not None:
                    con.unregister("df")
            con.commit()
        except BaseException:
            con.rollback()
            raise

    # ------------------------------------------------------------------ whole datasets
    def save_dataset(self, ds: Dataset, replace: bool = False) -> None:
        """Write ``ds``; an existing non-empty workspace needs ``replace=True`` (it is wiped)."""
        if not replace and sum(self.counts().values()):
            raise DataError(f"workspace {self.path} is not empty; pass replace=True to overwrite")
        extra_cols = [c for c in ds.notes.columns if c not in NOTE_COLUMNS]
        notes = pd.DataFrame(
            {
                "note_id": ds.notes["note_id"].astype(str),
                "author_id": ds.notes["author_id"].astype(str),
                "title": ds.notes["title"].astype(str),
                "text": ds.notes["text"].astype(str),
                "tags": [list(map(str, t)) for t in ds.notes["tags"]],
                "category": ds.notes["category"].astype(str),
                "created_at": ds.notes["created_at"].astype(np.int64),
                "extra": _row_json(ds.notes, extra_cols),
            }
        )
        attr_cols = [c for c in ds.users.columns if c != "user_id"]
        users = pd.DataFrame({"user_id": ds.users["user_id"].astype(str), "attributes": _row_json(ds.users, attr_cols)})
        ev = ds.events
        events = pd.DataFrame(
            {
                "user_id": ds.users["user_id"].to_numpy()[ev["user"].to_numpy()],
                "note_id": ds.notes["note_id"].to_numpy()[ev["item"].to_numpy()],
                "ts": ev["ts"].to_numpy(np.int64),
                "type": ev["type"].astype(str).to_numpy(),
                "dwell_s": ev["dwell_s"].to_numpy(np.float64),
                "position": _positions(ev["position"].to_numpy()),
                "request_id": ev["request_id"].astype(object) if "request_id" in ev else None,
                "surface": ev["surface"].astype(str).to_numpy(),
            }
        )
        social = relations = None
        if ds.social is not None and len(ds.social):
            social = pd.DataFrame(
                {
                    "user_id": ds.users["user_id"].to_numpy()[ds.social["user"].to_numpy()],
                    "target_id": ds.social["target_id"].astype(str).to_numpy(),
                    "kind": ds.social["kind"].astype(str).to_numpy(),
                    "at": ds.social["at"].to_numpy(np.float64) if "at" in ds.social else np.nan,
                }
            )
            # edges that came from the relation log (they carry its time) go back into it
            edge = {v: k for k, v in _RELATION_EDGE.items()}
            logged = social["at"].notna() & social["kind"].isin(list(edge))
            relations = social[logged].rename(columns={"target_id": "creator_id"})
            relations = relations.assign(kind=[edge[k][0] for k in relations["kind"]],
                                         active=[edge[k][1] for k in relations["kind"]])
            relations = relations[["user_id", "creator_id", "kind", "active", "at"]]
            social = social[~logged].drop(columns=["at"])
        meta = {k: v for k, v in ds.meta.items() if not isinstance(v, pd.DataFrame)}
        meta["name"] = ds.name
        meta_rows = pd.DataFrame(
            {"key": list(meta), "value": [json.dumps(_jsonable(v), default=str) for v in meta.values()]}
        )
        steps: list[tuple[str, pd.DataFrame | None]] = [(f"DELETE FROM {t}", None) for t in self._tables()]
        steps += [
            ("INSERT INTO notes SELECT * FROM df", notes),
            ("INSERT INTO users SELECT * FROM df", users),
            ("INSERT INTO creators SELECT creator_id, followers FROM df", ds.creators[["creator_id", "followers"]]),
            (f"INSERT INTO events ({', '.join(_EVENT_COLS)}) SELECT * FROM df ORDER BY ts", events),
            ("INSERT INTO meta SELECT * FROM df", meta_rows),
        ]
        if social is not None and len(social):
            steps.append(("INSERT INTO social SELECT * FROM df", social))
        if relations is not None and len(relations):
            steps.append(("INSERT INTO relations SELECT * FROM df", relations))
        self._tx(steps)

    def load_dataset(self, name: str | None = None, events: pd.DataFrame | None = None,
                     window_days: float = 0.0, keep_per_user: int = 0) -> Dataset:
        """Everything in the workspace as a :class:`Dataset` (events in append order, then by ts).

        ``events``: use this event frame (same columns, e.g. read from the event lake) instead
        of the ``events`` table. Read from the table, the dataset's ``log_marks`` are the store's
        sync marks: how far the serving logs are in these events. ``window_days`` > 0: only the
        events a data window keeps (:func:`~notefeed.data.dataset.window_mask`; read from the
        table, DuckDB drops the others before they reach Python); the store keeps them all."""
        con = self.con
        own_events = events is None
        if "note_edits" in self.tables:  # an edited note's fields as they are now, in its own row's place
            edited = ("FROM notes n LEFT JOIN note_edits e ON n.note_id = e.note_id ORDER BY n.rowid")
            notes = con.execute("SELECT n.* EXCLUDE (tags) REPLACE (coalesce(e.title, n.title) AS title, coalesce("
                                "e.text, n.text) AS text, coalesce(e.category, n.category) AS category) " + edited).df()
            tags = con.sql("SELECT coalesce(e.tags, n.tags) " + edited).to_arrow_table().column(0).to_pylist()
        else:
            notes = con.execute("SELECT * EXCLUDE (tags) FROM notes ORDER BY rowid").df()
            tags = con.sql("SELECT tags FROM notes ORDER BY rowid").to_arrow_table().column(0).to_pylist()
        notes = _with_json_columns(notes, "extra")
        notes.insert(notes.columns.get_loc("text") + 1, "tags", [t if t is not None else [] for t in tags])
        users = _with_json_columns(con.execute("SELECT * FROM users ORDER BY rowid").df(), "attributes")
        creators = con.execute("SELECT * FROM creators ORDER BY rowid").df()
        social = self._social()
        rows = con.execute("SELECT key, value FROM meta").fetchall()
        meta = {k: json.loads(v) for k, v in rows if not k.startswith(_MARK)}
        marks = {k[len(_MARK):]: json.loads(v) for k, v in rows if k.startswith(_MARK)}
        ds_name = name or str(meta.pop("name", self.path.parent.name))
        coded = self._coded_events(window_days, keep_per_user) if events is None else None
        if coded is not None:  # the fast path: ids coded to rows inside DuckDB
            ds = Dataset.build_coded(ds_name, coded, notes=notes, users=users, creators=creators,
                                     social=social, meta=meta)
        else:
            if events is None:
                events = con.execute(f"SELECT {', '.join(_EVENT_COLS)} FROM events ORDER BY seq").df()
            if events["request_id"].isna().all():
                events = events.drop(columns=["request_id"])
            ds = Dataset.build(ds_name, events, notes=notes, users=users, creators=creators, social=social, meta=meta)
        if window_days > 0 and coded is None:  # the coded path read only the window's events already
            ds = ds.windowed(window_days, keep_per_user)
        if own_events:  # the store's own events: the logs' entries they hold
            ds.log_marks = marks
        return ds

    def _social(self) -> pd.DataFrame:
        """The ``social`` table's edges, then the relation log's (what users said through the
        API, copied by the sync): for each (user, creator, kind) the newest row, as an edge of
        kind ``follow``, ``unfollow`` or ``block`` with its time ``at`` (an unblock is none;
        the table's own edges have no time)."""
        social = self.con.execute("SELECT *, NULL::DOUBLE AS said_at FROM social ORDER BY rowid").df()
        social = social.rename(columns={"said_at": "at"})
        if "relations" not in self.tables:
            return social
        rel = self.con.execute(
            "SELECT user_id, creator_id, kind, active, said_at FROM (SELECT *, row_number() OVER (PARTITION BY "
            "user_id, creator_id, kind ORDER BY said_at DESC, rowid DESC) AS r FROM relations) WHERE r = 1 "
            "ORDER BY said_at, user_id"
        ).fetchall()
        edges = [(u, c, _RELATION_EDGE[(k, bool(a))], t) for u, c, k, a, t in rel if (k, bool(a)) in _RELATION_EDGE]
        if not edges:
            return social
        more = pd.DataFrame(edges, columns=["user_id", "target_id", "kind", "at"])
        return more if not len(social) else pd.concat([social, more], ignore_index=True)

    def edit_notes(self, rows: pd.DataFrame, marks: dict[str, int | str] | None = None) -> int:
        """Note edits (``note_id``, ``title``, ``text``, ``tags`` (lists), ``category``: the
        fields as they are after the edit; ``edited_at`` unix seconds), the newest per note
        kept. The note's row stays where it is (its item index), the fields are read over it;
        notes the store lacks are skipped. Returns how many were written. ``marks``: as for
        :meth:`append_events`."""
        missing = next((c for c in ("note_id", "title", "text", "tags", "category", "edited_at") if c not in rows),
                       None)
        if missing is not None:
            raise DataError(f"note edits: missing column '{missing}'")
        out = pd.DataFrame({"note_id": rows["note_id"].astype(str), "title": rows["title"].astype(str),
                            "text": rows["text"].astype(str), "tags": [[str(t) for t in x] for x in rows["tags"]],
                            "category": rows["category"].astype(str), "edited_at": rows["edited_at"].astype(np.float64)})
        out = out.drop_duplicates("note_id", keep="last").reset_index(drop=True)
        self.con.register("ids", out[["note_id"]])
        known = {r[0] for r in self.con.execute("SELECT note_id FROM ids WHERE note_id IN (SELECT note_id FROM notes)")
                 .fetchall()}
        self.con.unregister("ids")
        out = out[out["note_id"].isin(known)]
        self._tx(([("INSERT OR REPLACE INTO note_edits SELECT * FROM df", out)] if len(out) else [])
                 + _mark_steps(marks))
        return len(out)

    def append_relations(self, rows: pd.DataFrame, marks: dict[str, int | str] | None = None) -> int:
        """Append relation-log rows (``user_id, creator_id, kind`` in ``follow``/``block``,
        ``active``, ``at`` unix seconds), in order; ``marks``: as for :meth:`append_events`."""
        missing = next((c for c in ("user_id", "creator_id", "kind", "active", "at") if c not in rows), None)
        if missing is not None:
            raise DataError(f"relations: missing column '{missing}'")
        bad = ~rows["kind"].isin(["follow", "block"])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"relations[{row}]: field 'kind': expected follow or block, got {rows['kind'].iat[row]!r}")
        out = pd.DataFrame({"user_id": rows["user_id"].astype(str), "creator_id": rows["creator_id"].astype(str),
                            "kind": rows["kind"].astype(str), "active": rows["active"].astype(bool),
                            "at": rows["at"].astype(np.float64)})
        self._tx([("INSERT INTO relations SELECT * FROM df", out), *_mark_steps(marks)] if len(out)
                 else _mark_steps(marks))
        return len(out)

    def erase_users(self, rows: pd.DataFrame, marks: dict[str, int | str] | None = None) -> None:
        """Erase users (``user_id``, ``erased_at`` unix seconds: :mod:`notefeed.serve.erasure`)
        in one transaction: their events, relation rows and social edges (either end) deleted,
        their attributes cleared (the row keeps its place: the user index trained versions
        use), the erasures recorded in ``erasures``. ``marks``: as for :meth:`append_events`."""
        missing = next((c for c in ("user_id", "erased_at") if c not in rows), None)
        if missing is not None:
            raise DataError(f"erasures: missing column '{missing}'")
        out = pd.DataFrame({"user_id": rows["user_id"].astype(str), "erased_at": rows["erased_at"].astype(np.float64)})
        if not len(out):
            self.set_marks(marks)
            return
        ids = "(SELECT user_id FROM df)"
        self._tx([(f"DELETE FROM events WHERE user_id IN {ids}", out),
                  (f"DELETE FROM relations WHERE user_id IN {ids}", out),
                  (f"DELETE FROM social WHERE user_id IN {ids} OR target_id IN {ids}", out),
                  (f"UPDATE users SET attributes = '{{}}' WHERE user_id IN {ids}", out),
                  ("INSERT INTO erasures SELECT * FROM df", out), *_mark_steps(marks)])

    def erasures(self) -> pd.DataFrame:
        """The erasures applied to this store (``user_id``, ``erased_at``), in order."""
        if "erasures" not in self.tables:
            return pd.DataFrame({"user_id": pd.Series(dtype=object), "erased_at": pd.Series(dtype=np.float64)})
        return self.con.execute("SELECT user_id, erased_at FROM erasures ORDER BY rowid").df()

    def _coded_events(self, window_days: float = 0.0, keep_per_user: int = 0) -> pd.DataFrame | None:
        """The events table with user/note ids replaced by their row numbers in ``users`` /
        ``notes`` (rowid order, as :meth:`load_dataset` reads them) and type/surface by their
        category codes, in ``(ts, user, seq)`` order: what :meth:`Dataset.build` computes in
        pandas, done by DuckDB (a 3M-event workspace: seconds instead of minutes). ``None``
        when some event names a note, user, type or surface the tables do not hold (the slow
        path then adds or rejects it exactly as ``build`` does). With ``window_days`` > 0 only
        the events of that data window (:func:`~notefeed.data.dataset.window_mask`)."""
        con = self.con
        cats = [("type", EVENT_TYPES), ("surface", SURFACES)]
        values = {c: ", ".join(f"({k}, '{v}')" for k, v in enumerate(vals)) for c, vals in cats}
        src = "events" if window_days <= 0 else f"(SELECT * FROM events {_window_sql(window_days, keep_per_user)})"
        n_events, n_requests = con.execute(f"SELECT count(*), count(request_id) FROM {src}").fetchall()[0]
        has_request = n_requests > 0
        sql = f"""
            WITH n AS (SELECT note_id, (row_number() OVER (ORDER BY rowid) - 1)::INTEGER AS i FROM notes),
                 u AS (SELECT user_id, (row_number() OVER (ORDER BY rowid) - 1)::INTEGER AS j FROM users),
                 t(code, name) AS (VALUES {values["type"]}),
                 s(code, name) AS (VALUES {values["surface"]})
            SELECT u.j AS "user", n.i AS item, e.ts, t.code::TINYINT AS type, e.dwell_s::FLOAT AS dwell_s,
                   coalesce(e.position, -1)::INTEGER AS position, s.code::TINYINT AS surface
                   {", e.request_id" if has_request else ""}
            FROM {src} e
            JOIN n ON n.note_id = e.note_id JOIN u ON u.user_id = e.user_id
            JOIN t ON t.name = e.type JOIN s ON s.name = e.surface
            ORDER BY e.ts, u.j, e.seq"""
        got = con.sql(sql).to_arrow_table()  # arrow: no Python string per request_id
        if got.num_rows != n_events:
            return None

        def col(name: str, dtype: type) -> np.ndarray:
            return got.column(name).to_numpy().astype(dtype, copy=False)

        dwell = got.column("dwell_s")
        ev = pd.DataFrame({
            "user": col("user", np.int32),
            "item": col("item", np.int32),
            "ts": col("ts", np.int64),
            "type": pd.Categorical.from_codes(col("type", np.int8), categories=list(EVENT_TYPES)),
            "dwell_s": dwell.to_numpy(zero_copy_only=False).astype(np.float32),  # NULL -> NaN
            "position": col("position", np.int32),
            "surface": pd.Categorical.from_codes(col("surface", np.int8), categories=list(SURFACES)),
        })
        if has_request:
            ev["request_id"] = got.column("request_id").to_pandas().array
        return ev

    # ------------------------------------------------------------------ incremental writes
    def append_events(self, events: pd.DataFrame | Sequence[Event], require_known: bool = False,
                      marks: dict[str, int | str] | None = None, checked: bool = False) -> int:
        """Validate and append a batch in one transaction; returns the number of rows written.
        ``marks``: :meth:`mark` values set in the same transaction (how far a log is copied);
        ``checked``: the caller already ran ``check_events`` on exactly these rows (the sync)."""
        df = (
            pd.DataFrame([e.model_dump() for e in events], columns=list(_EVENT_COLS))
            if not isinstance(events, pd.DataFrame)
            else events.reset_index(drop=True)
        )
        missing = next((c for c in EVENT_REQUIRED if c not in df.columns), None)
        if missing is not None:
            raise DataError(f"events: missing column '{missing}'")
        if not len(df):
            self.set_marks(marks)
            return 0
        if not checked:
            _first_problem(check_events(df), "events")
        out = pd.DataFrame({c: df[c] if c in df else None for c in _EVENT_COLS})
        out["user_id"] = out["user_id"].astype(str).str.strip()
        out["note_id"] = out["note_id"].astype(str).str.strip()
        out["ts"] = pd.to_numeric(out["ts"]).astype(np.int64)
        out["type"] = out["type"].astype(str).str.strip()
        out["dwell_s"] = pd.to_numeric(out["dwell_s"], errors="coerce").astype(np.float64)
        out["position"] = pd.to_numeric(out["position"], errors="coerce").astype("Int32")
        out["request_id"] = out["request_id"].astype(object).where(out["request_id"].notna(), None)
        surf = out["surface"].astype(object)
        out["surface"] = surf.where(surf.notna() & (surf.astype(str).str.strip() != ""), "feed").astype(str)
        steps: list[tuple[str, pd.DataFrame | None]] = []
        new_notes = False
        for col, table, key in (("note_id", "notes", "note_id"), ("user_id", "users", "user_id")):
            ids = pd.DataFrame({"id": out[col].unique()})
            self.con.register("ids", ids)
            unknown = {r[0] for r in self.con.execute(
                f"SELECT id FROM ids WHERE id NOT IN (SELECT {key} FROM {table})").fetchall()}
            self.con.unregister("ids")
            if not unknown:
                continue
            if require_known:
                row = int(np.flatnonzero(out[col].isin(unknown).to_numpy())[0])
                raise DataError(f"events[{row}]: field '{col}': unknown {col[:-3]} {out[col].iloc[row]!r}; nothing written")
            stub = pd.DataFrame({"id": sorted(unknown)})
            if table == "notes":
                new_notes = True
                steps.append(("INSERT INTO notes SELECT id, 'unknown', '', '', [], '', 0, '{}' FROM df", stub))
            else:
                steps.append(("INSERT INTO users SELECT id, '{}' FROM df", stub))
        if new_notes:
            steps.append(("INSERT INTO creators SELECT 'unknown', 0 WHERE NOT EXISTS "
                          "(SELECT 1 FROM creators WHERE creator_id = 'unknown')", None))
        steps.append((f"INSERT INTO events ({', '.join(_EVENT_COLS)}) SELECT * FROM df", out))
        self._tx(steps + _mark_steps(marks))
        return len(out)

    def append_notes(self, notes: pd.DataFrame | Sequence[Note], marks: dict[str, int | str] | None = None) -> int:
        """Insert or replace notes (an edited note replaces the stored one; DuckDB moves its row
        to the end, so its item index changes); new notes are appended in the order given, so
        their item indices follow it as the serving catalogue's follow publication (a running
        server can then serve a version trained on them); creators get stubs. ``marks``: as for
        :meth:`append_events`."""
        df = pd.DataFrame([n.model_dump() for n in notes]) if not isinstance(notes, pd.DataFrame) else notes
        df = df.reset_index(drop=True)
        if "note_id" not in df.columns:
            raise DataError("notes: missing column 'note_id'")
        _first_problem(check_notes(df), "notes")
        from notefeed.data.importer import split_tags

        base = Dataset.build("append", pd.DataFrame(columns=list(EVENT_REQUIRED)), notes=df.assign(
            tags=[split_tags(t) for t in df["tags"]] if "tags" in df else [[] for _ in range(len(df))]))
        n = base.notes
        extra_cols = [c for c in n.columns if c not in NOTE_COLUMNS and c not in ("media_vector",)]
        rows = n[list(NOTE_COLUMNS)].assign(extra=_row_json(n, extra_cols))
        # a note written again replaces its row, and an edit kept of it (the new row is the note now)
        forget = ([("DELETE FROM note_edits WHERE note_id IN (SELECT note_id FROM df)", rows[["note_id"]])]
                  if "note_edits" in self.tables else [])
        self._tx([
            *self._upsert_steps("notes", "note_id", rows),
            *forget,
            ("INSERT INTO creators SELECT DISTINCT author_id, 0 FROM df WHERE author_id NOT IN "
             "(SELECT creator_id FROM creators)", rows),
            *_mark_steps(marks),
        ])
        return len(rows)

    def _upsert_steps(self, table: str, key: str, rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame | None]]:
        """:meth:`_tx` steps that write ``rows`` (unique ``key``s) into ``table``: a stored row
        replaced, new rows appended in the frame's order (their item or user indices follow it).
        DuckDB's INSERT OR REPLACE gives new rows rowids out of the frame's order, so only the
        replacements go through it."""
        self.con.register("ids", rows[[key]])
        known = {r[0] for r in self.con.execute(f"SELECT {key} FROM ids WHERE {key} IN (SELECT {key} FROM {table})")
                 .fetchall()}
        self.con.unregister("ids")
        old = rows[key].isin(known).to_numpy()
        return [(f"INSERT OR REPLACE INTO {table} SELECT * FROM df", rows[old]),
                (f"INSERT INTO {table} SELECT * FROM df", rows[~old])]

    def set_marks(self, marks: dict[str, int | str] | None) -> None:
        """Set :meth:`mark` values (in one transaction)."""
        if marks:
            self._tx(_mark_steps(marks))

    def mark(self, key: str) -> int | str | None:
        """A position kept with the data (None when never set): how far a log outside the store
        (``notefeed train``'s copy of the serving logs) is already in it, in the log's own
        terms (a count, an entry id). Kept in ``meta`` under ``sync.<key>``, so
        ``save_dataset`` (``data import --replace``) resets it."""
        rows = self.con.execute("SELECT value FROM meta WHERE key = ?", [_MARK + key]).fetchall()
        return json.loads(rows[0][0]) if rows else None

    def upsert_users(self, users: pd.DataFrame | Sequence[User]) -> int:
        """Insert or replace users; a DataFrame's non-id columns are the attributes."""
        if isinstance(users, pd.DataFrame):
            df = users.reset_index(drop=True)
            if "user_id" not in df.columns:
                raise DataError("users: missing column 'user_id'")
            _first_problem(check_users(df), "users")
            rows = pd.DataFrame({"user_id": df["user_id"].astype(str).str.strip(),
                                 "attributes": _row_json(df, [c for c in df.columns if c != "user_id"])})
        else:
            rows = pd.DataFrame({"user_id": [u.user_id for u in users],
                                 "attributes": [json.dumps(u.attributes, ensure_ascii=False) for u in users]})
        self._tx(self._upsert_steps("users", "user_id", rows))
        return len(rows)

    def upsert_creators(self, creators: pd.DataFrame | Sequence[Creator],
                        marks: dict[str, int | str] | None = None) -> int:
        """Insert or replace creators (``creator_id``, ``followers``); ``marks``: as for
        :meth:`append_events`, set in the same transaction."""
        df = (pd.DataFrame([c.model_dump() for c in creators]) if not isinstance(creators, pd.DataFrame)
              else creators.reset_index(drop=True))
        if "creator_id" not in df.columns:
            raise DataError("creators: missing column 'creator_id'")
        _first_problem(check_creators(df), "creators")
        rows = pd.DataFrame({"creator_id": df["creator_id"].astype(str),
                             "followers": pd.to_numeric(df.get("followers", 0)).astype(np.int64)})
        self._tx(self._upsert_steps("creators", "creator_id", rows) + _mark_steps(marks))
        return len(rows)

    # ------------------------------------------------------------------ reads
    def events_since(self, ts: int) -> pd.DataFrame:
        """Events with ``ts >= ts`` (external ids), in time then append order."""
        return self.con.execute(
            f"SELECT {', '.join(_EVENT_COLS)} FROM events WHERE ts >= ? ORDER BY ts, seq", [int(ts)]
        ).df()

    def counts(self) -> dict[str, int]:
        """Rows per table (``notes, users, creators, events, social``)."""
        return {t: int(self.con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
                for t in self._tables() if t != "meta"}

    def _tables(self) -> list[str]:
        return [*_TABLES, *(t for t in _LATER_TABLES if t in self.tables)]
