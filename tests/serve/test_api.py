"""Every endpoint through FastAPI's TestClient: happy paths, auth, limits, bad input."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from notefeed.serve.engine import Engine

from .conftest import AUTH


def _ev(user: str, note: str, type_: str = "click") -> dict:
    return {"user_id": user, "note_id": note, "ts": 1_700_000_000, "type": type_}


def test_healthz_and_docs(client: TestClient) -> None:
    h = client.get("/healthz").json()
    # no trained model version in this workspace: the built-in fallback, and it says so
    assert h["status"] == "degraded" and h["fallback"] is True and h["notes"] == 2000
    assert "selector:builtin/author-cap" in h["pipelines"]["default"]
    assert set(h["search"]) == {"ready", "error", "fusion"} and h["search"]["error"] is None
    assert client.get("/docs").status_code == 200
    assert "/v1/feed" in client.get("/openapi.json").json()["paths"]


def test_feed_known_user_with_explain(client: TestClient) -> None:
    r = client.get("/v1/feed", params={"user_id": "u1", "n": 7, "explain": "true"})
    assert r.status_code == 200
    body = r.json()
    assert len(body["items"]) == 7 and body["cold_start"] is False
    ids = [x["note_id"] for x in body["items"]]
    assert len(set(ids)) == 7
    tr = body["trace"]
    assert [x["note_id"] for x in tr["items"]] == ids
    first = tr["items"][0]
    assert first["channels"] and "coarse_score" in first and "fused_score" in first
    assert set(first["fine_scores"]) == {"click", "like", "collect", "comment", "share", "dwell"}
    kinds = [s["kind"] for s in tr["stages"]]
    assert kinds[:2] == ["context", "source"] and "filter" in kinds and kinds[-1] == "selector"
    assert "total;dur=" in r.headers["server-timing"]
    # author cap: one note per creator on the page
    authors = [x["author_id"] for x in body["items"]]
    assert len(set(authors)) == len(authors)


def test_feed_excludes_history(client: TestClient, engine: Engine) -> None:
    u = engine.ds.user_index["u5"]
    ip, it = engine._seen
    seen = {engine.catalog.note_ids[i] for i in it[ip[u]: ip[u + 1]]}
    assert seen
    got = {x["note_id"] for x in client.get("/v1/feed", params={"user_id": "u5", "n": 100}).json()["items"]}
    assert got and not (got & seen)


def test_unknown_user_gets_cold_start_feed(client: TestClient) -> None:
    body = client.get("/v1/feed", params={"user_id": "never-seen"}).json()
    assert body["cold_start"] is True and len(body["items"]) == 20
    assert client.get("/v1/users/never-seen").status_code == 404


def test_feed_param_validation(client: TestClient) -> None:
    r = client.get("/v1/feed", params={"user_id": "u1", "n": 1000})
    assert r.status_code == 422 and "n" in r.json()["message"]
    r = client.get("/v1/feed", params={"n": 5})
    assert r.status_code == 422 and "user_id" in r.json()["message"]
    r = client.get("/v1/feed", params={"user_id": "u1", "pipeline": "nope"})
    assert r.status_code == 422 and "pipeline" in r.json()["message"]


def test_popular_pipeline(client: TestClient) -> None:
    r = client.get("/v1/feed", params={"user_id": "u1", "pipeline": "popular", "explain": True})
    assert r.status_code == 200
    assert {s["name"] for s in r.json()["trace"]["stages"]} >= {"non-personalized/popular", "builtin/seen"}


def test_click_changes_next_feed_and_user_state(client: TestClient) -> None:
    top = client.get("/v1/feed", params={"user_id": "u7", "n": 10}).json()["items"][0]["note_id"]
    r = client.post("/v1/events", json={"events": [_ev("u7", top)]}, headers=AUTH)
    assert r.json() == {"accepted": 1, "rejected": []}
    nxt = [x["note_id"] for x in client.get("/v1/feed", params={"user_id": "u7", "n": 10}).json()["items"]]
    assert top not in nxt
    u = client.get("/v1/users/u7").json()
    assert u["short_seq"][-1] == top and u["n_events"] == 1
    assert sum(u["counts"]["5m"].values()) == 1


def test_batch_with_unknown_note_rejects_by_index(client: TestClient, engine: Engine) -> None:
    batch = [_ev("u1", "n1"), _ev("u1", "no-such-note"), _ev("u2", "n2", "like"), _ev("u3", "nope2")]
    r = client.post("/v1/events", json={"events": batch}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2
    assert [(x["index"], x["note_id"]) for x in body["rejected"]] == [(1, "no-such-note"), (3, "nope2")]
    stored = list(engine.bus.replay())
    assert [(e.user_id, e.note_id) for e in stored] == [("u1", "n1"), ("u2", "n2")]
    assert "notefeed_events_rejected_total 2" in client.get("/metrics").text


def test_auth(client: TestClient, engine: Engine) -> None:
    body = {"events": [_ev("u1", "n1")]}
    assert client.post("/v1/events", json=body).status_code == 401
    r = client.post("/v1/events", json=body, headers={"Authorization": "Bearer wrong-token"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/notes", json={"note_id": "x1", "author_id": "a"}).status_code == 401
    assert client.post("/v1/admin/models/reload", json={"path": "/tmp"}).status_code == 401
    assert engine.bus.count() == 0 and engine.catalog.item_of("x1") is None


def test_limits_and_malformed_input_store_nothing(client: TestClient, engine: Engine) -> None:
    h = {**AUTH, "content-type": "application/json"}
    too_many = {"events": [_ev("u1", "n1")] * 51}
    r = client.post("/v1/events", json=too_many, headers=AUTH)
    assert r.status_code == 413 and "max_batch" in r.json()["detail"]
    big = json.dumps({"events": [_ev("u1", "n1", "click") | {"request_id": "x" * 100}] * 200})
    assert client.post("/v1/events", content=big, headers=h).status_code == 413

    def chunks():  # no Content-Length: the streamed body is counted
        for _ in range(30):
            yield b" " * 1000

    assert client.post("/v1/events", content=chunks(), headers=h).status_code == 413
    r = client.post("/v1/events", content=b'{"events": [', headers=h)
    assert r.status_code == 422 and r.json()["message"].startswith("body: invalid JSON at char")
    r = client.post("/v1/events", json=[1, 2], headers=AUTH)  # not an object: the message names the body
    assert r.status_code == 422 and r.json()["message"].startswith("body: "), r.text
    r = client.post("/v1/events", json={"events": [_ev("u1", "n1"), {"user_id": "u1", "note_id": "n1",
                                                                      "ts": -5, "type": "click"}]}, headers=AUTH)
    assert r.status_code == 422 and "events.1.ts" in r.json()["message"]
    r = client.post("/v1/events", json={"events": [_ev("u1", "n1", "purchase")]}, headers=AUTH)
    assert r.status_code == 422 and "events.0.type" in r.json()["message"]
    r = client.post("/v1/notes", json={"note_id": "", "author_id": "a"}, headers=AUTH)
    assert r.status_code == 422 and "note_id" in r.json()["message"]
    assert engine.bus.count() == 0
    assert engine.catalog.n_items == 2000 and not engine.note_log.replay()
    # and the server still works afterwards
    assert client.post("/v1/events", json={"events": [_ev("u1", "n1")]}, headers=AUTH).json()["accepted"] == 1


def test_publish_is_immediately_recallable(client: TestClient, engine: Engine) -> None:
    note = {"note_id": "fresh-1", "author_id": "brand-new-creator", "title": "hello", "category": "cat3"}
    r = client.post("/v1/notes", json=note, headers=AUTH)
    assert r.status_code == 201 and r.json()["item"] == 2000
    assert client.post("/v1/notes", json=note, headers=AUTH).status_code == 409
    tr = client.get("/v1/feed", params={"user_id": "u9", "n": 100, "explain": True}).json()["trace"]
    src = next(s for s in tr["stages"] if s["name"] == "fresh/recent")
    assert src["n_out"] == 50
    merged_ids = {x["note_id"] for x in tr["items"]}
    # recalled by the fresh pool; whether it reaches the page is the rankers' call, so check recall
    ctx = engine.context("u9")
    assert 2000 in engine.pipelines["default"].sources[0].component.recall(ctx, 50).items
    assert isinstance(merged_ids, set)
    # events on the new note are now accepted; related works for it
    r = client.post("/v1/events", json={"events": [_ev("u9", "fresh-1")]}, headers=AUTH)
    assert r.json()["accepted"] == 1
    rel = client.get("/v1/notes/fresh-1/related", params={"n": 5}).json()
    assert len(rel["items"]) == 5 and all(x["note_id"] != "fresh-1" for x in rel["items"])


def test_related_and_unknown_note(client: TestClient) -> None:
    r = client.get("/v1/notes/n10/related", params={"n": 3}).json()
    assert len(r["items"]) == 3
    # category embedding dominates the vector: neighbours share the category
    cat = client.get("/v1/notes/n10/related", params={"n": 1}).json()["items"][0]["category"]
    assert cat == r["items"][0]["category"]
    assert client.get("/v1/notes/nope/related").status_code == 404


def test_metrics_format(client: TestClient) -> None:
    client.get("/v1/feed", params={"user_id": "u1"})
    text = client.get("/metrics").text
    assert "# TYPE notefeed_feed_latency_ms histogram" in text
    assert 'notefeed_requests_total{endpoint="/v1/feed",status="200"} 1' in text
    assert 'notefeed_stage_latency_ms_bucket{pipeline="default",stage="filter:builtin/seen",le="+Inf"} 1' in text
    assert "notefeed_events_accepted_total" in text


def test_read_token_optional(small_ds, tmp_path) -> None:
    from notefeed.serve.app import create_app

    from .conftest import make_config

    eng = Engine(small_ds, make_config(api={"token": "test-token-123", "require_token_for_reads": True}),
                 tmp_path)
    with TestClient(create_app(eng)) as c:
        assert c.get("/v1/feed", params={"user_id": "u1"}).status_code == 401
        assert c.get("/v1/feed", params={"user_id": "u1"}, headers=AUTH).status_code == 200
        assert c.get("/healthz").status_code == 200
    eng.close()


def test_mirror_to_workspace_side_effect(small_ds, tmp_path) -> None:
    from notefeed.data.store import Workspace
    from notefeed.serve.app import create_app

    from .conftest import make_config

    eng = Engine(small_ds, make_config(online={"mirror_to_workspace": True}), tmp_path)
    with TestClient(create_app(eng)) as c:
        c.post("/v1/notes", json={"note_id": "m1", "author_id": "a"}, headers=AUTH)
        r = c.post("/v1/events", json={"events": [_ev("u1", "n1"), _ev("u2", "m1", "like")]}, headers=AUTH)
        assert r.json()["accepted"] == 2
    eng.side_effects.drain()
    eng.close()
    assert eng.side_effects.failed == 0
    with Workspace.open(tmp_path, create=False) as ws:
        ds = ws.load_dataset()
    assert "m1" in ds.item_index and len(ds.events) == 2
