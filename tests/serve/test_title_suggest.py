"""POST /v1/notes/title-suggest: the workspace's built-in language model, 409 without one."""

from __future__ import annotations

from tests.llm.conftest import tiny_config, tiny_corpus


def test_title_suggest(client, engine):
    r = client.post("/v1/notes/title-suggest", json={"text": "espresso latte beans"})
    assert r.status_code == 409 and "notefeed llm embed" in r.json()["detail"]
    from notefeed.llm import train_builtin

    train_builtin(tiny_corpus(), None, tiny_config(epochs=2)).save(engine.workspace / "llm" / "model")
    r = client.post("/v1/notes/title-suggest", json={"text": "espresso latte beans", "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "llm/builtin" and 1 <= len(body["titles"]) <= 2
    assert client.post("/v1/notes/title-suggest", json={"text": ""}).status_code == 422
