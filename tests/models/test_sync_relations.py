"""What users say about creators through the API (follows, unfollows, blocks: the relation
log) reaches the store with the sync, and training: ``social/follow`` is fitted with it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.dataset import Dataset
from notefeed.data.store import DB_NAME, Workspace
from notefeed.models.sync import RELATION_LOG, sync_workspace
from notefeed.recall.social import FollowChannel
from notefeed.schema import Event
from notefeed.serve.engine import Engine
from tests.serve.conftest import make_config

TS = 1_700_000_000


@pytest.fixture(scope="module")
def small_ds():  # type: ignore[no-untyped-def]
    from notefeed.serve.synth import synthetic_community

    return synthetic_community(300, n_users=40, n_events=900, seed=3)


def _follows(ds: Dataset, user_id: str) -> set[str]:
    ch = FollowChannel().fit(ds)
    u = int(np.flatnonzero(ds.users["user_id"].astype(str).to_numpy() == user_id)[0])
    return {ds.creators["creator_id"].iat[int(c)] for c in ch.follows.get(u, [])}


def test_api_relations_reach_the_store_once_and_the_follow_channel(small_ds, tmp_path: Path) -> None:
    users = small_ds.users["user_id"].astype(str).tolist()
    creators = small_ds.creators["creator_id"].astype(str).tolist()
    u0, u1 = users[0], users[1]
    ca, cb, cc, cd, ce = creators[:5]
    graph = pd.DataFrame({"user": np.zeros(2, np.int32), "target_id": [cc, ce], "kind": "follow"})
    small_ds = dataclasses.replace(small_ds, social=graph)  # an imported graph: u0 follows cc and ce
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    assert _follows(small_ds, u0) == {cc, ce}
    note_of_cd = small_ds.notes["note_id"].to_numpy()[small_ds.notes["author_id"].astype(str).to_numpy() == cd][0]
    eng = Engine(small_ds, make_config(), ws)
    try:
        eng.relate(u0, ca, "follow")
        eng.relate(u0, cb, "block")
        eng.relate(u0, cc, "follow")
        eng.relate(u0, cc, "follow", active=False)  # followed, then unfollowed
        # a follow event (an ordinary event, copied with the events), then an API unfollow
        eng.ingest([Event(user_id=u1, note_id=str(note_of_cd), ts=TS, type="follow")])
        eng.relate(u1, cd, "follow", active=False)
        eng.side_effects.drain()
    finally:
        eng.close()
    out = tmp_path / "stats.json"
    r = CliRunner().invoke(app, ["data", "stats", "--workspace", str(ws), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["not_yet_in_store"]["relations"] == 5
    assert "5 follows, unfollows or blocks" in " ".join(r.output.split())

    first = sync_workspace(ws)
    assert (first.relations, first.events) == (5, 1)
    assert "5 follows, unfollows or blocks" in first.line()
    assert sync_workspace(ws).relations == 0  # copied once
    with Workspace.open(ws) as w:
        assert w.mark(RELATION_LOG) == 5 and w.counts()["relations"] == 5
        ds = w.load_dataset()
    soc = ds.social
    assert soc is not None and "at" in soc
    said = soc[soc["at"].notna()]
    got = {(users[int(u)], t, k) for u, t, k in zip(said["user"], said["target_id"], said["kind"], strict=True)}
    assert got == {(u0, ca, "follow"), (u0, cb, "block"), (u0, cc, "unfollow"), (u1, cd, "unfollow")}
    assert _follows(ds, u0) == {ca, ce}  # the API follow in, the unfollow lifts the graph's follow
    assert cd not in _follows(ds, u1)  # the unfollow is newer than the follow event

    # a store written from this dataset keeps the relation edges (in its own relation table)
    ws2 = tmp_path / "ws2"
    with Workspace.open(ws2) as w:
        w.save_dataset(ds)
        assert w.counts()["relations"] == 4 and w.counts()["social"] == 2
        again = w.load_dataset().social
    pd.testing.assert_frame_equal(again.reset_index(drop=True), soc.reset_index(drop=True))


def test_the_newest_statement_decides(small_ds) -> None:
    """Per (user, creator): the imported graph is older than anything; a follow event counts at
    its time, an API follow or unfollow at its; at equal times the unfollow wins; a block is
    not a follow."""
    users = small_ds.users["user_id"].astype(str).tolist()
    notes = small_ds.notes
    creators = small_ds.creators["creator_id"].astype(str).tolist()
    first_note = {c: str(notes["note_id"].iat[int(np.flatnonzero(notes["author_id"].astype(str) == c)[0])])
                  for c in creators[:6] if (notes["author_id"].astype(str) == c).any()}
    c = list(first_note)
    events = pd.DataFrame({"user_id": [users[0], users[0], users[1]], "note_id": [first_note[c[1]], first_note[c[2]],
                           first_note[c[3]]], "ts": [TS + 10, TS + 10, TS + 5], "type": ["follow"] * 3})
    social = pd.DataFrame({
        "user_id": [users[0], users[0], users[0], users[0], users[1], users[1]],
        "target_id": [c[0], c[1], c[2], c[4], c[3], c[5]],
        "kind": ["follow", "unfollow", "unfollow", "block", "unfollow", "follow"],
        "at": [np.nan, TS + 5, TS + 10, TS, TS + 1, TS + 2],
    })
    ds = Dataset.build("t", events, notes=notes, users=small_ds.users, creators=small_ds.creators, social=social)
    assert _follows(ds, users[0]) == {c[0], c[1]}  # c1: the event (TS+10) is newer; c2: a tie, the unfollow wins
    assert _follows(ds, users[1]) == {c[3], c[5]}  # c3: the event (TS+5) is newer than the unfollow (TS+1)


def test_a_store_written_before_the_relation_table_still_loads(small_ds, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    con = duckdb.connect(str(ws / DB_NAME))
    con.execute("DROP TABLE relations")
    con.close()
    with Workspace.open(ws, create=False, read_only=True) as w:  # read-only: no table is created
        assert "relations" not in w.counts()
        assert w.load_dataset().n_items == small_ds.n_items
    with Workspace.open(ws) as w:  # a read-write open adds it
        assert w.counts()["relations"] == 0
