"""A restart after a sync counts each event once. ``notefeed train`` (and the server's mirror)
copies the event log into the store; a server started on the store then reads those events
as its dataset and replays the same entries from the log. Before, each was counted twice: a
note's popularity doubled, and the user's newest positives came twice in ``ctx.history``
(the sequence models' input). Now the log's entries the dataset holds (the store's sync mark)
rebuild the online state only, and the history keeps one of each."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from notefeed.data.store import Workspace
from notefeed.models.sync import sync_workspace
from notefeed.schema import Event
from notefeed.serve.engine import Engine, _trim_overlap

from .conftest import make_config


@pytest.fixture(scope="module")
def small_ds():  # type: ignore[no-untyped-def]
    from notefeed.serve.synth import synthetic_community

    return synthetic_community(300, n_users=40, n_events=900, seed=3)


def _load(ws: Path):  # type: ignore[no-untyped-def]
    with Workspace.open(ws, create=False) as w:
        return w.load_dataset()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_restart_after_a_sync_counts_each_event_once(small_ds, tmp_path: Path, backend: str,
                                                        request: pytest.FixtureRequest) -> None:
    online = {}
    if backend == "redis":
        online = {"backend": "redis", "redis_url": request.getfixturevalue("redis_url"), "redis_prefix": "restart"}
        request.getfixturevalue("redis_client")  # an empty Redis
    cfg = make_config(online=online)
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    user, other = small_ds.users["user_id"].iat[1], small_ds.users["user_id"].iat[2]
    notes = small_ds.notes["note_id"].tolist()
    now = int(time.time())
    eng = Engine(_load(ws), cfg, ws)
    try:
        eng.ingest([Event(user_id=user, note_id=notes[k], ts=now - 20 + k, type="like") for k in (7, 8)]
                   + [Event(user_id=other, note_id=notes[9], ts=now, type="impression")])
        before = (eng.catalog.popularity().copy(), eng.catalog.exposure()[0].copy(), eng.context(user).history.copy())
    finally:
        eng.close()
    assert sync_workspace(ws, cfg).events == 3  # what `notefeed train` does first
    eng = Engine(_load(ws), cfg, ws)
    try:
        eng.ingest([Event(user_id=user, note_id=notes[10], ts=now, type="like")])  # after the restart
        pop, impr = eng.catalog.popularity(), eng.catalog.exposure()[0]
        hist = eng.context(user).history
        i7, i8, i10 = (eng.catalog.item_of(notes[k]) for k in (7, 8, 10))
        assert pop[i7] == before[0][i7] and pop[i8] == before[0][i8]  # once, not twice
        assert impr[eng.catalog.item_of(notes[9])] == before[1][eng.catalog.item_of(notes[9])]
        assert hist.tolist() == before[2].tolist() + [i10]  # the same history, then the new like
        assert eng.context(user).snapshot.short_seq[-3:] == [notes[7], notes[8], notes[10]]  # online state kept
    finally:
        eng.close()


def test_trim_overlap_drops_only_the_suffix_the_online_state_starts_with() -> None:
    h = np.array([1, 2, 3, 4, 5])
    assert _trim_overlap(h, np.array([4, 5, 6])).tolist() == [1, 2, 3]
    assert _trim_overlap(h, np.array([5, 5])).tolist() == [1, 2, 3, 4]  # the synced 5, then a second 5
    assert _trim_overlap(h, np.array([3, 9])).tolist() == [1, 2, 3, 4, 5]
    assert _trim_overlap(np.array([5, 5]), np.array([5, 5, 7])).tolist() == []
    assert _trim_overlap(h, np.array([], np.int64)).tolist() == h.tolist()
