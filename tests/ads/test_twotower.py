"""The query/ad two-tower recall (notefeed/ads/twotower.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from notefeed.ads.base import AD_CHANNELS, AdRequest
from notefeed.ads.twotower import (
    AdTowerConfig,
    TwoTowerAdChannel,
    load_ad_towers,
    save_ad_towers,
    train_ad_towers,
)

torch.set_num_threads(1)


def _world(seed: int = 0) -> tuple[list[str], list[str], list[str], np.ndarray, np.ndarray]:
    """4 topics of 6 words; 40 ads, 10 per topic; users type topic words or a topic *alias*
    ("zq<topic>") that no ad contains, and click ads of the query's topic."""
    rng = np.random.default_rng(seed)
    words = [[f"w{t}x{j}" for j in range(6)] for t in range(4)]
    topic = np.repeat(np.arange(4), 10)
    texts = [" ".join(rng.choice(words[t], 4)) for t in topic]
    kws = [" ".join(rng.choice(words[t], 2, replace=False)) for t in topic]
    queries, ads = [], []
    for _ in range(3000):
        t = int(rng.integers(4))
        q = f"zq{t}" if rng.random() < 0.3 else " ".join(rng.choice(words[t], int(rng.integers(1, 3)), replace=False))
        queries.append(q)
        ads.append(int(rng.choice(np.flatnonzero(topic == t))))
    return texts, kws, queries, np.array(ads), topic


def test_towers_learn_a_query_word_no_ad_contains(tmp_path: Path) -> None:
    texts, kws, queries, ads, topic = _world()
    cfg = AdTowerConfig(buckets=1 << 12, epochs=6, seed=0)
    model = train_ad_towers(queries, ads, texts, kws, cfg)
    ch = TwoTowerAdChannel(model, texts, kws, kind="hnsw")
    assert "semantic/twotower" in AD_CHANNELS
    for t in range(4):
        got = ch.retrieve(AdRequest(query=f"zq{t}"), 10)
        assert len(got) == 10
        assert (topic[got.ids] == t).mean() >= 0.9  # the alias's own topic, learned from clicks only
    # an untrained model knows nothing of the alias: the same check is near chance
    cold = TwoTowerAdChannel(train_ad_towers(queries, ads, texts, kws, AdTowerConfig(buckets=1 << 12, epochs=0)),
                             texts, kws, kind="flat", min_score=-1.0)
    hit = np.mean([(topic[cold.retrieve(AdRequest(query=f"zq{t}"), 10).ids] == t).mean() for t in range(4)])
    assert hit < 0.9
    assert ch.retrieve(AdRequest(query=None, user=3), 10).ids.size == 0  # feed ads: not this channel

    save_ad_towers(model, tmp_path / "tt")
    again = load_ad_towers(tmp_path / "tt")
    np.testing.assert_allclose(again.encode_queries(["zq1 w1x0"]), model.encode_queries(["zq1 w1x0"]), atol=1e-6)
    np.testing.assert_allclose(again.encode_ads(texts, kws), model.encode_ads(texts, kws), atol=1e-6)


def test_residual_towers_start_at_the_text_vectors() -> None:
    texts, kws, queries, ads, _ = _world(1)
    rng = np.random.default_rng(0)
    qv = rng.normal(size=(len(queries), 8)).astype(np.float32)
    av = rng.normal(size=(len(texts), 8)).astype(np.float32)
    m = train_ad_towers(queries, ads, texts, kws, AdTowerConfig(buckets=1 << 10, text_dim=8, epochs=0), qv, av)
    unit = av / np.linalg.norm(av, axis=1, keepdims=True)
    np.testing.assert_allclose(m.encode_ads(texts, kws, av), unit, atol=1e-5)
    with pytest.raises(ValueError):
        train_ad_towers(queries, ads, texts, kws, AdTowerConfig(text_dim=8))  # text vectors missing
    with pytest.raises(ValueError):
        TwoTowerAdChannel(m, texts, kws)  # these towers read text vectors


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_ad_towers(tmp_path / "missing")
    texts, kws, queries, ads, _ = _world(2)
    m = train_ad_towers(queries[:50], ads[:50], texts, kws, AdTowerConfig(buckets=1 << 10, epochs=1))
    save_ad_towers(m, tmp_path / "tt")
    (tmp_path / "tt" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError):
        load_ad_towers(tmp_path / "tt")
    (tmp_path / "tt" / "config.json").write_text('{"kind": "two-tower"}')
    with pytest.raises(ValueError):
        load_ad_towers(tmp_path / "tt")


def test_serving_learns_from_its_own_click_log(tmp_path: Path) -> None:
    """Search ads: no ad for a word no ad contains; serving logs clicks with their query;
    ``train_workspace_towers`` learns the word; the next index build serves it by the towers."""
    import json

    from notefeed.ads.schema import Ad, Advertiser, Campaign
    from notefeed.ads.twotower import train_workspace_towers
    from notefeed.serve.ads import ads_store
    from notefeed.serve.adslots import AdEvent, ad_server
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import Engine
    from notefeed.serve.synth import synthetic_community

    now = 1_700_000_000.0
    eng = Engine(synthetic_community(300, n_users=20, n_events=500, seed=1), builtin_config(), tmp_path / "ws")
    eng.clock = lambda: now
    try:
        store = ads_store(eng)
        store.put_advertiser(Advertiser(id="adv", name="Shop"))
        store.put_campaign(Campaign(id="c", advertiser_id="adv", daily_budget=100.0, bid=1.0))
        topics = {"shoe": "fast running shoes trail sneaker", "coffee": "espresso coffee beans roast grinder"}
        store.put_ads([Ad(id=f"{t}{j}", campaign_id="c", title=f"{words.split()[j % 5]} deal {j}", text=words)
                       for t, words in topics.items() for j in range(8)])
        srv = ad_server(eng)
        page = [f"x{i}" for i in range(20)]
        assert srv.search_ads("zapato", [], None, None, page) == []  # unknown word: nothing recalls it
        log = eng.workspace / "ads" / "clicks.jsonl"
        rng = np.random.default_rng(0)
        with log.open("w") as f:
            for _ in range(400):
                t = str(rng.choice(["shoe", "coffee"]))
                q = {"shoe": ["zapato", "running shoes", "zapato trail"], "coffee": ["kaffi", "espresso", "kaffi beans"]}[t]
                f.write(json.dumps({"query": str(rng.choice(q)), "ad_id": f"{t}{int(rng.integers(8))}"}) + "\n")
            f.write("{torn line\n")
        info = train_workspace_towers(eng.workspace, min_clicks=100, cfg=AdTowerConfig(buckets=1 << 12, epochs=6))
        assert info["clicks"] == 400 and (eng.workspace / "ads" / "twotower" / "encoder").is_dir()
        srv._checked = -1e9  # the next request checks the workspace at once (not within 2 s)
        ads = srv.search_ads("zapato", [], None, None, page)
        assert ads and all(a["ad"]["channel"] == "semantic/twotower" for a in ads)
        assert all(a["ad"]["ad_id"].startswith("shoe") for a in ads)
        n = len(log.read_text().splitlines())
        charged, why = srv.event(AdEvent(impression_id=ads[0]["ad"]["impression_id"], type="click"))
        assert why is None and charged > 0
        last = json.loads(log.read_text().splitlines()[-1])
        assert len(log.read_text().splitlines()) == n + 1 and last["query"] == "zapato"
        with pytest.raises(ValueError):
            train_workspace_towers(eng.workspace, min_clicks=10_000)
    finally:
        eng.close()
