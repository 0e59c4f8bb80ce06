from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from notefeed.data.dataset import Dataset
from notefeed.serve.app import create_app
from notefeed.serve.config import ServeConfig, builtin_config
from notefeed.serve.engine import Engine
from notefeed.serve.synth import synthetic_community

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def small_ds() -> Dataset:
    return synthetic_community(2000, n_users=200, n_events=6000, seed=3)


def make_config(**sections: dict) -> ServeConfig:
    api = {"token": TOKEN, "max_batch": 50, "max_body_bytes": 20_000, **sections.pop("api", {})}
    return builtin_config().with_overrides(api=api, **sections)


@pytest.fixture
def engine(small_ds: Dataset, tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(small_ds, make_config(), tmp_path / "ws")
    yield eng
    eng.close()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as c:
        yield c
