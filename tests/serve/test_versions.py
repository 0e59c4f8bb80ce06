"""Serving model store versions: start-up from the promoted one, the fallback says so,
reload by version swaps everything at once, and versions that do not fit are refused."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from notefeed.data.dataset import Dataset
from notefeed.models import ModelStore, data_snapshot
from notefeed.models.store import ids_fingerprint
from notefeed.rank.base import SCORERS
from notefeed.recall import CHANNELS
from notefeed.serve.app import create_app
from notefeed.serve.models import LinearModel, ModelError
from notefeed.serve.versions import NO_VERSION, check_fitted, engine_from_store

from .conftest import AUTH, make_config


class TaskFine:
    """A persistable fine scorer whose task names are data (for the fusion-weights check)."""

    name = "test/task-fine"

    def __init__(self, tasks: tuple[str, ...] = ("click",)) -> None:
        self.tasks = tuple(tasks)

    def score(self, ctx, items: np.ndarray) -> dict[str, np.ndarray]:
        return {t: (np.asarray(items) % 5 / 5.0).astype(np.float32) for t in self.tasks}

    def to_state(self):
        return {"tasks": list(self.tasks)}, {}

    @classmethod
    def from_state(cls, params, arrays):
        return cls(tuple(params["tasks"]))


if TaskFine.name not in SCORERS:
    SCORERS.register(TaskFine.name)(TaskFine)

CHANNELS_CFG = {"channels": [{"name": "fresh/recent", "quota": 50}, {"name": "item-to-item/swing", "quota": 200},
                             {"name": "user-to-user/default", "quota": 100}, {"name": "tag/interest", "quota": 100},
                             {"name": "non-personalized/popular", "quota": 200}]}


def _cfg(**sections: dict):
    return make_config(recall=CHANNELS_CFG, **sections)


@pytest.fixture(scope="module")
def trained(small_ds: Dataset) -> dict:
    """Every registered channel of the default config, fitted, by config place."""
    cfg = _cfg()
    return {f"recall.channels.{i}": CHANNELS.create(ch.name, **ch.params).fit(small_ds)
            for i, ch in enumerate(cfg.recall.channels) if ch.name in CHANNELS
            and ch.name not in ("fresh/recent", "non-personalized/popular")}


def _save(ws: Path, components: dict, ds: Dataset, promote: bool = True, **extra) -> str:
    store = ModelStore(ws)
    v = store.save(components, {"config": _cfg().model_dump(mode="json"), "data": data_snapshot(ds), **extra})
    if promote:
        store.promote(v)
    return v


def test_start_up_serves_the_promoted_version_without_training(small_ds, trained, tmp_path, monkeypatch):
    assert len(trained) == 3
    ws = tmp_path / "ws"
    v = _save(ws, trained, small_ds)
    for comp in trained.values():  # nothing may be fitted at start-up
        monkeypatch.setattr(type(comp), "fit", lambda self, ds: pytest.fail(f"{self.name} fitted at start-up"))
    eng = engine_from_store(small_ds, _cfg(), ws)
    try:
        assert eng.model_version == v and eng.served.fallback == ()
        srcs = {s.name: s.component for s in eng.pipelines["default"].sources}
        loaded = srcs["item-to-item/swing"]
        assert loaded is not trained["recall.channels.1"]
        assert (loaded.sim != trained["recall.channels.1"].sim).nnz == 0
        with TestClient(create_app(eng)) as c:
            h = c.get("/healthz").json()
            assert h["status"] == "ok" and h["model_version"] == v and h["fallback"] is False
            assert h["fallback_reasons"] == [] and h["reload_error"] is None
            body = c.get("/v1/feed", params={"user_id": "u1", "n": 10}).json()
            assert body["model_version"] == v and body["fallback"] is False and len(body["items"]) == 10
    finally:
        eng.close()


def test_no_version_is_the_fallback_and_says_so(small_ds, tmp_path):
    eng = engine_from_store(small_ds, _cfg(), tmp_path / "ws")
    try:
        with TestClient(create_app(eng)) as c:
            h = c.get("/healthz").json()
            assert h["status"] == "degraded" and h["fallback"] is True and NO_VERSION in h["fallback_reasons"]
            body = c.get("/v1/feed", params={"user_id": "u1", "n": 5}).json()
            assert body["fallback"] is True and body["model_version"] == "builtin-default"
    finally:
        eng.close()


def test_a_version_that_does_not_fit_is_not_served(small_ds, trained, tmp_path):
    ws = tmp_path / "ws"
    v = _save(ws, trained, small_ds)
    # the config names another channel at a stored place
    cfg = make_config(recall={"channels": [{"name": "fresh/recent", "quota": 50},
                                           {"name": "item-to-item/itemcf", "quota": 200}]})
    eng = engine_from_store(small_ds, cfg, ws)
    try:
        assert eng.model_version is None and eng.served.fallback
        assert "recall.channels.1 was trained as 'item-to-item/swing'" in eng.served.fallback[0]
    finally:
        eng.close()
    # a damaged promoted version: the fallback, naming the file
    (ws / "models" / v / "manifest.json").write_text("{")
    eng = engine_from_store(small_ds, _cfg(), ws)
    try:
        assert eng.model_version is None and "manifest.json" in eng.served.fallback[0]
    finally:
        eng.close()
    # trained on another catalogue
    manifest = {"data": {**data_snapshot(small_ds), "items_sha": "0" * 16}}
    with pytest.raises(ModelError, match="items differ"):
        check_fitted(_cfg(), small_ds, {}, manifest, "v")
    with pytest.raises(ModelError, match="trained on 99999 items"):
        check_fitted(_cfg(), small_ds, {}, {"data": {"n_items": 99999}}, "v")


def test_a_version_of_the_servers_notes_and_more_users_fits(small_ds, tmp_path):
    """Trained after a sync: more notes than the dataset the server loaded, the first of them
    its catalogue's (published since it started), and users that start with the loaded ones."""
    items = small_ds.notes["note_id"].astype(str).tolist()
    users = small_ds.users["user_id"].astype(str).tolist()
    catalog, more_users = [*items, "p1", "p2", "p3"], [*users, "new1", "new2"]
    data = {"n_items": len(items) + 2, "items_sha": ids_fingerprint(catalog, len(items) + 2),
            "n_users": len(more_users), "users_sha": ids_fingerprint(more_users, len(more_users))}
    ok = {"catalog": catalog, "user_ids": lambda: more_users}
    check_fitted(_cfg(), small_ds, {}, {"data": data}, "v", **ok)
    refusals = [
        {**ok, "catalog": None},  # a caller that knows no catalogue
        {**ok, "catalog": catalog[: len(items) + 1]},  # published fewer than it was trained on
        {**ok, "catalog": [*items, "p2", "p1", "p3"]},  # in another order (another worker published first)
        {**ok, "user_ids": None},
        {**ok, "user_ids": lambda: None},  # a version saved without its user ids
        {**ok, "user_ids": lambda: [*reversed(users), "new1", "new2"]},  # not the server's users first
        {**ok, "user_ids": lambda: [*users, "new1", "other"]},  # not the ids its fingerprint names
    ]
    for kwargs in refusals:
        with pytest.raises(ModelError, match="restart `notefeed serve` to load it"):
            check_fitted(_cfg(), small_ds, {}, {"data": data}, "v", **kwargs)


