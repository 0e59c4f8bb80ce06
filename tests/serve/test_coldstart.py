"""The new-note cold-start flow in the serving pipeline: publish -> boosted slots -> hand-over."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from notefeed.data.dataset import Dataset
from notefeed.schema import POSITIVE_TYPES, Event, Note
from notefeed.serve.app import create_app
from notefeed.serve.catalog import Catalog
from notefeed.serve.coldstart import STATE_FILE, ColdStartHub
from notefeed.serve.config import ConfigError, parse_config
from notefeed.serve.engine import Engine
from notefeed.serve.slots import spread_insert

from .conftest import AUTH, make_config

N = 10  # page size


def _cs_config(**cs: object):
    # no fresh/recent channel: a new note can reach a page only through the cold-start slots
    # (with it, the built-in ranker's freshness feature may place the note on its own)
    return make_config(recall={"channels": [{"name": "non-personalized/popular", "quota": 300}]},
                       coldstart={"seed_size": 20, "lookalike_size": 20, "handover_impressions": 5, **cs})


def _fans(ds: Dataset) -> tuple[str, str, str]:
    """(category, a user whose positives are mostly that category, a user with none in it)."""
    pos = ds.select_events(POSITIVE_TYPES)
    cats = ds.notes["category"].to_numpy()[pos["item"].to_numpy()]
    users = pos["user"].to_numpy()
    counts = {}
    for u, c in zip(users.tolist(), cats.tolist(), strict=True):
        counts.setdefault(u, {}).setdefault(c, 0)
        counts[u][c] += 1
    fan = max(counts, key=lambda u: max(counts[u].values()) / sum(counts[u].values()) * min(sum(counts[u].values()), 20))
    cat = max(counts[fan], key=counts[fan].get)
    other = next(u for u in counts if cat not in counts[u] and sum(counts[u].values()) >= 5)
    uid = ds.users["user_id"].astype(str).tolist()
    return cat, uid[fan], uid[other]


def _feed(client: TestClient, user: str) -> list[dict]:
    r = client.get("/v1/feed", params={"user_id": user, "n": N, "explain": True})
    assert r.status_code == 200
    return r.json()["trace"]["items"]


def _boosted(rows: list[dict]) -> list[tuple[int, str]]:
    return [(r["position"], r["note_id"]) for r in rows if r.get("coldstart", {}).get("boosted")]


@pytest.fixture
def cs_client(small_ds: Dataset, tmp_path: Path):
    eng = Engine(small_ds, _cs_config(), tmp_path / "ws")
    with TestClient(create_app(eng)) as c:
        yield c, eng
    eng.close()


def test_spread_insert_places_extra_at_spread_positions() -> None:
    assert spread_insert([10, 11, 12, 13, 14, 15], [90, 91], 6) == [10, 90, 11, 12, 91, 13]
    assert spread_insert([10, 11], [90], 4) == [10, 90, 11]
    assert spread_insert([], [90, 91], 4) == [90, 91]
    assert spread_insert([10, 11, 12], [], 2) == [10, 11]


def test_published_note_reaches_matching_user_within_slots(cs_client, small_ds: Dataset) -> None:
    client, eng = cs_client
    cat, fan, other = _fans(small_ds)
    before = [r["note_id"] for r in _feed(client, fan)]
    r = client.post("/v1/notes", json={"note_id": "cs-new", "author_id": "c-new", "category": cat,
                                       "tags": ["brand-new-tag"]}, headers=AUTH)
    assert r.status_code == 201
    rows = _feed(client, fan)
    boosted = _boosted(rows)
    assert boosted == [(1, "cs-new")]  # the first slot sits at position 1, not on top
    row = rows[1]
    assert "coldstart/bandit" in row["channels"] and row["coldstart"]["stage"] == "seed"
    assert len(rows) == N and [x["note_id"] for x in rows if x["note_id"] != "cs-new"] == before[: N - 1]
    # a user with no interest in the category is outside the seed audience: no boost
    assert not _boosted(_feed(client, other))
    # the trace names the step; at most `slots` pool notes per page
    stages = [s["name"] for s in client.get("/v1/feed", params={"user_id": fan, "explain": True}).json()["trace"]["stages"]]
    assert "coldstart/bandit" in stages and stages[-1] == "coldstart/slots"


def test_slots_cap_and_spread_with_many_new_notes(cs_client, small_ds: Dataset) -> None:
    client, eng = cs_client
    cat, fan, _ = _fans(small_ds)
    for j in range(5):
        assert client.post("/v1/notes", json={"note_id": f"cs-{j}", "author_id": f"c{j}", "category": cat},
                           headers=AUTH).status_code == 201
    boosted = _boosted(_feed(client, fan))
    assert [p for p, _ in boosted] == [1, 1 + N // 2]  # slots = 2, spread over the page


def test_events_update_the_pool_and_hand_over_ends_the_boost(cs_client, small_ds: Dataset) -> None:
    client, eng = cs_client
    cat, fan, _ = _fans(small_ds)
    client.post("/v1/notes", json={"note_id": "cs-new", "author_id": "c-new", "category": cat}, headers=AUTH)
    item = eng.catalog.item_of("cs-new")
    now = int(time.time())
    users = small_ds.users["user_id"].astype(str).tolist()
    evs = [{"user_id": u, "note_id": "cs-new", "ts": now, "type": "impression"} for u in users[:3]]
    evs.append({"user_id": users[0], "note_id": "cs-new", "ts": now, "type": "click"})
    assert client.post("/v1/events", json={"events": evs}, headers=AUTH).json()["accepted"] == 4
    note = eng.coldstart.pool.notes[item]
    assert (note.impressions, note.clicks) == (3, 1) and eng.coldstart.boosted(item)
    # a user first seen online counts too; the 5th impression hands the note over
    evs = [{"user_id": u, "note_id": "cs-new", "ts": now + 60, "type": "impression"} for u in ("fresh-a", "fresh-b")]
    client.post("/v1/events", json={"events": evs}, headers=AUTH)
    assert note.impressions == 5 and not eng.coldstart.boosted(item)
    assert eng.coldstart.summary()["handed_over"] == 1
    rows = _feed(client, fan)
    assert not _boosted(rows) and all("coldstart" not in r for r in rows)
    assert client.get("/healthz").json()["coldstart"]["handed_over"] == 1


def test_disabled_config_is_the_old_pipeline(small_ds: Dataset, tmp_path: Path) -> None:
    off = Engine(small_ds, _cs_config(enabled=False), tmp_path / "off")
    on = Engine(small_ds, _cs_config(), tmp_path / "on")
    try:
        assert off.coldstart is None
        names_off = [s.name for s in off.pipelines["default"].steps]
        names_on = [s.name for s in on.pipelines["default"].steps]
        assert not any(n.startswith("coldstart/") for n in names_off)
        assert [n for n in names_on if not n.startswith("coldstart/")] == names_off
        # the popular baseline never boosts
        assert not any(s.name.startswith("coldstart/") for s in on.pipelines["popular"].steps)
        users = small_ds.users["user_id"].astype(str).tolist()[:5]
        # with an empty pool the cold-start steps change nothing
        for u in users:
            assert off.feed(u, N)[1].items.tolist() == on.feed(u, N)[1].items.tolist()
        cat, fan, _ = _fans(small_ds)
        for eng in (off, on):
            eng.publish(Note(note_id="cs-new", author_id="c-new", category=cat))
        i = on.catalog.item_of("cs-new")
        assert i in on.feed(fan, N)[1].items.tolist()
        assert i not in off.feed(fan, N)[1].items.tolist()  # ranking drops it: the measured problem
        assert not (tmp_path / "off" / STATE_FILE).exists()
    finally:
        off.close()
        on.close()


@pytest.mark.parametrize(("section", "field"), [
    ({"slots": -1}, "coldstart.slots"),
    ({"bandit": "greedy"}, "coldstart.bandit"),
    ({"prior_b": 0}, "coldstart.prior_b"),
    ({"content_weight": 2}, "coldstart.content_weight"),
    ({"slot": 2}, "coldstart.slot"),
])
def test_config_errors_name_the_field(section: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config({"coldstart": section})


def test_pool_state_survives_a_restart(small_ds: Dataset, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cat, fan, _ = _fans(small_ds)
    users = small_ds.users["user_id"].astype(str).tolist()
    now = int(time.time())
    eng = Engine(small_ds, _cs_config(), ws)
    i = eng.publish(Note(note_id="cs-new", author_id="c-new", category=cat, tags=["t1"]))
    eng.ingest([Event(user_id=u, note_id="cs-new", ts=now, type="impression") for u in users[:2]] +
               [Event(user_id="online-only", note_id="cs-new", ts=now, type="click")])
    eng.close()
    assert (ws / STATE_FILE).exists()

    eng = Engine(small_ds, _cs_config(), ws)
    try:
        note = eng.coldstart.pool.notes[i]
        # restored, and the bus replay does not count the same events twice
        assert (note.impressions, note.clicks) == (2, 1) and note.engagers
        assert eng.coldstart.user_row("online-only") is not None
        _, res = eng.feed(fan, N)
        assert res.items.tolist()[1] == i
        eng.ingest([Event(user_id=users[3], note_id="cs-new", ts=now + 5, type="impression")])
        assert note.impressions == 3
    finally:
        eng.close()

    # no state file (a crash before close): rebuilt from the note log and the event log
    (ws / STATE_FILE).unlink()
    eng = Engine(small_ds, _cs_config(), ws)
    try:
        note = eng.coldstart.pool.notes[i]
        assert (note.impressions, note.clicks) == (3, 1)
    finally:
        eng.close()


def test_corrupt_or_foreign_state_is_set_aside_and_rebuilt(small_ds: Dataset, tmp_path: Path) -> None:
    """The pool's state is derived (the note and event logs rebuild it, as after kill -9): a
    torn file is kept beside it and the pool starts as with no file, with a warning; one saved
    for other data (the store grew: a sync, an import) is rebuilt and replaced, without; the
    hub itself refuses both."""
    ws = tmp_path / "ws"
    def pool(e: Engine) -> dict:
        return {i: (n.impressions, n.clicks, n.stage) for i, n in e.coldstart.pool.notes.items()}

    cat, _, _ = _fans(small_ds)
    now = int(time.time())
    eng = Engine(small_ds, _cs_config(), ws)
    try:
        eng.publish(Note(note_id="cs-new", author_id="c-new", category=cat, tags=["t1"]))
        eng.ingest([Event(user_id=u, note_id="cs-new", ts=now, type="impression") for u in ("u1", "u2")] +
                   [Event(user_id="u1", note_id="cs-new", ts=now + 1, type="click")])
        want = pool(eng)
        assert any(v[:2] == (2, 1) for v in want.values())
    finally:
        eng.close()
    for bad, why, kept in (("{not json", "coldstart.json: cannot read", True),
                           ('{"version": 1, "n_base_items": 7, "n_users": 1}', "another dataset.*n_base_items", False)):
        hub = ColdStartHub(_cs_config().coldstart, small_ds, Catalog(small_ds))
        (ws / STATE_FILE).write_text(bad)
        with pytest.raises(ValueError, match=why):
            hub.restore(ws / STATE_FILE)
        eng = Engine(small_ds, _cs_config(), ws)
        try:
            assert pool(eng) == want
            aside = [p for p in ws.iterdir() if p.name.startswith(STATE_FILE + ".unused-")]
            if kept:
                (warning,) = eng.startup_warnings
                assert re.search(why, warning) and "kept as coldstart.json.unused-" in warning
                assert len(aside) == 1 and aside[0].read_text() == bad
                aside[0].unlink()
            else:
                assert not eng.startup_warnings and not aside
        finally:
            eng.close()
        assert json.loads((ws / STATE_FILE).read_text())["version"]  # the new state, saved on close
    eng = Engine(small_ds, _cs_config(), ws)  # and restored on the next start, with no warning
    try:
        assert not eng.startup_warnings and pool(eng) == want
    finally:
        eng.close()


def test_new_note_scores_stay_json_safe(cs_client, small_ds: Dataset) -> None:
    client, _ = cs_client
    cat, fan, _ = _fans(small_ds)
    client.post("/v1/notes", json={"note_id": "cs-new", "author_id": "c-new", "category": cat}, headers=AUTH)
    body = client.get("/v1/feed", params={"user_id": fan, "n": N}).json()
    assert any(x["note_id"] == "cs-new" for x in body["items"])
    assert all(np.isfinite(x["score"]) for x in body["items"])


class _Main:
    name = "fake/main"

    def recall(self, ctx, k):
        from notefeed.recall.base import Candidates
        return Candidates(self.name, np.arange(10), np.linspace(1, 0, 10))


class _Side:
    name = "coldstart/bandit"
    side = True

    def recall(self, ctx, k):
        from notefeed.serve.pipeline import SideCandidates
        s = np.array([0.9, 0.8, 0.7], np.float32)
        return SideCandidates(self.name, np.array([3, 20, 21]), s,
                              columns={"coldstart.score": s, "coldstart.stage": np.array([0, 1, 0], np.float32)})


class _DropSeen:
    name = "fake/seen"

    def apply(self, ctx, cs):
        from notefeed.serve.pipeline import FilterResult
        drop = np.isin(cs.items, ctx.seen)
        return FilterResult(np.flatnonzero(~drop), np.flatnonzero(drop))


def test_side_source_skips_ranking_filters_apply_and_slots_mix() -> None:
    from notefeed.recall.base import UserContext
    from notefeed.serve.coldstart import ColdStartSlots
    from notefeed.serve.components import TopK
    from notefeed.serve.pipeline import Pipeline, Step

    p = Pipeline("t", [Step("source", _Main(), 10), Step("source", _Side(), 6), Step("filter", _DropSeen()),
                       Step("selector", TopK("recall", 5)), Step("selector", ColdStartSlots(2))])
    res = p.run(UserContext("u", seen=np.array([21])), 5)
    assert not res.errors
    # 3 made the page through ranking (it uses one slot); 20 fills the other at position 1; 21 was seen
    assert res.items.tolist() == [0, 20, 1, 2, 3]
    rows = res.trace()["items"]
    assert rows[1]["coldstart"] == {"stage": "lookalike", "score": pytest.approx(0.8), "boosted": True}
    assert rows[4]["channels"] == ["fake/main", "coldstart/bandit"] and rows[4]["coldstart"]["boosted"] is False
    assert "coldstart" not in rows[0]
    # without the slot selector the side candidates never reach the page
    p = Pipeline("t", [Step("source", _Main(), 10), Step("source", _Side(), 6), Step("selector", TopK("recall", 5))])
    assert p.run(UserContext("u"), 5).items.tolist() == [0, 1, 2, 3, 4]


def test_the_pool_reads_its_own_row_of_a_user_the_dataset_lacks(small_ds: Dataset, tmp_path: Path) -> None:
    """A served version trained on users that signed up after start-up gives them its own user
    indices (``ctx.user``); the pool keeps the rows it gave them when it met them online, in
    another order. It must read the user's own row (by id): before, it read ``ctx.user``'s
    row, another user's profile."""
    from notefeed.recall.base import UserContext

    cat, fan, _ = _fans(small_ds)
    fan_items = [small_ds.notes["note_id"].iat[i] for i in np.flatnonzero(small_ds.notes["category"].to_numpy() == cat)[:15]]
    eng = Engine(small_ds, _cs_config(), tmp_path / "ws")
    try:
        now = int(time.time())
        eng.ingest([Event(user_id="met-first", note_id=n, ts=now, type="like") for n in fan_items])  # row n_users
        eng.ingest([Event(user_id="met-second", note_id=small_ds.notes["note_id"].iat[0], ts=now, type="impression")])
        i = eng.publish(Note(note_id="cs-new", author_id="c-new", category=cat))
        hub = eng.coldstart
        assert hub.user_row("met-first") == small_ds.n_users and hub.user_row("met-second") == small_ds.n_users + 1
        first, _, _ = hub.candidates(UserContext("met-first", user=small_ds.n_users + 1), 5)
        assert first.tolist() == [i]  # its seed audience, whatever index a version gave it
        second, _, _ = hub.candidates(UserContext("met-second", user=small_ds.n_users), 5)
        assert second.tolist() == []  # met-first's index must not give it met-first's profile
    finally:
        eng.close()


