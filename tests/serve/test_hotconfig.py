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
