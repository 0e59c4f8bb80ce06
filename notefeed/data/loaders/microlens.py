"""MicroLens-100k item titles (English) as a catalogue-only dataset: **zero events**.

``MicroLens-100k_title_en.csv``: no header, each line ``<item id>, <title>``; titles may
contain commas, so a line splits at its *first* comma only. ``video_comment_counts.csv``
(optional, ``video_id,comment_count``, may start with a BOM) -> note column
``comment_count`` (0 where absent). No authors, no users.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders._common import empty_events, need_file, read_table, resolve_folder, to_int

__all__ = ["load"]


def _read_titles(file: Path) -> pd.DataFrame:
    ids: list[str] = []
    titles: list[str] = []
    with open(file, encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            head, sep, title = line.partition(",")
            if not sep:
                raise DataError(f"{file}:{line_no}: malformed line (expected '<id>, <title>'): {line[:60]!r}")
            if not head.strip().isdigit():
                raise DataError(f"{file}:{line_no}: field 'item_id': expected an integer, got {head!r}")
            ids.append(head.strip())
            titles.append(title.strip())
    return pd.DataFrame({"note_id": ids, "title": titles})


@LOADERS.register("microlens")
def load(path: Path | None = None, **options: object) -> Dataset:
    """MicroLens-100k titles from ``path`` (the ``microlens100k_titles`` folder)."""
    folder = resolve_folder(path, "microlens100k_titles")
    notes = _read_titles(need_file(folder, "MicroLens-100k_title_en.csv", "microlens"))
    cfile = folder / "video_comment_counts.csv"
    if cfile.is_file():
        c = read_table(cfile, required=("video_id", "comment_count"), quoting=csv.QUOTE_MINIMAL)
        counts = pd.Series(
            to_int(c, "comment_count", min_value=0), index=to_int(c, "video_id").astype(str)
        )
        notes["comment_count"] = notes["note_id"].map(counts).fillna(0).to_numpy(np.int64)
    return Dataset.build("microlens", empty_events(), notes=notes, meta={"source": str(folder)})
