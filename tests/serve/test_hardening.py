"""Issue 12: bad input is a 422 naming the field with nothing stored; event ids make retries
idempotent; unseen tags join the cold-start pool; /docs needs no CDN; SIGTERM saves state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from notefeed.serve.app import create_app
from notefeed.serve.bench import free_port
from notefeed.serve.engine import Engine

from .conftest import AUTH, make_config

TS = 1_700_000_000


def _post(client: TestClient, url: str, raw: str) -> httpx.Response:
    return client.post(url, content=raw, headers={**AUTH, "content-type": "application/json"})


def _event(note: str, extra: str) -> str:
    return f'{{"events": [{{"user_id": "u1", "note_id": "{note}", "type": "click", {extra}}}]}}'


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('"ts": NaN', "events.0.ts"),
        ('"ts": 1e400', "events.0.ts"),
        ('"ts": true', "events.0.ts"),
        ('"ts": "1700000000"', "events.0.ts"),
        ('"ts": 9223372036854775808', "events.0.ts"),
        ('"ts": 1700000000, "dwell_s": NaN', "events.0.dwell_s"),
        ('"ts": 1700000000, "dwell_s": Infinity', "events.0.dwell_s"),
        ('"ts": 1700000000, "position": NaN', "events.0.position"),
        ('"ts": 1700000000, "position": -Infinity', "events.0.position"),
        ('"ts": 1700000000, "request_id": "r\\ud800"', "events.0.request_id"),
    ],
)
def test_bad_event_values_are_422_naming_the_field(client: TestClient, engine: Engine, extra: str,
                                                   field: str) -> None:
    before = engine.bus.count()
    r = _post(client, "/v1/events", _event(engine.catalog.note_ids[0], extra))
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(field)
    assert engine.bus.count() == before


def test_control_characters_in_ids_are_refused_where_they_would_be_stored(client: TestClient,
                                                                           engine: Engine) -> None:
    note = engine.catalog.note_ids[0]
    for uid in ("u\u0000x", "u\u001bx", "u\u007f"):
        raw = json.dumps({"events": [{"user_id": uid, "note_id": note, "type": "click", "ts": TS}]})
        r = _post(client, "/v1/events", raw)
        assert r.status_code == 422 and r.json()["message"].startswith("events.0.user_id: Value error, control"), r.text
    assert engine.bus.count() == 0
    ok = json.dumps({"events": [{"user_id": " u1 ", "note_id": note, "type": "click", "ts": TS}]})
    assert _post(client, "/v1/events", ok).status_code == 200  # outer whitespace is still stripped
    # a search stores impressions under its user id: refused there too; a feed read is not
    r = client.get("/v1/search", params={"q": "x", "user_id": "u\u0000x"})
    assert r.status_code == 422 and r.json()["message"].startswith("query.user_id: control character"), r.text
    assert client.get("/v1/feed", params={"user_id": "u\u0000x", "n": 3}).status_code == 200


def test_a_note_stored_before_the_id_rule_still_starts(small_ds, tmp_path: Path) -> None:
    """Stored records are read back as they were written (the note log's older notes)."""
    from notefeed.schema import STORED, Note

    ws = tmp_path / "ws"
    eng = Engine(small_ds, make_config(), ws)
    eng.note_log.append(Note.model_validate({"note_id": "old\u0000id", "author_id": "a"}, context=STORED), None)
    eng.close()
    eng = Engine(small_ds, make_config(), ws)
    try:
        assert eng.catalog.item_of("old\u0000id") is not None
    finally:
        eng.close()


def test_lone_surrogate_id_and_future_ts(client: TestClient, engine: Engine) -> None:
    raw = '{"events": [{"user_id": "u\\ud800", "note_id": "n0", "type": "click", "ts": 1}]}'
    r = _post(client, "/v1/events", raw)
    assert r.status_code == 422 and r.json()["message"].startswith("events.0.user_id")
    ahead = int(time.time()) + 3 * 86_400
    ok = {"user_id": "u1", "note_id": engine.catalog.note_ids[0], "type": "click", "ts": int(time.time())}
    r = client.post("/v1/events", json={"events": [ok, {**ok, "ts": ahead}]}, headers=AUTH)
    assert r.status_code == 422 and r.json()["message"].startswith("events.1.ts: timestamp")
    assert engine.bus.count() == 0  # the valid first event was not stored either


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"note_id": "x1", "author_id": "a", "media_vector": [0.5, NaN]}', "media_vector.1"),
        ('{"note_id": "x1", "author_id": "a", "media_vector": [Infinity]}', "media_vector.0"),
        ('{"note_id": "x1", "author_id": "a", "created_at": 9223372036854775808}', "created_at"),
        ('{"note_id": "x1", "author_id": "a", "created_at": true}', "created_at"),
        ('{"note_id": "x1", "author_id": "a", "created_at": 4102444800}', "created_at"),  # year 2100
        ('{"note_id": "x1", "author_id": "a", "title": "t\\udfff"}', "title"),
        ('{"note_id": "x\\u0000", "author_id": "a"}', "note_id: Value error, control character U+0000 at position 1"),
        ('{"note_id": "x1", "author_id": "a\\tb"}', "author_id: Value error, control character U+0009"),
    ],
)
def test_bad_notes_are_422_and_nothing_is_stored(client: TestClient, engine: Engine, body: str,
                                                 field: str) -> None:
    n = engine.catalog.n_items
    r = _post(client, "/v1/notes", body)
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(field)
    assert engine.catalog.n_items == n and engine.note_log.replay() == []


