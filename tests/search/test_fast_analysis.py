"""The batched, cached analysis gives exactly the tokens of the plain one (normalise + tokenize)."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def test_analyze_notes_matches_the_plain_analysis() -> None:
    from notefeed.sim.community import generate

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


def test_han_blocks_cut_exactly_as_jieba() -> None:
    import jieba
    import jieba.finalseg as fs

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
    for t in texts:
        for blk in jieba.re_han_default.split(t):
            if blk and jieba.re_han_default.match(blk):
                n_blocks += 1
                assert _cut_han(blk) == jieba.lcut(blk), blk
        assert _hmm_cut(t) == list(fs.cut(t)), t
    assert n_blocks > 5000


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
