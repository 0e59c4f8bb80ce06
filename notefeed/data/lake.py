"""The event lake: the workspace's event log as Parquet partitioned by day, for batch jobs.

Layout (hive style, so DuckDB, Spark, Ray Data and pyarrow read it as one table with a
``day`` column)::

    WORKSPACE/lake/events/day=YYYY-MM-DD/part-<first seq>-<last seq>[-c].parquet
    WORKSPACE/lake/events/_export.json          the export watermark (last exported seq)

Every row carries the workspace's append sequence number ``seq`` (the order
:meth:`Workspace.load_dataset` uses) and the client's ``event_id`` where one exists; ``day`` is
the UTC day of ``ts`` (sequence datasets whose ts are positions land on 1970-01-01).

Guarantees:

- **append-only**: :meth:`EventLake.append` only adds part files; a part's name is fixed by the
  seq range of the batch it holds, so writing the same batch again replaces it with the same
  rows instead of duplicating them;
- **atomic files**: each part is written to ``.<name>.tmp``, fsynced, then renamed; a crash
  leaves at most a temp file, which readers never match and :meth:`recover` deletes;
- **resumable export**: :meth:`export_workspace` records the seq range it is about to write
  before writing it (``pending``) and the new watermark after; a crash in between is redone
  with the same part names on the next export;
- **compaction** (:meth:`compact`) merges a day's parts into one, dropping repeated events
  (same ``event_id``, or same ``seq`` where there is no id; the first kept). It journals its
  inputs and output (``day=.../_compact.json``) before the rename, so a crash either leaves
  the inputs (output not yet renamed) or the output (inputs deleted by :meth:`recover`).
  A reader listing the files in the instant between the rename and the deletions sees that day
  twice: compact when no batch job is reading, as with any single-writer file layout.

**Erased users** (``DELETE /v1/users/{id}``, applied to the store by the sync): each export
first rewrites the parts holding events of users the store erased since the last export, without
those rows (each part in place, atomically; a crash redoes it), and counts the store's rows
after the deletion, so an erasure is not taken for a replaced workspace.

One writer at a time (export takes the workspace's DuckDB lock; compaction should not run
beside another compaction).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from notefeed.data.dataset import DataError, Dataset

__all__ = ["EventLake", "LAKE_SCHEMA", "CompactReport", "lake_dir", "load_lake_dataset"]

LAKE_SCHEMA = pa.schema([
    ("seq", pa.int64()), ("event_id", pa.string()), ("user_id", pa.string()), ("note_id", pa.string()),
    ("ts", pa.int64()), ("type", pa.string()), ("dwell_s", pa.float64()), ("position", pa.int32()),
    ("request_id", pa.string()), ("surface", pa.string()),
])
#: the columns of the workspace's event frame (what ``Workspace.load_dataset`` hands Dataset.build)
EVENT_FRAME = ("user_id", "note_id", "ts", "type", "dwell_s", "position", "request_id", "surface")
_STATE = "_export.json"
_JOURNAL = "_compact.json"


def lake_dir(workspace: str | Path) -> Path:
    """Where a workspace's event lake lives."""
    return Path(workspace) / "lake" / "events"