def test_unseen_tag_and_category_join_the_pool_and_survive_restart(small_ds, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    eng = Engine(small_ds, make_config(), ws)
    with TestClient(create_app(eng)) as c:
        ev = {"user_id": "u1", "note_id": eng.catalog.note_ids[0], "type": "like", "ts": TS}
        assert c.post("/v1/events", json={"events": [ev]}, headers=AUTH).status_code == 200
        note = {"note_id": "brand-new", "author_id": "a-new", "tags": ["never-seen-tag"], "category": "new-cat"}
        assert c.post("/v1/notes", json=note, headers=AUTH).status_code == 201
        item = eng.catalog.item_of("brand-new")
        assert eng.coldstart is not None and item in eng.coldstart.pool.notes
        assert eng.metrics.render().count('stage="publish:coldstart/bandit"') == 0
    eng.close()
    (ws / "coldstart.json").unlink()  # as after kill -9: the pool is rebuilt from the note log
    eng = Engine(small_ds, make_config(), ws)
    try:
        assert eng.coldstart is not None and eng.catalog.item_of("brand-new") in eng.coldstart.pool.notes
    finally:
        eng.close()


def test_event_id_makes_a_retry_idempotent(small_ds, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    eng = Engine(small_ds, make_config(), ws)
    n0, n1 = eng.catalog.note_ids[:2]
    batch = {"events": [{"user_id": "u1", "note_id": n0, "type": "click", "ts": TS, "event_id": "e-1"},
                        {"user_id": "u1", "note_id": n1, "type": "click", "ts": TS, "event_id": "e-2"},
                        {"user_id": "u1", "note_id": n1, "type": "click", "ts": TS}]}
    with TestClient(create_app(eng)) as c:
        assert c.post("/v1/events", json=batch, headers=AUTH).json() == {"accepted": 3, "rejected": []}
        again = c.post("/v1/events", json=batch, headers=AUTH).json()
        assert again == {"accepted": 1, "rejected": [], "duplicates": [0, 1]}  # no id: stored again
        twice = {"events": [{**batch["events"][0], "event_id": "e-3"}, {**batch["events"][0], "event_id": "e-3"}]}
        assert c.post("/v1/events", json=twice, headers=AUTH).json()["duplicates"] == [1]
    assert eng.bus.count() == 5
    eng.close()
    eng = Engine(small_ds, make_config(), ws)  # the ids come back with the replay
    try:
        _, rej = eng.ingest(_events(batch))
        assert [r.index for r in rej] == [0, 1] and eng.bus.count() == 6
    finally:
        eng.close()


def _events(batch: dict) -> list:
    from notefeed.schema import Event

    return [Event(**e) for e in batch["events"]]


def test_error_handler_never_fails_on_what_it_echoes(client: TestClient) -> None:
    raw = '{"events": [{"user_id": "u\\ud800", "note_id": NaN, "type": "click", "ts": -Infinity}]}'
    r = _post(client, "/v1/events", raw)
    assert r.status_code == 422
    json.loads(r.text)  # strict JSON: no NaN, no lone surrogates


def test_docs_are_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "cdn" not in html.lower() and "https://" not in html and "http://" not in html
    assert "/openapi.json" in html
    for ref in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        if ref in html:  # the interactive page (swagger-ui-bundle-v2 installed): assets served here
            assert client.get(ref).status_code == 200
    assert client.get("/redoc").status_code == 404  # redoc would load from a CDN


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_saves_the_coldstart_state(tmp_path: Path) -> None:
    ws, port = tmp_path / "ws", free_port()
    env = {**os.environ, "NOTEFEED_API_TOKEN": "sigterm-token-1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "notefeed.cli", "serve", "--workspace", str(ws), "--port", str(port),
         "--synthetic-notes", "300"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        else:
            pytest.fail("server did not start")
        assert not (ws / "coldstart.json").exists()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert (ws / "coldstart.json").is_file(), out
    json.loads((ws / "coldstart.json").read_text())
