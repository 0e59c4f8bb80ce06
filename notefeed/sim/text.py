"""Pseudo-language for simulated notes: topic names, word and tag vocabularies, titles and texts.

Every topic owns a vocabulary of pseudo-words (and two-character Chinese words), so a note's
text carries the signal of its topic mixture, as real notes do.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TOPIC_NAMES", "Vocabulary", "make_vocabulary", "compose_texts", "compose_tags"]

#: Xiaohongshu-like top-level categories; later topics get numbered names.
TOPIC_NAMES = (
    "beauty", "fashion", "food", "travel", "fitness", "home", "parenting", "pets", "tech", "study",
    "career", "photography", "music", "movies", "books", "gaming", "outdoors", "cars", "finance",
    "wellness", "crafts", "gardening", "art", "dance", "anime", "coffee", "baking", "skincare",
    "hiking", "camping",
)
_ONSETS = np.array(list("bcdfghjklmnprstvwz") + ["ch", "sh", "th", "tr", "br", "pl", "gr", "st"])
_VOWELS = np.array(["a", "e", "i", "o", "u", "ai", "ou", "ea", "io", "y"])
_CODAS = np.array(["", "", "", "n", "r", "s", "l", "m", "x", "k"])
# Common Chinese characters: pairs of them form each topic's Chinese words.
_HANZI = np.array(list(
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
    "而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性"
    "好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第"
    "向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管"
    "特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处"
    "美食旅行健身家居宠物科技学习职场摄影音乐电影读书游戏户外汽车理财护肤咖啡烘焙徒步露营穿搭好物分享推荐日常"
))


class Vocabulary:
    """Words and tags per topic. ``words[t]`` / ``zh_words[t]`` are (words_per_topic,) object arrays."""

    def __init__(self, topic_names: list[str], words: np.ndarray, zh_words: np.ndarray,
                 common: np.ndarray, zh_common: np.ndarray, tags: np.ndarray, tag_topic: np.ndarray) -> None:
        self.topic_names = topic_names
        self.words = words  # (K, W) object
        self.zh_words = zh_words  # (K, W) object
        self.common = common  # (C,) object
        self.zh_common = zh_common  # (C,) object
        self.tags = tags  # (n_tags,) object
        self.tag_topic = tag_topic  # (n_tags,) int32, tags sorted by topic
        self.flat = np.concatenate([words.ravel(), common, zh_words.ravel(), zh_common])
        self.tag_start = np.searchsorted(tag_topic, np.arange(len(topic_names) + 1)).astype(np.int64)


def _pseudo_words(rng: np.random.Generator, n: int, syllables: tuple[int, int]) -> np.ndarray:
    """(n,) unique pseudo-words of ``syllables`` [lo, hi] syllables each."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        m = (n - len(out)) * 2
        k = rng.integers(syllables[0], syllables[1] + 1, size=m)
        parts = [
            rng.choice(_ONSETS, size=m).astype(object) + rng.choice(_VOWELS, size=m).astype(object)
            + rng.choice(_CODAS, size=m).astype(object)
            for _ in range(syllables[1])
        ]
        for j in range(m):
            w = "".join(parts[s][j] for s in range(k[j]))
            if w not in seen:
                seen.add(w)
                out.append(w)
                if len(out) == n:
                    break
    return np.array(out, dtype=object)