def fsync_path(d: Path) -> None:
    """fsync a file or a folder (a folder: so that a rename in it is durable)."""
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, write: object) -> None:
    """``write(tmp_path)`` then fsync and rename to ``path`` (and fsync the folder)."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)  # type: ignore[operator]
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def _write_json(path: Path, obj: object) -> None:
    _write_atomic(path, lambda p: p.write_text(json.dumps(obj) + "\n"))


def _days(ts: np.ndarray) -> np.ndarray:
    """UTC day strings of unix-second timestamps (clipped into years 1970..2262)."""
    t = np.clip(np.asarray(ts, np.int64), 0, 9_000_000_000)
    return np.datetime_as_string((t // 86400).astype("datetime64[D]"), unit="D")


def _to_table(frame: pd.DataFrame) -> pa.Table:
    """A frame with (a subset of) the lake columns as a table of :data:`LAKE_SCHEMA`."""
    n = len(frame)
    cols = {}
    for f in LAKE_SCHEMA:
        if f.name in frame.columns:
            v = frame[f.name]
            if f.name in ("event_id", "request_id"):
                v = v.astype(object).where(v.notna(), None)
            elif f.name == "position":
                v = pd.to_numeric(v, errors="coerce").astype("Int32")
            cols[f.name] = pa.array(v, type=f.type, from_pandas=True)
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=LAKE_SCHEMA)


@dataclass(frozen=True)
class CompactReport:
    days: int  #: days whose parts were merged
    files_before: int
    files_after: int
    rows_before: int
    rows_after: int  #: rows_before minus the repeated events dropped


class EventLake:
    """A day-partitioned Parquet event log under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_workspace(cls, workspace: str | Path) -> EventLake:
        return cls(lake_dir(workspace))

    # ------------------------------------------------------------------ files
    def files(self, day: str | None = None) -> list[Path]:
        """Committed part files, sorted (one day, or all)."""
        pattern = f"day={day}/part-*.parquet" if day else "day=*/part-*.parquet"
        return sorted(self.root.glob(pattern)) if self.root.is_dir() else []

    def days(self) -> list[str]:
        return sorted({p.parent.name.removeprefix("day=") for p in self.files()})

    def _state(self) -> dict:
        p = self.root / _STATE
        return json.loads(p.read_text()) if p.exists() else {"watermark": 0, "pending": None}

    # ------------------------------------------------------------------ writes
    def append(self, events: pd.DataFrame) -> int:
        """Write ``events`` (lake columns; ``seq`` and ``user_id, note_id, ts, type`` required)
        as one part per day; returns the rows written. Rewriting the same batch replaces its
        parts (same names), it does not add rows."""
        for col in ("seq", "user_id", "note_id", "ts", "type"):
            if col not in events.columns:
                raise DataError(f"lake append: missing column '{col}'")
        if not len(events):
            return 0
        table = _to_table(events)
        days = _days(table.column("ts").to_numpy())
        order = np.argsort(days, kind="stable")
        cuts = np.flatnonzero(days[order][1:] != days[order][:-1]) + 1
        for idx in np.split(order, cuts):
            part = table.take(pa.array(idx))
            seq = part.column("seq").to_numpy()
            d = self.root / f"day={days[idx[0]]}"
            d.mkdir(parents=True, exist_ok=True)
            name = f"part-{int(seq.min()):012d}-{int(seq.max()):012d}.parquet"
            _write_atomic(d / name, lambda p, t=part: pq.write_table(t, p, compression="zstd"))
        return len(table)

    def export_workspace(self, workspace: str | Path, chunk: int = 1_000_000, progress: bool = False,
                         rebuild: bool = False) -> int:
        """Append the workspace's events not yet in the lake (seq above the watermark), in
        chunks of ``chunk`` rows; returns the rows exported. Safe to rerun after a crash.

        A workspace whose events were replaced since the last export (``--replace``) no longer
        holds the lake's rows: that raises :class:`DataError`, or with ``rebuild`` the lake is
        deleted and exported again from the start."""
        import shutil

        from notefeed.data.store import Workspace

        self.recover()
        self.root.mkdir(parents=True, exist_ok=True)
        st = self._state()
        with Workspace.open(workspace, create=False) as ws:
            con = ws.con
            done = int(st["watermark"])
            have = int(con.execute("SELECT count(*) FROM events WHERE seq <= ?", [done]).fetchall()[0][0])
            erasures = ws.erasures()
            if len(erasures) > int(st.get("erasures", 0)) and not st.get("pending"):
                # users the store erased since the last export: out of the lake, and their
                # deleted rows are no sign of a replaced workspace
                self.erase_users(set(erasures["user_id"].iloc[int(st.get("erasures", 0)):]))
                st = {**st, "rows": have, "erasures": len(erasures)}
                _write_json(self.root / _STATE, st)
            # the workspace's own count at the last export (the lake's may be lower: compaction
            # drops repeated client events)
            if not st.get("pending") and have != int(st.get("rows", have)):
                if not rebuild:
                    raise DataError(f"lake {self.root}: the workspace's events changed since the last export "
                                    f"({have:,} of its events are at or below the lake's watermark, "
                                    f"{int(st['rows']):,} were); export with --rebuild")
                shutil.rmtree(self.root)
                self.root.mkdir(parents=True)
                st = {"watermark": 0, "pending": None, "rows": 0}
            if st.get("pending"):  # a crashed export: redo exactly its range, same part names
                lo, hi = st["pending"]
                self._export_range(con, lo, hi)
                st = {"watermark": hi, "pending": None, "rows": _rows_upto(con, hi), "erasures": len(erasures)}
                _write_json(self.root / _STATE, st)
            top = int(con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchall()[0][0])
            bounds = list(range(int(st["watermark"]), top, chunk)) + [top]
            total = 0
            from tqdm.auto import tqdm

            for lo, hi in tqdm(list(zip(bounds[:-1], bounds[1:], strict=True)), desc="lake export",
                               unit="chunk", disable=None if progress else True):
                _write_json(self.root / _STATE, {"watermark": lo, "pending": [lo, hi], "erasures": len(erasures)})
                total += self._export_range(con, lo, hi)
                _write_json(self.root / _STATE, {"watermark": hi, "pending": None, "rows": _rows_upto(con, hi),
                                                 "erasures": len(erasures)})
        return total

    def erase_users(self, users: set[str]) -> int:
        """Rewrite every part holding events of ``users`` without them (in place, atomically;
        a part left empty is deleted); returns the rows dropped."""
        import pyarrow.compute as pc

        if not users:
            return 0
        gone = pa.array(sorted(users), pa.string())
        dropped = 0
        for path in self.files():
            hit = pc.is_in(pq.read_table(path, columns=["user_id"]).column("user_id"), value_set=gone)
            n = int(pc.sum(hit).as_py() or 0)
            if not n:
                continue
            table = pq.read_table(path)
            keep = table.filter(pc.invert(pc.is_in(table.column("user_id"), value_set=gone)))
            if keep.num_rows:
                _write_atomic(path, lambda p, t=keep: pq.write_table(t, p, compression="zstd"))
            else:
                path.unlink()
                fsync_path(path.parent)
            dropped += n
        return dropped

    def _export_range(self, con: duckdb.DuckDBPyConnection, lo: int, hi: int) -> int:
        frame = con.execute(f"SELECT seq, {', '.join(EVENT_FRAME)} FROM events WHERE seq > ? AND seq <= ? "
                            "ORDER BY seq", [lo, hi]).df()
        return self.append(frame)

    def compact(self, min_files: int = 2, progress: bool = False) -> CompactReport:
        """Merge each day holding at least ``min_files`` parts into one part, ordered by seq,
        each event once (see the module docstring for the crash safety)."""
        self.recover()
        from tqdm.auto import tqdm

        todo = [d for d in self.days() if len(self.files(d)) >= min_files]
        fb = fa = rb = ra = 0
        for day in tqdm(todo, desc="lake compact", unit="day", disable=None if progress else True):
            d = self.root / f"day={day}"
            inputs = self.files(day)
            with duckdb.connect() as con:
                src = f"read_parquet({[str(p) for p in inputs]!r}, union_by_name=true)"
                n_in = int(con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0])
                table = con.sql(
                    f"SELECT {', '.join(LAKE_SCHEMA.names)} FROM {src} QUALIFY row_number() OVER "
                    "(PARTITION BY coalesce(event_id, 'seq:' || seq::VARCHAR) ORDER BY seq) = 1 ORDER BY seq"
                ).to_arrow_table()
            table = table.cast(LAKE_SCHEMA)
            seq = table.column("seq").to_numpy()
            out = d / f"part-{int(seq.min()):012d}-{int(seq.max()):012d}-c.parquet"
            tmp = out.with_name(f".{out.name}.tmp")
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            _write_json(d / _JOURNAL, {"output": out.name, "inputs": [p.name for p in inputs]})
            os.replace(tmp, out)
            fsync_path(d)
            self._finish_compaction(d)
            fb, fa, rb, ra = fb + len(inputs), fa + 1, rb + n_in, ra + table.num_rows
        return CompactReport(len(todo), fb, fa, rb, ra)

    def _finish_compaction(self, d: Path) -> None:
        j = json.loads((d / _JOURNAL).read_text())
        if (d / j["output"]).exists():  # the merged part is in place: its inputs go
            for name in j["inputs"]:
                if name != j["output"]:
                    (d / name).unlink(missing_ok=True)
        (d / _JOURNAL).unlink()
        fsync_path(d)

    def recover(self) -> None:
        """Finish or undo an interrupted compaction and delete temp files (crash leftovers)."""
        if not self.root.is_dir():
            return
        for j in self.root.glob(f"day=*/{_JOURNAL}"):
            self._finish_compaction(j.parent)
        for tmp in self.root.glob("day=*/.*.tmp"):
            tmp.unlink()

    # ------------------------------------------------------------------ reads
    def _source(self) -> str:
        return (f"read_parquet('{self.root}/day=*/part-*.parquet', hive_partitioning=true, "
                "union_by_name=true)")

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the view ``events`` over the lake (with ``day``)."""
        con = duckdb.connect()
        if self.files():
            con.execute(f"CREATE VIEW events AS SELECT * FROM {self._source()}")
        else:  # an empty lake is an empty table, not an error
            cols = ", ".join(f"NULL::{_DUCK[f.type]} AS {f.name}" for f in LAKE_SCHEMA)
            con.execute(f"CREATE VIEW events AS SELECT {cols}, NULL::VARCHAR AS day WHERE false")
        return con

    def query(self, sql: str) -> pd.DataFrame:
        """Run ``sql`` (which may read the view ``events``) and return the result frame."""
        with self.connect() as con:
            return con.execute(sql).df()

    def count(self) -> int:
        return int(self.query("SELECT count(*) AS n FROM events")["n"].iloc[0])

    def read_events(self, where: str | None = None) -> pd.DataFrame:
        """The event frame ``Workspace.load_dataset`` hands ``Dataset.build`` (external ids,
        ``EVENT_FRAME`` columns, in seq order), optionally filtered by an SQL ``where``."""
        cond = f"WHERE {where}" if where else ""
        return self.query(f"SELECT {', '.join(EVENT_FRAME)} FROM events {cond} ORDER BY seq")

    def iter_batches(self, columns: tuple[str, ...] = EVENT_FRAME, batch_rows: int = 1_000_000
                     ) -> Iterator[pd.DataFrame]:
        """The lake in seq order a file at a time (days in order), re-chunked to ``batch_rows``."""
        for p in self.files():
            pf = pq.ParquetFile(p)
            for b in pf.iter_batches(batch_size=batch_rows, columns=list(columns)):
                yield b.to_pandas()


def _rows_upto(con: duckdb.DuckDBPyConnection, seq: int) -> int:
    return int(con.execute("SELECT count(*) FROM events WHERE seq <= ?", [seq]).fetchall()[0][0])


_DUCK = {pa.int64(): "BIGINT", pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int32(): "INTEGER"}


def load_lake_dataset(workspace: str | Path, name: str | None = None) -> Dataset:
    """The workspace's :class:`Dataset` with its events read from the lake (notes, users,
    creators, social graph and meta from the workspace database): what batch jobs train on.
    Equal to ``Workspace.load_dataset()`` once the lake is exported up to date."""
    from notefeed.data.store import Workspace

    lake = EventLake.for_workspace(workspace)
    if not lake.files():
        raise DataError(f"lake {lake.root}: no part files (run `notefeed data lake export --workspace {workspace}`)")
    events = lake.read_events()
    with Workspace.open(workspace, create=False) as ws:
        return ws.load_dataset(name, events=events)
