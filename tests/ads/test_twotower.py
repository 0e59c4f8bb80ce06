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
