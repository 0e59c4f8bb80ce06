"""Pairs mining, the llm/notellm and llm/interest channels, titles and rewrites, the eval helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from notefeed.llm.interest import Interest, InterestChannel, infer_interests, merge_duplicates
from notefeed.llm.notellm import NoteLLMChannel
from notefeed.llm.pairs import cooccurrence_matrix, mine_pairs
from notefeed.llm.tasks import LLMRewriter, rewrite_query, suggest_titles
from notefeed.recall.base import CHANNELS, UserContext
from notefeed.search.base import REWRITERS
from tests.recall.conftest import make_community

TINY = dict(dim=16, layers=1, heads=2, max_len=16, out_dim=16, epochs=6, batch_size=32, lr=1e-2, lm_every=1)


@pytest.fixture(scope="module")
def community():
    return make_community(n_users=80, n_notes=80, per_user=8)


@pytest.fixture(scope="module")
def notellm(community):
    return NoteLLMChannel(**TINY).fit(community)


def test_pairs_normalised_capped_unique():
    # users 0 and 1 both read 0 then 1; user 2 reads 0 then 2, and 9 other notes
    user = np.array([0, 0, 1, 1] + [2] * 11)
    item = np.array([0, 1, 0, 1, 0, 2] + list(range(3, 12)))
    ts = np.arange(len(user))
    m = cooccurrence_matrix(user, item, ts, 12, window=1)
    assert m[0, 1] == m[1, 0] and m[0, 1] > m[0, 2] > 0  # the heavy user's pair weighs less
    pairs, scores = mine_pairs(user, item, ts, 12, window=1, top_k=1, cap=1)
    assert len(np.unique(pairs[:, 0] * 12 + pairs[:, 1])) == len(pairs) and (pairs[:, 0] < pairs[:, 1]).all()
    assert np.bincount(pairs.ravel()).max() <= 2 and scores.dtype == np.float32


def test_notellm_channel_recalls_the_topic_and_new_notes(notellm, community):
    assert "llm/notellm" in CHANNELS and "llm/interest" in CHANNELS
    topics = np.arange(80) % 4
    hist = np.flatnonzero(topics == 1)[:5]
    c = notellm.recall(UserContext("u", history=hist), 10)
    assert len(c) == 10 and not np.isin(c.items, hist).any()
    assert (topics[c.items] == 1).mean() >= 0.8
    s = notellm.score_items(UserContext("u", history=hist), np.array([hist[-1] + 4, hist[-1] + 1]))
    assert s[0] > s[1]
    assert notellm.item_vectors.shape == (80, 16)
    new = notellm.add_notes(["noodle recipe spicy noodle", "python code bug fix"])
    assert list(new) == [80, 81]
    near = notellm.neighbours(80, 5).items
    assert (topics[near[near < 80]] == 2).mean() >= 0.6
    params, arrays = notellm.to_state()
    again = NoteLLMChannel.from_state(params, arrays)
    np.testing.assert_allclose(again.item_vectors, notellm.item_vectors, atol=1e-6)
    assert again.version == notellm.version
    assert len(again.recall(UserContext("x"), 5)) == 0


def test_notellm_save_load_and_version_check(notellm, tmp_path):
    notellm.save(tmp_path / "v")
    again = NoteLLMChannel.load(tmp_path / "v")
    np.testing.assert_allclose(again.item_vectors, notellm.item_vectors)
    meta = (tmp_path / "v" / "meta.json").read_text().replace(notellm.version, "000000000000")
    (tmp_path / "v" / "meta.json").write_text(meta)
    with pytest.raises(ValueError, match="version"):
        NoteLLMChannel.load(tmp_path / "v")


def test_interest_channel_and_inference(notellm, community):
    ch = InterestChannel(**TINY)
    ch.lm = notellm.lm
    from notefeed.llm.corpus import NoteCorpus

    ch.set_notes(NoteCorpus.from_dataset(community))
    topics = np.arange(80) % 4
    hist = np.flatnonzero(topics == 3)[:6]
    ints = ch.interests(UserContext("u", history=hist))
    assert ints and ints[0].tag == "topic3" and 0 < ints[0].confidence <= 1
    c = ch.recall(UserContext("u", history=hist), 8)
    assert len(c) == 8 and (topics[c.items] == 3).all()
    assert ch.score_items(UserContext("u", history=hist), c.items[:2]).min() > 0
    again = InterestChannel.from_state(*ch.to_state())
    assert [i.tag for i in again.interests(UserContext("u", history=hist))] == [i.tag for i in ints]
    # the model's tags are embedded once, not per request, and merge as embedding them anew does
    lm, vecs = notellm.lm, ch._tag_vectors()
    for t in lm.tags:
        np.testing.assert_allclose(vecs[t], lm.embed([t.replace("-", " ")])[0], atol=1e-5)
    def fresh():
        return [Interest(t, 1.0 - 0.01 * j) for j, t in enumerate(lm.tags)]
    merged = merge_duplicates(fresh(), lm, vectors=vecs)
    assert any(i.merged for i in merged)  # the comparison below covers merging, not only keeping
    assert [(i.tag, i.merged) for i in merged] == [(i.tag, i.merged) for i in merge_duplicates(fresh(), lm)]
    calls = []
    embed = lm.embed
    lm.embed = lambda texts, *a, **k: calls.append(len(texts)) or embed(texts, *a, **k)
    try:
        ch.interests(UserContext("u", history=hist))
        ch.recall(UserContext("u", history=hist[:3]), 8)
    finally:
        del lm.embed
    assert calls == []
    assert (again.slots, again.latent_only) == (0, False)
    ch.slots, ch.latent_only = 2, True  # the page-slot flags survive the saved state
    again = InterestChannel.from_state(*ch.to_state())
    assert (again.slots, again.latent_only, again.side) == (2, True, True)
    ch.latent_level = "category"  # and the category level with each note's category
    again = InterestChannel.from_state(*ch.to_state())
    assert again.latent_level == "category" and again.categories == ch.categories
    assert again.item_cat.tolist() == ch.item_cat.tolist() and (ch.item_cat >= 0).all()
    ch.slot_rank, ch.item_rate = "engagement", np.linspace(0, 1, 80, dtype=np.float32)  # and the engagement rank
    again = InterestChannel.from_state(*ch.to_state())
    assert again.slot_rank == "engagement" and again.item_rate.tolist() == ch.item_rate.tolist()
    ch.slot_rank = "match"
    np.testing.assert_allclose(again.latent_categories(UserContext("u", history=hist)),
                               ch.latent_categories(UserContext("u", history=hist)))
    ch.slots, ch.latent_only, ch.latent_level = 0, False, "tag"
    # published notes are tagged at once: one by its text alone, one by its catalogue tag
    other = np.flatnonzero(topics == 0)[0]
    new = pd.DataFrame({"title": ["", ""], "text": [community.notes["text"].iat[int(hist[0])],
                                                    community.notes["text"].iat[int(other)]],
                        "tags": [[], ["topic3"]]})
    assert ch.n_indexed == 80 and ch.add_items(new).tolist() == [80, 81] and ch.n_indexed == 82
    s = ch.score_items(UserContext("u", history=hist), np.array([80, 81, other]))
    assert s[0] > s[2] and s[1] > s[2]
    assert set(ch.recall(UserContext("u", history=hist), 40).items.tolist()) >= {80, 81}
    # an edited note is tagged again: note 81 rewritten as the user's topic, ``other`` away from it
    before = ch.score_items(UserContext("u", history=hist), np.array([other]))[0]
    ch.replace_items(np.array([other, 81]), pd.DataFrame({
        "title": ["", ""], "text": [community.notes["text"].iat[int(hist[0])], community.notes["text"].iat[int(other)]],
        "tags": [["topic3"], []], "category": ["c3", ""]}))
    assert ch.note_probs.shape[0] == ch.item_tags.shape[0] == len(ch.item_cat) == 82
    s = ch.score_items(UserContext("u", history=hist), np.array([other, 81]))
    assert s[0] > before and s[0] > s[1]
    assert ch.item_cat[other] == ch.categories.index("c3") and ch.item_cat[81] == -1
    with pytest.raises(ValueError, match="twice"):
        ch.replace_items(np.array([1, 1]), pd.DataFrame({"title": ["", ""], "text": ["", ""], "tags": [[], []]}))
    texts = [community.notes["text"].iat[int(i)] for i in hist]
    got = infer_interests(notellm.lm, [texts, []], k=3)
    assert got[1] == [] and got[0][0].tag == "topic3"


class _Echo:
    """A fake chat backend: fixed answers, embeddings that make 'travel' and 'travelling' twins."""

    name = "fake"
    prompt_style = "chat"

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def embed(self, texts):
        return np.array([[1.0, 0.0] if t.startswith("travel") else [0.0, 1.0] for t in texts], np.float32)

    def generate(self, prompts, max_tokens=32, *, temperature=0.0, stop=None):
        return [self.answer for _ in prompts]


def test_chat_backends_for_interests_titles_rewrites():
    lm = _Echo("travel: 0.9\ntravelling: 0.7\ncooking: 0.4\nnot a line")
    got = infer_interests(lm, [["a trip to rome"]], k=5)[0]
    assert [(i.tag, i.merged) for i in got] == [("travel", ["travelling"]), ("cooking", [])]
    assert merge_duplicates([Interest("a", 0.5)], lm)[0].tag == "a"
    assert suggest_titles(_Echo("1. Rome in a day\n2. Rome in a day\n- Pasta"), "we walked", 3) == \
        ["Rome in a day", "Pasta"]
    assert rewrite_query(_Echo("cheap flights\nflights"), "Flights") == ["cheap flights"]
    rw = REWRITERS.create("rewrite/llm", lm=_Echo("cheap flights"))
    assert isinstance(rw, LLMRewriter) and rw.rewrite("flights") == ["cheap flights"] == rw.rewrite("flights")


def test_builtin_titles_and_rewrites(notellm):
    titles = suggest_titles(notellm.lm, "noodle recipe spicy", 2)
    assert 1 <= len(titles) <= 2 and all(isinstance(t, str) for t in titles)
    assert rewrite_query(notellm.lm, "noodle", n=2, min_prob=0.0)
    with pytest.raises(ValueError, match="body"):
        suggest_titles(notellm.lm, "  ")


def test_eval_helpers():
    from notefeed.eval.stages import run_stage
    from notefeed.llm.evaluate import ranks_of

    v = np.eye(4, dtype=np.float32)
    v[1] = [0.9, 0.1, 0, 0]
    v[3] = [0.1, 0, 0.9, 0]
    r = ranks_of(lambda q: v[q] @ v.T, np.array([0, 2, 0]), np.array([1, 0, 2]))
    assert r[0] == 0 and r[1] == 1.5 and r[2] == 2  # note 0 ties with note 1: ranks 1 and 2, mean 1.5
    with pytest.raises(ValueError, match="unknown llm method"):
        run_stage("llm", ["sim-tiny"], ["bert"], 0, True, None)


def test_latent_categories_from_cooccurrence():
    """``latent_source: cooccurrence``: a category's latent score is P(engages it | engages the
    recent notes' categories) among the log's users; engaging takes a quarter of the user's positives."""
    from notefeed.data.dataset import Dataset
    from notefeed.llm.interest import category_cooccurrence

    notes = pd.DataFrame({"note_id": [f"n{i}" for i in range(8)], "category": list("aabbccdd")})
    rows = []
    # users 0-2 engage a and b (twice each); user 3 engages a and c; user 4 engages a four times and
    # clicks d once (a fifth of their positives: no interest)
    for u, cats in [(0, "ab"), (1, "ab"), (2, "ab"), (3, "ac"), (4, "aa")]:
        for c in cats:
            i = "abcd".index(c) * 2
            rows += [(f"u{u}", f"n{i}", "click"), (f"u{u}", f"n{i + 1}", "like")]
    rows.append(("u4", "n6", "click"))
    ev = pd.DataFrame(rows, columns=["user_id", "note_id", "type"]).assign(ts=np.arange(len(rows)))
    ds = Dataset.build("planted", ev, notes=notes)
    item_cat = np.array([ord(c) - ord("a") for c in ds.notes["category"]], np.int32)  # in item order
    cond = category_cooccurrence(ds, item_cat, 4)
    np.testing.assert_allclose(cond[0], [0, 3 / 5, 1 / 5, 0])  # d: a stray click is no interest
    np.testing.assert_allclose(cond[1], [1, 0, 0, 0])
    with pytest.raises(ValueError, match="latent_level"):
        InterestChannel(latent_source="cooccurrence")
    with pytest.raises(ValueError, match="latent_source"):
        InterestChannel(latent_source="llm", latent_level="category")
    ch = InterestChannel(latent_source="cooccurrence", latent_level="category")
    ch.categories, ch.item_cat, ch.cat_cond = list("abcd"), item_cat, cond
    got = ch._category_scores(np.flatnonzero(item_cat == 0), np.zeros(0))
    np.testing.assert_allclose(got, [0, 3 / 5, 1 / 5, 0])  # a itself is not latent


def test_replace_rows_equals_a_row_assignment():
    import scipy.sparse as sp

    from notefeed.llm.interest import _replace_rows

    rng = np.random.default_rng(3)
    for t in range(50):
        n, d = int(rng.integers(1, 40)), int(rng.integers(1, 30))
        m = sp.random(n, d, density=0.2, format="csr", random_state=t, dtype=np.float32)
        items = rng.choice(n, int(rng.integers(0, n + 1)), replace=False)
        rows = sp.random(len(items), d, density=0.3, format="csr", random_state=100 + t, dtype=np.float32)
        want = m.toarray()
        want[items] = rows.toarray()
        got = _replace_rows(m, items, rows)
        assert got.dtype == m.dtype
        np.testing.assert_array_equal(got.toarray(), want)
