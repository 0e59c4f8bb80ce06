"""notefeed.data: the columnar :class:`Dataset`, dataset loaders, generic import and the workspace store.

``Workspace`` (DuckDB) and ``import_folder`` are imported lazily so that ``import notefeed.data``
stays light for algorithms that only need :class:`Dataset`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from notefeed.data.dataset import EVENT_COLUMNS, NOTE_COLUMNS, DataError, Dataset
from notefeed.data.loaders import DATASET_NAMES, LOADERS, load_dataset

if TYPE_CHECKING:
    from notefeed.data.importer import ImportResult, import_folder
    from notefeed.data.store import Workspace

__all__ = [
    "Dataset",
    "DataError",
    "NOTE_COLUMNS",
    "EVENT_COLUMNS",
    "DATASET_NAMES",
    "LOADERS",
    "load_dataset",
    "Workspace",
    "import_folder",
    "ImportResult",
]


def __getattr__(name: str) -> object:
    if name == "Workspace":
        from notefeed.data.store import Workspace

        return Workspace
    if name in ("import_folder", "ImportResult"):
        from notefeed.data import importer

        return getattr(importer, name)
    raise AttributeError(f"module 'notefeed.data' has no attribute {name!r}")
