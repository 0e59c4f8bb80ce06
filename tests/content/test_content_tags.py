from __future__ import annotations

import numpy as np
import pytest

from notefeed.content import ContentError, TagPredictor, popular_tags, precision_at_k, tag_centroids


def test_tag_assignment_recovers_planted_tags(catalogue, catalogue_vectors):
    ds, topic, _ = catalogue
    tags = ds.notes["tags"].tolist()
    tr, te = np.arange(0, 240), np.arange(240, 300)
    tp = TagPredictor(k=1, threshold=0.0).fit(catalogue_vectors[tr], [tags[i] for i in tr])
    pred = tp.predict_tags(catalogue_vectors[te])
    hits = np.mean([p[:1] == [f"topic{topic[i]}"] for p, i in zip(pred, te, strict=True)])
    base = precision_at_k([popular_tags([tags[i] for i in tr], 1)] * len(te), [tags[i] for i in te], 1)
    assert hits >= 0.9 and hits > base + 0.5


def test_threshold_drops_weak_tags_and_fill_popular_fills_them():
    v = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0], [-1.0, -1.0]], np.float32)
    tags = [["a"], ["a"], ["b"], ["b"], []]
    tp = TagPredictor(k=2, threshold=0.5, center=False).fit(v, tags)
    assert [t for t, _ in tp.predict(np.array([[1.0, 0.0]]))[0]] == ["a"]
    assert tp.predict(np.array([[-1.0, -1.0]]))[0] == []
    tp2 = TagPredictor(k=2, threshold=0.5, center=False, fill_popular=True).fit(v, tags)
    assert len(tp2.predict_tags(np.array([[-1.0, -1.0]]))[0]) == 2


def test_centroids_are_unit_means_with_min_count():
    v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    names, c, counts = tag_centroids(v, [["x"], ["x", "y"], ["z"]], min_count=1)
    assert names[0] == "x" and counts.tolist() == [2, 1, 1]
    np.testing.assert_allclose(c[0], [2**-0.5, 2**-0.5], rtol=1e-6)
    with pytest.raises(ContentError, match="min_count"):
        tag_centroids(v, [["x"], ["y"], ["z"]], min_count=2)


def test_precision_at_k_and_popular():
    assert precision_at_k([["a", "b"], ["c"]], [["a"], ["d"]], 2) == pytest.approx(0.25)
    assert popular_tags([["a", "b"], ["b"], ["c"]], 2) == ["b", "a"]


def test_save_load_and_bad_input(tmp_path, catalogue, catalogue_vectors):
    tags = catalogue[0].notes["tags"].tolist()
    tp = TagPredictor(k=2).fit(catalogue_vectors, tags)
    tp.save(tmp_path / "t")
    again = TagPredictor.load(tmp_path / "t")
    assert again.predict(catalogue_vectors[:5]) == tp.predict(catalogue_vectors[:5])
    with pytest.raises(ContentError, match="vectors: expected dimension"):
        tp.predict(catalogue_vectors[:5, :3])
    with pytest.raises(ContentError, match="tags: 2 rows"):
        TagPredictor().fit(catalogue_vectors[:3], [["a"], ["b"]])
    (tmp_path / "t" / "config.json").write_text("{broken")
    with pytest.raises(ContentError, match="corrupt JSON"):
        TagPredictor.load(tmp_path / "t")
