"""Tiny synthetic communities with structure (users prefer items of their own group)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from notefeed.data.dataset import Dataset
from notefeed.data.loaders import LOADERS

SYNTH_NAME = "eval-test-synthetic"


def make_synthetic(
    n_users: int = 150, n_items: int = 240, n_groups: int = 6, per_user: int = 25, seed: int = 0
) -> Dataset:
    """Users and items fall in ``n_groups`` groups; 90% of a user's positives are in-group,
    drawn with a Zipf-like popularity inside the group. Half the creators are small."""
    rng = np.random.default_rng(seed)
    item_group = np.arange(n_items) % n_groups
    user_group = rng.integers(0, n_groups, n_users)
    pop = 1.0 / (1.0 + np.arange(n_items) // n_groups) ** 0.8
    rows = []
    t0 = 1_600_000_000
    for u in range(n_users):
        in_g = item_group == user_group[u]
        p = np.where(in_g, 0.9 * pop / pop[in_g].sum(), 0.1 * pop / pop[~in_g].sum())
        items = rng.choice(n_items, size=per_user, replace=False, p=p / p.sum())
        # each user's events interleave with everyone's over 30 days (for the temporal split)
        for it, t in zip(items, np.sort(t0 + rng.integers(0, 30 * 86400, per_user)), strict=True):
            t = int(t)
            rows.append((f"u{u}", f"n{it}", t, "click" if rng.random() < 0.7 else "like"))
            if rng.random() < 0.2:  # impressions that are not positives
                rows.append((f"u{u}", f"n{rng.integers(n_items)}", t, "impression"))
    events = pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"])
    n_creators = 40
    notes = pd.DataFrame(
        {
            "note_id": [f"n{i}" for i in range(n_items)],
            "author_id": [f"c{i % n_creators}" for i in range(n_items)],
            "category": [f"g{g}" for g in item_group],
        }
    )
    creators = pd.DataFrame(
        {"creator_id": [f"c{c}" for c in range(n_creators)], "followers": [(c % 2) * 5000 + 10 for c in range(n_creators)]}
    )
    return Dataset.build("synthetic", events, notes=notes, creators=creators)


@pytest.fixture(scope="session")
def synth() -> Dataset:
    return make_synthetic()


@pytest.fixture(scope="session")
def synth_loader() -> str:
    """Register a loader so the CLI can load the synthetic set by name."""
    if SYNTH_NAME not in LOADERS:
        LOADERS.register(SYNTH_NAME)(lambda path=None, **_: make_synthetic(seed=1))
    return SYNTH_NAME