def test_reload_by_version_swaps_everything(small_ds, trained, tmp_path):
    ws = tmp_path / "ws"
    eng = engine_from_store(small_ds, _cfg(), ws)
    try:
        old = eng.served
        v = _save(ws, trained, small_ds, promote=False)
        with TestClient(create_app(eng)) as c:
            r = c.post("/v1/admin/models/reload", json={"version": v, "wait": True}, headers=AUTH)
            assert r.status_code == 200 and r.json() == {"status": "swapped", "version": v}
            h = c.get("/healthz").json()
            assert h["status"] == "ok" and h["model_version"] == v and h["reload"]["state"] == "swapped"
            assert c.get("/v1/feed", params={"user_id": "u2", "n": 5}).json()["model_version"] == v
            # a request that started on the old version finishes on it
            res = old.pipelines["default"].run(eng.context("u2", old), 5)
            assert not res.errors and len(res.items) == 5
            # a version that is not in the store is refused at once, waiting or not
            for wait in (True, False):
                r = c.post("/v1/admin/models/reload", json={"version": "20000101T000000000Z-abcdef", "wait": wait},
                           headers=AUTH)
                assert r.status_code == 404 and "not found" in r.json()["detail"], r.text
                r = c.post("/v1/admin/models/reload", json={"version": "../../etc", "wait": wait}, headers=AUTH)
                assert r.status_code == 422 and "not a version name" in r.json()["detail"], r.text
            assert c.get("/healthz").json()["reload"]["state"] == "swapped"
            # a stored one whose arrays cannot be read fails in the background, visibly
            weights = sorted((ws / "models" / v).rglob("*.safetensors"))[0]
            weights.write_bytes(weights.read_bytes()[:20])
            r = c.post("/v1/admin/models/reload", json={"version": v}, headers=AUTH)
            assert r.status_code == 202
            eng.reloader._pool.submit(lambda: None).result()  # wait for the background load
            h = c.get("/healthz").json()
            assert h["model_version"] == v and h["reload"]["state"] == "failed" and h["reload_error"]
            # an unreadable manifest is refused at once
            (ws / "models" / v / "manifest.json").write_text("{")
            r = c.post("/v1/admin/models/reload", json={"version": v}, headers=AUTH)
            assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
            r = c.post("/v1/admin/models/reload", json={"version": v, "path": "/x"}, headers=AUTH)
            assert r.status_code == 422 and "exactly one" in r.text
            r = c.post("/v1/admin/models/reload", json={}, headers=AUTH)
            assert r.status_code == 422
    finally:
        eng.close()


