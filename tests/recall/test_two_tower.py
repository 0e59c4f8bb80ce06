"""Two-tower: learns, round-trips through safetensors, embeds new notes from side info; FAISS grows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from notefeed.recall.ann import AnnIndex
from notefeed.recall.base import UserContext
from notefeed.recall.embedding import TwoTowerChannel
from notefeed.recall.features import note_side_tokens, tokenize_text

PARAMS = {"dim": 32, "epochs": 8, "batch_size": 128, "buckets": 4096, "lr": 5e-3, "seed": 0}


@pytest.fixture(scope="module")
def tower(tiny):
    return TwoTowerChannel(**PARAMS).fit(tiny)


def _leave_last_hits(ch, ds, k=20):
    """Share of users whose held-in last item's topic matches >= half of the top-k (structured data)."""
    topics = np.arange(ds.n_items) % 4
    hits = []
    for u in range(ds.n_users):
        ctx = UserContext(f"u{u}", u, history=np.empty(0, np.int64))
        c = ch.recall(ctx, k)
        hits.append(np.mean(topics[c.items] == u % 4))
    return float(np.mean(hits))


def test_learns_better_than_random(tower, tiny):
    # users' positives are all in topic u % 4: a random model gets ~0.25 of the top-k on-topic
    assert _leave_last_hits(tower, tiny) > 0.6


def test_save_load_identical(tower, tiny, tmp_path):
    tower.save(tmp_path / "tt")
    back = TwoTowerChannel.load(tmp_path / "tt")
    np.testing.assert_allclose(back.item_vectors, tower.item_vectors, atol=1e-6)
    ctx = UserContext("u3", 3, history=np.array([3, 7, 11]))
    np.testing.assert_allclose(back.user_vector(ctx), tower.user_vector(ctx), atol=1e-6)
    assert back.recall(ctx, 10).items.tolist() == tower.recall(ctx, 10).items.tolist()


def test_load_rejects_corrupt(tower, tmp_path):
    tower.save(tmp_path / "tt")
    (tmp_path / "tt" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        TwoTowerChannel.load(tmp_path / "tt")
    (tmp_path / "tt" / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="config.json"):
        TwoTowerChannel.load(tmp_path / "tt")


def test_new_note_from_side_info_is_retrievable(tiny):
    ch = TwoTowerChannel(**PARAMS).fit(tiny)
    n0 = ch.index.ntotal
    new = pd.DataFrame({"note_id": ["fresh1"], "author_id": ["c1"], "title": ["lipstick makeup glow"],
                        "text": ["lipstick makeup glow"], "tags": [["topic1", "sub3"]], "category": ["cat1"]})
    (idx,) = ch.add_items(new)
    assert idx == tiny.n_items and ch.index.ntotal == n0 + 1
    # its vector sits with topic 1 notes, not the others
    v = ch.item_vectors[idx]
    topics = np.arange(tiny.n_items) % 4
    sims = ch.item_vectors[: tiny.n_items] @ v
    assert np.argmax([sims[topics == t].mean() for t in range(4)]) == 1
    # a topic-1 user's query finds it
    ctx = UserContext("u1", 1, history=np.flatnonzero(topics == 1)[:5])
    assert idx in ch.recall(ctx, 60).items


def test_an_edited_note_is_encoded_again(tiny):
    ch = TwoTowerChannel(**PARAMS).fit(tiny)
    topics = np.arange(tiny.n_items) % 4
    i = int(np.flatnonzero(topics == 0)[3])  # a topic-0 note rewritten as a topic-2 one
    before = ch.item_vectors[i].copy()
    edited = pd.DataFrame({"note_id": [f"n{i}"], "author_id": ["c1"], "title": ["noodle recipe spicy"],
                           "text": ["noodle recipe spicy"], "tags": [["topic2", "sub1"]], "category": ["cat2"]})
    ch.replace_items(np.array([i]), edited)
    side = note_side_tokens(edited, PARAMS["buckets"])
    assert (ch.item_side[i] == side[0]).all()
    np.testing.assert_allclose(ch.item_vectors[i], ch.encode_items(np.array([i + 1]), side)[0], atol=1e-6)
    assert not np.allclose(ch.item_vectors[i], before)
    # the (exact) index holds the new vector: searching with it finds the note first, at its own score
    d, got = ch.index.search(ch.item_vectors[i][None], 1)
    assert got[0, 0] == i and np.isclose(d[0, 0], ch.item_vectors[i] @ ch.item_vectors[i], rtol=1e-5)
    assert ch.index.ntotal == tiny.n_items
    with pytest.raises(ValueError, match="outside"):
        ch.replace_items(np.array([tiny.n_items]), edited)


def test_chinese_side_info_tokenised():
    notes = pd.DataFrame({"note_id": ["zh", "en"], "author_id": ["c1", "c1"],
                          "title": ["周末去爬山的路线推荐", "weekend hiking route"], "text": ["", ""],
                          "tags": [[], []], "category": ["", ""]})
    tok = note_side_tokens(notes, buckets=4096, width=16)
    assert np.count_nonzero(tok[0]) >= 4  # author + several jieba words, not one blob
    assert np.count_nonzero(tok[1]) == 4  # author + 3 words
    assert tokenize_text("周末去爬山") != ["周末去爬山"]
    with pytest.raises(ValueError, match="tags"):
        note_side_tokens(notes.drop(columns=["tags"]), 64)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_faiss_add_without_rebuild(kind):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 16)).astype(np.float32)
    idx = AnnIndex(16, kind=kind)
    idx.add(x[:400], np.arange(400))
    before = idx.index
    idx.add(x[400:], np.arange(400, 500))
    assert idx.index is before and idx.ntotal == 500
    _, ids = idx.search(x[450:451], 1)
    assert ids[0, 0] == 450
    with pytest.raises(ValueError, match="vectors"):
        idx.add(np.full((1, 16), np.nan, np.float32), np.array([9]))
    with pytest.raises(ValueError, match="queries"):
        idx.search(np.zeros((1, 3)), 1)


