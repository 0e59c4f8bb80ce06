"""S3Rec-format sequences (Amazon Beauty, LastFM) as notefeed datasets.

``<Name>.txt``: each line ``user item item ...`` with the items in time order and no
timestamps. Each (user, item) occurrence is a ``click`` event whose ``ts`` is its 0-based
position in that user's sequence, so ``ts`` orders a user's history (leave-last-out splits
work) but is not a clock and is not comparable across users. ``<Name>_item2attributes.json``
maps item id -> attribute ids: ``tags`` are the distinct attribute ids as strings (first-seen
order), ``category`` the first attribute. No authors (``"unknown"``), no user attributes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders._common import need_file, resolve_folder

__all__ = ["load_beauty", "load_lastfm", "load_sequences"]


_COMMA_LINE = re.compile(r"[^,\s]+(?:\s*,\s*[^,\s]+)+")


def _read_sequences(file: Path, *, int_ids: bool = True) -> pd.DataFrame:
    """``user item item ...`` per line -> click events with ``ts`` = position in the user's sequence.

    ``int_ids=False`` accepts any non-whitespace token as an id. Tabs work as whitespace; a file
    whose first line is comma-separated (``u1,a,b`` or ``u1, a, b``) is read with commas as the
    separator. A user on several lines continues their sequence (so ``user item`` pairs, one per
    line in time order, also work).
    """
    users: list[str] = []
    items: list[str] = []
    pos: list[np.ndarray] = []
    seen: dict[str, int] = {}
    comma: bool | None = None
    with open(file, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{file}:{line_no}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            if line_no == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            if comma is None:
                comma = _COMMA_LINE.fullmatch(line.strip()) is not None
            if comma:
                tok = [t.strip() for t in line.strip().split(",")]
                if "" in tok:
                    field = "user" if tok[0] == "" else "items"
                    raise DataError(f"{file}:{line_no}: field '{field}': empty id between commas")
                if any(len(t.split()) != 1 for t in tok):
                    bad = next(t for t in tok if len(t.split()) != 1)
                    raise DataError(f"{file}:{line_no}: field 'items': id {bad!r} holds whitespace "
                                    "(the file's first line is comma-separated)")
            else:
                tok = line.split()
            if len(tok) < 2:
                raise DataError(f"{file}:{line_no}: field 'items': a user with no items")
            if int_ids and not all(t.isdigit() for t in tok):
                bad = next(t for t in tok if not t.isdigit())
                field = "user" if bad == tok[0] else "items"
                raise DataError(f"{file}:{line_no}: field '{field}': expected an integer id, got {bad!r}")
            start = seen.get(tok[0], 0)
            seen[tok[0]] = start + len(tok) - 1
            users.extend([tok[0]] * (len(tok) - 1))
            items.extend(tok[1:])
            pos.append(np.arange(start, start + len(tok) - 1, dtype=np.int64))
    if not users:
        raise DataError(f"{file}: no sequences")
    return pd.DataFrame({"user_id": users, "note_id": items, "ts": np.concatenate(pos), "type": "click"})


def _read_attributes(file: Path, *, int_ids: bool = True) -> pd.DataFrame:
    """``{item: [attribute, ...]}``; attributes are integers, or also strings when not ``int_ids``."""
    kinds: tuple[type, ...] = (int,) if int_ids else (int, str)
    want = "integers" if int_ids else "integers or strings"
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{file}: expected an object item -> [attribute ids]")
    ids, tags = [], []
    for item, attrs in raw.items():
        if not isinstance(attrs, list) or not all(isinstance(a, kinds) and not isinstance(a, bool) for a in attrs):
            raise DataError(f"{file}: item {item!r}: field 'attributes': expected a list of {want}")
        ids.append(str(item))
        tags.append([str(a) for a in dict.fromkeys(attrs)])
    return pd.DataFrame({"note_id": ids, "tags": tags, "category": [t[0] if t else "" for t in tags]})


def load_sequences(name: str, folder: Path, stem: str) -> Dataset:
    """Read ``folder/<stem>.txt`` (+ ``<stem>_item2attributes.json`` when present)."""
    events = _read_sequences(need_file(folder, f"{stem}.txt", name))
    attr_file = folder / f"{stem}_item2attributes.json"
    notes = _read_attributes(attr_file) if attr_file.is_file() else None
    return Dataset.build(name, events, notes=notes, meta={"source": str(folder), "ts_is_position": True})


@LOADERS.register("beauty")
def load_beauty(path: Path | None = None, **options: object) -> Dataset:
    """Amazon Beauty (S3Rec) from ``path`` (folder with ``Beauty.txt``)."""
    return load_sequences("beauty", resolve_folder(path, "amazon_s3rec"), "Beauty")


@LOADERS.register("lastfm-s3rec")
def load_lastfm(path: Path | None = None, **options: object) -> Dataset:
    """LastFM (S3Rec) from ``path`` (folder with ``LastFM.txt``)."""
    return load_sequences("lastfm-s3rec", resolve_folder(path, "amazon_s3rec"), "LastFM")
