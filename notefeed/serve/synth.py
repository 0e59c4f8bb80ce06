"""A fast synthetic community for serving tests and the load benchmark.

Not the simulator (``notefeed.sim`` models behaviour); this only needs the right *shape*
at 1M notes in seconds: Zipf note popularity, log-normal creator followers (most creators
small), categories, and users whose positives lean to a favourite category.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset

__all__ = ["synthetic_community"]


def synthetic_community(n_notes: int, n_users: int | None = None, n_events: int | None = None,
                        n_categories: int = 30, seed: int = 0) -> Dataset:
    """A :class:`Dataset` with ``n_notes`` notes, ``n_users`` users (default n_notes/10)
    and ``n_events`` events (default 2 x n_notes)."""
    if n_notes < 1:
        raise ValueError("n_notes must be >= 1")
    rng = np.random.default_rng(seed)
    n_users = n_users or max(10, n_notes // 10)
    n_events = n_events if n_events is not None else 2 * n_notes
    n_creators = max(5, n_notes // 20)
    t0 = 1_700_000_000
    note_cat = rng.integers(0, n_categories, n_notes)
    author = rng.integers(0, n_creators, n_notes)
    notes = pd.DataFrame({
        "note_id": np.char.add("n", np.arange(n_notes).astype(str)),
        "author_id": np.char.add("c", author.astype(str)),
        "category": np.char.add("cat", note_cat.astype(str)),
        "created_at": t0 + rng.integers(0, 30 * 86400, n_notes),
    })
    creators = pd.DataFrame({
        "creator_id": np.char.add("c", np.arange(n_creators).astype(str)),
        "followers": np.floor(rng.lognormal(4.0, 2.0, n_creators)).astype(np.int64),
    })
    # Zipf-ish popularity over a random permutation of notes
    rank_w = 1.0 / np.arange(1, n_notes + 1) ** 0.9
    pop_order = rng.permutation(n_notes)
    p = np.empty(n_notes)
    p[pop_order] = rank_w / rank_w.sum()
    users = rng.integers(0, n_users, n_events)
    items = rng.choice(n_notes, size=n_events, p=p)
    # half of each user's events go to notes in their favourite category
    fav = rng.integers(0, n_categories, n_users)
    by_cat = np.argsort(note_cat, kind="stable")
    starts = np.searchsorted(note_cat[by_cat], np.arange(n_categories + 1))
    topical = rng.random(n_events) < 0.5
    c = fav[users[topical]]
    lo, hi = starts[c], starts[c + 1]
    ok = hi > lo
    pick = lo + (rng.random(len(c)) * np.maximum(hi - lo, 1)).astype(np.int64)
    idx = np.flatnonzero(topical)
    items[idx[ok]] = by_cat[pick[ok]]
    types = rng.choice(["impression", "click", "like", "collect"], size=n_events, p=[0.5, 0.3, 0.15, 0.05])
    events = pd.DataFrame({
        "user_id": np.char.add("u", users.astype(str)),
        "note_id": notes["note_id"].to_numpy()[items],
        "ts": t0 + rng.integers(0, 30 * 86400, n_events),
        "type": types,
    })
    users_df = pd.DataFrame({"user_id": np.char.add("u", np.arange(n_users).astype(str))})
    return Dataset.build(f"synthetic-{n_notes}", events, notes=notes, users=users_df, creators=creators)
