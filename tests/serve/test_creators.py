"""A creator's follower count between publishes (``PUT /v1/creators/{id}``): the small-creator
rule reads it from the next request, counts sent with a publish and on their own keep one
order (the newest decides, after a restart too), and ``notefeed train``'s sync copies them into
the store. Before, a count could only come with a publish."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from notefeed.data.dataset import Dataset
from notefeed.data.store import Workspace
from notefeed.models.sync import sync_workspace
from notefeed.schema import Note
from notefeed.serve.app import create_app
from notefeed.serve.engine import Engine

from .conftest import AUTH, make_config


def test_follower_counts_between_publishes(small_ds: Dataset, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(small_ds)
    small = small_ds.creators["creator_id"].iat[int(small_ds.creator_followers.argmin())]
    items = [i for i in range(small_ds.n_items) if small_ds.notes["author_id"].iat[i] == small]
    assert small_ds.creator_followers.min() < 1000 and items
    eng = Engine(small_ds, make_config(), ws)
    try:
        with TestClient(create_app(eng)) as c:
            assert c.get(f"/v1/creators/{small}").json()["small_creator"] is True
            assert eng.catalog.small_creator(items).all()
            assert c.put(f"/v1/creators/{small}", json={"followers": 5000}).status_code == 401
            r = c.put(f"/v1/creators/{small}", json={"followers": 5000}, headers=AUTH)
            assert r.status_code == 200 and r.json() == {"creator_id": small, "followers": 5000, "small_creator": False}
            assert not eng.catalog.small_creator(items).any()  # the next page's rule sees it
            for body, field in [({"followers": -1}, "followers"), ({"followers": True}, "followers"),
                                ({"followers": 1.5}, "followers"), ({}, "followers"),
                                ({"followers": 3, "x": 1}, "x")]:
                bad = c.put(f"/v1/creators/{small}", json=body, headers=AUTH)
                assert bad.status_code == 422 and field in bad.text, (body, bad.text)
            assert c.put("/v1/creators/a%01b", json={"followers": 3}, headers=AUTH).status_code == 422
            assert c.get("/v1/creators/nobody").status_code == 404
            # a creator with no notes yet, then their first notes: without a count, then with one
            assert c.put("/v1/creators/newbie", json={"followers": 20_000}, headers=AUTH).json()["small_creator"] is False
            i = eng.publish(Note(note_id="nb1", author_id="newbie"))
            assert not eng.catalog.small_creator([i]).any()  # the count sent before stands
            eng.publish(Note(note_id="nb2", author_id="newbie"), followers=30)
            assert c.get("/v1/creators/newbie").json()["followers"] == 30  # the newest decides
            assert c.get(f"/v1/creators/{small}").json()["followers"] == 5000  # the bad calls changed nothing
    finally:
        eng.close()
    eng = Engine(small_ds, make_config(), ws)  # a restart replays the counts in their order
    try:
        assert eng.catalog.followers_of("newbie") == 30 and eng.catalog.followers_of(small) == 5000
    finally:
        eng.close()
    sync_workspace(ws)  # `notefeed train` copies them into the store
    with Workspace.open(ws, create=False, read_only=True) as w:
        cr = w.load_dataset().creators.set_index("creator_id")["followers"]
        assert w.mark("note_log.followers") == 3  # the three counts' rows, copied once
    assert cr["newbie"] == 30 and cr[small] == 5000
