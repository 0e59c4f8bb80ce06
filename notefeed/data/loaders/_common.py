"""Shared helpers for the dataset loaders: locating files, reading tables, checked conversions.

Every check raises :class:`~notefeed.data.dataset.DataError` naming the file, the 1-based line
number in that file and the field, so a corrupt download is diagnosed without a debugger.
"""

from __future__ import annotations

import ast
import csv
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import DataError
from notefeed.data.paths import dataset_path

__all__ = [
    "resolve_folder",
    "need_file",
    "read_table",
    "to_int",
    "to_float",
    "parse_int_list",
    "parse_str_list",
    "parse_records",
    "empty_events",
]


def resolve_folder(path: Path | None, *default_parts: str) -> Path:
    """``path`` when given, else ``datasets_root()/default_parts``."""
    return Path(path) if path is not None else dataset_path(*default_parts)


def need_file(folder: Path, name: str, dataset: str) -> Path:
    """``folder/name``; a clear :class:`FileNotFoundError` naming the expected file otherwise."""
    p = Path(folder) / name
    if not p.is_file():
        raise FileNotFoundError(f"{dataset}: expected file {p} (pass path=<folder holding {name}>)")
    return p


def read_table(
    file: Path,
    *,
    sep: str = ",",
    names: Sequence[str] | None = None,
    required: Sequence[str] = (),
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
    lineterminator: str | None = None,
) -> pd.DataFrame:
    """Read a delimited file as strings; parser errors and missing columns become DataError.

    With ``names`` the file has no header (line 1 is data); otherwise line 1 is the header.
    ``lineterminator="\n"`` keeps a bare ``\r`` inside a field (KuaiRec captions hold some)
    from splitting a row. The frame gets an attribute ``attrs["first_line"]``: the file line of row 0.
    """
    try:
        with warnings.catch_warnings():
            # With index_col=False pandas only *warns* about rows with extra fields: make it fatal.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                file,
                sep=sep,
                header=None if names is not None else "infer",
                names=list(names) if names is not None else None,
                dtype=str,
                keep_default_na=False,
                na_values=[],
                encoding=encoding,
                quoting=quoting,
                engine="c",
                index_col=False,
                lineterminator=lineterminator,
                encoding_errors="strict",
            )
    except pd.errors.ParserWarning:
        raise DataError(_field_count_error(file, sep, names, encoding, quoting)) from None
    except pd.errors.ParserError as e:
        raise DataError(f"{file}: malformed line: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{file}: not {encoding} text ({e.reason} at byte {e.start})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{file}: file is empty") from None
    # Header names sometimes carry a byte-order mark or padding.
    df.columns = [str(c).lstrip("\ufeff").strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise DataError(f"{file}: missing column '{col}' (found {list(df.columns)})")
    df.attrs["first_line"] = 1 if names is not None else 2
    df.attrs["file"] = str(file)
    return df


def _field_count_error(
    file: Path, sep: str, names: Sequence[str] | None, encoding: str, quoting: int
) -> str:
    """Locate the first line whose field count differs from the header's (slow path, errors only)."""
    with open(file, encoding=encoding, newline="") as fh:
        if len(sep) == 1:
            rows = csv.reader(fh, delimiter=sep, quoting=quoting)
        else:
            rows = (line.split() for line in fh)  # the only regex separator we use is r"\s+"
        expected = len(names) if names is not None else None
        for k, rec in enumerate(rows, start=1):
            if expected is None:
                expected = len(rec)
                continue
            if rec and len(rec) != expected:
                return f"{file}:{k}: malformed line: expected {expected} fields, found {len(rec)}"
    return f"{file}: malformed line: rows with more fields than the header"


def _fail(df: pd.DataFrame, col: str, bad: np.ndarray, what: str) -> None:
    row = int(np.flatnonzero(bad)[0])
    line = row + int(df.attrs.get("first_line", 1))
    val = df[col].iloc[row]
    raise DataError(f"{df.attrs.get('file', '?')}:{line}: field '{col}': {what}, got {val!r}")


def to_int(df: pd.DataFrame, col: str, *, min_value: int | None = None) -> np.ndarray:
    """Column ``col`` as int64; the first non-integer (or below ``min_value``) raises DataError."""
    try:  # fast path: a clean column casts directly
        out = df[col].astype("int64").to_numpy(np.int64)
    except (ValueError, TypeError, OverflowError):
        out = None
    if out is not None:
        if min_value is not None and (out < min_value).any():
            _fail(df, col, out < min_value, f"expected an integer >= {min_value}")
        return out
    v = pd.to_numeric(df[col], errors="coerce")
    if v.isna().any():  # retry padded cells ("  11690") before calling them bad
        v = pd.to_numeric(df[col].astype(str).str.strip(), errors="coerce")
    if v.dtype.kind in "iu":
        bad = np.zeros(len(v), bool)
    else:
        bad = v.isna().to_numpy() | (v.to_numpy(np.float64, na_value=0.0) % 1 != 0)
    if bad.any():
        _fail(df, col, bad, "expected an integer")
    out = v.to_numpy(np.int64)
    if min_value is not None and (out < min_value).any():
        _fail(df, col, out < min_value, f"expected an integer >= {min_value}")
    return out


def to_float(df: pd.DataFrame, col: str, *, allow_missing: bool = False) -> np.ndarray:
    """Column ``col`` as float64; empty cells are NaN when ``allow_missing``, else DataError."""
    s = df[col].astype(str).str.strip()
    v = pd.to_numeric(s, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = np.isnan(v) & ~(allow_missing & s.isin(["", "nan", "NaN"]).to_numpy())
    if bad.any():
        _fail(df, col, bad, "expected a number")
    return v


_INT = re.compile(r"-?\d+")


def parse_int_list(text: str, where: str) -> list[int]:
    """``"[ 831932 1650517\\n 1200732]"`` (numpy repr) or ``"[1, 2]"`` -> ``[831932, 1650517, ...]``."""
    t = (text or "").strip()
    if not (t.startswith("[") and t.endswith("]")):
        raise DataError(f"{where}: expected a bracketed integer list, got {t[:60]!r}")
    body = t[1:-1].replace(",", " ").split()
    if any(not _INT.fullmatch(tok) for tok in body):
        raise DataError(f"{where}: non-integer item in list {t[:60]!r}")
    return [int(tok) for tok in body]


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")


def parse_str_list(text: str, where: str) -> list[str]:
    """``"['a.jpg' 'b.jpg'\\n 'c.jpg']"`` (numpy repr) or ``"['a', 'b']"`` -> ``['a.jpg', ...]``."""
    t = (text or "").strip()
    if not t or t in ("nan", "[]"):
        return []
    if not (t.startswith("[") and t.endswith("]")):
        raise DataError(f"{where}: expected a bracketed string list, got {t[:60]!r}")
    return [a if a else b for a, b in _QUOTED.findall(t)]


_RECORD = re.compile(r"\{[^{}]*\}")
_NAN = re.compile(r"\bnan\b")


def parse_records(text: str, where: str) -> list[dict[str, object]]:
    """A numpy object-array repr of dicts (``"[{'a': 1}\\n {'a': 2}]"``) -> list of dicts.

    ``nan`` values become ``None``. Only Python literals are evaluated (``ast.literal_eval``).
    """
    t = (text or "").strip()
    if not (t.startswith("[") and t.endswith("]")):
        raise DataError(f"{where}: expected a bracketed list of records, got {t[:60]!r}")
    out: list[dict[str, object]] = []
    for k, chunk in enumerate(_RECORD.findall(t)):
        try:
            rec = ast.literal_eval(_NAN.sub("None", chunk))
        except (ValueError, SyntaxError):
            raise DataError(f"{where}: record {k} is not a literal dict: {chunk[:80]!r}") from None
        if not isinstance(rec, dict):
            raise DataError(f"{where}: record {k} is not a dict")
        out.append(rec)
    if not out and t[1:-1].strip():
        raise DataError(f"{where}: no records found in {t[:60]!r}")
    return out


def empty_events() -> pd.DataFrame:
    """An events frame with the required columns and no rows (catalogue-only datasets)."""
    return pd.DataFrame(
        {
            "user_id": pd.Series([], dtype=str),
            "note_id": pd.Series([], dtype=str),
            "ts": pd.Series([], dtype=np.int64),
            "type": pd.Series([], dtype=str),
        }
    )
