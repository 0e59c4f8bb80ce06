"""The OpenAI-compatible rewrite backend against a tiny local HTTP server started here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from notefeed.search import HttpRewriteBackend, HttpRewriteConfig, SearchConfig, SearchError, SearchPipeline


class _Handler(BaseHTTPRequestHandler):
    delay = 0.0
    status = 200
    calls: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        time.sleep(type(self).delay)
        out = json.dumps({"choices": [{"message": {"role": "assistant",
                                                   "content": "1. coffee\n- Espresso Machine\ncheap joe\n"}}]})
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"delay": 0.0, "status": 200, "calls": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", handler
    srv.shutdown()
    srv.server_close()


def _wait(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not pred() and time.monotonic() < end:
        time.sleep(0.01)


def test_answers_are_parsed_and_cached(server: tuple[str, type[_Handler]]) -> None:
    url, h = server
    b = HttpRewriteBackend(url, model="m", api_key="k", wait_s=2.0)
    assert b.rewrite("cheap joe") == ["coffee", "espresso machine"]  # the query itself is dropped
    assert b.rewrite("cheap joe") == ["coffee", "espresso machine"]
    assert len(h.calls) == 1 and h.calls[0]["path"] == "/v1/chat/completions"
    assert h.calls[0]["body"]["model"] == "m" and h.calls[0]["auth"] == "Bearer k"
    b.close()


def test_slow_endpoint_never_blocks_a_search(server: tuple[str, type[_Handler]], notes) -> None:  # type: ignore[no-untyped-def]
    url, h = server
    h.delay = 1.0
    pipe = SearchPipeline.build(notes, SearchConfig(dense=False, http_rewrite=HttpRewriteConfig(
        base_url=url, timeout_s=5.0, wait_s=0.05)))
    t = time.perf_counter()
    res = pipe.search("cheap joe", 5)
    assert time.perf_counter() - t < 0.5  # waited wait_s, not the server's second
    assert res.query.rewrites == [] and res.items.tolist() == []
    assert pipe.http is not None
    _wait(lambda: pipe.http is not None and "cheap joe" in pipe.http._cache)
    res = pipe.search("cheap joe", 5)  # the answer has arrived: the same query now uses it
    assert res.query.rewrites[:1] == ["coffee"] and 0 in res.items.tolist()
    pipe.close()


def test_timeout_and_errors_give_no_rewrites(server: tuple[str, type[_Handler]]) -> None:
    url, h = server
    h.delay = 0.5
    b = HttpRewriteBackend(url, timeout_s=0.1, wait_s=1.0)
    t = time.perf_counter()
    assert b.rewrite("coffee beans") == []  # the HTTP timeout fired first
    assert time.perf_counter() - t < 0.9
    _wait(lambda: b.errors == 1)
    assert b.rewrite("coffee beans") == []  # cached failure: no second call
    assert len(h.calls) == 1
    b.close()
    h.delay, h.status = 0.0, 500
    b = HttpRewriteBackend(url, wait_s=1.0)
    assert b.rewrite("x y") == []
    b.close()
    dead = HttpRewriteBackend("http://127.0.0.1:9/v1", timeout_s=0.2, wait_s=0.5)
    assert dead.rewrite("coffee") == []
    dead.close()
    with pytest.raises(SearchError, match="base_url"):
        HttpRewriteBackend("ftp://x")
