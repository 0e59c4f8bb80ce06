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

from .conftest import AUTH, make_config


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
