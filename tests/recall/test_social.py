"""``social/follow``: whom a user follows (the social graph, follow events of the log, follows
seen online) and the notes their creators published after the fit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.models.artifacts import load_component, save_component
from notefeed.recall.base import UserContext
from notefeed.recall.social import FollowChannel

from .conftest import make_community

TS = 3_000_000


def _creator_notes(ds: Dataset, creator: str) -> set[int]:
    return set(np.flatnonzero(ds.notes["author_id"].to_numpy() == creator).tolist())


def _with_follow_events(ds: Dataset, rows: list[tuple[str, str]]) -> Dataset:
    """``ds`` plus ``follow`` events ``(user_id, note_id)``."""
    ev = ds.events.assign(user_id=ds.users["user_id"].to_numpy()[ds.events["user"]],
                          note_id=ds.notes["note_id"].to_numpy()[ds.events["item"]])
    extra = pd.DataFrame([{"user_id": u, "note_id": n, "ts": TS - 10, "type": "follow"} for u, n in rows])
    ev = pd.concat([ev[["user_id", "note_id", "ts", "type"]].astype({"type": str}), extra], ignore_index=True)
    social = pd.DataFrame({"user_id": ds.users["user_id"].to_numpy()[ds.social["user"]],
                           "target_id": ds.social["target_id"], "kind": ds.social["kind"]})
    return Dataset.build("tiny-follows", ev, notes=ds.notes, users=ds.users, creators=ds.creators, social=social)


def test_follow_events_of_the_log_are_follows() -> None:
    """A ``follow`` event (posted on a note) follows the note's author; before, only the
    imported social graph counted, and a follow in the app never reached this channel."""
    ds = make_community()
    # u1 follows c1 in the graph; its follow event on n3 (author c3) adds c3; twice is once
    ds = _with_follow_events(ds, [("u1", "n3"), ("u1", "n23"), ("u2", "n5")])
    ch = FollowChannel(per_creator=50).fit(ds)
    cid = ds.creators["creator_id"].tolist()
    assert sorted(cid[c] for c in ch.follows[1].tolist()) == ["c1", "c3"]
    assert sorted(cid[c] for c in ch.follows[2].tolist()) == ["c2", "c5"]
    got = set(ch.recall(UserContext("u1", 1, ts=TS), 1000).items.tolist())
    assert got == _creator_notes(ds, "c1") | _creator_notes(ds, "c3")


def test_creators_followed_online_and_notes_published_after_the_fit() -> None:
    ds = make_community()
    ch = FollowChannel(per_creator=50).fit(ds)
    base = set(ch.recall(UserContext("u1", 1, ts=TS), 1000).items.tolist())
    assert base == _creator_notes(ds, "c1")
    # followed online: known creators add their notes; an unknown id adds nothing and never raises
    ctx = UserContext("u1", 1, ts=TS, followed=("c7", "nobody", "c1"))
    assert set(ch.recall(ctx, 1000).items.tolist()) == base | _creator_notes(ds, "c7")
    newcomer = UserContext("newcomer", None, ts=TS, followed=("c7",))
    assert set(ch.recall(newcomer, 1000).items.tolist()) == _creator_notes(ds, "c7")
    # published after the fit: a followed creator's new note is its newest, a new creator's too
    n = ds.n_items
    got = ch.add_items(pd.DataFrame({"note_id": ["p0", "p1"], "author_id": ["c7", "brand-new"],
                                     "created_at": [TS + 5, TS + 6]}))
    assert got.tolist() == [n, n + 1] and ch.n_indexed == n + 2
    top = ch.recall(UserContext("u1", 1, ts=TS + 10, followed=("c7",)), 1)
    assert top.items.tolist() == [n]
    fan = UserContext("fan", None, ts=TS + 10, followed=("brand-new",))
    assert ch.recall(fan, 10).items.tolist() == [n + 1]
    assert len(ch.creator_notes[ch.creator_ids.index("c7")]) <= ch.per_creator


def test_the_state_keeps_creator_ids_and_an_older_state_still_loads(tmp_path) -> None:
    ds = make_community()
    ch = FollowChannel().fit(ds)
    ch.add_items(pd.DataFrame({"note_id": ["p0"], "author_id": ["c7"], "created_at": [TS]}))
    back = load_component(save_component(ch, tmp_path / "c"))
    ctx = UserContext("u1", 1, ts=TS, followed=("c7",))
    assert back.creator_ids == ch.creator_ids and back.recall(ctx, 30).items.tolist() == ch.recall(ctx, 30).items.tolist()
    # a version stored before creator ids were kept: the fitted follows serve; online ones are ignored
    params, arrays = ch.to_state()
    params.pop("creator_ids")
    old = FollowChannel.from_state(params, arrays)
    assert old.creator_ids is None
    assert set(old.recall(ctx, 1000).items.tolist()) == _creator_notes(ds, "c1")
    assert old.add_items(pd.DataFrame({"note_id": ["p1"], "author_id": ["c7"], "created_at": [TS]})).tolist() \
        == [ds.n_items + 1]
