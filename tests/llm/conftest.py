"""A tiny note corpus and a tiny built-in model, trained once per test session (seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.llm import BuiltinConfig, NoteCorpus, train_builtin

TOPICS = {
    "coffee": ["espresso", "latte", "beans", "roast", "barista", "cafe"],
    "hiking": ["trail", "mountain", "boots", "summit", "forest", "camp"],
    "baking": ["bread", "oven", "flour", "cake", "dough", "butter"],
}


def tiny_corpus(n: int = 60, seed: int = 0) -> NoteCorpus:
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    titles, bodies, tags, cats = [], [], [], []
    for i in range(n):
        topic = names[i % 3]
        ws = list(rng.choice(TOPICS[topic], 8))
        titles.append(" ".join(ws[:2]))
        bodies.append(" ".join(ws + ["today", "with", "friends"]))
        tags.append([topic, f"{topic}-{ws[0]}"])
        cats.append(topic)
    return NoteCorpus(titles, bodies, tags, cats)


def tiny_config(**kw) -> BuiltinConfig:
    base = dict(dim=16, layers=1, heads=2, max_len=24, out_dim=16, epochs=15, batch_size=16, lr=1e-2,
                lm_every=1, seed=0)
    base.update(kw)
    return BuiltinConfig(**base)


@pytest.fixture(scope="session")
def corpus() -> NoteCorpus:
    return tiny_corpus()


@pytest.fixture(scope="session")
def builtin(corpus):
    # same-topic pairs: notes i and i + 3 share a topic
    pairs = np.array([[i, i + 3] for i in range(len(corpus) - 3)], np.int64)
    return train_builtin(corpus, pairs, tiny_config())
