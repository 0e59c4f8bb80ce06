"""The batched, cached analysis gives exactly the tokens of the plain one (normalise + tokenize)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from notefeed.content.text import has_cjk, tokenize
from notefeed.search.lexical import analyze_notes
from notefeed.search.text import (
    FIELDS,
    analyze,
    analyze_many,
    clear_caches,
    normalise,
    note_fields,
    tokens_of,
)

TRICKY = [
    "", " ", "Best Coffee in Paris!", "ＡＢＣ１２３ full width", "ΟΔΟΣ ΣΟΦΙΑΣ Σ", "ὈΔΥΣΣΕΎΣ",
    "\u0301accent first", "café crème", "hello世界_x 上海外滩", "今天去上海外滩拍照，夜景非常好看！",
    "⼀⼆ Kangxi radicals", "㈠㈡ parenthesised", "tab\tnew\nline\r\n  spaces", "nul\x00inside\x00text",
    "emoji 😀 and 中文😀混合", "İstanbul ǅemal", "北京Beijing2024年", "c++ #tag 50% a.b-c", "ß straße",
    "ﬁ ligature", "①②③ ⅷ", "日本語のテキストと한국어", "\u3000全角\u3000空格\u3000",
]


def _plain(t: str) -> list[str]:
    return tokenize(normalise(t))


def test_analyze_many_matches_the_plain_analysis() -> None:
    clear_caches()
    rng = np.random.default_rng(0)
    texts = TRICKY + ["".join(rng.choice(TRICKY, 3)) for _ in range(200)]
    want = [_plain(t) for t in texts]
    assert analyze_many(texts) == want
    assert analyze_many(texts) == want  # from the caches
    assert [analyze(t) for t in texts] == want
    assert analyze_many(texts[:3] + ["a\x00b"]) == [_plain(t) for t in texts[:3] + ["a\x00b"]]
    assert [tokens_of(t) for t in texts] == [tokenize(t) for t in texts]


@pytest.mark.parametrize("batch_min_chars", [0, 10**9])  # han blocks cut together / one by one
def test_analyze_notes_matches_the_plain_analysis(monkeypatch, batch_min_chars: int) -> None:
    import notefeed.search.text as st
    from notefeed.sim.community import generate

    monkeypatch.setattr(st, "BATCH_MIN_CHARS", batch_min_chars)
    clear_caches()

    notes = generate("100k", seed=1, n_notes=400, n_creators=40).notes
    assert any(has_cjk(t) for t in notes["title"])  # the sample has Chinese notes
    extra = pd.DataFrame({"note_id": [f"x{i}" for i in range(len(TRICKY))], "title": TRICKY,
                          "text": TRICKY[::-1], "tags": [[t, "tag"] for t in TRICKY], "category": "c",
                          "author_id": "a"})
    notes = pd.concat([notes, extra], ignore_index=True)
    raw = note_fields(notes)
    got = analyze_notes(notes)
    for j, toks in enumerate(got):
        want = {f: _plain(raw[f][j]) for f in FIELDS}
        assert {f: toks[f] for f in FIELDS} == want
        words = want["title"] + want["text"] + want["tags"]
        assert toks["grams"] == [ch for t in words if len(t) > 1 and has_cjk(t) for ch in t]


def test_parallel_segmentation_gives_the_same_tokens(monkeypatch) -> None:
    import notefeed.search.text as st

    clear_caches()
    rng = np.random.default_rng(2)
    zh = [t for t in TRICKY if has_cjk(t)]
    texts = ["".join(rng.choice(zh, 2)) + str(i) + "，好看" for i in range(60)] + TRICKY
    monkeypatch.setattr(st, "PARALLEL_MIN_CHARS", 10)
    got, cjk = st.analyze_batch(texts, workers=2)
    assert got == [_plain(t) for t in texts]
    assert cjk == [has_cjk(normalise(t)) for t in texts]


def test_plain_tokens_batch_matches_tokenize() -> None:
    from notefeed.search.text import analyze_batch

    rng = np.random.default_rng(3)
    texts = TRICKY + ["".join(rng.choice(TRICKY, 3)) for _ in range(200)] + ["İx Σς ABC"]
    got, cjk = analyze_batch(texts, normalised=False)
    assert got == [tokenize(t) for t in texts]
    assert cjk == [has_cjk(t) for t in texts]


def test_repeated_texts_are_analysed_once_each_row_getting_its_own_list() -> None:
    from notefeed.search.text import analyze_batch

    clear_caches()
    texts = [TRICKY[i % 4 + 7] for i in range(40)]  # 4 distinct texts in 40, CJK among them
    for normalised in (True, False):
        got, cjk = analyze_batch(texts, normalised=normalised)
        plain = _plain if normalised else tokenize
        assert got == [plain(t) for t in texts]
        assert cjk == [has_cjk(normalise(t) if normalised else t) for t in texts]
        got[0].append("x")
        assert got[4] == plain(texts[4])  # no list shared between rows
    assert analyze_batch([]) == ([], [])


def test_han_blocks_cut_exactly_as_jieba() -> None:
    import jieba
    import jieba.finalseg as fs

    from notefeed.search.segment import PURE_HAN, cut_pure_han
    from notefeed.search.text import _cut_han, _hmm_cut, _jb
    from notefeed.sim.community import generate

    _jb().dt.check_initialized()
    rng = np.random.default_rng(7)
    pool = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
                "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点"
                "从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又"
                "魑魅魍魉饕餮貔貅麒麟犇骉龘靐齉爨ABCxyz0123456789+#&._%-") + [" ", "，", "。", "！", "\n"]
    texts = ["".join(rng.choice(pool, int(rng.integers(1, 60)))) for _ in range(3000)]
    notes = generate("100k", seed=3, n_notes=3000, n_creators=100).notes
    texts += [t for t in notes["text"].tolist() + notes["title"].tolist() if has_cjk(t)]
    try:
        from notefeed.data.loaders import load_dataset

        q = load_dataset("qilin")
        texts += q.notes["text"].tolist() + q.notes["title"].tolist() + q.meta["queries"]["text"].tolist()
    except FileNotFoundError:
        pass
    n_blocks = 0
    pure = []
    for t in texts:
        for blk in jieba.re_han_default.split(t):
            if blk and jieba.re_han_default.match(blk):
                n_blocks += 1
                assert _cut_han(blk) == jieba.lcut(blk), blk
                pure += [blk] if PURE_HAN.fullmatch(blk) else []
        assert _hmm_cut(t) == list(fs.cut(t)), t
    assert n_blocks > 5000
    # the batch cutter, also on characters of the whole range (thousands have no HMM emission
    # probability, so whole paths tie at jieba's MIN_FLOAT) and with blocks past max_len
    han = [chr(c) for c in range(0x4E00, 0x9FD6)]
    unseen = [c for c in han if c not in fs.emit_P["B"] and c not in fs.emit_P["S"]]
    assert len(unseen) > 1000
    pure += ["".join(rng.choice(han, int(rng.integers(1, 50)))) for _ in range(2000)]
    pure += ["".join(rng.choice(unseen + han[:40], int(rng.integers(1, 12)))) for _ in range(1000)]
    want = [jieba.lcut(b) for b in pure]
    assert cut_pure_han(pure, _jb().dt, _cut_han) == want
    assert cut_pure_han(pure, _jb().dt, _cut_han, max_len=20) == want
    assert cut_pure_han(pure, _jb().dt, _cut_han, chunk_chars=500) == want  # many chunks
    assert max(map(len, pure)) > 20 and len(pure) > 5000


def test_batch_cut_falls_back_on_an_ill_formed_state_sequence(monkeypatch) -> None:
    """A run whose HMM states are not B M* E / S (jieba would then drop characters) sends its
    block to the one-block cutter; here every HMM run is made ill-formed."""
    import jieba

    import notefeed.search.segment as seg
    from notefeed.search.text import _cut_han, _jb

    _jb().dt.check_initialized()
    blocks = ["魑魅魍魉饕餮貔貅", "上海外滩", "犇骉龘靐齉爨的人"]
    used = []

    def fallback(b: str) -> list[str]:
        used.append(b)
        return _cut_han(b)

    real = seg._viterbi
    monkeypatch.setattr(seg, "_viterbi", lambda *a: np.zeros_like(real(*a)))  # all B
    assert seg.cut_pure_han(blocks, _jb().dt, fallback) == [jieba.lcut(b) for b in blocks]
    assert "上海外滩" not in used and len(used) >= 1  # a dictionary-only block needs no HMM


def test_category_model_counts_match_a_plain_count() -> None:
    from collections import Counter

    from notefeed.search.intent import CategoryModel

    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(50)] + ["上海", "咖啡"]
    docs = [list(rng.choice(words, int(rng.integers(0, 12)))) for _ in range(400)]
    cats = [str(rng.choice(["", "food", "travel", "beauty"])) for _ in docs]
    m = CategoryModel(alpha=0.5).fit(docs, cats)
    vocab: dict[str, int] = {}
    for d, c in zip(docs, cats, strict=True):
        if c:
            for t in d:
                vocab.setdefault(t, len(vocab))
    assert m.vocab == vocab and m.categories == ["beauty", "food", "travel"]
    cnt = Counter((vocab[t], m.categories.index(c)) for d, c in zip(docs, cats, strict=True) if c for t in d)
    counts = np.zeros((len(vocab), 3))
    for (i, c), k in cnt.items():
        counts[i, c] = k
    lik = (counts + 0.5) / (counts.sum(axis=0, keepdims=True) + 0.5 * len(vocab))
    np.testing.assert_array_equal(m.log_lik, np.log(lik).astype(np.float32))
    assert CategoryModel().fit([["a"]], [""]).vocab == {}


def test_gc_paused_restores_the_collector_state() -> None:
    import gc

    from notefeed.threads import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause found it off and leaves it off
    assert gc.isenabled()
    try:
        with gc_paused():
            raise KeyError("x")
    except KeyError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # someone else's pause is kept
    finally:
        gc.enable()


def test_index_document_frequencies_count_each_note_once_over_its_fields() -> None:
    from notefeed.search.lexical import LexicalIndex
    from notefeed.sim.community import generate

    notes = generate("100k", seed=8, n_notes=300, n_creators=30).notes
    docs = analyze_notes(notes)
    want: dict[str, int] = {}
    for d in docs:
        for t in dict.fromkeys(t for f in FIELDS for t in d[f]):
            want[t] = want.get(t, 0) + 1
    lex = LexicalIndex()
    lex.add_tokens(docs, np.arange(len(docs)))
    assert dict(lex.df) == want and lex.n_docs == len(docs)
    lex2 = LexicalIndex()
    half = len(docs) // 2
    lex2.add_tokens(docs[:half], np.arange(half))
    lex2.add_tokens(docs[half:], np.arange(half, len(docs)))
    assert dict(lex2.df) == want and lex2.n_docs == len(docs)
