"""Fixtures of the ads serving tests: a small synthetic community served at a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from notefeed.data.dataset import Dataset
from notefeed.serve.app import create_app
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine
from notefeed.serve.synth import synthetic_community

TOKEN = "ads-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return synthetic_community(600, n_users=60, n_events=2000, seed=5)


@pytest.fixture
def engine(ds: Dataset, tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(ds, builtin_config().with_overrides(api={"token": TOKEN}), tmp_path / "ws")
    eng.clock = lambda: NOW
    yield eng
    eng.close()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as c:
        yield c
