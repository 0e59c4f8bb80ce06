"""Labelled search queries for evaluation: simulator queries with graded relevance and
MovieLens user tags as queries over films.

A :class:`QuerySet` holds, per query, the text, the user (dataset index, -1 for none), the
graded relevance (item -> grade >= 1) and whether it is a reformulated (alias) query, plus the
notes frame to index and an optional query log (for mined rewrites).

**Simulator** (:func:`sim_queries`): a user draws a topic from their true interests and types
1-2 of its words (the frequent ones). A note's grade: 2 when the topic is its dominant topic,
1 when the topic is only in its mixture, +1 when the user's true affinity to the note is in the
top quarter of that topic's notes (a "this user would like it" bonus). A share of queries use
*aliases*: each topic word has a made-up synonym that no note contains; the query log holds
sessions where a user typed an alias, clicked nothing, then typed the word and clicked, so the
rewrite table can be mined from it (those training sessions use other users than the test ones).

**MovieLens** (:func:`movielens_tag_queries`): a (user, tag) pair from ``tags.csv`` is a query;
the films that user tagged with it are relevant (grade 1). Half of the pairs are test queries
and their tag applications are removed from the indexed films, so a film is not found through
the very tag the test asks for (other users' identical tags stay: that is what search sees).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.search.base import SearchError

__all__ = ["QuerySet", "sim_queries", "movielens_tag_queries"]


@dataclass
class QuerySet:
    name: str
    notes: pd.DataFrame
    texts: list[str]
    users: np.ndarray  # (q,) int64 dataset user index, -1: none
    relevance: list[dict[int, int]]
    reformulated: np.ndarray  # (q,) bool
    history: list[np.ndarray]  # per query: the user's positive items (the answer removed)
    query_log: pd.DataFrame | None = None
    meta: dict[str, object] = field(default_factory=dict)

    def subset(self, idx: np.ndarray) -> QuerySet:
        idx = np.asarray(idx, np.int64)
        return QuerySet(self.name, self.notes, [self.texts[i] for i in idx], self.users[idx],
                        [self.relevance[i] for i in idx], self.reformulated[idx], [self.history[i] for i in idx],
                        self.query_log, self.meta)

    def __len__(self) -> int:
        return len(self.texts)


def _positives(ds: Dataset) -> dict[int, np.ndarray]:
    pos = ds.select_events()
    return {int(u): np.unique(g.to_numpy()) for u, g in pos.groupby("user")["item"]}


def sim_queries(community: object, ds: Dataset, n_queries: int = 1000, seed: int = 0,
                alias_share: float = 0.2, top_words: int = 15) -> QuerySet:
    """Queries over the simulated community ``community`` (its history is ``ds``)."""
    from notefeed.sim.text import _pseudo_words

    w = community.world  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    pos = _positives(ds)
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
        aff = community.true_affinity(np.full(len(items), u), items)  # type: ignore[attr-defined]
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
                    hists, qlog, {"alias_share": alias_share, "top_words": top_words})


def movielens_tag_queries(ds: Dataset, seed: int = 0, test_share: float = 0.5,
                          max_queries: int | None = None) -> QuerySet:
    """(user, tag) queries over the films of MovieLens latest-small (see the module docstring)."""
    src = ds.meta.get("source")
    tag_file = Path(str(src)) / "tags.csv" if src else None
    if tag_file is None or not tag_file.is_file():
        raise SearchError(f"{ds.name}: no tags.csv beside the ratings (need movielens-small)")
    t = pd.read_csv(tag_file)
    t["tag"] = t["tag"].astype(str).str.strip().str.lower()
    t = t[t["tag"] != ""]
    t["item"] = pd.Index(ds.notes["note_id"]).get_indexer(t["movieId"].astype(str))
    t["user"] = pd.Index(ds.users["user_id"]).get_indexer(t["userId"].astype(str))
    t = t[t["item"] >= 0]
    pairs = t[["user", "tag"]].drop_duplicates().reset_index(drop=True)
    rng = np.random.default_rng(seed)
    test = pairs.iloc[rng.permutation(len(pairs))[: int(len(pairs) * test_share)]]
    key = t["user"].astype(str) + "\x00" + t["tag"]
    is_test = key.isin(set(test["user"].astype(str) + "\x00" + test["tag"]))
    kept = t[~is_test]
    genres = ds.notes["genres"] if "genres" in ds.notes.columns else [[] for _ in range(ds.n_items)]
    tags: list[list[str]] = [list(g) for g in genres]
    for i, tag in zip(kept["item"].tolist(), kept["tag"].tolist(), strict=True):
        if tag not in tags[i]:
            tags[i].append(tag)
    notes = ds.notes.copy()
    notes["tags"] = tags
    pos = _positives(ds)
    tt = t[is_test]
    texts, users, rels, hists = [], [], [], []
    for (u, tag), g in tt.groupby(["user", "tag"], sort=True):
        rel = {int(i): 1 for i in g["item"].unique()}
        texts.append(str(tag))
        users.append(int(u))
        rels.append(rel)
        hists.append(np.setdiff1d(pos.get(int(u), np.zeros(0, np.int64)), np.fromiter(rel, np.int64)))
    idx = np.arange(len(texts))
    if max_queries is not None and len(idx) > max_queries:
        idx = np.sort(rng.choice(len(idx), max_queries, replace=False))
    qs = QuerySet(ds.name, notes, texts, np.asarray(users, np.int64), rels, np.zeros(len(texts), bool), hists,
                  None, {"test_pairs": len(texts), "tag_applications_hidden": int(is_test.sum())})
    return qs.subset(idx)
