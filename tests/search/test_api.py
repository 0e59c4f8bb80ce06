"""GET /v1/search and /v1/search/suggest through the FastAPI app on a small engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.search.conftest import AUTH, TWO_USERS, served_search


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with served_search(tmp_path, TWO_USERS, "search-api") as (_, c):
        yield c


def test_search_and_personalisation(client: TestClient) -> None:
    r = client.get("/v1/search", params={"q": "Paris", "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {it["note_id"] for it in body["items"]} == {"n0", "n7"} and body["terms"] == ["paris"]
    t = client.get("/v1/search", params={"q": "paris", "n": 2, "user_id": "traveller"}).json()
    f = client.get("/v1/search", params={"q": "paris", "n": 2, "user_id": "foodie"}).json()
    assert t["items"][0]["note_id"] == "n7" and f["items"][0]["note_id"] == "n0"
    e = client.get("/v1/search", params={"q": "espreso", "explain": "true"}).json()
    assert e["corrections"] == {"espreso": "espresso"} and "trace" in e and "ms" in e["trace"]
    assert client.get("/v1/search", params={"q": "paris", "user_id": "nobody"}).status_code == 200


@pytest.mark.parametrize("params, field", [
    ({"q": ""}, "q"),
    ({"q": "   "}, "q"),
    ({"q": "x" * 10_000}, "q"),
    ({"q": "coffee\x00"}, "q"),
    ({"q": "caf\x07e"}, "q"),
    ({}, "q"),
    ({"q": "coffee", "n": 0}, "n"),
    ({"q": "coffee", "n": 5000}, "n"),
    ({"q": "coffee", "n": "ten"}, "n"),
    ({"q": "coffee", "user_id": ""}, "user_id"),
])
def test_bad_queries_are_422_naming_the_field(client: TestClient, params: dict, field: str) -> None:
    r = client.get("/v1/search", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(f"query.{field}"), r.json()["message"]


@pytest.mark.parametrize("q", ["!!!", "？？", "...---...", "🙂"])
def test_punctuation_only_gives_empty_results(client: TestClient, q: str) -> None:
    r = client.get("/v1/search", params={"q": q})
    assert r.status_code == 200 and r.json()["items"] == []


def test_published_note_searchable_at_once(client: TestClient) -> None:
    assert client.get("/v1/search", params={"q": "quokka"}).json()["items"] == []
    note = {"note_id": "p1", "author_id": "c9", "title": "Quokka selfie", "text": "rottnest quokka",
            "tags": ["quokka"], "category": "travel", "created_at": 1}
    assert client.post("/v1/notes", json=note, headers=AUTH).status_code == 201
    items = client.get("/v1/search", params={"q": "quokka"}).json()["items"]
    assert items[0]["note_id"] == "p1"


def test_suggest(client: TestClient) -> None:
    r = client.get("/v1/search/suggest", params={"prefix": "Paris"})
    assert r.status_code == 200
    assert r.json() == {"prefix": "Paris", "source": "titles",
                        "suggestions": [{"text": "paris travel diary", "weight": 1}]}
    assert client.get("/v1/search/suggest", params={"prefix": ""}).json()["suggestions"] == []
    assert client.get("/v1/search/suggest", params={"prefix": "x" * 500}).status_code == 422
    assert client.get("/v1/search/suggest", params={"prefix": "a\x00"}).status_code == 422
