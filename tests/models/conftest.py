"""Tiny fitted components for the model store tests."""

from __future__ import annotations

import pytest

from notefeed.data.dataset import Dataset
from notefeed.recall import CHANNELS
from tests.recall.conftest import make_community


@pytest.fixture(scope="session")
def tiny_ds() -> Dataset:
    return make_community(n_users=60, n_notes=100, per_user=8)


@pytest.fixture(scope="session")
def components(tiny_ds: Dataset) -> dict:
    return {"recall.channels.1": CHANNELS.create("item-to-item/swing").fit(tiny_ds),
            "recall.channels.2": CHANNELS.create("tag/interest").fit(tiny_ds)}
