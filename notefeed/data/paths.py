"""Where real datasets live: an explicit path, ``$NOTEFEED_DATA``, or ``../shared/datasets``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["datasets_root", "dataset_path"]


def datasets_root() -> Path:
    """The folder holding the public dataset folders (``movielens/``, ``taobao_.../``...).

    Order: ``$NOTEFEED_DATA``; then ``shared/datasets`` next to or above the working directory
    and this checkout (the project's layout puts it at ``../shared/datasets``).
    """
    env = os.environ.get("NOTEFEED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        for cand in (base / "shared" / "datasets", base.parent / "shared" / "datasets"):
            if cand.is_dir():
                return cand
    return Path.cwd().parent / "shared" / "datasets"


def dataset_path(*parts: str) -> Path:
    """``datasets_root() / parts...``, without checking existence."""
    return datasets_root().joinpath(*parts)
