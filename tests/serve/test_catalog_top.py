"""``Catalog.top_popular``: the cached top list refreshed from the bumped notes only."""

from __future__ import annotations

import numpy as np

from notefeed.schema import Note
from notefeed.serve.catalog import Catalog
from notefeed.serve.synth import synthetic_community


def _full_top(cat: Catalog, k: int) -> list[int]:
    pop = cat.popularity()
    return sorted(range(len(pop)), key=lambda i: (-pop[i], i))[:k]


def test_incremental_refresh_equals_ranking_every_note():
    ds = synthetic_community(3000, n_users=200, n_events=20_000, seed=3)
    cat = Catalog(ds)
    n = len(cat.popularity())
    cat._pop.a[:n] += np.random.default_rng(0).random(n).astype(np.float32) * 1e-3  # no ties
    cat.top_max_age_s = 1e-9  # a refresh on every call, through the incremental path
    rng = np.random.default_rng(1)
    assert cat.top_popular(50).tolist() == _full_top(cat, 50)
    for step in range(40):
        items = rng.integers(0, len(cat.popularity()), rng.integers(1, 30))
        cat.bump(items, float(rng.uniform(0.5, 40.0)))  # some jump into the top, most do not
        if step % 10 == 3:
            cat.add_note(Note(note_id=f"new{step}", author_id="a", tags=[], category="c"))
            cat.bump(np.array([len(cat.popularity()) - 1]), 500.0 + step)  # a new note straight to the top
        assert cat.top_popular(50).tolist() == _full_top(cat, 50), step
        assert cat.top_popular(1000).tolist() == _full_top(cat, 1000), step
    # the simulator's setting (0: always fresh) ranks every note, as before
    cat.top_max_age_s = 0.0
    cat.bump(np.array([7]), 1e4)
    assert cat.top_popular(5).tolist() == _full_top(cat, 5)