def _hanzi_words(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.choice(_HANZI, size=n * 2).astype(object)
    b = rng.choice(_HANZI, size=n * 2).astype(object)
    words = pd_unique(a + b)[:n]
    if len(words) < n:  # tiny alphabets: pad with three-character words
        extra = rng.choice(_HANZI, size=n).astype(object) + rng.choice(_HANZI, size=n).astype(object) \
            + rng.choice(_HANZI, size=n).astype(object)
        words = np.concatenate([words, extra[: n - len(words)]])
    return words


def pd_unique(a: np.ndarray) -> np.ndarray:
    """Unique values in first-seen order (deterministic)."""
    _, first = np.unique(a, return_index=True)
    return a[np.sort(first)]


def make_vocabulary(rng: np.random.Generator, n_topics: int, words_per_topic: int, n_tags: int) -> Vocabulary:
    """Topic names, per-topic words (Latin and Chinese), shared common words and per-topic tags."""
    names = [TOPIC_NAMES[t] if t < len(TOPIC_NAMES) else f"topic{t:03d}" for t in range(n_topics)]
    n_common = 40
    latin = _pseudo_words(rng, n_topics * words_per_topic + n_common, (2, 3))
    zh = _hanzi_words(rng, n_topics * words_per_topic + n_common)
    words = latin[: n_topics * words_per_topic].reshape(n_topics, words_per_topic)
    zh_words = zh[: n_topics * words_per_topic].reshape(n_topics, words_per_topic)
    # tags: an equal share per topic, named "<topic>-<word>" so they are readable
    per = np.full(n_topics, n_tags // n_topics)
    per[: n_tags % n_topics] += 1
    tag_topic = np.repeat(np.arange(n_topics, dtype=np.int32), per)
    tag_words = _pseudo_words(rng, n_tags, (1, 2))
    tags = np.array([f"{names[t]}-{w}" for t, w in zip(tag_topic.tolist(), tag_words.tolist(), strict=True)],
                    dtype=object)
    return Vocabulary(names, words, zh_words, latin[-n_common:], zh[-n_common:], tags, tag_topic)


def _zipf_ranks(rng: np.random.Generator, size: tuple[int, ...], n: int, s: float = 1.1) -> np.ndarray:
    """Ranks in [0, n) with P(r) ~ 1/(r+1)^s, by inverse CDF (vectorised)."""
    p = 1.0 / np.arange(1, n + 1) ** s
    cdf = np.cumsum(p / p.sum())
    r = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(r, n - 1)


def compose_texts(rng: np.random.Generator, vocab: Vocabulary, topics: np.ndarray, weights: np.ndarray,
                  zh: np.ndarray, n_tokens: tuple[int, int], common_share: float = 0.25) -> list[str]:
    """One text per note from its topic mixture.

    ``topics``/``weights`` are (n, m) topic indices and mixture weights (rows sum to 1), ``zh``
    an (n,) bool (Chinese notes join words without spaces). Lengths are uniform in ``n_tokens``.
    """
    n, m = topics.shape
    lo, hi = n_tokens
    cw = np.cumsum(weights, axis=1)
    u = rng.random((n, hi)) * cw[:, -1:]
    slot = (u[:, :, None] > cw[:, None, :]).sum(axis=2)
    slot = np.minimum(slot, m - 1)
    tok_topic = np.take_along_axis(topics, slot, axis=1)  # (n, hi)
    n_w = vocab.words.shape[1]
    # integer token ids into one flat vocabulary; strings are looked up once at the end
    tok = tok_topic.astype(np.int64) * n_w + _zipf_ranks(rng, (n, hi), n_w)
    common = rng.random((n, hi)) < common_share
    n_topic_words = vocab.words.size
    tok = np.where(common, n_topic_words + rng.integers(0, len(vocab.common), size=(n, hi)), tok)
    tok += np.where(zh, n_topic_words + len(vocab.common), 0)[:, None]
    words = vocab.flat[tok]
    length = rng.integers(lo, hi + 1, size=n)
    out: list[str] = [""] * n
    for ln in np.unique(length).tolist():  # a handful of lengths: join each group at once
        rows = np.flatnonzero(length == ln)
        sep_rows = zh[rows]
        block = words[rows, :ln].tolist()
        for r, toks, z in zip(rows.tolist(), block, sep_rows.tolist(), strict=True):
            out[r] = ("" if z else " ").join(toks)
    return out


def compose_tags(rng: np.random.Generator, vocab: Vocabulary, topics: np.ndarray, max_tags: int = 5) -> list[list[str]]:
    """1..max_tags distinct tags per note: a run from its dominant topic, one from the second."""
    n = topics.shape[0]
    t0 = topics[:, 0]
    start, stop = vocab.tag_start[t0], vocab.tag_start[t0 + 1]
    size = stop - start
    count = np.minimum(rng.integers(1, max_tags, size=n), size)
    first = _zipf_ranks(rng, (n,), int(size.max()))
    offs = (first[:, None] + np.arange(max_tags - 1)[None, :]) % size[:, None]
    main = vocab.tags[start[:, None] + offs]  # (n, max_tags-1)
    if topics.shape[1] > 1:
        t1 = topics[:, 1]
        s1, e1 = vocab.tag_start[t1], vocab.tag_start[t1 + 1]
        second = vocab.tags[s1 + rng.integers(0, 1 << 30, size=n) % (e1 - s1)]
        has2 = (rng.random(n) < 0.4) & (t1 != t0)
    else:
        second, has2 = np.full(n, "", dtype=object), np.zeros(n, bool)
    mains = main.tolist()
    return [row[:c] + ([s] if h else []) for row, c, s, h in
            zip(mains, count.tolist(), second.tolist(), has2.tolist(), strict=True)]
