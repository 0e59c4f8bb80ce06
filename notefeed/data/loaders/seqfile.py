"""``seqfile``: any sequence log a user brings, in the S3Rec ``user item item ...`` layout.

``path`` is a file (or a folder holding exactly one ``.txt``): one user per line, the items in
time order, separated by whitespace (or commas, when the first line is comma-separated). Ids are
any non-whitespace tokens. As for Beauty/LastFM, ``ts`` is the item's position in the user's
sequence, not a clock. ``<stem>_item2attributes.json`` beside the file, when present, maps
item -> attribute ids or names (``tags``; ``category`` is the first one).
"""

from __future__ import annotations

from pathlib import Path

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders.s3rec import _read_attributes, _read_sequences

__all__ = ["load_seqfile", "sequence_file"]


def sequence_file(path: Path) -> Path:
    """``path`` itself when it is a file, else the single ``.txt`` in the folder ``path``."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"seqfile: {p} does not exist")
    txt = sorted(f for f in p.glob("*.txt") if f.is_file())
    if len(txt) != 1:
        found = ", ".join(f.name for f in txt) or "none"
        raise DataError(f"seqfile: {p}: expected a file, or a folder with exactly one .txt (found: {found})")
    return txt[0]


@LOADERS.register("seqfile")
def load_seqfile(path: Path | None = None, **options: object) -> Dataset:
    """A sequence file (``user item item ...`` per line) from ``path`` (a file or a folder with one .txt)."""
    if path is None:
        raise DataError("seqfile: needs a path to a sequence file (the CLI's --path FILE)")
    file = sequence_file(path)
    events = _read_sequences(file, int_ids=False)
    attr_file = file.with_name(f"{file.stem}_item2attributes.json")
    notes = _read_attributes(attr_file, int_ids=False) if attr_file.is_file() else None
    return Dataset.build("seqfile", events, notes=notes, meta={"source": str(file), "ts_is_position": True})