def test_fine_tasks_must_meet_the_fusion_weights(small_ds, trained, tmp_path):
    ws = tmp_path / "ws"
    cfg = _cfg(fine={"scorer": TaskFine.name})
    store = ModelStore(ws)
    good = store.save({**trained, "fine": TaskFine(("click", "like"))}, {"data": data_snapshot(small_ds)})
    bad = store.save({**trained, "fine": TaskFine(("purchase",))}, {"data": data_snapshot(small_ds)})
    store.promote(good)
    eng = engine_from_store(small_ds, cfg, ws)
    try:
        assert eng.model_version == good and not eng.served.fallback
        _, res = eng.feed("u3", 10)
        assert "fine.click" in res.candidates.columns and not res.errors
        with pytest.raises(ModelError, match=r"tasks \['purchase'\] match none of the fusion weights"):
            eng.reloader.reload(bad).result()
        assert eng.model_version == good and "purchase" in eng.reloader.last_error
        # the same check for a fine model directory
        d = LinearModel(("purchase",), np.zeros((1, 8), np.float32)).save(tmp_path / "lin", "lin-1")
        with TestClient(create_app(eng)) as c:
            r = c.post("/v1/admin/models/reload", json={"path": str(d), "wait": True}, headers=AUTH)
            assert r.status_code == 422 and "fusion weights" in r.json()["detail"]
            assert "fusion weights" in c.get("/healthz").json()["reload_error"]
    finally:
        eng.close()


