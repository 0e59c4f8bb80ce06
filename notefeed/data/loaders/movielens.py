"""MovieLens latest-small and 100k (GroupLens) as notefeed datasets.

Mapping to our vocabulary (both variants):

- every rating is a ``click`` event at the rating's timestamp; a rating ``>= 4`` (of 5) is
  *also* a ``like`` event at the same timestamp, so "liked" means "rated 4 or more";
- a movie is a note: ``title`` = movie title, ``category`` = its first genre (``""`` when
  none), ``tags`` = its genres (latest-small: plus the distinct user tags from ``tags.csv``,
  lowercased, in first-seen order); movies have no author: ``author_id`` ``"unknown"``;
- the raw ratings are kept in ``meta["ratings"]`` (``user_id, note_id, rating, ts``) for
  rating-based metrics;
- 100k: the user's ``age`` (int), ``gender``, ``occupation`` and ``zip`` are user columns.

Files: latest-small ``ratings.csv``, ``movies.csv``, ``tags.csv`` (optional);
100k ``u.data``, ``u.item`` (latin-1), ``u.user``, ``u.genre``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders._common import need_file, read_table, resolve_folder, to_float, to_int

__all__ = ["load_small", "load_100k", "ratings_to_events"]

LIKE_THRESHOLD = 4.0


def ratings_to_events(user: np.ndarray, item: np.ndarray, rating: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
    """(n,) arrays -> events: one ``click`` per rating plus a ``like`` where rating >= 4."""
    liked = rating >= LIKE_THRESHOLD
    u = np.concatenate([user, user[liked]]).astype(str)
    i = np.concatenate([item, item[liked]]).astype(str)
    t = np.concatenate([ts, ts[liked]])
    kind = np.array(["click"] * len(user) + ["like"] * int(liked.sum()), dtype=object)
    return pd.DataFrame({"user_id": u, "note_id": i, "ts": t, "type": kind})


def _ratings_meta(user: np.ndarray, item: np.ndarray, rating: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": user.astype(str), "note_id": item.astype(str), "rating": rating.astype(np.float32), "ts": ts}
    )


@LOADERS.register("movielens-small")
def load_small(path: Path | None = None, **options: object) -> Dataset:
    """MovieLens latest-small from ``path`` (the ``ml-latest-small`` folder)."""
    folder = resolve_folder(path, "movielens", "ml-latest-small")
    name = "movielens-small"
    r = read_table(need_file(folder, "ratings.csv", name), required=("userId", "movieId", "rating", "timestamp"))
    m = read_table(need_file(folder, "movies.csv", name), required=("movieId", "title", "genres"))
    user = to_int(r, "userId", min_value=0)
    item = to_int(r, "movieId", min_value=0)
    rating = to_float(r, "rating")
    ts = to_int(r, "timestamp", min_value=0)

    movie_id = to_int(m, "movieId", min_value=0).astype(str)
    genres = [[] if g in ("", "(no genres listed)") else g.split("|") for g in m["genres"].tolist()]
    tags = [list(g) for g in genres]
    tag_file = folder / "tags.csv"
    if tag_file.is_file():
        t = read_table(tag_file, required=("userId", "movieId", "tag", "timestamp"))
        t_movie = to_int(t, "movieId", min_value=0).astype(str)
        pos = pd.Index(movie_id).get_indexer(t_movie)
        for p, tag in zip(pos.tolist(), t["tag"].str.strip().str.lower().tolist(), strict=True):
            if p >= 0 and tag and tag not in tags[p]:
                tags[p].append(tag)
    notes = pd.DataFrame(
        {
            "note_id": movie_id,
            "title": m["title"].to_numpy(),
            "tags": tags,
            "category": [g[0] if g else "" for g in genres],
            "genres": genres,
        }
    )
    events = ratings_to_events(user, item, rating, ts)
    meta = {"source": str(folder), "ratings": _ratings_meta(user, item, rating, ts), "like_threshold": LIKE_THRESHOLD}
    return Dataset.build(name, events, notes=notes, meta=meta)


def _genre_names(file: Path) -> list[str]:
    g = read_table(file, sep="|", names=("genre", "index"), encoding="latin-1")
    g = g[g["genre"].str.strip() != ""]
    idx = to_int(g, "index", min_value=0)
    names = g["genre"].to_numpy()
    return [str(n) for n in names[np.argsort(idx)]]


@LOADERS.register("movielens-100k")
def load_100k(path: Path | None = None, **options: object) -> Dataset:
    """MovieLens 100k from ``path`` (the ``ml-100k`` folder)."""
    folder = resolve_folder(path, "movielens", "ml-100k")
    name = "movielens-100k"
    r = read_table(need_file(folder, "u.data", name), sep="\t", names=("user", "item", "rating", "ts"))
    user = to_int(r, "user", min_value=0)
    item = to_int(r, "item", min_value=0)
    rating = to_float(r, "rating")
    ts = to_int(r, "ts", min_value=0)

    genre_names = _genre_names(need_file(folder, "u.genre", name))
    item_cols = ["movie_id", "title", "release_date", "video_release_date", "imdb_url", *genre_names]
    it = read_table(
        need_file(folder, "u.item", name), sep="|", names=item_cols, encoding="latin-1", quoting=csv.QUOTE_NONE
    )
    flags = np.stack([to_int(it, g) for g in genre_names], axis=1) if genre_names else np.zeros((len(it), 0))
    if ((flags != 0) & (flags != 1)).any():
        row, col = np.argwhere((flags != 0) & (flags != 1))[0]
        raise DataError(f"{folder / 'u.item'}:{row + 1}: field '{genre_names[col]}': expected 0 or 1")
    # "unknown" is u.genre's placeholder for "no genre", not a genre.
    genres = [[g for g, f in zip(genre_names, row, strict=True) if f and g != "unknown"] for row in flags]
    notes = pd.DataFrame(
        {
            "note_id": to_int(it, "movie_id", min_value=0).astype(str),
            "title": it["title"].to_numpy(),
            "tags": genres,
            "category": [g[0] if g else "" for g in genres],
            "release_date": it["release_date"].to_numpy(),
        }
    )
    u = read_table(need_file(folder, "u.user", name), sep="|", names=("user_id", "age", "gender", "occupation", "zip"))
    users = pd.DataFrame(
        {
            "user_id": to_int(u, "user_id", min_value=0).astype(str),
            "age": to_int(u, "age", min_value=0),
            "gender": u["gender"].to_numpy(),
            "occupation": u["occupation"].to_numpy(),
            "zip": u["zip"].to_numpy(),
        }
    )
    events = ratings_to_events(user, item, rating, ts)
    meta = {"source": str(folder), "ratings": _ratings_meta(user, item, rating, ts), "like_threshold": LIKE_THRESHOLD}
    return Dataset.build(name, events, notes=notes, users=users, meta=meta)
