"""POST /v1/admin/config: fusion, re-ranking, exposure, coarse keep and quotas change live;
anything else is refused naming the field."""

from __future__ import annotations

import yaml

from notefeed.serve.config import parse_config
from notefeed.serve.hotconfig import cold_difference

from .conftest import AUTH


def _yaml(engine, **changes) -> str:
    data = engine.config.model_dump(mode="json")
    data["api"].pop("token")
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value
    return yaml.safe_dump(data)


def test_rerank_and_fusion_change_live_and_the_next_page_uses_them(client, engine):
    before = engine.served
    assert engine.config.rerank.name == "builtin/author-cap"
    r = client.post("/v1/admin/config", headers=AUTH,
                    json={"yaml": _yaml(engine, rerank__name=None, fusion__weights={"click": 2.0})})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == ["fusion", "rerank"]
    assert engine.served is not before and engine.config.rerank.name is None
    steps = [s.name for s in engine.pipelines["default"].steps]
    assert "author-cap" not in " ".join(steps)
    page = client.get("/v1/feed", params={"user_id": "u1", "n": 5})
    assert page.status_code == 200 and len(page.json()["items"]) == 5
    assert 'config_reloads_total 1' in client.get("/metrics").text


def test_dry_run_changes_nothing(client, engine):
    before = engine.served
    r = client.post("/v1/admin/config", headers=AUTH,
                    json={"yaml": _yaml(engine, coarse__keep=50), "dry_run": True})
    assert r.status_code == 200 and r.json() == {"status": "valid", "changed": ["coarse"], "version": None}
    assert engine.served is before and engine.config.coarse.keep != 50


def test_a_change_that_needs_a_restart_is_refused_naming_the_field(client, engine):
    before = engine.served
    r = client.post("/v1/admin/config", headers=AUTH,
                    json={"yaml": _yaml(engine, recall__channels__0__name="item-to-item/swing")})
    assert r.status_code == 409 and "recall.channels.0.name" in r.json()["detail"]
    r = client.post("/v1/admin/config", headers=AUTH, json={"yaml": _yaml(engine, online__seq_len=7)})
    assert r.status_code == 409 and "online.seq_len" in r.json()["detail"]
    assert engine.served is before


def test_bad_yaml_or_config_is_422_and_writes_need_the_token(client, engine):
    assert client.post("/v1/admin/config", json={"yaml": "fusion: {}"}).status_code == 401
    r = client.post("/v1/admin/config", headers=AUTH, json={"yaml": "fusion: [1, 2"})
    assert r.status_code == 422 and "yaml" in r.json()["detail"]
    r = client.post("/v1/admin/config", headers=AUTH, json={"yaml": "coarse: {keep: -3}"})
    assert r.status_code == 422 and "coarse.keep" in r.json()["detail"]


def test_quotas_are_hot_but_channel_params_are_not(engine):
    cfg = engine.config
    data = cfg.model_dump(mode="json")
    data["recall"]["channels"][0]["quota"] = 7
    assert cold_difference(cfg, parse_config(data)) is None
    data["recall"]["channels"][0]["params"] = {"x": 1}
    assert cold_difference(cfg, parse_config(data)) == "recall.channels.0.params.x"


def test_a_dry_run_builds_the_pipelines_so_a_bad_component_is_422_and_nothing_changes(client, engine):
    before, cfg = engine.served, engine.config
    for change, field in ((dict(rerank__name="rerank/nothing"), "unknown re-ranker"),
                          (dict(rerank__name="rerank/ssd", rerank__params={"gamma": -1.0}), "gamma")):
        for dry in (True, False):
            r = client.post("/v1/admin/config", headers=AUTH, json={"yaml": _yaml(engine, **change), "dry_run": dry})
            assert r.status_code == 422 and field in r.json()["detail"], r.text
            assert engine.served is before and engine.config is cfg
    page = client.get("/v1/feed", params={"user_id": "u1", "n": 5})
    assert page.status_code == 200 and len(page.json()["items"]) == 5


