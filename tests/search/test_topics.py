"""Note topic mixtures (notefeed.search.topics) and the features built on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from notefeed.search import SearchConfig, SearchPipeline
from notefeed.search.evaluate import graded_metrics
from notefeed.search.fusion import FEATURES, PERSONAL, LearnedFusion, without_personal
from notefeed.search.intent import CategoryModel
from notefeed.search.topics import TopicTable, note_topics, refine_topics

WORDS = {c: [f"{c[:3]}{w}" for w in ("ba", "ce", "di", "fo", "gu", "ha", "ji", "ko", "lu", "ma", "ne", "po",
                                     "qu", "ri", "su", "ta", "vo", "wa", "xe", "yo")] for c in ("travel", "food", "art")}


def _doc(words: list[str]) -> dict[str, list[str]]:
    return {"title": [], "text": words, "tags": []}


def test_mixture_of_a_note_that_mixes_two_categories() -> None:
    rng = np.random.default_rng(0)
    docs = [_doc(rng.choice(WORDS[c], 12).tolist()) for c in ("food", "art") for _ in range(30)]
    model = CategoryModel().fit([d["text"] for d in docs], ["food"] * 30 + ["art"] * 30)
    half = _doc(WORDS["food"][:8] + WORDS["art"][:8])
    pure = _doc(WORDS["art"][3:13])
    ids, w = note_topics([half, pure, _doc(["unknownword"])], model)
    mix = TopicTable(ids, w).dense(np.arange(3), 2)  # categories sorted: art, food
    assert model.categories == ["art", "food"]
    np.testing.assert_allclose(mix[0], [0.5, 0.5], atol=0.1)
    assert mix[1, 0] > 0.95
    assert mix[2].sum() == 0  # no known word: no mixture
    np.testing.assert_allclose(w.sum(axis=1)[:2], 1.0, rtol=1e-5)


def test_refined_word_likelihoods_bring_mixtures_closer_to_the_truth() -> None:
    """Notes mix three categories with known weights and are labelled by their largest one: the
    naive-Bayes counts give each note's minor-topic words to its label, the refinement takes them
    back, and the estimated mixtures move toward the true ones."""
    rng = np.random.default_rng(3)
    cats = ("travel", "food", "art")
    docs, labels, truth = [], [], []
    for _ in range(400):
        w = rng.dirichlet([0.6, 0.6, 0.6])
        z = rng.choice(3, size=40, p=w)
        docs.append(_doc([str(rng.choice(WORDS[cats[k]])) for k in z]))
        labels.append(cats[int(np.argmax(w))])
        truth.append(w)
    model = CategoryModel().fit([d["text"] for d in docs], labels)
    order = [model.categories.index(c) for c in cats]
    truth_a = np.array(truth)

    def l1(m: CategoryModel) -> float:
        ids, wts = note_topics(docs, m, top=3)
        return float(np.abs(TopicTable(ids, wts).dense(np.arange(len(docs)), 3)[:, order] - truth_a).sum(axis=1).mean())

    refined = refine_topics(model, docs, rounds=3)
    assert refined is not model and refined.vocab is model.vocab and refined.categories == model.categories
    np.testing.assert_array_equal(refined.log_prior, model.log_prior)
    base, better = l1(model), l1(refined)
    assert better < 0.85 * base, (base, better)  # 0.231 -> 0.180 here
    # a category's own words are likelier under it after refinement than before (the leak is taken back)
    own = [model.vocab[w] for w in WORDS["art"]]
    j = model.categories.index("art")
    assert np.exp(refined.log_lik[own, j]).sum() > np.exp(model.log_lik[own, j]).sum()
    np.testing.assert_allclose(np.exp(refined.log_lik).sum(axis=0), 1.0, rtol=1e-4)
    assert refine_topics(model, docs, rounds=0) is model
    assert refine_topics(model, [], rounds=3) is model  # nothing to learn from: the model as it was
    assert refine_topics(model, [_doc(["unknownword"])], rounds=3) is model
    assert refine_topics(CategoryModel(), docs, rounds=3).categories == []


def _planted() -> tuple[pd.DataFrame, list[np.ndarray], list[np.ndarray]]:
    """Pure food and art notes, and 'paris' travel notes with a little food or art in them (all
    in category travel, same tags): only the mixture tells a food-lover's paris note apart."""
    rng = np.random.default_rng(1)
    rows = []
    for c in ("food", "art"):
        for _ in range(40):
            rows.append((" ".join(rng.choice(WORDS[c], 12)), c, [c]))
    secondary = []
    for j in range(60):
        c = ("food", "art")[j % 2]
        words = ["paris"] * int(rng.integers(1, 4)) + rng.choice(WORDS["travel"], 9).tolist() \
            + rng.choice(WORDS[c], 4).tolist()
        rows.append((" ".join(rng.permutation(words)), "travel", ["paris"]))
        secondary.append(c)
    notes = pd.DataFrame({"note_id": [f"n{i}" for i in range(len(rows))], "title": "",
                          "text": [r[0] for r in rows], "category": [r[1] for r in rows],
                          "tags": [r[2] for r in rows], "author_id": "a"})
    paris = 80 + np.arange(60)
    sec = np.array(secondary)
    hists, rels = [], []
    for u in range(40):  # a food lover and an art lover in turn; history: five pure notes
        c = ("food", "art")[u % 2]
        hists.append(rng.choice(np.arange(40) + (0 if c == "food" else 40), 5, replace=False))
        rels.append({int(i): 2 if s == c else 1 for i, s in zip(paris, sec, strict=True)})
    return notes, hists, rels


