"""Labelled search queries for evaluation: MovieLens user tags as queries over films, and the
registry of other named query sets (the simulator's, with graded relevance).

A :class:`QuerySet` holds, per query, the text, the user (dataset index, -1 for none), the
graded relevance (item -> grade >= 1) and whether it is a reformulated (alias) query, plus the
notes frame to index and an optional query log (for mined rewrites).

**Simulator**: :func:`notefeed.sim.search_data.sim_queries` (queries typed by simulated users,
graded by their true interests, a share as aliases); :mod:`notefeed.sim.search_data` registers
the ``sim*`` query sets in :data:`QUERY_SETS` when imported (the search stage does not import
the simulator).

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
from notefeed.registry import Registry
from notefeed.search.base import SearchError

__all__ = ["QuerySet", "QUERY_SETS", "positives", "movielens_tag_queries"]


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
    #: (n_notes,) int: the follower count of each note's creator (None: no creators, e.g. films)
    note_followers: np.ndarray | None = None

    def subset(self, idx: np.ndarray) -> QuerySet:
        idx = np.asarray(idx, np.int64)
        return QuerySet(self.name, self.notes, [self.texts[i] for i in idx], self.users[idx],
                        [self.relevance[i] for i in idx], self.reformulated[idx], [self.history[i] for i in idx],
                        self.query_log, self.meta, self.note_followers)

    def __len__(self) -> int:
        return len(self.texts)


#: name -> ``fn(seed, quick, n_queries) -> (QuerySet, rel_min)``: the named query sets of the
#: search eval besides MovieLens (``rel_min``: the lowest grade MRR and Recall count as relevant)
QUERY_SETS: Registry[tuple[QuerySet, int]] = Registry("search query set")


def positives(ds: Dataset) -> dict[int, np.ndarray]:
    """User -> the user's positive items (sorted, unique)."""
    pos = ds.select_events()
    return {int(u): np.unique(g.to_numpy()) for u, g in pos.groupby("user")["item"]}


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
    pos = positives(ds)
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