def test_nan_or_infinite_numbers_are_refused_naming_the_field(client, engine):
    for bad in (".nan", ".inf"):
        r = client.post("/v1/admin/config", headers=AUTH, json={"yaml": f"fusion: {{weights: {{click: {bad}}}}}"})
        assert r.status_code == 422 and "fusion.weights.click" in r.json()["detail"], r.text
        r = client.post("/v1/admin/config", headers=AUTH, json={"yaml": f"search: {{rrf_k: {bad}}}"})
        assert r.status_code == 422 and "search.rrf_k" in r.json()["detail"], r.text


def test_switching_the_re_ranker_live_takes_its_own_default_params(client, engine):
    # SSD's gamma is not MMR's: a config naming only the re-ranker gets that re-ranker's
    # defaults, keeping the page rules and the small-creator share
    data = yaml.safe_load(_yaml(engine))
    data["rerank"] = {"name": "rerank/mmr"}
    r = client.post("/v1/admin/config", headers=AUTH, json={"yaml": yaml.safe_dump(data)})
    assert r.status_code == 200, r.text
    assert engine.config.rerank.params == {"rules": {"author_max": 1, "author_window": 10},
                                           "fairness": {"mode": "hard", "target": 0.5}}
    assert client.get("/v1/feed", params={"user_id": "u1", "n": 5}).status_code == 200


def _until(check, timeout: float = 10.0) -> None:
    import time

    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "not within the timeout"
        time.sleep(0.02)


def test_a_live_change_reaches_every_serving_process_and_a_restarted_one(small_ds, tmp_path):
    """Serving processes on one workspace (what `serve --workers N` runs): a live change taken by
    one is applied by the others within `online.follow_promoted_s`, and by a process started
    later with the same config file; one started with another file ignores it, saying so.
    Before, it changed only the process that answered: the others served the old config."""
    import json

    from fastapi.testclient import TestClient

    from notefeed.serve.app import create_app
    from notefeed.serve.versions import engine_from_store

    from .conftest import make_config

    ws = tmp_path / "ws"
    cfg = make_config(online={"follow_promoted_s": 0.05})
    a, b = engine_from_store(small_ds, cfg, ws), engine_from_store(small_ds, cfg, ws)
    c = d = None
    try:
        with TestClient(create_app(a)) as ca:
            r = ca.post("/v1/admin/config", headers=AUTH,
                        json={"yaml": _yaml(a, rerank__name=None, fusion__weights={"click": 2.0})})
            assert r.status_code == 200 and r.json()["shared"] == 1, r.text
            dry = ca.post("/v1/admin/config", headers=AUTH, json={"yaml": _yaml(a, coarse__keep=50), "dry_run": True})
            assert "shared" not in dry.json()  # a dry run is not shared
        _until(lambda: b.config.rerank.name is None and b.config.fusion.weights == {"click": 2.0})
        assert "author-cap" not in " ".join(s.name for s in b.pipelines["default"].steps)
        saved = json.loads((ws / "live_config.json").read_text())
        assert saved["seq"] == 1 and "token" not in saved["config"]["api"]  # the write token stays out
        c = engine_from_store(small_ds, cfg, ws)  # a worker restarted with the same file rejoins
        assert c.config.rerank.name is None and c.config.fusion.weights == {"click": 2.0}
        assert c.config.api.token == cfg.api.token and not c.startup_warnings
        other = make_config(online={"follow_promoted_s": 0.05}, page={"default_size": 7})
        d = engine_from_store(small_ds, other, ws)  # another file: it is the newer word
        assert d.config.rerank.name == "builtin/author-cap" and d.config.page.default_size == 7
        assert any("live config" in w for w in d.startup_warnings)
    finally:
        for e in (a, b, c, d):
            if e is not None:
                e.close()
