"""Fixtures for the data-layer tests: the shared dataset root (skip when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from notefeed.data.paths import datasets_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = datasets_root()
    if not root.is_dir():
        pytest.skip(f"public datasets not found at {root} (set NOTEFEED_DATA)")
    return root


@pytest.fixture(scope="session")
def dataset_dir(data_root: Path):
    """``dataset_dir("movielens", "ml-100k")``: that folder, or skip the test when missing."""

    def need(*parts: str) -> Path:
        p = data_root.joinpath(*parts)
        if not p.exists():
            pytest.skip(f"{p} not present")
        return p

    return need
