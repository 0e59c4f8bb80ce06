"""Generic import of events/notes/users/creators from CSV or Parquet files, with row validation.

A folder holds ``events.csv`` or ``events.parquet`` (required: ``user_id, note_id, ts, type``;
optional ``dwell_s, position, request_id, surface``) and optionally ``notes`` (``note_id,
author_id, title, text, tags, category, created_at``; ``tags`` a ``|``-separated string or a
list column), ``users`` (``user_id`` + attribute columns), ``creators`` (``creator_id,
followers``) and ``social`` (``user_id, target_id, kind``), each as ``.csv`` or ``.parquet``.

Every row is checked with vectorised versions of the :mod:`notefeed.schema` rules (ids 1..128
characters without control characters, ``ts``/``created_at``/``followers`` integers >= 0, ``type`` and ``surface`` from the
vocabulary, ``dwell_s`` in [0, 86400], ``position`` in [0, 100000], tags 1..128 characters).

Bad-row policy:

- **strict (default)**: any bad row fails the whole import atomically with a
  :class:`~notefeed.data.dataset.DataError` naming ``file:line: field: reason`` (the first
  problem) and the number of problems; nothing is returned or written.
- ``skip_bad=True`` (CLI ``--skip-bad``): bad rows are dropped, the valid rest loads, and the
  problems come back as strings ``file:line: field: reason`` (``ImportResult.problems``;
  also ``dataset.meta["import_problems"]``).

Line numbers are physical CSV lines (the header is line 1; a quoted field spanning lines counts
its lines) and 1-based rows for Parquet. A CSV line with the wrong number of fields is a
problem of field ``<line>``. A missing required column is always fatal. The importer is also
the dataset loader ``"csv"`` (``load_dataset("csv", path=folder)``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.schema import CONTROL_CHARS, EVENT_TYPES, SURFACES

__all__ = [
    "ImportResult",
    "Problem",
    "import_folder",
    "read_rows",
    "check_events",
    "check_notes",
    "check_users",
    "check_creators",
    "split_tags",
    "EVENT_REQUIRED",
]

_MAX_ID = 128


@dataclass(frozen=True)
class Problem:
    """One bad cell: ``row`` is the 0-based row of the frame being checked."""

    row: int
    field: str
    reason: str


EVENT_REQUIRED = ("user_id", "note_id", "ts", "type")


def _blank(s: pd.Series) -> np.ndarray:
    return (s.isna() | (s.astype(str).str.strip() == "")).to_numpy()


def _problems(mask: np.ndarray, field: str, reason: str, values: pd.Series | None = None) -> list[Problem]:
    rows = np.flatnonzero(mask)
    if values is None:
        return [Problem(int(r), field, reason) for r in rows]
    return [Problem(int(r), field, f"{reason}, got {values.iloc[int(r)]!r}") for r in rows]


def _ids(df: pd.DataFrame, col: str, required: bool = True) -> list[Problem]:
    s = df[col]
    out = _problems(_blank(s), col, "missing id") if required else []
    text = s.astype(str)
    present = ~s.isna().to_numpy()
    long = (text.str.len() > _MAX_ID).to_numpy() & present
    control = text.str.contains(CONTROL_CHARS.pattern, regex=True).to_numpy() & present
    return (out + _problems(long, col, f"id longer than {_MAX_ID} characters")
            + _problems(control, col, "control character in the id", s))


def _numbers(
    df: pd.DataFrame, col: str, *, integer: bool, lo: float, hi: float, optional: bool
) -> list[Problem]:
    s = df[col]
    blank = _blank(s)
    v = pd.to_numeric(s.astype(str).str.strip().where(~blank, "0"), errors="coerce")
    arr = v.to_numpy(np.float64, na_value=np.nan)
    kind = "an integer" if integer else "a number"
    out = [] if optional else _problems(blank, col, "missing value")
    notnum = np.isnan(arr) & ~blank
    out += _problems(notnum, col, f"expected {kind}", s)
    ok = ~np.isnan(arr) & ~blank
    if integer:
        out += _problems(ok & (np.mod(arr, 1, where=ok, out=np.zeros_like(arr)) != 0), col, f"expected {kind}", s)
    rng = f"must be >= {lo:g}" if hi >= 2**62 else f"out of range [{lo:g}, {hi:g}]"
    out += _problems(ok & ((arr < lo) | (arr > hi)), col, rng, s)
    return out


def check_events(df: pd.DataFrame) -> list[Problem]:
    """Row problems of an events frame (columns per :class:`notefeed.schema.Event`)."""
    out: list[Problem] = []
    out += _ids(df, "user_id") + _ids(df, "note_id")
    out += _numbers(df, "ts", integer=True, lo=0, hi=2**62, optional=False)
    t = df["type"].astype(str).str.strip()
    out += _problems(~t.isin(EVENT_TYPES).to_numpy(), "type", f"expected one of {list(EVENT_TYPES)}", df["type"])
    if "dwell_s" in df:
        out += _numbers(df, "dwell_s", integer=False, lo=0, hi=86_400, optional=True)
    if "position" in df:
        out += _numbers(df, "position", integer=True, lo=0, hi=100_000, optional=True)
    if "request_id" in df:
        out += _ids(df, "request_id", required=False)
    if "surface" in df:
        s = df["surface"]
        bad = ~_blank(s) & ~s.astype(str).str.strip().isin(SURFACES).to_numpy()
        out += _problems(bad, "surface", f"expected one of {list(SURFACES)}", s)
    return out


def split_tags(value: object) -> list[str]:
    """A ``|``-separated string, a list/array of strings, or empty -> list of stripped tags."""
    if isinstance(value, list | tuple | np.ndarray):
        return [str(t).strip() for t in value]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    text = str(value).strip()
    return [t.strip() for t in text.split("|")] if text else []


def check_notes(df: pd.DataFrame) -> list[Problem]:
    """Row problems of a notes frame (columns per :class:`notefeed.schema.Note`)."""
    out = _ids(df, "note_id")
    if "author_id" in df:
        out += _ids(df, "author_id", required=False)
    for col, limit in (("title", 1_000), ("text", 100_000), ("category", 256)):
        if col in df:
            long = (df[col].fillna("").astype(str).str.len() > limit).to_numpy()
            out += _problems(long, col, f"longer than {limit} characters")
    if "created_at" in df:
        out += _numbers(df, "created_at", integer=True, lo=0, hi=2**62, optional=True)
    if "tags" in df:
        for r, v in enumerate(df["tags"].tolist()):
            tags = split_tags(v)
            if len(tags) > 256 or any(not t or len(t) > 128 for t in tags):
                out.append(Problem(r, "tags", "each tag must be 1..128 characters (at most 256 tags)"))
    return out


def check_users(df: pd.DataFrame) -> list[Problem]:
    """Row problems of a users frame (``user_id`` plus free attribute columns)."""
    return _ids(df, "user_id")


def check_creators(df: pd.DataFrame) -> list[Problem]:
    """Row problems of a creators frame (``creator_id``, ``followers`` >= 0)."""
    out = _ids(df, "creator_id")
    if "followers" in df:
        out += _numbers(df, "followers", integer=True, lo=0, hi=2**62, optional=True)
    return out


def first_missing(df: pd.DataFrame, required: Sequence[str]) -> str | None:
    """The first required column absent from ``df`` (``None`` when all present)."""
    return next((c for c in required if c not in df.columns), None)


# ---------------------------------------------------------------------- reading files
@dataclass
class _Table:
    """A file read as a frame, with the file line (CSV) or 1-based row (Parquet) of each row."""

    file: Path
    df: pd.DataFrame
    lines: np.ndarray
    problems: list[tuple[int, str]] = field(default_factory=list)


def read_rows(file: Path) -> _Table:
    """Read a CSV (as strings, exact line numbers, short/long lines reported) or Parquet file."""
    if file.suffix == ".parquet":
        try:
            df = pd.read_parquet(file)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{file}: not a readable Parquet file ({e})") from None
        return _Table(file, df.reset_index(drop=True), np.arange(1, len(df) + 1))
    rows: list[list[str]] = []
    lines: list[int] = []
    problems: list[tuple[int, str]] = []
    try:
        with open(file, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{file}: file is empty (expected a header line)")
            header = [h.strip() for h in header]
            start = reader.line_num + 1
            for rec in reader:
                if not rec or (len(rec) == 1 and not rec[0].strip()):
                    start = reader.line_num + 1
                    continue
                if len(rec) != len(header):
                    problems.append((start, f"{file}:{start}: <line>: expected {len(header)} fields, found {len(rec)}"))
                else:
                    rows.append(rec)
                    lines.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataError(f"{file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{file}:{reader.line_num}: malformed CSV ({e})") from None
    df = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    return _Table(file, df, np.asarray(lines, np.int64), problems)


def _find(folder: Path, stem: str, required: bool) -> Path | None:
    for ext in (".parquet", ".csv"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    if required:
        raise FileNotFoundError(f"import: expected file {folder / (stem + '.csv')} (or .parquet)")
    return None


def _checked(
    table: _Table, required: Sequence[str], check: object, skip_bad: bool, problems: list[str]
) -> pd.DataFrame:
    missing = first_missing(table.df, required)
    if missing is not None:
        raise DataError(f"{table.file}: missing column '{missing}' (found {list(table.df.columns)})")
    found = list(check(table.df))  # type: ignore[operator]
    located = table.problems + [
        (int(table.lines[p.row]), f"{table.file}:{table.lines[p.row]}: {p.field}: {p.reason}") for p in found
    ]
    msgs = [m for _, m in sorted(located, key=lambda x: x[0])]
    if msgs and not skip_bad:
        raise DataError(f"{msgs[0]} ({len(msgs)} problem(s) in {table.file.name}; --skip-bad loads the valid rows)")
    problems.extend(msgs)
    bad = np.zeros(len(table.df), bool)
    bad[[p.row for p in found]] = True
    return table.df[~bad].reset_index(drop=True)


@dataclass
class ImportResult:
    """The imported dataset and, with ``skip_bad``, the skipped rows as ``file:line: field: reason``."""

    dataset: Dataset
    problems: list[str]


def import_folder(folder: str | Path, *, skip_bad: bool = False, name: str | None = None) -> ImportResult:
    """Import ``folder`` (see the module docstring for files, checks and the bad-row policy)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"import: expected a folder holding events.csv or events.parquet, got {folder}")
    problems: list[str] = []
    ev_file = _find(folder, "events", required=True)
    assert ev_file is not None
    events = _checked(read_rows(ev_file), EVENT_REQUIRED, check_events, skip_bad, problems)
    frames: dict[str, pd.DataFrame | None] = {}
    for stem, req, check in (
        ("notes", ("note_id",), check_notes),
        ("users", ("user_id",), check_users),
        ("creators", ("creator_id",), check_creators),
        ("social", ("user_id", "target_id"), lambda d: _ids(d, "user_id") + _ids(d, "target_id")),
    ):
        f = _find(folder, stem, required=False)
        frames[stem] = None if f is None else _checked(read_rows(f), req, check, skip_bad, problems)
    events = _typed_events(events)
    notes = frames["notes"]
    if notes is not None:
        notes = notes.copy()
        if "tags" in notes:
            notes["tags"] = [split_tags(v) for v in notes["tags"].tolist()]
        if "created_at" in notes:
            notes["created_at"] = pd.to_numeric(notes["created_at"].replace("", None), errors="coerce")
    creators = frames["creators"]
    if creators is not None and "followers" in creators:
        creators = creators.assign(
            followers=pd.to_numeric(creators["followers"].replace("", None), errors="coerce").fillna(0)
        )
    ds = Dataset.build(
        name or folder.name, events, notes=notes, users=frames["users"], creators=creators,
        social=frames["social"], meta={"source": str(folder), "import_problems": list(problems)},
    )
    return ImportResult(ds, problems)


def _typed_events(ev: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "user_id": ev["user_id"].astype(str).str.strip(),
            "note_id": ev["note_id"].astype(str).str.strip(),
            "ts": pd.to_numeric(ev["ts"], errors="coerce").astype(np.int64),
            "type": ev["type"].astype(str).str.strip(),
        }
    )
    for col in ("dwell_s", "position"):
        if col in ev:
            out[col] = pd.to_numeric(ev[col].replace("", None), errors="coerce")
    if "request_id" in ev:
        out["request_id"] = ev["request_id"].replace("", None)
    if "surface" in ev:
        out["surface"] = ev["surface"].astype(str).str.strip().replace({"": "feed", "None": "feed", "nan": "feed"})
    return out


@LOADERS.register("csv")
def load(path: Path | None = None, skip_bad: bool = False, **options: object) -> Dataset:
    """Loader ``"csv"``: :func:`import_folder` on ``path`` (problems in ``meta["import_problems"]``)."""
    if path is None:
        raise FileNotFoundError("csv: pass path=<folder holding events.csv or events.parquet>")
    return import_folder(path, skip_bad=skip_bad).dataset