def _ndcg(pipe: SearchPipeline, fusion: LearnedFusion, hists: list[np.ndarray], rels: list[dict[int, int]],
          personal: bool) -> float:
    pipe.fusion = fusion
    ranked = []
    for h in hists:
        pq = pipe.understanding.parse("paris")
        lex, dense = pipe.retrieve(pq)
        items, x = pipe.features(pq, lex, dense, pipe.profile(h))
        s = pipe.score(x, lex, dense, personal=personal, fusion="learned")
        ranked.append(items[np.argsort(-s, kind="stable")])
    return graded_metrics(ranked, rels)["ndcg@10"]


def _fit(pipe: SearchPipeline, hists: list[np.ndarray], rels: list[dict[int, int]],
         features: tuple[str, ...], personal: bool) -> LearnedFusion:
    xs, ys = [], []
    for h, rel in zip(hists, rels, strict=True):
        pq = pipe.understanding.parse("paris")
        lex, dense = pipe.retrieve(pq)
        items, x = pipe.features(pq, lex, dense, pipe.profile(h))
        xs.append(x if personal else without_personal(x))
        ys.append(np.array([rel.get(int(i), 0) / 2 for i in items]))
    return LearnedFusion(features=features).fit(np.concatenate(xs), np.concatenate(ys))


def test_user_topic_lifts_ndcg_on_a_planted_log() -> None:
    notes, hists, rels = _planted()
    pipe = SearchPipeline.build(notes, SearchConfig(dense=False, spelling=False))
    tr, te = slice(0, 20), slice(20, 40)
    with_topic = _fit(pipe, hists[tr], rels[tr], FEATURES, True)
    no_topic = _fit(pipe, hists[tr], rels[tr], tuple(f for f in FEATURES if f != "user_topic"), True)
    base = _fit(pipe, hists[tr], rels[tr], FEATURES, False)
    got = _ndcg(pipe, with_topic, hists[te], rels[te], True)
    without = _ndcg(pipe, no_topic, hists[te], rels[te], True)
    anon = _ndcg(pipe, base, hists[te], rels[te], False)
    # the other personal features cannot tell the notes apart (one category, one tag, no vectors)
    assert without < anon + 0.05
    assert got > anon + 0.2 and got > 0.95
    assert with_topic.weights[FEATURES.index("user_topic")] > 0