def test_ivf_settings_reach_the_index_and_survive_save_and_state(tower, tiny, tmp_path):
    """``ann="ivf"`` with ``nprobe``: the channel's index is IVF with that many lists searched;
    save/load and to_state/from_state keep both; a bad setting is named at construction."""
    ch = TwoTowerChannel(ann="ivf", nprobe=3, **PARAMS).fit(tiny)
    assert ch.index.kind == "ivf" and ch.index._base.nprobe == min(3, ch.index._base.nlist)
    ctx = UserContext("u3", 3, history=np.array([3, 7, 11]))
    ch.save(tmp_path / "tt")
    back = TwoTowerChannel.load(tmp_path / "tt")
    assert (back.index.kind, back.nprobe, back.approx) == ("ivf", 3, "hnsw")
    assert back.recall(ctx, 10).items.tolist() == ch.recall(ctx, 10).items.tolist()
    params, arrays = ch.to_state()
    again = TwoTowerChannel.from_state(params, arrays)
    assert (again.index.kind, again.nprobe) == ("ivf", 3)
    assert TwoTowerChannel(approx="ivf", **PARAMS).approx == "ivf"
    with pytest.raises(ValueError, match="'approx' must be hnsw/ivf"):
        TwoTowerChannel(approx="pq", **PARAMS)
    with pytest.raises(ValueError, match="'nprobe' must be >= 1"):
        TwoTowerChannel(nprobe=0, **PARAMS)


def test_explore_channels_search_with_their_own_nprobe(tiny, monkeypatch):
    """The explore channels pass their ``nprobe`` to every search of the shared tower (None:
    the index's own); a bad value is named."""
    from notefeed.recall.explore import ESNoiseChannel, MultiInterestChannel

    tower = TwoTowerChannel(ann="ivf", nprobe=4, **PARAMS).fit(tiny)
    seen = []
    real = tower.index.search
    monkeypatch.setattr(tower.index, "search", lambda q, k, nprobe=None: seen.append(nprobe) or real(q, k, nprobe))
    ctx = UserContext("u3", 3, history=np.array([3, 7, 11, 40, 41]))
    for cls in (ESNoiseChannel, MultiInterestChannel):
        seen.clear()
        assert len(cls(tower=tower, nprobe=2).fit(tiny).recall(ctx, 20).items) > 0
        assert seen and set(seen) == {2}
        seen.clear()
        cls(tower=tower).fit(tiny).recall(ctx, 20)
        assert seen and set(seen) == {None}
        with pytest.raises(ValueError, match="'nprobe' must be >= 1"):
            cls(tower=tower, nprobe=0)
