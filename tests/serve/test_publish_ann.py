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


def test_ann_channels_index_the_notes_published_before_a_restart_or_a_reload(small_ds, tmp_path: Path) -> None:
    """A two-tower channel fitted on the dataset lacks the notes the note log adds at start-up
    (or a version trained before they were published): they are indexed when the pipelines are
    built. Before, the next publish's vector went in under the first missing note's index."""
    from notefeed.models import ModelStore, data_snapshot
    from notefeed.recall.features import note_side_tokens

    cfg = make_config(recall={"channels": [{"name": "fresh/recent", "quota": 20},
                                           {"name": "embedding/two-tower", "quota": 50, "params": {"epochs": 1}}]})
    n = small_ds.n_items
    notes = [Note(note_id=f"p{i}", author_id="x", title=f"hiking boots {i}", tags=["outdoor"], category="sport")
             for i in range(3)]

    def two_tower(eng: Engine):  # type: ignore[no-untyped-def]
        return next(s.component for s in eng.pipelines["default"].sources if s.name == "embedding/two-tower")

    eng = Engine(small_ds, cfg, tmp_path)
    eng.publish(notes[0])
    eng.close()
    eng = Engine(small_ds, cfg, tmp_path)  # refitted on the dataset: p0 comes from the note log
    try:
        tt = two_tower(eng)
        assert tt.n_indexed == n + 1
        side = note_side_tokens(pd.DataFrame([notes[0].model_dump()]), tt.model.cfg.buckets, tt.model.cfg.side_width)
        np.testing.assert_allclose(tt.item_vectors[n], tt.encode_items(np.zeros(1, np.int64), side)[0], rtol=1e-5)
        assert eng.publish(notes[1]) == n + 1 and tt.n_indexed == n + 2
        assert "add_items" not in eng.metrics.render()  # no index drift
        # a stored version fitted before p0 and p1: indexed on reload, before the swap
        store = ModelStore(tmp_path)
        fresh = type(tt)(epochs=1).fit(small_ds)
        v = store.save({"recall.channels.1": fresh}, {"config": cfg.model_dump(mode="json"),
                                                      "data": data_snapshot(small_ds)})
        eng.reloader.reload(v).result(timeout=60)
        assert eng.model_version == v and two_tower(eng).n_indexed == n + 2
        assert eng.publish(notes[2]) == n + 2 and two_tower(eng).n_indexed == n + 3
        assert "add_items" not in eng.metrics.render()
    finally:
        eng.close()