def test_topics_persist_and_follow_published_notes(tmp_path: Path) -> None:
    notes, hists, _ = _planted()
    pipe = SearchPipeline.build(notes.iloc[:100], SearchConfig(dense=False), path=tmp_path / "s")
    added = pipe.add_notes(notes.iloc[100:])
    assert len(pipe.topics) == len(notes)
    want = pipe.topics.dense(added, len(pipe.intent.categories))
    assert (want.sum(axis=1) > 0.99).all()
    pipe.close()
    back = SearchPipeline.load(tmp_path / "s")
    np.testing.assert_array_equal(back.topics.dense(added, len(back.intent.categories)), want)
    pq = back.understanding.parse("paris")
    lex, dense = back.retrieve(pq)
    _, x = back.features(pq, lex, dense, back.profile(hists[0]))
    assert (x[:, FEATURES.index("topic_match")] > 0).all() and (x[:, FEATURES.index("user_topic")] > 0).any()
    back.close()


def test_without_personal_zeroes_exactly_the_user_columns() -> None:
    x = np.arange(2 * len(FEATURES), dtype=np.float32).reshape(2, -1) + 1
    y = without_personal(x)
    for j, f in enumerate(FEATURES):
        assert (y[:, j] == 0).all() == (f in PERSONAL)
    assert (x != 0).all()  # a copy


def test_old_fusion_weights_pick_their_columns_by_name() -> None:
    f = LearnedFusion(np.array([2.0, 1.0]), ["lex_score"])
    x = np.zeros((3, len(FEATURES)))
    x[:, FEATURES.index("lex_score")] = [0.0, 1.0, 2.0]
    np.testing.assert_allclose(f.score(x), [1.0, 3.0, 5.0])
    with pytest.raises(Exception, match="unknown"):
        LearnedFusion(np.zeros(2), ["no_such_feature"])


def test_a_query_of_unknown_words_takes_its_rewrites_categories(notes: pd.DataFrame) -> None:
    pipe = SearchPipeline.build(notes, SearchConfig(dense_dim=8, spelling=False))
    pq = pipe.understanding.parse("zzqxv", rewrite=False)
    assert pq.categories == []
    pq.rewrites = ["espresso latte"]
    lex, dense = pipe.retrieve(pq)
    items, x = pipe.features(pq, lex, dense, None)
    food = np.array([pipe.categories[c] == "food" for c in pipe._cat_arr[items]])
    cm, tm = x[:, FEATURES.index("category_match")], x[:, FEATURES.index("topic_match")]
    assert food.any() and (cm[food] > 0.5).all() and (tm[food] > tm[~food].max(initial=0.0)).all()
    pq.rewrites = []
    _, x0 = pipe.features(pq, *pipe.retrieve(pq), None)
    assert not x0[:, FEATURES.index("category_match")].any() and not x0[:, FEATURES.index("topic_match")].any()
    pipe.close()


def test_a_saved_trees_fusion_serves_the_same_pages(tmp_path: Path) -> None:
    notes, hists, rels = _planted()
    pipe = SearchPipeline.build(notes, SearchConfig(dense=False, spelling=False), path=tmp_path / "s")
    pipe.fusion = LearnedFusion(model="trees")
    xs, ys = [], []
    for h, rel in zip(hists[:20], rels[:20], strict=True):
        pq = pipe.understanding.parse("paris")
        lex, dense = pipe.retrieve(pq)
        items, x = pipe.features(pq, lex, dense, pipe.profile(h))
        xs.append(x)
        ys.append(np.array([rel.get(int(i), 0) / 2 for i in items]))
    pipe.fusion.fit(np.concatenate(xs), np.concatenate(ys), min_leaf=5)
    pages = [pipe.search("paris", 10, history=h, fusion="learned").items.tolist() for h in hists[20:]]
    pipe.close()
    back = SearchPipeline.load(tmp_path / "s")
    assert back.fusion is not None and back.fusion.model == "trees"
    assert [back.search("paris", 10, history=h, fusion="learned").items.tolist() for h in hists[20:]] == pages
    ranked = [np.array(p) for p in pages]
    assert graded_metrics(ranked, rels[20:])["ndcg@10"] > 0.95
    back.close()


