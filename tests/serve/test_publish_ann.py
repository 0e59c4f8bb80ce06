"""Publishing reaches an ANN-backed channel (``add_items``) and re-ranking uses its vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.recall.base import CHANNELS, Candidates, UserContext
from notefeed.schema import Note
from notefeed.serve.components import ReRankSelector
from notefeed.serve.engine import Engine
from notefeed.serve.itemvectors import blend_unit

from .conftest import make_config


class FakeAnn:
    """Recalls the newest indexed items; exposes ``item_vectors`` like the two-tower channel."""

    name = "test/fake-ann"

    def fit(self, ds) -> FakeAnn:
        self.item_vectors = np.eye(8, dtype=np.float32)[np.arange(ds.n_items) % 8]
        return self

    def add_items(self, notes: pd.DataFrame) -> np.ndarray:
        start = len(self.item_vectors)
        self.item_vectors = np.vstack([self.item_vectors, np.ones((len(notes), 8), np.float32)])
        return np.arange(start, start + len(notes))

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        items = np.arange(len(self.item_vectors))[::-1][:k]
        return Candidates(self.name, items, np.ones(len(items)))


if FakeAnn.name not in CHANNELS:
    CHANNELS.register(FakeAnn.name)(FakeAnn)


def test_publish_adds_to_ann_and_vectors_used(small_ds, tmp_path: Path) -> None:
    cfg = make_config(recall={"channels": [{"name": "test/fake-ann", "quota": 5}]})
    eng = Engine(small_ds, cfg, tmp_path)
    ann = eng.pipelines["default"].sources[0].component
    i = eng.publish(Note(note_id="new-1", author_id="x"))
    assert i == small_ds.n_items and len(ann.item_vectors) == small_ds.n_items + 1
    assert i in ann.recall(eng.context("u1"), 5).items
    sel = next(s.component for s in eng.pipelines["default"].steps if isinstance(s.component, ReRankSelector))
    # the re-ranker's similarity space is built on the ANN channel's vectors, incl. the new row
    assert sel.learned is not None and sel.learned.covers(i)
    np.testing.assert_allclose(sel.vectors(np.array([0, i])),
                               blend_unit(sel.learned.rows(np.array([0, i])), eng.catalog.vectors()[[0, i]],
                                          sel.learned_weight), rtol=1e-5)
    ctx, res = eng.feed("u1", 3)
    assert not res.errors and len(res.items) == 3
    eng.close()


class Broken:
    name = "test/broken"

    def fit(self, ds) -> Broken:
        return self

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        raise ConnectionError("vector store unreachable")


if Broken.name not in CHANNELS:
    CHANNELS.register(Broken.name)(Broken)


def test_broken_channel_degrades_feed_over_http(small_ds, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from notefeed.serve.app import create_app

    cfg = make_config(recall={"channels": [{"name": "test/broken", "quota": 50},
                                           {"name": "non-personalized/popular", "quota": 100}]})
    eng = Engine(small_ds, cfg, tmp_path)
    with TestClient(create_app(eng)) as c:
        body = c.get("/v1/feed", params={"user_id": "u1", "n": 10, "explain": True}).json()
        assert len(body["items"]) == 10 and body["degraded"] is True
        assert "vector store unreachable" in body["trace"]["errors"][0]
        assert 'notefeed_stage_errors_total{stage="test/broken"} 1' in c.get("/metrics").text
    eng.close()
