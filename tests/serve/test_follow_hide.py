"""What a user tells the server about creators and notes, kept apart from the bounded online
state. A follow reaches the user's next feed through ``social/follow``: the followed creator's
notes, and the notes that creator publishes afterwards; kept across a restart (rebuilt from the
event log). Before, a ``follow`` event only counted as a positive on its note, and the channel
knew only the imported social graph. A hidden note stays out of the feed for good."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.schema import Event, Note
from notefeed.serve.engine import Engine

from .conftest import make_config

N = 10


def _config():
    return make_config(recall={"channels": [{"name": "social/follow", "quota": 100},
                                            {"name": "non-personalized/popular", "quota": 100}]})


def _follow_recall(eng: Engine, user: str) -> set[int]:
    ch = next(s.component for s in eng.pipelines["default"].sources if s.name == "social/follow")
    return set(ch.recall(eng.context(user), 1000).items.tolist())


def test_a_follow_reaches_the_next_feed_and_the_creators_new_notes(small_ds: Dataset, tmp_path: Path) -> None:
    user = small_ds.users["user_id"].iat[5]
    author = small_ds.notes["author_id"].to_numpy()
    creator = author[0]
    theirs = set(np.flatnonzero(author == creator).tolist())
    assert len(theirs) > 3
    eng = Engine(small_ds, _config(), tmp_path / "ws")
    try:
        assert _follow_recall(eng, user) == set()  # no social graph, no follows yet
        now = int(time.time())
        eng.ingest([Event(user_id=user, note_id=small_ds.notes["note_id"].iat[0], ts=now, type="follow")])
        assert _follow_recall(eng, user) == theirs - {0}  # the note followed on is seen
        ctx, res = eng.feed(user, N)
        assert ctx.followed == (creator,) and len(res.items) == N and not res.errors
        i = eng.publish(Note(note_id="fresh-from-them", author_id=creator, title="new", created_at=now + 1))
        ch = next(s.component for s in eng.pipelines["default"].sources if s.name == "social/follow")
        assert ch.recall(eng.context(user), 1).items.tolist() == [i]  # their newest, at once
        other = small_ds.users["user_id"].iat[6]
        assert _follow_recall(eng, other) == set()  # one user's follow is theirs alone
    finally:
        eng.close()
    eng = Engine(small_ds, _config(), tmp_path / "ws")  # a restart replays the log
    try:
        assert eng.context(user).followed == (creator,)
        assert _follow_recall(eng, user) == (theirs | {i}) - {0}
    finally:
        eng.close()


def test_a_hidden_note_never_comes_back_when_the_seen_set_forgets_it(small_ds: Dataset, tmp_path: Path) -> None:
    """The online seen set is bounded (``online.max_seen``; Redis drops random members past it),
    so a note hidden and then pushed out of it came back; hides are kept apart (``ctx.hidden``)."""
    cfg = make_config(recall={"channels": [{"name": "non-personalized/popular", "quota": 100}]},
                      online={"max_seen": 3})
    eng = Engine(small_ds, cfg, tmp_path / "ws")
    user = "hider"
    try:
        _, res = eng.feed(user, N)
        top = [eng.catalog.note_ids[i] for i in res.items.tolist()]
        now = int(time.time())
        eng.ingest([Event(user_id=user, note_id=top[0], ts=now, type="hide")])
        eng.ingest([Event(user_id=user, note_id=n, ts=now + 1, type="impression") for n in top[5:]])
        assert top[0] not in eng.state.snapshot(user).seen  # forgotten by the bounded seen set
        ctx, res = eng.feed(user, N)
        assert eng.catalog.item_of(top[0]) in ctx.hidden.tolist()
        assert top[0] not in [eng.catalog.note_ids[i] for i in res.items.tolist()]
        assert top[1] in [eng.catalog.note_ids[i] for i in res.items.tolist()]  # only what was hidden goes
    finally:
        eng.close()


def test_follows_and_unfollows_through_the_api_and_their_order_across_a_restart(tmp_path: Path) -> None:
    """``PUT/DELETE /v1/users/{id}/follows/{author_id}``: a follow without a note, and an
    unfollow, which also lifts a follow of the imported social graph the channel was fitted
    with. For a (user, creator) pair the newest of the follow events and the API's rows decides,
    the same after a restart (the two logs are replayed apart)."""
    from fastapi.testclient import TestClient

    from notefeed.serve.app import create_app

    from ..recall.conftest import make_community
    from .conftest import AUTH

    ds = make_community()  # u1 follows c1 in its social graph
    cfg = _config()
    ws = tmp_path / "ws"
    author = ds.notes["author_id"].to_numpy()
    notes_of = {c: set(np.flatnonzero(author == c).tolist()) for c in ("c1", "c2", "c3")}
    eng = Engine(ds, cfg, ws)
    clock = [1_000_000.0]
    eng.clock = lambda: clock[0]
    ctx = eng.context("u1")
    notes_of = {c: v - set(ctx.seen.tolist()) - set(ctx.history.tolist()) for c, v in notes_of.items()}  # unseen
    try:
        with TestClient(create_app(eng)) as c:
            assert _follow_recall(eng, "u1") == notes_of["c1"]
            r = c.put("/v1/users/u1/follows/c2", headers=AUTH)
            assert r.status_code == 200 and r.json() == {"user_id": "u1", "author_id": "c2", "following": True,
                                                         "follows": ["c2"]}
            assert _follow_recall(eng, "u1") == notes_of["c1"] | notes_of["c2"]
            clock[0] += 1
            assert c.delete("/v1/users/u1/follows/c1", headers=AUTH).json()["following"] is False
            assert _follow_recall(eng, "u1") == notes_of["c2"]  # the fitted follow lifted
            # a follow event, then an unfollow: unfollowed; an unfollow, then a follow event: followed
            clock[0] += 1
            eng.ingest([Event(user_id="u2", note_id=ds.notes["note_id"].iat[3], ts=1, type="follow")])  # c3
            clock[0] += 1
            c.delete("/v1/users/u2/follows/c3", headers=AUTH)
            clock[0] += 1
            c.delete("/v1/users/u3/follows/c3", headers=AUTH)
            clock[0] += 1
            eng.ingest([Event(user_id="u3", note_id=ds.notes["note_id"].iat[3], ts=1, type="follow")])
            assert "c3" not in eng.user("u2")["followed"] and "c3" in eng.user("u3")["followed"]
            assert c.put("/v1/users/u1/follows/a%00b", headers=AUTH).status_code == 422
    finally:
        eng.close()
    eng = Engine(ds, cfg, ws)
    try:
        assert _follow_recall(eng, "u1") == notes_of["c2"]
        assert "c3" not in eng.user("u2")["followed"] and "c3" in eng.user("u3")["followed"]
        assert eng.context("u2").unfollowed == ("c3",)
    finally:
        eng.close()