def _plain_topics(docs, model: CategoryModel, iters: int = 5, top: int = 4):
    """The mixtures one note at a time: EM from the uniform mixture over the note's known tokens."""
    lik = np.exp(np.asarray(model.log_lik, np.float64))
    k = min(top, len(model.categories))
    ids, wts = np.zeros((len(docs), k), np.int64), np.zeros((len(docs), k))
    for j, d in enumerate(docs):
        toks = [model.vocab[t] for t in (*d["title"], *d["text"], *d["tags"]) if t in model.vocab]
        if not toks:
            continue
        w, cnt = np.unique(toks, return_counts=True)
        theta = np.full(lik.shape[1], 1.0 / lik.shape[1])
        for _ in range(iters):
            theta = theta * ((cnt / (lik[w] @ theta)) @ lik[w])
            theta /= theta.sum()
        o = np.argsort(-theta, kind="stable")[:k]
        ids[j], wts[j] = o, theta[o] / theta[o].sum()
    return ids, wts


def test_note_topics_equal_a_note_at_a_time_em() -> None:
    """The batched EM (all notes' tokens looked up at once, chunked CSR steps) gives each note
    the mixture a plain one-note EM gives, unknown tokens and empty notes included."""
    from notefeed.search.lexical import analyze_notes
    from notefeed.sim.community import generate

    notes = generate("100k", seed=3, n_notes=400, n_creators=30).notes
    docs = analyze_notes(notes)
    docs[5] = {"title": [], "text": [], "tags": []}
    docs[6] = {"title": ["zzzunknownzzz"], "text": [], "tags": []}
    model = CategoryModel().fit([d["title"] + d["text"] + d["tags"] for d in docs[10:210]],
                                notes["category"].astype(str).tolist()[10:210])
    assert "zzzunknownzzz" not in model.vocab
    ids, wts = note_topics(docs, model)
    want_ids, want_wts = _plain_topics(docs, model)
    assert (wts[5] == 0).all() and (wts[6] == 0).all()
    np.testing.assert_allclose(wts, want_wts, atol=2e-4)
    big = want_wts > want_wts.max(axis=1, keepdims=True) * 1e-3  # ties among tiny weights may order either way
    assert (ids[big] == want_ids[big]).all()


def test_chunks_on_two_threads_give_one_threads_mixtures_and_likelihoods(monkeypatch) -> None:
    """Small chunks, so that the EM runs on several of them: on two threads (two cores) the
    mixtures and the refined likelihoods are those of one thread, to the last bit (the chunks
    are summed in their order)."""
    import notefeed.search.topics as topics

    rng = np.random.default_rng(5)
    cats = ("travel", "food", "art")
    docs = [_doc([str(rng.choice(WORDS[cats[k]])) for k in rng.choice(3, size=30, p=rng.dirichlet([0.5] * 3))])
            for _ in range(300)]
    model = CategoryModel().fit([d["text"] for d in docs], [cats[i % 3] for i in range(300)])
    monkeypatch.setattr(topics, "_CHUNK_NNZ", 500)
    runs = []
    for cores in (1, 2):
        monkeypatch.setattr(topics.os, "cpu_count", lambda cores=cores: cores)
        refined = refine_topics(model, docs, rounds=2)
        runs.append((refined.log_lik, *note_topics(docs, refined)))
    assert len(topics._row_chunks(topics._counts(docs, model.vocab))) > 10
    for one, two in zip(*runs, strict=True):
        np.testing.assert_array_equal(one, two)


def test_entry_dots_are_the_mixture_likelihood_products() -> None:
    """``P(t | note)`` for each stored (note, token): the dot product of the note's mixture and
    the token's likelihoods, also when the CSR's row pointers and columns differ in type."""
    import scipy.sparse as sp

    from notefeed.search.topics import _entry_dots

    rng = np.random.default_rng(2)
    counts = sp.random(40, 30, density=0.2, format="csr", dtype=np.float32, random_state=3)
    theta, lik = rng.random((40, 6), dtype=np.float32), rng.random((30, 6), dtype=np.float32)
    rows = np.repeat(np.arange(40), np.diff(counts.indptr))
    want = np.einsum("ij,ij->i", theta[rows], lik[counts.indices])
    got = _entry_dots(counts, theta, lik)
    assert got.dtype == np.float32 and got.shape == (counts.nnz,)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    wide = counts.copy()
    wide.indptr = counts.indptr.astype(np.int64)  # SciPy's constructor would make both int32
    assert wide.indptr.dtype != wide.indices.dtype
    np.testing.assert_array_equal(_entry_dots(wide, theta, lik), got)
