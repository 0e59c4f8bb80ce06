"""KuaiRand-Pure side information (videos with authors; users) as a catalogue-only dataset.

No logs ship with this copy: **zero events**. Files:

- ``video_features_basic_pure.csv`` (required): ``note_id`` = ``video_id``, ``author_id``,
  ``created_at`` = ``upload_dt`` (a date, midnight UTC), ``tags`` = the comma-separated
  ``tag`` ids, ``category`` = the first tag, plus ``video_type``, ``upload_type`` and
  ``video_duration`` (ms, NaN when missing) columns.
- ``user_features_pure.csv`` (optional): users, every source column an attribute.

Creators and followers: every author is a creator. KuaiRand does not document that
``author_id`` and ``user_id`` share an id space (authors go up to ~8.7M, users 0..27,284),
so a plain id match is mostly coincidence: in this copy 104 authors collide with a user id
and 24 of those users have ``is_video_author == 0``. We therefore match an author to a user
only when ``author_id == user_id`` **and** that user has ``is_video_author == 1``; the match
gives ``followers = fans_user_num``. Every other author gets 0 followers (unknown), so the
small-creator share is an upper bound here. ``options``: ``match_authors=False`` disables it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders._common import (
    empty_events,
    need_file,
    read_table,
    resolve_folder,
    to_float,
    to_int,
)
from notefeed.data.loaders.kuairec import read_users

__all__ = ["load", "author_followers"]


def author_followers(authors: pd.Series, users: pd.DataFrame) -> pd.DataFrame:
    """Creators frame (``creator_id``, ``followers``) for distinct ``authors`` (see module doc)."""
    ids = pd.unique(authors.astype(str))
    followers = np.zeros(len(ids), np.int64)
    if {"is_video_author", "fans_user_num"} <= set(users.columns):
        is_author = pd.to_numeric(users["is_video_author"], errors="coerce").to_numpy() == 1
        fans = pd.to_numeric(users["fans_user_num"], errors="coerce").fillna(0).to_numpy()
        cand = users.loc[is_author, "user_id"].astype(str)
        pos = pd.Index(cand).get_indexer(ids)
        hit = pos >= 0
        followers[hit] = fans[is_author][pos[hit]].astype(np.int64)
    return pd.DataFrame({"creator_id": ids, "followers": followers})


@LOADERS.register("kuairand")
def load(path: Path | None = None, match_authors: bool = True, **options: object) -> Dataset:
    """KuaiRand-Pure side info from ``path`` (the ``kuairand_pure_side`` folder)."""
    folder = resolve_folder(path, "kuairand_pure_side")
    vfile = need_file(folder, "video_features_basic_pure.csv", "kuairand")
    v = read_table(vfile, required=("video_id", "author_id", "upload_dt", "tag"))
    dates = pd.to_datetime(v["upload_dt"], format="%Y-%m-%d", errors="coerce", utc=True)
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DataError(f"{vfile}:{row + 2}: field 'upload_dt': expected YYYY-MM-DD, got {v['upload_dt'].iloc[row]!r}")
    tags = [[t.strip() for t in s.split(",") if t.strip()] for s in v["tag"].tolist()]
    notes = pd.DataFrame(
        {
            "note_id": to_int(v, "video_id", min_value=0).astype(str),
            "author_id": to_int(v, "author_id", min_value=0).astype(str),
            "created_at": ((dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64),
            "tags": tags,
            "category": [t[0] if t else "" for t in tags],
        }
    )
    for col in ("video_type", "upload_type"):
        if col in v.columns:
            notes[col] = v[col].to_numpy()
    if "video_duration" in v.columns:
        notes["video_duration"] = to_float(v, "video_duration", allow_missing=True)
    ufile = folder / "user_features_pure.csv"
    users = read_users(ufile) if ufile.is_file() else pd.DataFrame({"user_id": pd.Series([], dtype=str)})
    creators = author_followers(notes["author_id"], users if match_authors else users[["user_id"]])
    return Dataset.build(
        "kuairand", empty_events(), notes=notes, users=users, creators=creators,
        meta={"source": str(folder), "authors_matched": int((creators["followers"] > 0).sum())},
    )
