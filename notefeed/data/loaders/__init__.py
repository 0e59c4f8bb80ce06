"""Loaders for public datasets and generic files; each returns a :class:`~notefeed.data.Dataset`.

``load_dataset("movielens-small")`` reads from :func:`notefeed.data.paths.datasets_root`;
``load_dataset("movielens-small", path="/my/ml-latest-small")`` reads any copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from notefeed.data.dataset import Dataset
from notefeed.registry import Registry

__all__ = ["LOADERS", "load_dataset", "DATASET_NAMES", "dataset_for_path"]

#: name -> ``loader(path: Path | None = None, **options) -> Dataset``
LOADERS: Registry[Dataset] = Registry("dataset loader")

#: The names the CLI and the evaluation harness accept.
DATASET_NAMES = (
    "movielens-small",  # movielens/ml-latest-small
    "movielens-100k",  # movielens/ml-100k
    "taobao",  # taobao_userbehavior_subset/UserBehavior.csv
    "beauty",  # amazon_s3rec/Beauty.txt (+ item2attributes)
    "lastfm-s3rec",  # amazon_s3rec/LastFM.txt
    "kuairec",  # kuairec_side (captions/categories; no interactions)
    "kuairand",  # kuairand_pure_side (authors, fans; no logs)
    "qilin",  # qilin_toy (Xiaohongshu schema)
    "lastfm-hetrec",  # lastfm_hetrec2k (plays + friend graph)
    "microlens",  # microlens100k_titles
)


def load_dataset(name: str, path: str | Path | None = None, **options: object) -> Dataset:
    """Load a dataset by name; ``path`` overrides the default location."""
    from notefeed.data import loaders as _self  # noqa: F401  (modules register on import)
    from notefeed.data.loaders import _all  # noqa: F401

    loader: Callable[..., Dataset] = LOADERS.get(name)
    return loader(path=Path(path) if path is not None else None, **options)


def dataset_for_path(path: str | Path) -> str:
    """The loader a bare ``--path`` implies: ``seqfile`` for a file (or a folder with exactly one
    ``.txt``), ``csv`` for a folder with ``events.csv`` / ``events.parquet``."""
    p = Path(path)
    if p.is_file():
        return "seqfile"
    if not p.is_dir():
        raise FileNotFoundError(f"--path: {p} does not exist")
    if any((p / f).is_file() for f in ("events.csv", "events.parquet")):
        return "csv"
    if len([f for f in p.glob("*.txt") if f.is_file()]) == 1:
        return "seqfile"
    raise ValueError(f"--path: cannot tell the format of the folder {p}; give --dataset NAME too")
