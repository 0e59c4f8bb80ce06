"""Learned item vectors (re-ranking similarity, related notes) and ``/v1/notes/{id}/related``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from notefeed.recall import CHANNELS
from notefeed.recall.base import Candidates
from notefeed.schema import Note
from notefeed.serve.catalog import Catalog
from notefeed.serve.components import ReRankSelector
from notefeed.serve.engine import Engine
from notefeed.serve.itemvectors import ItemVectors, blend_unit, learned_vectors, vector_source
from notefeed.serve.related import related_items, rrf_blend, vector_neighbours
from tests.recall.conftest import make_community
from tests.serve.conftest import make_config

N_NOTES = 200  # make_community: topic (= category) of note i is i % 4


class FakeEmbedder:
    """``item_vectors`` like a softmax-trained model's: a large shared direction plus a
    small per-topic one, so raw cosines are all close to 1."""

    name = "fake/embedder"

    def __init__(self, n: int = N_NOTES, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        common = np.zeros(8, np.float32)
        common[0] = 10.0
        topic = np.eye(8, dtype=np.float32)[1 + np.arange(n) % 4]
        self.item_vectors = common + topic + 0.05 * rng.standard_normal((n, 8)).astype(np.float32)


class FakeItemToItem:
    """``neighbours`` from a fixed table; notes past it raise like the real channels."""

    name = "item-to-item/fake"

    def __init__(self, table: dict[int, list[int]], n: int = N_NOTES) -> None:
        self.table, self.n = table, n

    def neighbours(self, item: int, k: int = 10) -> Candidates:
        if not 0 <= item < self.n:
            raise ValueError(f"item index {item} out of range")
        items = np.asarray(self.table.get(item, [])[:k], np.int64)
        return Candidates(self.name, items, np.linspace(1, 0.5, len(items), dtype=np.float32))


@pytest.fixture(scope="module")
def ds():
    return make_community(n_users=80, n_notes=N_NOTES, per_user=10)


@pytest.fixture
def catalog(ds):
    return Catalog(ds, 100)


def _publish(catalog: Catalog, note_id: str, category: str) -> int:
    return catalog.add_note(Note(note_id=note_id, author_id="someone-new", title="t", text="x", tags=[],
                                 category=category, created_at=2_000_000), 5)


# ------------------------------------------------------------------ item vectors
def test_centred_cosine_separates_topics_that_raw_cosine_does_not(catalog):
    emb = FakeEmbedder()
    raw = emb.item_vectors / np.linalg.norm(emb.item_vectors, axis=1, keepdims=True)
    assert (raw[0] @ raw[1]) > 0.97  # different topics, yet almost parallel raw
    iv = ItemVectors(emb, catalog)
    v = iv.rows(np.arange(N_NOTES))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    same, other = v[0] @ v[4], v[0] @ v[1]
    assert same > 0.9 and other < 0.1
    items, cos = iv.neighbours(0, 10)
    assert 0 not in items and np.all(items % 4 == 0) and np.all(np.diff(cos) <= 1e-6)


def test_notes_newer_than_the_model_take_their_category_centroid(catalog):
    iv = ItemVectors(FakeEmbedder(), catalog)
    i = _publish(catalog, "new-1", "cat2")
    j = _publish(catalog, "new-2", "a-category-never-seen")
    v = iv.rows(np.array([2, i, j]))
    assert v[0] @ v[1] > 0.9  # in the learned space, next to its category
    assert np.allclose(v[2], 0.0)  # nothing learned about the category: no similarity claimed
    assert not iv.covers(i)
    with pytest.raises(ValueError):
        iv.neighbours(i, 5)


def test_vector_source_is_the_first_component_with_vectors(catalog):
    class Unfitted:
        @property
        def item_vectors(self):
            raise RuntimeError("before fit()")

    emb = FakeEmbedder()
    assert vector_source([object(), Unfitted(), emb, FakeEmbedder()]) is emb
    assert vector_source([object()]) is None
    assert learned_vectors(emb, catalog) is learned_vectors(emb, catalog)  # one cache per component


def test_blend_unit_averages_cosines():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4))
    b = rng.standard_normal((3, 6))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    m = blend_unit(a, b, 0.3)
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(m @ m.T, 0.3 * (a @ a.T) + 0.7 * (b @ b.T), atol=1e-5)
    with pytest.raises(ValueError):
        blend_unit(a, b, 1.5)


def test_rerank_selector_uses_prepared_learned_vectors(catalog):
    sel = ReRankSelector(object(), catalog, FakeEmbedder())  # type: ignore[arg-type]
    sel.learned_weight = 1.0
    v = sel.vectors(np.array([0, 1, 4]))
    assert v[0] @ v[2] > 0.9 and v[0] @ v[1] < 0.1
    sel.learned_weight = 0.5  # the default: half learned, half catalogue category/author cosine
    v = sel.vectors(np.array([0, 1, 4]))
    cat = catalog.vectors()[[0, 1, 4]]
    np.testing.assert_allclose(v @ v.T, 0.5 * (sel.learned.rows(np.array([0, 1, 4])) @
                                               sel.learned.rows(np.array([0, 1, 4])).T) + 0.5 * (cat @ cat.T),
                               atol=1e-5)
    plain = ReRankSelector(object(), catalog, None)  # type: ignore[arg-type]
    np.testing.assert_array_equal(plain.vectors(np.array([3])), catalog.vectors()[[3]])


# ------------------------------------------------------------------ related
def test_rrf_blend_puts_agreement_first():
    items, scores = rrf_blend([np.array([5, 6, 7]), np.array([7, 8])], k=3)
    assert items.tolist() == [7, 5, 6] and np.all(np.diff(scores) <= 0)
    assert rrf_blend([], 3)[0].size == 0


def test_related_blends_item_to_item_and_vectors(catalog):
    iv = ItemVectors(FakeEmbedder(), catalog)
    near = vector_neighbours(catalog, iv, 0, 20)[0].tolist()
    i2i = FakeItemToItem({0: [near[5], near[3], 3]})
    out = related_items(catalog, 0, 5, [i2i], iv)
    items = [i for i, _ in out]
    assert len(items) == 5 and 0 not in items and len(set(items)) == 5
    # in both lists: they lead; co-engagement alone (3, another topic) outranks vectors alone
    assert set(items[:2]) == {near[5], near[3]} and items[2] == 3 and items[3] == near[0]
    assert all(a >= b for (_, a), (_, b) in zip(out, out[1:], strict=False))


def test_vector_neighbours_live_in_the_re_rankers_similarity_space(catalog):
    iv = ItemVectors(FakeEmbedder(), catalog)
    items, sims = vector_neighbours(catalog, iv, 0, 10)
    v = ReRankSelector(object(), catalog, iv.source).vectors(np.r_[0, items])  # type: ignore[arg-type]
    np.testing.assert_allclose(sims, v[1:] @ v[0], atol=1e-5)
    assert np.all(items % 4 == 0)


def test_rows_appended_to_the_vectors_are_learned_not_centroids(catalog):
    emb = FakeEmbedder()
    iv = ItemVectors(emb, catalog).warm()
    i = _publish(catalog, "new-tt", "cat3")
    assert not iv.covers(i)
    emb.item_vectors = np.vstack([emb.item_vectors, emb.item_vectors[[1]]])  # a two-tower add_items
    assert iv.covers(i)
    v = iv.rows(np.array([1, i]))
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)  # same raw vector, same mean: same row
    assert iv.neighbours(i, 1)[0].tolist() == [1]


def test_related_of_a_note_newer_than_every_model_uses_catalogue_vectors(catalog):
    i = _publish(catalog, "new-3", "cat1")
    out = related_items(catalog, i, 4, [FakeItemToItem({})], ItemVectors(FakeEmbedder(), catalog))
    assert len(out) == 4 and i not in [j for j, _ in out]
    cats = catalog.category_codes()
    assert all(cats[j] == cats[i] for j, _ in out)  # category vectors dominate the catalogue's


def test_related_fills_up_below_the_blended_notes(catalog):
    out = related_items(catalog, 0, 6, [FakeItemToItem({0: [8, 12]})], None)
    assert [i for i, _ in out[:2]] == [8, 12] and len(out) == 6
    assert min(s for _, s in out[:2]) > max(s for _, s in out[2:])


def test_engine_related_uses_the_served_item_to_item_channels(ds, tmp_path: Path):
    cfg = make_config(recall={"channels": [{"name": "fresh/recent", "quota": 20},
                                           {"name": "item-to-item/swing", "quota": 50},
                                           {"name": "non-personalized/popular", "quota": 50}]})
    eng = Engine(ds, cfg, tmp_path / "ws")
    try:
        swing = eng.pipelines["default"].sources[1].component
        want = swing.neighbours(0, 3).items.tolist()
        got = [i for i, _ in eng.related("n0", 3)]
        assert got == want  # the only blended source (no learned vectors): its order
        assert len(eng.related("n0", 30)) == 30  # filled up from the catalogue
    finally:
        eng.close()


def test_default_pipeline_picks_up_the_sequence_models_vectors(ds, tmp_path: Path):
    seq = pytest.importorskip("notefeed.recall.sequential")
    sasrec = seq.SASRecChannel(dim=16, layers=1, heads=1, max_len=10, epochs=1, progress=False).fit(ds)
    cfg = make_config(recall={"channels": [{"name": "fresh/recent", "quota": 20},
                                           {"name": "sequence/sasrec", "quota": 50},
                                           {"name": "item-to-item/swing", "quota": 50}]},
                      rerank={"name": "rerank/ssd", "params": {}})
    swing = CHANNELS.create("item-to-item/swing").fit(ds)
    eng = Engine(ds, cfg, tmp_path / "ws", fitted={"recall.channels.1": sasrec, "recall.channels.2": swing})
    try:
        sel = next(s.component for s in eng.pipelines["default"].steps if isinstance(s.component, ReRankSelector))
        assert sel.embedder is sasrec and sel.learned is not None
        v = sel.vectors(np.arange(10))
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
        _, res = eng.feed("u1", 10)
        assert len(res.items) == 10 and not res.errors
        assert len(eng.related("n0", 5)) == 5
    finally:
        eng.close()
