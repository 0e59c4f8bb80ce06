"""Index behaviour: BM25 fields, Chinese, dense, round trip on disk, notes searchable at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from notefeed.search import DenseIndex, LexicalIndex, Retriever, SearchConfig, SearchPipeline
from notefeed.search.base import ParsedQuery, SearchError
from tests.search.conftest import make_notes


def _pq(*terms: str) -> ParsedQuery:
    return ParsedQuery(" ".join(terms), " ".join(terms), list(terms))


def test_retrievers_meet_the_contract(notes: pd.DataFrame) -> None:
    lex = LexicalIndex.build(notes)
    dense = DenseIndex.build(notes, dim=8)
    for r in (lex, dense):
        assert isinstance(r, Retriever)
        assert len(r) == len(notes)
        hits = r.retrieve(_pq("coffee"), 3)
        assert hits.items.dtype == np.int64 and len(hits.items) == len(hits.scores) <= 3
        assert np.all(np.diff(hits.scores) <= 1e-6)
        assert len(r.retrieve(_pq(), 3)) == 0


def test_bm25_fields_and_boosts(notes: pd.DataFrame) -> None:
    lex = LexicalIndex.build(notes)
    top = lex.retrieve(_pq("espresso"), 5).items.tolist()
    assert top[0] == 3 and set(top) == {0, 3}  # title match first
    assert lex.retrieve(_pq("c5"), 5).items.tolist() in ([6, 10], [10, 6])  # author field
    assert set(lex.retrieve(_pq("beauty"), 5).items.tolist()) == {6, 10}  # category field


def test_chinese_words_and_single_characters(pipe: SearchPipeline) -> None:
    assert pipe.search("外滩", 3).items[0] == 2
    assert pipe.search("火锅", 3).items[0] == 5
    assert 2 in pipe.search("滩", 3).items.tolist()  # one character inside a jieba word


def test_round_trip_on_disk(notes: pd.DataFrame, tmp_path: Path) -> None:
    cfg = SearchConfig(dense_dim=8)
    built = SearchPipeline.build(notes, cfg, path=tmp_path / "search")
    before = {q: built.search(q, 5) for q in ("coffee paris", "mountain", "外滩", "espreso")}
    built.close()
    files = {p.name for p in (tmp_path / "search").rglob("*")}
    assert {"catalog.json", "catalog.safetensors", "vectors.safetensors", "vocab.json"} <= files
    assert not any(f.endswith((".pkl", ".pickle")) for f in files)
    loaded = SearchPipeline.load(tmp_path / "search")
    assert loaded.note_ids == built.note_ids and loaded.categories == built.categories
    for q, r in before.items():
        got = loaded.search(q, 5)
        assert got.items.tolist() == r.items.tolist(), q
        np.testing.assert_allclose(got.scores, r.scores, rtol=1e-5)
    loaded.close()


def test_published_note_is_searchable_at_once(pipe: SearchPipeline, tmp_path: Path) -> None:
    new = make_notes([("p1", "Quokka selfie spot", "rottnest island quokka", ["quokka"], "travel", "c9")])
    assert pipe.search("quokka", 3).items.tolist() == []
    items = pipe.add_notes(new)
    assert items.tolist() == [12]
    assert pipe.search("quokka", 3).items[0] == 12  # dense neighbours may follow
    assert pipe.note_ids[12] == "p1" and pipe.categories[pipe.item_category[12]] == "travel"
    # and on disk: published, closed, reopened
    disk = SearchPipeline.build(make_notes(), SearchConfig(dense=False), path=tmp_path / "s")
    disk.add_notes(new)
    assert disk.search("quokka", 3).items.tolist() == [12]
    disk.close()
    again = SearchPipeline.load(tmp_path / "s")
    assert again.search("quokka", 3).items.tolist() == [12] and len(again) == 13
    again.close()


def test_duplicate_publish_refused(pipe: SearchPipeline) -> None:
    import pytest

    from notefeed.search import SearchError

    with pytest.raises(SearchError, match="note_id"):
        pipe.add_notes(make_notes()[:1])


def test_dense_index_kind_follows_the_config(notes: pd.DataFrame, tmp_path: Path) -> None:
    """From ``hnsw_min`` notes the dense index is the config's ``dense_ann`` (IVF by default),
    at build, after a publish and when loaded; with one list it answers as the exact one."""
    exact = SearchPipeline.build(notes, SearchConfig(dense_dim=8))
    assert exact.dense.ann.kind == "flat"
    cfg = SearchConfig(dense_dim=8, hnsw_min=5)
    assert cfg.dense_ann == "ivf"
    ivf = SearchPipeline.build(notes, cfg, path=tmp_path / "s")
    assert ivf.dense.ann.kind == "ivf" and ivf.dense.ann._base.nlist == 1
    qs = ("coffee paris", "mountain", "外滩")
    for q in qs:
        pq = ivf.understanding.parse(q)
        assert ivf.dense.retrieve(pq, 5).items.tolist() == exact.dense.retrieve(pq, 5).items.tolist(), q
    new = make_notes([("p1", "Quokka selfie spot", "rottnest island quokka", ["quokka"], "travel", "c9")])
    assert ivf.add_notes(new).tolist() == [12] and len(ivf.dense) == 13
    exact.add_notes(new)  # the published note is in the IVF lists: the same answers as exact
    for q in ("quokka island", *qs):
        pq = ivf.understanding.parse(q)
        assert ivf.dense.retrieve(pq, 13).items.tolist() == exact.dense.retrieve(pq, 13).items.tolist(), q
    ivf.close()
    assert SearchPipeline.load(tmp_path / "s", cfg).dense.ann.kind == "ivf"
    hnsw = SearchPipeline.load(tmp_path / "s", cfg.with_overrides(dense_ann="hnsw"))
    assert hnsw.dense.ann.kind == "hnsw" and len(hnsw.dense) == 13


def test_update_notes_replaces_an_edited_notes_index_entries(notes, config, tmp_path) -> None:
    """``SearchPipeline.update_notes``: the edited note is found by its new words only, its
    category, tags and topic row are the new ones, and editing it back restores the document
    frequencies exactly; saved and loaded with the edit position."""
    p = SearchPipeline.build(notes, config, path=tmp_path / "s")
    df0, n0 = dict(p.lexical.df), p.lexical.n_docs
    old = notes.iloc[[1]].reset_index(drop=True)
    new = old.assign(title=["Zephyrquux kayak"], text=["paddle a lake"], tags=[["kayak"]], category=["travel"])
    assert p.update_notes(old, new).tolist() == [1]
    assert p.search("zephyrquux").items[0] == 1 and 1 not in p.search("waterproof boots").items[:1].tolist()
    assert p.categories[p.item_category[1]] == "travel" and [p.tags[t] for t in p.item_tags[1]] == ["kayak"]
    assert p.lexical.df["zephyrquux"] == 1 and "waterproof" not in p.lexical.df and p.lexical.n_docs == n0
    assert p.lexical.index.searcher().num_docs == n0
    p.edits_seq = 7
    p.close()
    q = SearchPipeline.load(tmp_path / "s", config)
    assert q.edits_seq == 7 and q.search("zephyrquux").items[0] == 1
    np.testing.assert_array_equal(q.topics.arrays[0], p.topics.arrays[0])
    q.update_notes(new, old)
    assert dict(q.lexical.df) == df0 and q.search("waterproof boots").items[0] == 1
    with pytest.raises(SearchError, match="note_id"):
        q.update_notes(old.assign(note_id=["nope"]), new.assign(note_id=["nope"]))
    q.close()
