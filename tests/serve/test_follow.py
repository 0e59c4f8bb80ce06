"""A follow posted to the server reaches the user's next feed through ``social/follow``: the
followed creator's notes, and the notes that creator publishes afterwards; kept across a
restart (rebuilt from the event log). Before, a ``follow`` event only counted as a positive
on its note, and the channel knew only the imported social graph."""

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