def test_a_reload_refreezes_the_heap_of_a_serving_process(small_ds, trained, tmp_path, monkeypatch):
    """A serving process freezes its built heap (the cyclic collector skips it); after a swap
    the new version is frozen too and the old one is no longer held frozen."""
    import gc

    import notefeed.serve.engine as engine_mod

    monkeypatch.setattr(engine_mod, "serving_process", lambda: True)
    ws = tmp_path / "ws"
    eng = engine_from_store(small_ds, _cfg(), ws)
    try:
        assert eng.heap_frozen_ms is not None
        v = _save(ws, trained, small_ds, promote=False)
        eng.reloader.reload(v).result()
        new = eng.served.pipelines["default"]
        tracked = {id(o) for o in gc.get_objects()}  # the collector's generations: not the frozen heap
        assert gc.is_tracked(new) and id(new) not in tracked
    finally:
        eng.close()
        gc.unfreeze()


def _wait_for(cond, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_a_newly_promoted_version_is_served_without_a_restart(small_ds, trained, tmp_path):
    """`notefeed train` in another process promotes; the server follows the pointer: a new
    promotion and a rollback are served, a version loaded by hand stays until the next
    promotion, and a promoted version it cannot serve is tried once."""
    ws = tmp_path / "ws"
    a = _save(ws, trained, small_ds)
    eng = engine_from_store(small_ds, _cfg(online={"follow_promoted_s": 0.05}), ws)
    store = ModelStore(ws)
    try:
        assert eng.model_version == a
        b = _save(ws, trained, small_ds)  # promoted
        assert _wait_for(lambda: eng.model_version == b)
        assert store.rollback() == a
        assert _wait_for(lambda: eng.model_version == a)
        c = _save(ws, trained, small_ds, promote=False)
        eng.reloader.reload(c).result(timeout=60)  # by hand: the pointer did not move, so c stays
        time.sleep(0.5)
        assert eng.model_version == c
        calls = []
        real = eng.reloader.reload
        eng.reloader.reload = lambda v: calls.append(v) or real(v)  # type: ignore[method-assign]
        d = _save(ws, trained, small_ds, data={"n_items": 10**6})  # promoted, but of another catalogue
        assert _wait_for(lambda: eng.reloader.state == "failed")
        time.sleep(0.5)
        assert calls == [d] and eng.model_version == c  # tried once, the served version kept
    finally:
        eng.close()
    off = engine_from_store(small_ds, _cfg(online={"follow_promoted_s": 0}), tmp_path / "ws2")
    try:
        assert getattr(off.reloader, "_watch", None) is None
    finally:
        off.close()


def test_a_reload_lets_the_replaced_components_go(small_ds, tmp_path):
    """The learned-vector cache (re-ranking, related notes) held every component a reload
    replaced: its values referred to their keys. 5 MB a reload at 20k notes with ALS, for good
    (a server following `notefeed train --every` reloads all day)."""
    import gc
    import weakref

    cfg = make_config(recall={"channels": [{"name": "fresh/recent", "quota": 20},
                                           {"name": "embedding/als", "quota": 100}]})
    als = CHANNELS.create("embedding/als").fit(small_ds)
    ws = tmp_path / "ws"
    store = ModelStore(ws)
    v1, v2 = (store.save({"recall.channels.1": als}, {"config": cfg.model_dump(mode="json"),
                                                      "data": data_snapshot(small_ds)}) for _ in range(2))
    store.promote(v1)
    eng = engine_from_store(small_ds, cfg, ws)
    try:
        first = next(s.component for s in eng.pipelines["default"].sources if s.name == "embedding/als")
        gone = weakref.ref(first)
        assert len(eng.feed("u1", 5)[1].items) == 5 and eng.related(eng.catalog.note_ids[0], 5)
        del first
        eng.reloader.reload(v2).result(timeout=60)
        gc.collect()
        assert eng.model_version == v2 and gone() is None
        assert len(eng.feed("u1", 5)[1].items) == 5 and eng.related(eng.catalog.note_ids[0], 5)
    finally:
        eng.close()
