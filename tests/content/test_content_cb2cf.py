from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from notefeed.content import (
    CB2CF,
    CB2CFConfig,
    ContentError,
    cooccurrence_pairs,
    item_neighbours,
    topk_cosine,
)


def test_item_neighbours_matches_brute_force_cosine():
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((30, 12)) < 0.3).astype(np.float32))
    nbr, sim = item_neighbours(x, k=4, min_common=1, chunk=5)
    d = x.toarray()
    c = d.T @ d
    n = np.sqrt(np.diag(c))
    cos = c / np.maximum(np.outer(n, n), 1e-9)
    np.fill_diagonal(cos, 0)
    for i in range(12):
        want = np.sort(cos[i])[::-1][:4]
        got = sim[i][nbr[i] >= 0]
        np.testing.assert_allclose(got, want[want > 0], rtol=1e-5)
        assert i not in nbr[i]
    sub, _ = item_neighbours(x, k=4, items=np.array([3, 7]))
    np.testing.assert_array_equal(sub[:, 0], nbr[[3, 7], 0])


def test_min_common_filters_pairs():
    x = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0]], np.float32))
    pairs, _ = cooccurrence_pairs(x, k=2, min_common=2)
    assert {tuple(p) for p in pairs.tolist()} == {(0, 1), (1, 0)}


def test_topk_cosine_excludes_self():
    v = np.eye(4, dtype=np.float32)
    v[1] = v[0]
    idx, sc = topk_cosine(v[:1], v, 2, exclude=np.array([0]))
    assert idx[0, 0] == 1 and sc[0, 0] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def trained(catalogue, catalogue_vectors):
    ds = catalogue[0]
    x = ds.interactions()
    cfg = CB2CFConfig(out_dim=16, hidden=64, epochs=4, batch_size=256, k_pos=8, min_common=2, seed=0)
    return CB2CF(cfg).fit(catalogue_vectors, x), x


def test_training_separates_positive_from_negative_pairs(trained, catalogue):
    model, x = trained
    pairs, _ = cooccurrence_pairs(x, k=8, min_common=2)
    rng = np.random.default_rng(5)
    neg = rng.integers(0, x.shape[1], size=(len(pairs), 2))
    pos_s, neg_s = model.similarity(pairs).mean(), model.similarity(neg).mean()
    assert pos_s > neg_s + 0.3
    assert model.losses_[-1] < model.losses_[0]
    # similar_items of a note are mostly its planted topic-mates
    topic = catalogue[1]
    items, scores = model.similar_items(0, k=10)
    assert 0 not in items and np.all(np.diff(scores) <= 1e-6)
    assert np.mean(topic[items] == topic[0]) >= 0.7


def test_transform_of_new_content_matches_catalogue_vectors(trained, catalogue_vectors):
    model, _ = trained
    np.testing.assert_allclose(model.transform(catalogue_vectors[:7]), model.item_vectors_[:7], atol=1e-5)


def test_neighbours_add_the_learned_popularity_term(trained):
    model, x = trained
    counts = np.asarray((x > 0).sum(axis=0)).ravel()
    np.testing.assert_allclose(model.log_pop_, np.log1p(counts), rtol=1e-6)
    z = model.item_vectors_[:2]
    idx, sc = model.neighbours(z, k=5, exclude=np.array([0, 1]))
    w = float(model.tower.pop_weight.detach()) * model.config.temperature
    want = (z @ model.item_vectors_.T)[np.arange(2)[:, None], idx] + w * model.log_pop_[idx]
    np.testing.assert_allclose(sc, want, rtol=1e-5, atol=1e-6)
    assert 0 not in idx[0] and 1 not in idx[1]


def test_save_load_equal_outputs(tmp_path, trained, catalogue_vectors):
    model, _ = trained
    model.save(tmp_path / "m")
    again = CB2CF.load(tmp_path / "m")
    np.testing.assert_allclose(again.transform(catalogue_vectors[:20]), model.transform(catalogue_vectors[:20]), atol=1e-6)
    np.testing.assert_array_equal(again.similar_items(3, 5)[0], model.similar_items(3, 5)[0])


def test_corrupt_and_mismatched_checkpoints_are_clear_errors(tmp_path, trained):
    model, _ = trained
    folder = model.save(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"]["hidden"] = 32
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ContentError, match="do not match the config"):
        CB2CF.load(folder)
    w = folder / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ContentError, match="corrupt safetensors"):
        CB2CF.load(folder)
    cfg["kind"] = "something else"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ContentError, match="field 'kind'"):
        CB2CF.load(folder)


def test_bad_input_names_the_field(trained, catalogue_vectors):
    model, x = trained
    with pytest.raises(ContentError, match="text: expected dimension 24"):
        model.transform(np.ones((2, 5)))
    with pytest.raises(ContentError, match="text: NaN"):
        model.transform(np.full((1, 24), np.nan))
    with pytest.raises(ContentError, match="item: unknown item"):
        model.similar_items(10_000)
    with pytest.raises(ContentError, match="image: this model was configured without images"):
        model.transform(catalogue_vectors[:2], image=np.ones((2, 3)))
    with pytest.raises(ContentError, match="pairs: item index out of range"):
        CB2CF(epochs=1).fit(catalogue_vectors, pairs=np.array([[0, 10_000]]))
    with pytest.raises(ContentError, match="item_counts: expected"):
        CB2CF(epochs=1).fit(catalogue_vectors, pairs=np.array([[0, 1]]), item_counts=np.ones(3))
    with pytest.raises(ContentError, match="z: expected dimension"):
        model.neighbours(np.ones((1, 3)))
    with pytest.raises(ContentError, match="interactions: has 3 items"):
        CB2CF(epochs=1).fit(catalogue_vectors, sp.csr_matrix((4, 3), dtype=np.float32))


def test_gated_image_fusion_trains_and_checks_image_dim(catalogue, catalogue_vectors):
    ds, _, images = catalogue
    pairs, _ = cooccurrence_pairs(ds.interactions(), k=5, min_common=2)
    m = CB2CF(out_dim=8, hidden=16, epochs=1).fit(catalogue_vectors, pairs=pairs, image=images)
    assert m.config.image_dim == images.shape[1]
    assert m.transform(catalogue_vectors[:3], images[:3]).shape == (3, 8)
    assert m.transform(catalogue_vectors[:3]).shape == (3, 8)  # no images: text path only
    with pytest.raises(ContentError, match="image: expected dimension 16"):
        m.transform(catalogue_vectors[:3], images[:3, :4])
