"""Shared fixtures for the content-stage tests: one small synthetic catalogue per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from notefeed.content.synthetic import synthetic_catalogue


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def catalogue():
    """(dataset, topic (n,), images (n, 16)) with 8 planted topics."""
    return synthetic_catalogue(n_items=300, n_topics=6, n_users=250, seed=3)


@pytest.fixture(scope="session")
def catalogue_texts(catalogue) -> list[str]:
    ds = catalogue[0]
    return [f"{a} {b}" for a, b in zip(ds.notes["title"], ds.notes["text"], strict=True)]


@pytest.fixture(scope="session")
def catalogue_vectors(catalogue_texts) -> np.ndarray:
    from notefeed.content.text import TextEncoder

    return TextEncoder(dim=24).fit_transform(catalogue_texts)
