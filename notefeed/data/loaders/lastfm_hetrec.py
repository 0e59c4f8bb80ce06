"""HetRec 2011 Last.fm (partial copy): listening counts, artist names, friend graph.

- ``user_artists.dat`` (``user artist weight``, tab/space separated, header optional: this copy
  has none) -> one ``click`` per (user, artist) pair with ``ts = 0``: the source has no
  times, so time-based splits are meaningless on this set (use random splits). The play
  count is kept in ``meta["play_counts"]`` (``user_id, note_id, weight``), not as repeated
  events (counts reach six figures).
- ``artists.dat`` (``id name url pictureURL``, tab separated, optional) -> ``title`` = name
  and column ``url``. No authors: ``author_id`` ``"unknown"``.
- ``user_friends.dat`` (``userID friendID``, optional) -> ``social`` edges of kind
  ``"friend"`` (as listed; the source lists both directions).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders._common import need_file, read_table, resolve_folder, to_int

__all__ = ["load"]


def _read_ints(file: Path, names: tuple[str, ...]) -> pd.DataFrame:
    df = read_table(file, sep=r"\s+", names=names)
    # The original release has a header line; this copy does not. Drop it when present.
    if len(df) and not str(df.iloc[0, 0]).strip().isdigit() and not str(df.iloc[0, 1]).strip().isdigit():
        df = df.iloc[1:]
        df.attrs["first_line"] = 2
    short = (df.isna() | df.eq("")).any(axis=1).to_numpy()
    if short.any():
        row = int(short.argmax())
        raise DataError(f"{file}:{row + df.attrs['first_line']}: malformed line (expected {len(names)} fields)")
    return df


@LOADERS.register("lastfm-hetrec")
def load(path: Path | None = None, **options: object) -> Dataset:
    """HetRec Last.fm from ``path`` (the ``lastfm_hetrec2k`` folder)."""
    folder = resolve_folder(path, "lastfm_hetrec2k")
    ua = _read_ints(need_file(folder, "user_artists.dat", "lastfm-hetrec"), ("user", "artist", "weight"))
    user = to_int(ua, "user", min_value=0).astype(str)
    artist = to_int(ua, "artist", min_value=0).astype(str)
    weight = to_int(ua, "weight", min_value=0)
    events = pd.DataFrame({"user_id": user, "note_id": artist, "ts": 0, "type": "click"})
    notes = None
    afile = folder / "artists.dat"
    if afile.is_file():
        a = read_table(afile, sep="\t", required=("id", "name"), quoting=csv.QUOTE_NONE)
        notes = pd.DataFrame({"note_id": to_int(a, "id", min_value=0).astype(str), "title": a["name"].to_numpy()})
        if "url" in a.columns:
            notes["url"] = a["url"].to_numpy()
    social = None
    ffile = folder / "user_friends.dat"
    if ffile.is_file():
        f = _read_ints(ffile, ("user", "friend"))
        social = pd.DataFrame(
            {
                "user_id": to_int(f, "user", min_value=0).astype(str),
                "target_id": to_int(f, "friend", min_value=0).astype(str),
                "kind": "friend",
            }
        )
    plays = pd.DataFrame({"user_id": user, "note_id": artist, "weight": weight})
    return Dataset.build(
        "lastfm-hetrec", events, notes=notes, social=social, meta={"source": str(folder), "play_counts": plays}
    )
