from __future__ import annotations

from pathlib import Path

import pytest

from notefeed.serve.config import (
    ConfigError,
    ServeConfig,
    arm_config,
    builtin_config,
    load_config,
    parse_config,
)
from notefeed.serve.engine import Engine

ROOT = Path(__file__).resolve().parents[2]


def test_default_yaml_states_the_defaults() -> None:
    assert load_config(ROOT / "configs" / "default.yaml") == ServeConfig()
    assert load_config(ROOT / "configs" / "minimal.yaml") == builtin_config()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"recall": {"channels": [{"name": "a/b", "quota": 0}]}}, "recall.channels.0.quota"),
        ({"recall": {"channels": [{"name": "nofamily"}]}}, "recall.channels.0.name"),
        ({"coarse": {"keep": -1}}, "coarse.keep"),
        ({"fusion": {"weights": {"clicks": 1.0}}}, "fusion.weights"),
        ({"page": {"default_size": 500, "max_size": 10}}, "page"),
        ({"online": {"backend": "redis"}}, "online"),
        ({"online": {"backend": "kafka"}}, "online.backend"),
        ({"rerank": {"windw": 3}}, "rerank.windw"),
        ({"fusion": {"weights": {"click": float("nan")}}}, "fusion.weights.click"),
        ({"exposure": {"knobs": {"small_boost": float("inf")}}}, "exposure.knobs.small_boost"),
        ({"search": {"rrf_k": float("inf")}}, "search.rrf_k"),
    ],
)
def test_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(data)


def test_yaml_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("recall: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="no such config"):
        load_config(tmp_path / "missing.yaml")
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_unknown_component_names_field(small_ds, tmp_path: Path) -> None:
    cfg = builtin_config().with_overrides(recall={"channels": [{"name": "fresh/recent"}, {"name": "no/such"}]})
    with pytest.raises(ConfigError, match=r"recall\.channels\.1\.name"):
        Engine(small_ds, cfg, tmp_path)
    cfg = builtin_config().with_overrides(rerank={"name": "no/such"})
    with pytest.raises(ConfigError, match=r"rerank\.name"):
        Engine(small_ds, cfg, tmp_path / "b")
    cfg = builtin_config().with_overrides(rerank={"name": "builtin/author-cap", "params": {"max_per_autor": 2}})
    with pytest.raises(ConfigError, match=r"rerank\.params"):
        Engine(small_ds, cfg, tmp_path / "c")


def test_the_search_section_reaches_the_search_service() -> None:
    from types import SimpleNamespace

    from notefeed.serve.search import _engine_search_config

    cfg = ServeConfig().with_overrides(search={"fusion": "rrf", "rrf_k": 30.0})
    got = _engine_search_config(SimpleNamespace(config=cfg))
    assert got.fusion == "rrf" and got.rrf_k == 30.0
    assert _engine_search_config(SimpleNamespace(config=ServeConfig())).fusion == "auto"
    with pytest.raises(ConfigError, match="search"):
        ServeConfig().with_overrides(search={"fusion": "bm25-only"})


def test_rerank_params_left_out_are_the_named_re_rankers_defaults() -> None:
    """SSD's defaults only for SSD: every registered re-ranker builds from the params a config
    naming it alone gets, with the page rules and the small-creator share kept."""
    from notefeed.rerank import RERANKERS
    from notefeed.serve.factory import create_component

    default = ServeConfig().rerank.params
    assert parse_config({"rerank": {"name": "rerank/ssd"}}).rerank.params == default
    for name in RERANKERS.names():
        params = parse_config({"rerank": {"name": name}}).rerank.params
        if name != "rerank/ssd":
            assert params == {"rules": default["rules"], "fairness": default["fairness"]}, name
        create_component(RERANKERS.get(name), params, "rerank.params")
    assert parse_config({"rerank": {"name": "builtin/author-cap"}}).rerank.params == {}
    assert parse_config({"rerank": {"name": None}}).rerank.params == {}
    given = {"lam": 0.5}
    assert parse_config({"rerank": {"name": "rerank/mmr", "params": given}}).rerank.params == given


def test_an_arm_switching_the_re_ranker_drops_the_base_params() -> None:
    cfg = parse_config({"experiments": {"name": "x", "arms": [
        {"name": "a"}, {"name": "mmr", "overlay": {"rerank": {"name": "rerank/mmr"}}},
        {"name": "g", "overlay": {"rerank": {"params": {"gamma": 0.5}}}}]}})
    a, mmr, g = (arm_config(cfg, arm).rerank for arm in cfg.experiments.arms)
    assert a == cfg.rerank
    assert mmr.name == "rerank/mmr" and "gamma" not in mmr.params and mmr.params["fairness"]["target"] == 0.5
    assert g.name == "rerank/ssd" and g.params == {**cfg.rerank.params, "gamma": 0.5}
