"""Tiny structured community: users in 4 taste groups, notes in 4 topics with tags and authors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from notefeed.data.dataset import Dataset

torch.set_num_threads(1)


def make_community(n_users: int = 120, n_notes: int = 200, per_user: int = 12, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    topics = np.arange(n_notes) % 4
    words = ["hiking trail mountain", "lipstick makeup glow", "noodle recipe spicy", "python code bug"]
    notes = pd.DataFrame({
        "note_id": [f"n{i}" for i in range(n_notes)],
        "author_id": [f"c{i % 20}" for i in range(n_notes)],
        "title": [f"{words[t]} {i}" for i, t in enumerate(topics)],
        "text": [words[t] for t in topics],
        "tags": [[f"topic{t}", f"sub{i % 7}"] for i, t in enumerate(topics)],
        "category": [f"cat{t}" for t in topics],
        "created_at": 1_000_000 + np.arange(n_notes) * 600,
    })
    rows = []
    for u in range(n_users):
        g = u % 4
        mine = np.flatnonzero(topics == g)
        # popularity within the topic: low indices are hits
        p = 1.0 / (1 + np.arange(mine.size))
        picks = rng.choice(mine, size=per_user, replace=False, p=p / p.sum())
        for j, i in enumerate(picks):
            rows.append((f"u{u}", f"n{i}", 2_000_000 + u * 10 + j * 1000, "click"))
    ev = pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"])
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)], "group": [f"g{u % 4}" for u in range(n_users)]})
    creators = pd.DataFrame({"creator_id": [f"c{i}" for i in range(20)], "followers": [10 * i * i for i in range(20)]})
    social = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)], "target_id": [f"c{u % 20}" for u in range(n_users)],
                           "kind": "follow"})
    return Dataset.build("tiny", ev, notes=notes, users=users, creators=creators, social=social)


@pytest.fixture(scope="session")
def tiny() -> Dataset:
    return make_community()
