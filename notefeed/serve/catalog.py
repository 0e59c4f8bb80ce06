"""The live catalogue the server recommends from: the workspace dataset plus published notes.

Item indices of the base :class:`~notefeed.data.Dataset` are kept; a note published through
the API gets the next index, is written durably to ``notes.sqlite`` first, and joins the
fresh pool at once. Arrays grow by doubling; readers take the current length and slices, so
a concurrent publish never invalidates an index a request already holds.

Item vectors (for re-ranking similarity and related notes) are cheap and content-free:
a fixed random embedding of the category plus half one of the author. A content or
two-tower embedding replaces them when the pipeline provides one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset, type_mask
from notefeed.online.bus import WalLog, immediate
from notefeed.recall._common import in_sorted, stable_topk
from notefeed.schema import POSITIVE_TYPES, SMALL_CREATOR_FOLLOWERS, STORED, Note

__all__ = ["Catalog", "NoteLog", "VECTOR_DIM"]

VECTOR_DIM = 32
_AUTHOR_BUCKETS = 4096


class NoteLog(WalLog):
    """Durable log of published notes (SQLite WAL, committed before the API answers)."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        super().__init__(
            path, synchronous, "notefeed note log",
            "CREATE TABLE IF NOT EXISTS notes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "note_id TEXT UNIQUE NOT NULL, body TEXT NOT NULL, followers INTEGER)",
        )
        try:  # removed notes (a takedown): one row per note id, by any process on this workspace
            self._db.execute("CREATE TABLE IF NOT EXISTS removed (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "note_id TEXT UNIQUE NOT NULL, at REAL NOT NULL, reason TEXT)")
            # restored notes (a takedown undone): one row per restore, with the removal it undid;
            # a restore deletes the note's `removed` row, so that table holds the notes down now
            self._db.execute("CREATE TABLE IF NOT EXISTS restored (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "note_id TEXT NOT NULL, at REAL NOT NULL, reason TEXT, removed_at REAL, "
                             "removed_reason TEXT)")
            # edits of notes (PATCH /v1/notes/{id}): the fields changed, as JSON, in order
            self._db.execute("CREATE TABLE IF NOT EXISTS edits (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "note_id TEXT NOT NULL, body TEXT NOT NULL, at REAL NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS edits_by_note ON edits (note_id, seq)")  # a note's newest
            # creators' follower counts as the app sends them (with a publish, or on their own)
            self._db.execute("CREATE TABLE IF NOT EXISTS followers (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "creator_id TEXT NOT NULL, followers INTEGER NOT NULL, at REAL NOT NULL)")
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise ValueError(f"{self.path}: not a notefeed note log ({e})") from e
        #: the last position :meth:`since` (or :meth:`replay`) read
        self.last_seq = 0
        #: the last removal :meth:`removed_since` (or :meth:`moderation_since`) read
        self.last_removed_seq = 0
        #: the last restore :meth:`moderation_since` read
        self.last_restored_seq = 0
        #: the last follower count :meth:`followers_since` read
        self.last_followers_seq = 0
        #: the last edit :meth:`edits_since` read
        self.last_edits_seq = 0

    def append(self, note: Note, followers: int | None) -> None:
        """Log a published note; a follower count given with it is also a row of the follower
        counts (:meth:`set_followers`), in the same transaction, so every count is in one order."""
        with self._lock:
            try:
                with immediate(self._db):
                    self._db.execute("INSERT INTO notes (note_id, body, followers) VALUES (?, ?, ?)",
                                     (note.note_id, note.model_dump_json(), followers))
                    if followers is not None:
                        self._db.execute("INSERT INTO followers (creator_id, followers, at) VALUES (?, ?, ?)",
                                         (note.author_id, int(followers), time.time()))
            except sqlite3.IntegrityError:  # a concurrent publish of the same id won (rolled back)
                raise ValueError(f"note_id {note.note_id!r} already exists (field 'note_id')") from None

    def set_followers(self, creator_id: str, followers: int) -> None:
        """Log a creator's follower count (durable when this returns)."""
        with self._lock:
            self._db.execute("INSERT INTO followers (creator_id, followers, at) VALUES (?, ?, ?)",
                             (creator_id, int(followers), time.time()))

    def edit(self, note_id: str, changes: dict[str, Any], current: dict[str, Any]) -> list[str]:
        """Log an edit of ``note_id``: ``changes`` over its fields as the log last left them
        (the newest logged edit's, else ``current``, the caller's), both kept in the row
        (``before``, ``after``; every process reads the same pair, whatever it had read when it
        edited). Durable when this returns. Returns the fields that changed (nothing is logged
        when none did)."""
        with self._lock, immediate(self._db):
            row = self._db.execute("SELECT body FROM edits WHERE note_id = ? ORDER BY seq DESC LIMIT 1",
                                   (note_id,)).fetchone()
            before = json.loads(row[0])["after"] if row is not None else dict(current)
            after = {**before, **{k: v for k, v in changes.items() if k in before}}
            changed = sorted(k for k in after if after[k] != before[k])
            if changed:
                self._db.execute("INSERT INTO edits (note_id, body, at) VALUES (?, ?, ?)", (note_id, json.dumps(
                    {"before": before, "after": after, "changed": changed}, ensure_ascii=False), time.time()))
        return changed

    def edits_since(self, seq: int, move: bool = True,
                    limit: int | None = None) -> list[tuple[int, str, dict[str, Any], float]]:
        """(position, note id, ``{"before", "after", "changed"}``, time) of the edits logged
        after position ``seq`` (by any process), in order, the first ``limit`` of them; with
        ``move``, :attr:`last_edits_seq` becomes the last one read (not with a ``limit``)."""
        rows = self._after("edits", "note_id, body, at", seq, "last_edits_seq" if move and limit is None else None,
                           limit)
        return [(int(q), str(n), json.loads(b), float(t)) for q, n, b, t in rows]

    def followers_since(self, seq: int) -> list[tuple[int, str, int]]:
        """(position, creator id, count) rows logged after position ``seq`` (by any process), in
        order; :attr:`last_followers_seq` becomes the last one read."""
        rows = self._after("followers", "creator_id, followers", seq, "last_followers_seq")
        return [(int(q), str(c), int(f)) for q, c, f in rows]

    def replay(self) -> list[tuple[Note, int | None]]:
        return [(n, f) for _, n, f in self.since(0)]

    def since(self, seq: int) -> list[tuple[int, Note, int | None]]:
        """Notes logged after position ``seq`` (by any process on this workspace), in order,
        with their positions; :attr:`last_seq` becomes the last one read."""
        rows = self._after("notes", "body, followers", seq, "last_seq")
        return [(int(q), Note.model_validate_json(b, context=STORED), f) for q, b, f in rows]

    def remove(self, note_id: str, reason: str | None = None) -> bool:
        """Log ``note_id`` as removed (durable when this returns); ``False`` when it already was."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO removed (note_id, at, reason) VALUES (?, ?, ?)",
                                   (note_id, time.time(), reason))
            return cur.rowcount == 1

    def removed_since(self, seq: int) -> list[str]:
        """Note ids removed after position ``seq`` (by any process) and not restored since, in
        order; :attr:`last_removed_seq` becomes the last one read."""
        return [str(n) for _, n in self._after("removed", "note_id", seq, "last_removed_seq")]

    def restore(self, note_id: str, reason: str | None = None) -> bool:
        """Undo ``note_id``'s removal (durable when this returns): its ``removed`` row moves to
        ``restored``; ``False`` when it was not removed. A later :meth:`remove` takes it down again."""
        with self._lock, immediate(self._db):
            row = self._db.execute("SELECT at, reason FROM removed WHERE note_id = ?", (note_id,)).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM removed WHERE note_id = ?", (note_id,))
                self._db.execute("INSERT INTO restored (note_id, at, reason, removed_at, removed_reason) "
                                 "VALUES (?, ?, ?, ?, ?)", (note_id, time.time(), reason, row[0], row[1]))
        return row is not None

    def moderation_since(self) -> tuple[list[str], list[str]]:
        """(restored, removed): the note ids restored and removed (by any process) past what
        this log read, from one snapshot. ``removed`` holds only notes that are down now (a
        restore deletes the row), so undoing the restores and then applying the removals, in
        that order, leaves every note as the log has it."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                back = self._db.execute("SELECT seq, note_id FROM restored WHERE seq > ? ORDER BY seq",
                                        (self.last_restored_seq,)).fetchall()
                down = self._db.execute("SELECT seq, note_id FROM removed WHERE seq > ? ORDER BY seq",
                                        (self.last_removed_seq,)).fetchall()
            finally:
                self._db.execute("COMMIT")
        if back:
            self.last_restored_seq = max(self.last_restored_seq, int(back[-1][0]))
        if down:
            self.last_removed_seq = max(self.last_removed_seq, int(down[-1][0]))
        return [str(n) for _, n in back], [str(n) for _, n in down]

    def removal(self, note_id: str) -> tuple[float, str | None] | None:
        """(when, reason) of ``note_id``'s removal when it is down now, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT at, reason FROM removed WHERE note_id = ?", (note_id,)).fetchone()
        return None if row is None else (float(row[0]), row[1])

    def removals(self, limit: int = 100, offset: int = 0) -> tuple[int, list[tuple[str, float, str | None]]]:
        """(how many notes are down now, the newest ``limit`` after ``offset`` of them as
        (note id, when, reason))."""
        with self._lock:
            n = int(self._db.execute("SELECT count(*) FROM removed").fetchone()[0])
            rows = self._db.execute("SELECT note_id, at, reason FROM removed ORDER BY seq DESC LIMIT ? OFFSET ?",
                                    (int(limit), int(offset))).fetchall()
        return n, [(str(a), float(b), c) for a, b, c in rows]

    def restores(self, note_id: str) -> list[dict[str, object]]:
        """``note_id``'s past takedowns that were undone, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT removed_at, removed_reason, at, reason FROM restored WHERE note_id = ? "
                                    "ORDER BY seq", (note_id,)).fetchall()
        return [{"removed_at": a, "removed_reason": b, "restored_at": c, "reason": d} for a, b, c, d in rows]


