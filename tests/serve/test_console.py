"""The console's routes without a browser: the static shell and assets (no data, no token),
every JSON endpoint (behind the token when reads need it), and its small pure helpers.
The pages themselves are exercised in Chromium by test_console_browser.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from notefeed.serve.app import create_app
from notefeed.serve.console import PAGES, gini, quantile_from_buckets
from notefeed.serve.engine import Engine

from .conftest import AUTH, TOKEN, make_config


def test_helpers() -> None:
    assert gini(np.array([5, 5, 5, 5])) == 0.0
    assert gini(np.array([0, 0, 0, 10])) == 0.75
    # 10 observations in (0, 1], 10 in (1, 2]: the median is at the first bucket's top
    assert quantile_from_buckets([1, 2, 5], [10, 10, 0, 0], 0.5) == 1.0
    assert quantile_from_buckets([1, 2, 5], [0, 0, 0, 3], 0.99) == 5.0
    assert quantile_from_buckets([1, 2], [0, 0, 0], 0.5) is None


def test_console_routes_and_token(small_ds, tmp_path: Path) -> None:
    eng = Engine(small_ds, make_config(api={"require_token_for_reads": True}), tmp_path / "ws")
    user = str(small_ds.users["user_id"].iat[0])
    note = str(small_ds.notes["note_id"].iat[0])
    try:
        with TestClient(create_app(eng)) as c:
            for page in ("", *[f"/{p}" for p in PAGES]):  # the shell: static, no data
                r = c.get(f"/console{page}")
                assert r.status_code == 200 and "console.js" in r.text
            assert c.get("/console/nope").status_code == 404
            for asset, kind in (("chart.js", "javascript"), ("console.js", "javascript"), ("console.css", "css")):
                r = c.get(f"/console/static/{asset}")
                assert r.status_code == 200 and kind in r.headers["content-type"]
            assert c.get("/console/static/..%2Fapp.py").status_code == 404
            assert "https://" not in c.get("/console").text  # no CDN
            c.get("/v1/feed", params={"user_id": user}, headers=AUTH)
            paths = ["/v1/admin/console/overview", "/v1/admin/console/users", f"/v1/admin/console/feed?user_id={user}",
                     "/v1/admin/console/notes", f"/v1/admin/console/note?note_id={note}", "/v1/admin/console/creators",
                     "/v1/admin/console/models", "/v1/admin/experiments"]
            for p in paths:
                assert c.get(p).status_code == 401, p
                assert c.get(p, headers=AUTH).status_code == 200, p
            ov = c.get("/v1/admin/console/overview", headers=AUTH).json()
            assert ov["counts"]["notes"] == small_ds.n_items
            assert ov["search"]["fusion"] is None or ov["search"]["fusion"]["configured"] == "auto"  # the search panel
            assert any(s["stage"] == "context" and s["p50_ms"] is not None for s in ov["latency"]["stages"])
            fd = c.get(f"/v1/admin/console/feed?user_id={user}&n=5", headers=AUTH).json()
            assert len(fd["items"]) == 5 and all(it["channels"] and it["why"] for it in fd["items"])
            assert c.get("/v1/admin/console/note?note_id=nope", headers=AUTH).status_code == 404
            assert c.get("/v1/admin/experiments", headers=AUTH).json() == {"active": False}
            v = c.post("/v1/admin/console/config/validate", headers=AUTH, json={"yaml": "coarse: {keep: -1}"}).json()
            assert not v["ok"] and "coarse.keep" in v["error"]
            assert c.post("/v1/admin/console/config/validate", headers=AUTH, json={"yaml": "page: {}"}).json()["ok"]
    finally:
        eng.close()


def test_config_editor_validates_and_applies_live(small_ds, tmp_path: Path) -> None:
    """The editor's text is the running config without its token; validating lists the
    changed fields (live or restart); POST /v1/admin/config dry-runs and applies hot keys and
    names the field of a cold change (409) or a bad one (422)."""
    import yaml

    eng = Engine(small_ds, make_config(), tmp_path / "ws")
    try:
        with TestClient(create_app(eng)) as c:
            d = c.get("/v1/admin/console/models").json()
            assert TOKEN not in c.get("/v1/admin/console/models").text  # reads need no token here: no secret
            assert "token" not in d["config"]["api"] and d["token_set"]
            text = d["config_yaml"]
            same = c.post("/v1/admin/console/config/validate", json={"yaml": text}).json()
            assert same["ok"] and same["changes"] == []
            assert c.post("/v1/admin/config", headers=AUTH, json={"yaml": text, "dry_run": True}).json()["changed"] == []

            doc = yaml.safe_load(text)
            doc["fusion"]["weights"]["click"] = 2.5
            doc["coarse"]["keep"] = 150
            hot = yaml.safe_dump(doc)
            v = c.post("/v1/admin/console/config/validate", json={"yaml": hot}).json()
            assert {(x["field"], x["old"], x["new"], x["hot"]) for x in v["changes"]} == {
                ("fusion.weights.click", 1.0, 2.5, True), ("coarse.keep", eng.config.coarse.keep, 150, True)}
            assert c.post("/v1/admin/config", json={"yaml": hot, "dry_run": True}).status_code == 401
            r = c.post("/v1/admin/config", headers=AUTH, json={"yaml": hot, "dry_run": True})
            assert r.status_code == 200 and r.json()["status"] == "valid" and r.json()["changed"] == ["coarse", "fusion"]
            assert eng.config.fusion.weights["click"] == 1.0  # a dry run changes nothing
            r = c.post("/v1/admin/config", headers=AUTH, json={"yaml": hot})
            assert r.status_code == 200 and r.json()["status"] == "applied"
            assert eng.config.fusion.weights["click"] == 2.5 and eng.config.coarse.keep == 150
            assert eng.config.api.token == TOKEN  # the document had none: the running one stays
            after = c.get("/v1/admin/console/models").json()
            assert after["config"]["fusion"]["weights"]["click"] == 2.5
            assert c.post("/v1/admin/console/config/validate", json={"yaml": after["config_yaml"]}).json()["changes"] == []
            assert c.get("/v1/feed", params={"user_id": str(small_ds.users["user_id"].iat[0])}).status_code == 200

            doc["page"]["max_size"] = 50  # cold: listed as needing a restart, refused live
            cold = yaml.safe_dump(doc)
            v = c.post("/v1/admin/console/config/validate", json={"yaml": cold}).json()
            assert [(x["field"], x["hot"]) for x in v["changes"]] == [("page.max_size", False)]
            r = c.post("/v1/admin/config", headers=AUTH, json={"yaml": cold})
            assert r.status_code == 409 and "page.max_size" in r.json()["detail"]
            assert eng.config.page.max_size == 100

            doc["page"]["max_size"] = 100
            doc["rerank"] = {"name": "rerank/nothing"}  # parses, but no such component: as an apply, 422
            v = c.post("/v1/admin/console/config/validate", json={"yaml": yaml.safe_dump(doc)}).json()
            assert not v["ok"] and "unknown re-ranker 'rerank/nothing'" in v["error"] and v["changes"], v
            doc["rerank"] = dict(eng.config.rerank.model_dump(mode="json"))
            doc["rerank"]["windw"] = 3
            bad = yaml.safe_dump(doc)
            assert "rerank.windw" in c.post("/v1/admin/console/config/validate", json={"yaml": bad}).json()["error"]
            r = c.post("/v1/admin/config", headers=AUTH, json={"yaml": bad})
            assert r.status_code == 422 and "rerank.windw" in r.json()["detail"]
    finally:
        eng.close()


def test_running_config_hides_the_redis_password(engine: Engine) -> None:
    from notefeed.serve.console.routes import running_config

    engine.config = engine.config.with_overrides(online={"redis_url": "redis://nf:s3cret-pw@db:6379/0"})
    cfg = running_config(engine)
    assert cfg["online"]["redis_url"] == "redis://nf:***@db:6379/0" and "token" not in cfg["api"]


def test_console_promote_and_rollback_use_the_model_store(small_ds, tmp_path: Path) -> None:
    """"Serve" swaps a version in and promotes it in the store (what a restart serves);
    "Roll back" swaps back and rolls the store back; a version the server refuses is not
    promoted."""
    from notefeed.models.store import ModelStore
    from notefeed.serve.versions import engine_from_store

    ws = tmp_path / "ws"
    store = ModelStore(ws)
    v1 = store.save({}, {"metrics": {"note": {"hr@10": 0.1}}})
    store.promote(v1)
    v2 = store.save({}, {"metrics": {"note": {"hr@10": 0.12}}})
    v3 = store.save({}, {"data": {"n_items": small_ds.n_items + 1}})  # trained on another workspace
    eng = engine_from_store(small_ds, make_config(), ws)
    assert eng.model_version == v1
    try:
        with TestClient(create_app(eng)) as c:
            promote = "/v1/admin/console/models/promote"
            assert c.post(promote, json={"version": v2}).status_code == 401
            assert c.post(promote, json={"version": v2}, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
            assert c.post(promote, json={}, headers=AUTH).status_code == 422
            r = c.post(promote, json={"version": "20200101T000000000Z-000000"}, headers=AUTH)
            assert r.status_code == 404 and "not found" in r.json()["detail"]
            r = c.post(promote, json={"version": "../v1"}, headers=AUTH)  # as the reload endpoint answers it
            assert r.status_code == 422 and "not a version name" in r.json()["detail"]
            r = c.post(promote, json={"version": v3}, headers=AUTH)
            assert r.status_code == 422 and "version" in r.json()["detail"] and "trained on" in r.json()["detail"]
            assert store.promoted() == v1 and eng.model_version == v1  # refused: nothing changed

            r = c.post(promote, json={"version": v2}, headers=AUTH)
            assert r.status_code == 200, r.text
            assert r.json()["version"] == v2 and r.json()["previous_promoted"] == v1
            assert eng.model_version == v2 and store.promoted() == v2  # served now, and after a restart
            m = c.get("/v1/admin/console/models").json()
            assert m["served"] == v2 and m["rollback_to"] == v1
            assert [v["version"] for v in m["versions"] if v["promoted"]] == [v2]

            rb = "/v1/admin/console/models/rollback"
            assert c.post(rb).status_code == 401
            r = c.post(rb, headers=AUTH)
            assert r.status_code == 200 and r.json()["version"] == v1
            assert eng.model_version == v1 and store.promoted() == v1
            r = c.post(rb, headers=AUTH)
            assert r.status_code == 409 and "nothing to roll back" in r.json()["detail"]
            assert eng.model_version == v1 and store.promoted() == v1
    finally:
        eng.close()