def test_an_erased_user_leaves_the_pool_and_a_restart_counts_each_event_once(small_ds: Dataset,
                                                                            tmp_path: Path) -> None:
    """The pool forgets an erased user's profile, engagements and online row, in its saved state
    too; a state saved before the erasure is caught up at start-up, and its bus position still
    matches the event log, whose erased rows are tombstones the replay skips."""
    ws = tmp_path / "ws"
    cat, _, _ = _fans(small_ds)
    users = small_ds.users["user_id"].astype(str).tolist()
    now = int(time.time())
    eng = Engine(small_ds, _cs_config(), ws)
    try:
        i = eng.publish(Note(note_id="cs-new", author_id="c-new", category=cat, tags=["t1"]))
        eng.ingest([Event(user_id=u, note_id="cs-new", ts=now, type="impression") for u in users[:2]] +
                   [Event(user_id="online-only", note_id="cs-new", ts=now, type="click")])
        row = eng.coldstart.user_row("online-only")
        assert row in eng.coldstart.pool.notes[i].engagers and eng.coldstart.pool._rnorm[row] > 0
        eng.save_coldstart()
        before = (ws / STATE_FILE).read_text()  # as a kill right after the erasure would leave it
        eng.erase_user("online-only")
        assert eng.coldstart.user_row("online-only") is None
        assert row not in eng.coldstart.pool.notes[i].engagers and eng.coldstart.pool._rnorm[row] == 0
        assert "online-only" not in (ws / STATE_FILE).read_text()  # saved at once
        eng.ingest([Event(user_id=users[3], note_id="cs-new", ts=now + 5, type="impression")])
    finally:
        eng.close()
    for state in ((ws / STATE_FILE).read_text(), before):
        (ws / STATE_FILE).write_text(state)
        eng = Engine(small_ds, _cs_config(), ws)
        try:
            note = eng.coldstart.pool.notes[i]
            assert (note.impressions, note.clicks) == (3, 1)  # the later impression once, none skipped
            assert eng.coldstart.user_row("online-only") is None and row not in note.engagers
            assert eng.coldstart.pool._rnorm[row] == 0
            assert eng.coldstart.events_seen == 4  # a bus position: the tombstone counts
        finally:
            eng.close()
