"""Alibaba Tianchi UserBehavior (head subset) as a multi-behaviour notefeed dataset.

File ``UserBehavior.csv``: no header, columns ``user,item,category,behavior,ts`` (unix s).
Behaviours map to our event types as ``pv -> click``, ``cart -> like``, ``fav -> collect``,
``buy -> share`` (funnel depth, not meaning: the ranking models need ordered engagement
levels); ``meta["type_map"]`` keeps our name -> original name so reports can print ``pv``,
``cart``... An item is a note whose ``category`` is the Taobao category id; there are no
authors (``"unknown"``) and no user attributes. Any other behaviour string is a DataError.

The published subset is the head of the full file cut mid-line: its last line
(``100370,1968385,1875258,pv``) has no timestamp and no final newline. A last line that is
incomplete *and* unterminated is a truncated tail, not bad data: it is dropped and its line
number recorded in ``meta["dropped_truncated_line"]``. An incomplete line anywhere else, or a
terminated one, is a DataError as usual.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders._common import need_file, read_table, resolve_folder, to_int

__all__ = ["load", "BEHAVIOUR_TO_TYPE", "TYPE_MAP"]

BEHAVIOUR_TO_TYPE = {"pv": "click", "cart": "like", "fav": "collect", "buy": "share"}
#: our type -> Taobao's name, stored in ``meta["type_map"]``.
TYPE_MAP = {v: k for k, v in BEHAVIOUR_TO_TYPE.items()}


@LOADERS.register("taobao")
def load(path: Path | None = None, **options: object) -> Dataset:
    """Taobao UserBehavior from ``path`` (a folder holding ``UserBehavior.csv``, or the file)."""
    folder = resolve_folder(path, "taobao_userbehavior_subset")
    file = folder if folder.is_file() else need_file(folder, "UserBehavior.csv", "taobao")
    df = read_table(file, names=("user", "item", "category", "behavior", "ts"))
    meta: dict[str, object] = {"source": str(file), "type_map": dict(TYPE_MAP)}
    if len(df) and df.iloc[-1].eq("").any() and not _ends_with_newline(file):
        meta["dropped_truncated_line"] = len(df)
        df = df.iloc[:-1]
    user = to_int(df, "user", min_value=0).astype(str)
    item = to_int(df, "item", min_value=0).astype(str)
    cat = to_int(df, "category", min_value=0).astype(str)
    ts = to_int(df, "ts", min_value=0)
    beh = df["behavior"].str.strip()
    kind = beh.map(BEHAVIOUR_TO_TYPE)
    if kind.isna().any():
        row = int(np.flatnonzero(kind.isna().to_numpy())[0])
        raise DataError(
            f"{file}:{row + 1}: field 'behavior': expected one of {sorted(BEHAVIOUR_TO_TYPE)}, got {beh.iloc[row]!r}"
        )
    events = pd.DataFrame({"user_id": user, "note_id": item, "ts": ts, "type": kind.to_numpy()})
    # One category per item in this log; keep the last one seen should a re-labelling occur.
    notes = pd.DataFrame({"note_id": item, "category": cat}).drop_duplicates("note_id", keep="last")
    return Dataset.build("taobao", events, notes=notes, meta=meta)


def _ends_with_newline(file: Path) -> bool:
    with open(file, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return True
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"
