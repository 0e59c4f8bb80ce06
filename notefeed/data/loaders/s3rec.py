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
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders._common import need_file, resolve_folder

__all__ = ["load_beauty", "load_lastfm", "load_sequences"]


def _read_sequences(file: Path) -> pd.DataFrame:
    users: list[str] = []
    items: list[str] = []
    pos: list[np.ndarray] = []
    with open(file, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            tok = line.split()
            if not tok:
                continue
            if len(tok) < 2:
                raise DataError(f"{file}:{line_no}: field 'items': a user with no items")
            if not all(t.isdigit() for t in tok):
                bad = next(t for t in tok if not t.isdigit())
                field = "user" if bad == tok[0] else "items"
                raise DataError(f"{file}:{line_no}: field '{field}': expected an integer id, got {bad!r}")
            users.extend([tok[0]] * (len(tok) - 1))
            items.extend(tok[1:])
            pos.append(np.arange(len(tok) - 1, dtype=np.int64))
    if not users:
        raise DataError(f"{file}: no sequences")
    return pd.DataFrame({"user_id": users, "note_id": items, "ts": np.concatenate(pos), "type": "click"})


def _read_attributes(file: Path) -> pd.DataFrame:
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{file}: expected an object item -> [attribute ids]")
    ids, tags = [], []
    for item, attrs in raw.items():
        if not isinstance(attrs, list) or not all(isinstance(a, int) for a in attrs):
            raise DataError(f"{file}: item {item!r}: field 'attributes': expected a list of integers")
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