class _Grow:
    """A 1-d (or 2-d) array with amortised O(1) append."""

    def __init__(self, init: np.ndarray) -> None:
        self.n = len(init)
        cap = max(16, self.n * 2 if self.n < 1_000_000 else self.n + self.n // 4)
        self.a = np.zeros((cap, *init.shape[1:]), init.dtype)
        self.a[: self.n] = init

    def append(self, row: object) -> None:
        if self.n == len(self.a):
            b = np.zeros((len(self.a) * 2, *self.a.shape[1:]), self.a.dtype)
            b[: self.n] = self.a[: self.n]
            self.a = b
        self.a[self.n] = row
        self.n += 1

    def view(self) -> np.ndarray:
        return self.a[: self.n]


class Catalog:
    """Notes the server can recommend, indexed like the base dataset."""

    def __init__(self, ds: Dataset, fresh_pool_size: int = 2000, seed: int = 0) -> None:
        self.ds = ds
        self._lock = threading.Lock()
        self.note_ids: list[str] = ds.notes["note_id"].astype(str).tolist()
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.note_ids)}
        self.creator_ids: list[str] = ds.creators["creator_id"].astype(str).tolist()
        self.creator_index: dict[str, int] = {c: i for i, c in enumerate(self.creator_ids)}
        codes, names = ds.item_category if ds.n_items else (np.empty(0, np.int32), [])
        self.categories: list[str] = list(names)
        self.category_index: dict[str, int] = {c: i for i, c in enumerate(self.categories)}
        self._followers = _Grow(ds.creator_followers.astype(np.int64) if len(ds.creators) else np.empty(0, np.int64))
        self._author = _Grow(ds.item_author.astype(np.int32) if ds.n_items else np.empty(0, np.int32))
        self._cat = _Grow(codes.astype(np.int32))
        created = ds.notes["created_at"].to_numpy(np.int64) if ds.n_items else np.empty(0, np.int64)
        self._created = _Grow(created)
        pos = ds.select_events(POSITIVE_TYPES)["item"].to_numpy() if len(ds.events) else np.empty(0, np.int64)
        self._pop = _Grow(np.bincount(pos, minlength=ds.n_items).astype(np.float32)[: ds.n_items])
        # impressions and clicks per note (the exposure step's early CTR), from the log and live
        ev = ds.events if len(ds.events) else None
        self._impr = _Grow(self._count(ev, "impression", ds.n_items))
        self._clk = _Grow(self._count(ev, "click", ds.n_items))
        #: all notes' impressions and clicks (the prior of a note's smoothed CTR)
        self.exposure_totals = (float(self._impr.view().sum()), float(self._clk.view().sum()))
        rng = np.random.default_rng(seed)
        self._cat_emb = rng.standard_normal((4096, VECTOR_DIM)).astype(np.float32)
        self._auth_emb = rng.standard_normal((_AUTHOR_BUCKETS, VECTOR_DIM)).astype(np.float32)
        self._vec = _Grow(self._vectors(self._cat.view(), self._author.view()))
        order: np.ndarray = (np.argsort(created, kind="stable")[-fresh_pool_size:] if fresh_pool_size
                             else np.empty(0, np.int64))
        self.fresh: deque[int] = deque((int(i) for i in order), maxlen=max(1, fresh_pool_size))
        self.published: dict[int, Note] = {}
        self._top_cache: tuple[float, int, np.ndarray] = (0.0, -1, np.empty(0, np.int64))
        #: notes whose popularity rose since ``_top_cache`` was computed (popularity only
        #: rises), so a refresh ranks those and the cached top instead of every note; ``None``:
        #: too many to track, the next refresh ranks every note
        self._bumped: list[np.ndarray] | None = []
        self._n_bumped = 0
        #: how long ``top_popular`` may serve a cached list (0: always fresh; the simulator
        #: sets 0 so that a run does not depend on how fast the machine is)
        self.top_max_age_s = 1.0
        #: the current fields of edited notes (item -> title, text, tags, category), over the
        #: dataset's rows (published notes' edits are also in :attr:`published`)
        self.edited: dict[int, dict[str, Any]] = {}
        #: every edit applied, in the note log's order: (its position, item, the fields before,
        #: the fields after); what the search index catches up from
        self.edit_log: list[tuple[int, int, dict[str, Any], dict[str, Any]]] = []
        #: removed notes (taken down), sorted item indices, replaced whole on :meth:`mark_removed`:
        #: every pipeline drops them (``builtin/removed``), as do related notes and search
        self.removed_items: np.ndarray = np.empty(0, np.int64)

    @staticmethod
    def _count(events: pd.DataFrame | None, kind: str, n: int) -> np.ndarray:
        """(n,) float32 events of type ``kind`` per item."""
        if events is None:
            return np.zeros(n, np.float32)
        items = events["item"].to_numpy()[type_mask(events, kind)]
        return np.bincount(items, minlength=n).astype(np.float32)[:n]

    def set_followers(self, creator_id: str, followers: int) -> None:
        """A creator's follower count (the small-creator rule reads it); a creator without notes
        here yet is added."""
        with self._lock:
            a = self.creator_index.get(creator_id)
            if a is None:
                self.creator_index[creator_id] = len(self.creator_ids)
                self.creator_ids.append(creator_id)
                self._followers.append(int(followers))
            else:
                self._followers.a[a] = int(followers)

    def followers_of(self, creator_id: str) -> int | None:
        a = self.creator_index.get(creator_id)
        return None if a is None else int(self._followers.view()[a])

    def mark_removed(self, items: np.ndarray) -> None:
        """Add ``items`` to :attr:`removed_items` (once each)."""
        items = np.asarray(items, np.int64)
        if len(items):
            with self._lock:
                self.removed_items = np.union1d(self.removed_items, items)

    def unmark_removed(self, items: np.ndarray) -> None:
        """Take ``items`` out of :attr:`removed_items` (a takedown undone)."""
        items = np.asarray(items, np.int64)
        if len(items):
            with self._lock:
                self.removed_items = np.setdiff1d(self.removed_items, items)

    def is_removed(self, items: np.ndarray) -> np.ndarray:
        """(len(items),) bool: which of ``items`` were removed (a binary search each in the
        sorted :attr:`removed_items`: a request's candidates cost no sort of every removal)."""
        return in_sorted(np.asarray(items, np.int64), self.removed_items)

    # ---------------------------------------------------------------- reads
    def __len__(self) -> int:
        return self._author.n

    @property
    def n_items(self) -> int:
        return self._author.n

    def item_of(self, note_id: str) -> int | None:
        return self.index.get(note_id)

    def authors(self) -> np.ndarray:
        return self._author.view()

    def category_codes(self) -> np.ndarray:
        return self._cat.view()

    def created_at(self) -> np.ndarray:
        return self._created.view()

    def exposure(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_items,) impressions and (n_items,) clicks of every note: the log's, then live events'."""
        n = self.n_items
        return self._impr.view()[:n], self._clk.view()[:n]

    def popularity(self) -> np.ndarray:
        return self._pop.view()

    def vectors(self) -> np.ndarray:
        return self._vec.view()

    def small_creator(self, items: np.ndarray) -> np.ndarray:
        f = self._followers.view()
        return f[self._author.view()[items]] < SMALL_CREATOR_FOLLOWERS

    def category_name(self, item: int) -> str:
        c = int(self._cat.view()[item])
        return self.categories[c] if 0 <= c < len(self.categories) else ""

    def top_popular(self, k: int, max_age_s: float | None = None) -> np.ndarray:
        """The ``k`` most popular items, recomputed at most every ``max_age_s`` seconds
        (default ``top_max_age_s``); equal popularity ranks the lower item index first."""
        max_age_s = self.top_max_age_s if max_age_s is None else max_age_s
        at, kk, top = self._top_cache
        now = time.monotonic()
        if kk >= k and now - at < max_age_s:
            return top[:k]
        pop = self.popularity()
        want = min(max(k, 1000), len(pop))
        if want == 0:
            return np.empty(0, np.int64)
        with self._lock:
            bumped, self._bumped, self._n_bumped = self._bumped, [], 0
        if max_age_s > 0 and kk == want and bumped is not None and len(top) and pop[top[-1]] > 0:
            # popularity only rises: a note outside the cached top that was not bumped since
            # is still below its last entry, so the new top is among the old top and the
            # bumped (an argpartition over 1M notes took 10-25 ms of a request every second)
            pool = np.unique(np.concatenate([top, *bumped]))
        else:  # the simulator (max_age 0: always the full ranking, as before) or no usable cache
            pool = np.arange(len(pop))
        # pool is sorted, so ties in pool order are ties by item index: the same list on every
        # machine (an argpartition keeps a CPU-dependent subset of the items tied at the cut)
        top = pool[stable_topk(pop[pool], want)].astype(np.int64)
        self._top_cache = (now, want, top)
        return top[:k]

    # ---------------------------------------------------------------- writes
    def _vectors(self, cats: np.ndarray, authors: np.ndarray) -> np.ndarray:
        v = self._cat_emb[cats % len(self._cat_emb)] + 0.5 * self._auth_emb[authors % _AUTHOR_BUCKETS]
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)

    def add_note(self, note: Note, followers: int | None = None) -> int:
        """Add a published note (already durable); return its item index."""
        with self._lock:
            if note.note_id in self.index:
                raise ValueError(f"note_id {note.note_id!r} already exists (field 'note_id')")
            a = self.creator_index.get(note.author_id)
            if a is None:
                a = self.creator_index[note.author_id] = len(self.creator_ids)
                self.creator_ids.append(note.author_id)
                self._followers.append(followers or 0)
            elif followers is not None:
                self._followers.a[a] = followers
            c = self.category_index.get(note.category)
            if c is None:
                c = self.category_index[note.category] = len(self.categories)
                self.categories.append(note.category)
            self._vec.append(self._vectors(np.array([c]), np.array([a]))[0])
            self._cat.append(c)
            self._created.append(note.created_at or int(time.time()))
            self._pop.append(0.0)
            self._impr.append(0.0)
            self._clk.append(0.0)
            self._author.append(a)  # last: n_items grows only once every array has the row
            i = len(self.note_ids)
            self.note_ids.append(note.note_id)
            self.index[note.note_id] = i
            self.fresh.append(i)
            self.published[i] = note
            return i

    def bump(self, items: np.ndarray, weight: float = 1.0) -> None:
        """Add online engagement to popularity (positives of accepted events)."""
        if len(items):
            with self._lock:  # add_note may reallocate the array
                np.add.at(self._pop.a, items, weight)
                if self._bumped is not None:
                    self._bumped.append(np.asarray(items, np.int64))
                    self._n_bumped += len(items)
                    if self._n_bumped > 1_000_000:  # a long pause between refreshes: rank all
                        self._bumped, self._n_bumped = None, 0

    def count_exposure(self, impressions: np.ndarray, clicks: np.ndarray) -> None:
        """Add live impressions and clicks (item indices, repeats count)."""
        if len(impressions) or len(clicks):
            with self._lock:  # add_note may reallocate the arrays
                np.add.at(self._impr.a, np.asarray(impressions, np.int64), 1.0)
                np.add.at(self._clk.a, np.asarray(clicks, np.int64), 1.0)
                i0, c0 = self.exposure_totals
                self.exposure_totals = (i0 + len(impressions), c0 + len(clicks))

    def fields(self, item: int) -> dict[str, Any]:
        """The editable fields of note ``item`` as it is now: ``title``, ``text``, ``tags``
        (a list), ``category``."""
        if item in self.edited:
            return dict(self.edited[item])
        if item in self.published:
            n = self.published[item]
            return {"title": n.title, "text": n.text, "tags": list(n.tags), "category": n.category}
        row = self.ds.notes.iloc[item]
        tags = row["tags"] if "tags" in row.index else []
        return {"title": str(row.get("title", "")), "text": str(row.get("text", "")),
                "tags": [str(t) for t in (tags if isinstance(tags, list | tuple | np.ndarray) else [])],
                "category": str(row.get("category", ""))}

    def edit(self, item: int, before: dict[str, Any], after: dict[str, Any], seq: int) -> None:
        """Apply an edit (the note log's at position ``seq``: the fields ``before`` and ``after``
        it) to note ``item``: its fields, its category code and catalogue vector (what diversity
        and the related fallbacks read)."""
        with self._lock:
            old, new = dict(before), {**self.fields(item), **after}
            c = self.category_index.get(new["category"])
            if c is None:
                c = self.category_index[new["category"]] = len(self.categories)
                self.categories.append(new["category"])
            self._cat.a[item] = c
            self._vec.a[item] = self._vectors(np.array([c]), np.array([int(self._author.a[item])]))[0]
            self.edited[item] = new
            if item in self.published:
                self.published[item] = self.published[item].model_copy(update=new)
            self.edit_log.append((int(seq), int(item), old, new))

    def title(self, item: int) -> str:
        """Note ``item``'s title as it is now (edited, a dataset note's, a published note's)."""
        if item in self.edited:
            return str(self.edited[item]["title"])
        if item < self.ds.n_items:
            return str(self.ds.notes["title"].iat[item])
        note = self.published.get(item)
        return "" if note is None else note.title

    def notes_frame(self, start: int = 0, stop: int | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """Notes ``start..stop`` (default: to the last) as a ``Dataset.notes``-shaped frame: the
        dataset's rows, then the published notes, edited fields as they are now; ``columns``
        (default: all of them)."""
        stop = self.n_items if stop is None else min(stop, self.n_items)
        base, parts = self.ds.notes, []
        if start < min(stop, len(base)):
            part = base.iloc[start:min(stop, len(base))]
            part = part if columns is None else part[columns]
            edited = [i for i in self.edited if start <= i < min(stop, len(base))]
            if edited:
                part = part.copy()
                for i in edited:
                    for k, v in self.edited[i].items():
                        if k in part.columns:
                            part.iat[i - start, part.columns.get_loc(k)] = v
            parts.append(part)
        pub = [self.published[i].model_dump() for i in range(max(start, len(base)), stop) if i in self.published]
        if pub:
            frame = pd.DataFrame(pub)
            parts.append(frame if columns is None else frame[columns])
        if not parts:
            return pd.DataFrame({c: [] for c in (columns if columns is not None else base.columns)})
        return pd.concat(parts, ignore_index=True)

    def note_json(self, item: int) -> dict[str, object]:
        """Public fields of one note (base dataset rows or published notes)."""
        out: dict[str, object] = {
            "note_id": self.note_ids[item],
            "author_id": self.creator_ids[int(self._author.view()[item])],
            "category": self.category_name(item),
            "created_at": int(self._created.view()[item]),
        }
        if item < self.ds.n_items or item in self.published:
            out["title"] = self.title(item)
        return out

