"""A small synthetic catalogue with planted topics, for tests and as the simulator fallback.

Each note belongs to one topic; its title and text mix that topic's words with common filler
words, its tags are the topic name (plus, sometimes, a second related topic), and it carries
an optional image vector near its topic's centre. Each user likes one or two topics and
engages with notes of those topics with a Zipf-like popularity skew, so there is a long tail
of notes with few interactions whose collaborative neighbours are still topic-mates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset

__all__ = ["synthetic_catalogue"]

_FILLER = "the a and with my today new best this really love good day try so".split()


def synthetic_catalogue(
    n_items: int = 400,
    n_topics: int = 8,
    n_users: int = 300,
    words_per_topic: int = 12,
    events_per_user: int = 20,
    image_dim: int = 16,
    seed: int = 0,
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Build the catalogue.

    Returns ``(dataset, topic (n_items,) int64, images (n_items, image_dim) float32)``. Tags are
    ``["topic<t>"]`` (30% of notes also carry their topic's neighbour ``topic<t+1>``, so tag sets
    overlap); notes of topic ``t`` use words ``w<t>_<j>``.
    """
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, n_topics, size=n_items)
    vocab = [[f"w{t}_{j}" for j in range(words_per_topic)] for t in range(n_topics)]
    titles, texts, tags = [], [], []
    for i in range(n_items):
        t = int(topic[i])
        own = rng.choice(vocab[t], size=6).tolist()
        noise = rng.choice(vocab[int(rng.integers(n_topics))], size=1).tolist()  # off-topic word
        filler = rng.choice(_FILLER, size=4).tolist()
        words = own + noise + filler
        rng.shuffle(words)
        titles.append(" ".join(words[:3]))
        texts.append(" ".join(words[3:]))
        tg = [f"topic{t}"]
        if rng.random() < 0.3:
            tg.append(f"topic{(t + 1) % n_topics}")
        tags.append(tg)
    centres = rng.normal(size=(n_topics, image_dim))
    images = (centres[topic] + 0.8 * rng.normal(size=(n_items, image_dim))).astype(np.float32)

    # Zipf-like item popularity inside each topic gives a long tail.
    pop = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.8
    rows = []
    for u in range(n_users):
        liked = rng.choice(n_topics, size=int(rng.integers(1, 3)), replace=False)
        cand = np.flatnonzero(np.isin(topic, liked))
        if len(cand) == 0:
            continue
        p = pop[cand] / pop[cand].sum()
        n_ev = min(len(cand), int(rng.integers(events_per_user // 2, events_per_user + 1)))
        for it in rng.choice(cand, size=n_ev, replace=False, p=p):
            rows.append((f"u{u}", f"n{it}", int(rng.integers(0, 10_000_000)), "click"))
    events = pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"])
    notes = pd.DataFrame(
        {
            "note_id": [f"n{i}" for i in range(n_items)],
            "author_id": [f"c{i % 50}" for i in range(n_items)],
            "title": titles,
            "text": texts,
            "tags": tags,
            "category": [f"topic{t}" for t in topic],
        }
    )
    ds = Dataset.build("synthetic-content", events, notes=notes)
    return ds, topic.astype(np.int64), images
