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


def test_ties_rank_the_lower_index_first_on_either_path():
    """Equal popularity is ordered by item index, in the full ranking and the incremental
    refresh alike (an argpartition keeps an arbitrary subset of the tied items, and which one
    differed between CPUs: the popular channel's list moved with the machine)."""
    from notefeed.recall._common import stable_topk

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 400))
        values = rng.integers(0, 5, n).astype(np.float32)  # many ties
        want = int(rng.integers(1, n + 1))
        pool = np.sort(rng.choice(n, int(rng.integers(want, n + 1)), replace=False))
        got = pool[stable_topk(values[pool], want)]  # what top_popular takes of its pool
        expect = sorted(pool.tolist(), key=lambda i: (-values[i], i))[:want]
        assert got.tolist() == expect
    ds = synthetic_community(3000, n_users=200, n_events=20_000, seed=3)
    cat = Catalog(ds)
    n = len(cat.popularity())
    cat._pop.a[:n] = np.floor(cat._pop.a[:n])  # whole numbers: ties everywhere
    cat.top_max_age_s = 0.0
    assert cat.top_popular(1000).tolist() == _full_top(cat, 1000)
    cat.top_max_age_s = 1e-9  # the incremental path from here on
    cat.top_popular(1000)
    cat.bump(np.array([5, 17, 2999]), 3.0)
    assert cat.top_popular(1000).tolist() == _full_top(cat, 1000)
