"""The simulator's data for the search stage: labelled queries and the search bench's corpus.

**Queries** (:func:`sim_queries`): a user draws a topic from their true interests and types
1-2 of its words (the frequent ones). A note's grade: 2 when the topic is its dominant topic,
1 when the topic is only in its mixture, +1 when the user's true affinity to the note is in the
top quarter of that topic's notes (a "this user would like it" bonus). A share of queries use
*aliases*: each topic word has a made-up synonym that no note contains; the query log holds
sessions where a user typed an alias, clicked nothing, then typed the word and clicked, so the
rewrite table can be mined from it (those training sessions use other users than the test ones).

Importing this module (``notefeed`` and ``notefeed eval`` do) registers the query sets ``sim``
(``tiny`` with ``quick``, else ``demo``), ``sim-tiny``, ``sim-demo`` and ``sim-100k`` in
:data:`notefeed.search.queries.QUERY_SETS`, which ``notefeed eval --stage search`` and
``notefeed search-fusion-study`` read, and :func:`bench_corpus` as ``sim`` in
:data:`notefeed.search.bench.BENCH_CORPORA` (the notes and queries of ``notefeed bench search``):
the search stage does not import the simulator.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.schema import SMALL_CREATOR_FOLLOWERS
from notefeed.search.base import SearchError
from notefeed.search.bench import BENCH_CORPORA, BenchCorpus
from notefeed.search.queries import QUERY_SETS, QuerySet, positives
from notefeed.sim.community import Community, generate
from notefeed.sim.text import _pseudo_words

__all__ = ["sim_queries", "bench_corpus", "SIM_QUERY_SETS"]

#: the query set names registered in QUERY_SETS
SIM_QUERY_SETS = ("sim", "sim-tiny", "sim-demo", "sim-100k")


def sim_queries(community: Community, ds: Dataset, n_queries: int = 1000, seed: int = 0,
                alias_share: float = 0.2, top_words: int = 15) -> QuerySet:
    """Queries over the simulated community ``community`` (its history is ``ds``); see the module
    docstring."""
    w = community.world
    rng = np.random.default_rng(seed)
    pos = positives(ds)
    users_with = np.array(sorted(u for u, p in pos.items() if len(p) >= 3), np.int64)
    if len(users_with) < 2:
        raise SearchError("sim queries: the history has too few users with positives")
    k, n_w = w.vocab.words.shape
    aliases = _pseudo_words(np.random.default_rng(seed + 99), k * top_words + 1000, (4, 5))
    known = set(w.vocab.flat.tolist())
    aliases = np.array([a for a in aliases.tolist() if a not in known][: k * top_words], dtype=object)
    alias_of = aliases.reshape(k, top_words)
    # per topic: its notes and their share of it
    topics, tw = w.note_topics, w.note_topic_w
    share = np.zeros((w.n_notes, k), np.float32)
    np.add.at(share, (np.repeat(np.arange(w.n_notes), topics.shape[1]), topics.ravel()), tw.ravel())
    rank_p = 1.0 / np.arange(1, top_words + 1)
    rank_p /= rank_p.sum()
    zh_share = float(w.note_zh.mean())
    order = rng.permutation(len(users_with))
    test_users = users_with[order[: max(1, len(order) // 2)]]
    log_users = users_with[order[max(1, len(order) // 2):]]

    def draw(u: int) -> tuple[int, list[int], bool]:
        t = int(rng.choice(k, p=w.user_interest[u] / w.user_interest[u].sum()))
        nw = int(rng.integers(1, 3))
        ranks = rng.choice(top_words, size=nw, replace=False, p=rank_p).tolist()
        return t, ranks, bool(rng.random() < zh_share)

    def words(t: int, ranks: list[int], zh: bool, alias: bool) -> str:
        if alias:
            return " ".join(alias_of[t, r] for r in ranks)
        src = w.vocab.zh_words if zh else w.vocab.words
        return ("" if zh else " ").join(src[t, r] for r in ranks)

    texts, users, rels, reform, hists = [], [], [], [], []
    for _ in range(n_queries):
        u = int(rng.choice(test_users))
        t, ranks, zh = draw(u)
        alias = bool(rng.random() < alias_share)
        items = np.flatnonzero(share[:, t] > 0)
        aff = community.true_affinity(np.full(len(items), u), items)
        grade = np.where(topics[items, 0] == t, 2, 1) + (aff >= np.quantile(aff, 0.75))
        texts.append(words(t, ranks, False if alias else zh, alias))
        users.append(u)
        rel = dict(zip(items.tolist(), grade.astype(int).tolist(), strict=True))
        rels.append(rel)
        reform.append(alias)
        hists.append(np.setdiff1d(pos[u], items[grade >= 3]))  # the best answers are not "history"
    log_rows = []
    ts = 0
    for u in log_users.tolist():  # sessions: alias (no click) then the word (click on a topical note)
        for _ in range(3):
            t, ranks, _zh = draw(u)
            ranks = ranks[:1]  # one word per session: the table is then applied word by word
            ts += 1000
            note = f"n{int(rng.choice(np.flatnonzero(topics[:, 0] == t)))}" if (topics[:, 0] == t).any() else ""
            log_rows.append((str(u), words(t, ranks, False, True), ts, ""))
            log_rows.append((str(u), words(t, ranks, False, False), ts + 20, note))
    qlog = pd.DataFrame(log_rows, columns=["user_id", "query", "ts", "clicked"])
    return QuerySet(ds.name, ds.notes, texts, np.asarray(users, np.int64), rels, np.asarray(reform, bool),
                    hists, qlog, {"alias_share": alias_share, "top_words": top_words},
                    ds.creator_followers[ds.item_author])


def _load(name: str):  # type: ignore[no-untyped-def]
    def load(seed: int, quick: bool, n_queries: int | None = None) -> tuple[QuerySet, int]:
        preset = {"sim": "tiny" if quick else "demo"}.get(name, name.removeprefix("sim-"))
        com = generate(preset, seed=seed)
        return sim_queries(com, com.history(), n_queries or (100 if quick else 1000), seed), 2

    load.__doc__ = f"Simulator queries over the `{name}` community (grades 2 and up count as relevant)."
    return load


for _name in SIM_QUERY_SETS:
    QUERY_SETS.register(_name)(_load(_name))


@BENCH_CORPORA.register("sim")
def bench_corpus(n_notes: int = 100_000, n_queries: int = 500, seed: int = 0) -> BenchCorpus:
    """``n_notes`` notes of a generated world (``100k`` preset up to 100,000 notes, else ``1m``)
    and ``n_queries`` queries of 1-2 of the 15 most frequent words of a random topic, in
    Chinese for the share of notes that are."""
    t = time.perf_counter()
    com = generate("100k" if n_notes <= 100_000 else "1m", seed=seed, n_notes=n_notes,
                   n_creators=max(50, n_notes // 20))
    notes = com.notes
    gen_s = time.perf_counter() - t
    w = com.world
    rng = np.random.default_rng(seed)
    k = w.vocab.words.shape[0]
    queries = []
    for _ in range(n_queries):
        tp = int(rng.integers(k))
        r = rng.choice(15, size=int(rng.integers(1, 3)), replace=False)
        zh = rng.random() < float(w.note_zh.mean())
        src = w.vocab.zh_words if zh else w.vocab.words
        queries.append(("" if zh else " ").join(src[tp, j] for j in r))
    return BenchCorpus(notes, queries, gen_s, float(w.note_zh.mean()), rng,
                       w.creator_followers[w.note_creator] < SMALL_CREATOR_FOLLOWERS)
