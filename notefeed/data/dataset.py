"""The in-memory, columnar form of a community: what every algorithm consumes.

A :class:`Dataset` holds four tables (pandas) with dense integer indices:

- ``notes``: row ``i`` is item index ``i``; columns ``note_id`` (str), ``author_id`` (str),
  ``title``, ``text``, ``tags`` (list of str), ``category`` (str), ``created_at`` (int64, unix s).
- ``users``: row ``u`` is user index ``u``; column ``user_id`` (str) plus attribute columns.
- ``creators``: ``creator_id`` (str), ``followers`` (int64).
- ``events``: ``user`` (int32 index), ``item`` (int32 index), ``ts`` (int64 unix s),
  ``type`` (categorical over :data:`~notefeed.schema.EVENT_TYPES`), ``dwell_s`` (float32, NaN
  when unknown), ``position`` (int32, -1 when unknown), ``surface`` (categorical).
- ``social`` (optional): ``user`` (int32) follows/befriends ``target_id`` (str, a creator or user id),
  ``kind`` ("follow" or "friend"); a store adds what users said through the API (its relation
  log, copied by the sync), the newest per pair: ``follow``, ``unfollow`` and ``block`` edges
  with their time in an ``at`` column (float unix seconds, NaN for the other edges).

Build one with :meth:`Dataset.build` from frames keyed by external string ids; loaders,
the store and the simulator all end there, so the invariants are checked in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from notefeed.schema import EVENT_TYPES, POSITIVE_TYPES, SMALL_CREATOR_FOLLOWERS, SURFACES

__all__ = ["Dataset", "DataError", "NOTE_COLUMNS", "EVENT_COLUMNS", "type_mask", "window_mask", "LASTING_TYPES"]

#: event types a data window (:func:`window_mask`) never drops: a follow and a hide stay true
#: until they are undone, however old they are
LASTING_TYPES: tuple[str, ...] = ("follow", "hide")

NOTE_COLUMNS = ("note_id", "author_id", "title", "text", "tags", "category", "created_at")
EVENT_COLUMNS = ("user", "item", "ts", "type", "dwell_s", "position", "surface")


class DataError(ValueError):
    """Bad input data; the message names the source, the row and the field."""


def type_mask(events: pd.DataFrame, *types: str) -> np.ndarray:
    """(len(events),) bool: the rows whose ``type`` is one of ``types``. Compared on the column
    as it is: a categorical column (a loaded dataset's) by its codes, where
    ``events["type"].to_numpy() == t`` first makes a string object per row (0.4 s for 3.3M
    events, against under 1 ms)."""
    col = events["type"]
    out = col == types[0] if len(types) == 1 else col.isin(types)
    return out.to_numpy(bool, na_value=False)


def window_mask(events: pd.DataFrame, window_days: float, keep_per_user: int) -> np.ndarray:
    """(len(events),) bool: the events a data window keeps (``data.window_days`` of the serving
    config): those of the newest ``window_days`` days, counted back from the newest event's
    ``ts``; each user's newest ``keep_per_user`` positive events (:data:`POSITIVE_TYPES`),
    whatever their age, so a user who was away keeps a history; every follow and hide
    (:data:`LASTING_TYPES`). ``window_days`` 0 keeps every event.

    ``events`` in time order per user (a dataset's are: ``(ts, user)``, then append order), as
    ``Workspace.load_dataset`` reads the same window in SQL."""
    n = len(events)
    if window_days <= 0 or n == 0:
        return np.ones(n, bool)
    ts = events["ts"].to_numpy(np.int64)
    keep = ts >= int(ts.max()) - window_seconds(window_days)
    keep |= type_mask(events, *LASTING_TYPES)
    if keep_per_user > 0:
        p = np.flatnonzero(type_mask(events, *POSITIVE_TYPES))
        u = events["user"].to_numpy()[p]
        o = np.argsort(u, kind="stable")  # by user, oldest first within one
        us = u[o]
        start = np.r_[0, np.flatnonzero(us[1:] != us[:-1]) + 1]
        size = np.diff(np.r_[start, len(us)])
        from_end = np.repeat(start + size, size) - np.arange(len(us))  # 1 = the user's newest
        keep[p[o[from_end <= keep_per_user]]] = True
    return keep


def window_seconds(window_days: float) -> int:
    """A window of ``window_days`` days in whole seconds (the SQL and the array side agree)."""
    return int(round(float(window_days) * 86400))


def _missing_from(ids: pd.Series, known: pd.Series) -> np.ndarray:
    """Distinct values of ``ids`` not in ``known``, first-seen order. An index lookup:
    ``Series.isin`` on pandas' Arrow-backed strings is a Python loop, far slower."""
    absent = pd.Index(known).get_indexer(ids) < 0
    return pd.unique(ids[absent])


def _as_str_ids(s: pd.Series, what: str) -> pd.Series:
    if s.isna().any():
        row = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise DataError(f"{what}: missing id at row {row}")
    return s.astype(str)


@dataclass
class Dataset:
    """A community in columnar form. See the module docstring for the columns."""

    name: str
    notes: pd.DataFrame
    users: pd.DataFrame
    creators: pd.DataFrame
    events: pd.DataFrame
    social: pd.DataFrame | None = None
    meta: dict[str, object] = field(default_factory=dict)
    #: how far the workspace's serving logs are in these events: the store's sync marks when
    #: it was read (``Workspace.load_dataset``; empty otherwise, and never saved): a server
    #: replaying its event log does not count the entries the dataset holds again
    log_marks: dict[str, object] = field(default_factory=dict)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        name: str,
        events: pd.DataFrame,
        notes: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        creators: pd.DataFrame | None = None,
        social: pd.DataFrame | None = None,
        meta: Mapping[str, object] | None = None,
    ) -> Dataset:
        """Assemble a dataset from frames keyed by external ids.

        ``events`` needs ``user_id``, ``note_id``, ``ts``, ``type``; optional ``dwell_s``,
        ``position``, ``surface``. Notes and users that appear only in events are added with
        empty side info (and ``author_id`` ``"unknown"``); creators missing from ``creators``
        get 0 followers. ``social`` has ``user_id``, ``target_id`` and optional ``kind``.
        """
        for col in ("user_id", "note_id", "ts", "type"):
            if col not in events.columns:
                raise DataError(f"events: missing column '{col}'")
        ev_users = _as_str_ids(events["user_id"], "events.user_id")
        ev_notes = _as_str_ids(events["note_id"], "events.note_id")

        notes = _normalise_notes(notes, ev_notes)
        users = _normalise_users(users, ev_users)
        creators = _normalise_creators(creators, notes["author_id"])

        item_of = pd.Index(notes["note_id"])
        user_of = pd.Index(users["user_id"])
        types = events["type"].astype(str)
        bad = ~types.isin(EVENT_TYPES)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"events: unknown type {types.iloc[row]!r} at row {row} (field 'type')")
        ts = pd.to_numeric(events["ts"], errors="coerce")
        if ts.isna().any():
            row = int(np.flatnonzero(ts.isna().to_numpy())[0])
            raise DataError(f"events: non-numeric ts at row {row} (field 'ts')")
        n = len(events)
        dwell = (
            pd.to_numeric(events["dwell_s"], errors="coerce").to_numpy(np.float32)
            if "dwell_s" in events
            else np.full(n, np.nan, np.float32)
        )
        pos = (
            pd.to_numeric(events["position"], errors="coerce").fillna(-1).to_numpy(np.int32)
            if "position" in events
            else np.full(n, -1, np.int32)
        )
        surface = events["surface"].astype(str) if "surface" in events else pd.Series(["feed"] * n)
        ev = pd.DataFrame(
            {
                "user": user_of.get_indexer(ev_users).astype(np.int32),
                "item": item_of.get_indexer(ev_notes).astype(np.int32),
                "ts": ts.to_numpy(np.int64),
                "type": pd.Categorical(types.to_numpy(), categories=list(EVENT_TYPES)),
                "dwell_s": dwell,
                "position": pos,
                "surface": pd.Categorical(surface.to_numpy(), categories=list(SURFACES)),
            }
        )
        if "request_id" in events:
            ev["request_id"] = events["request_id"].astype("string").to_numpy()
        ev = ev.sort_values(["ts", "user"], kind="stable").reset_index(drop=True)

        soc = _social_frame(social, user_of)
        ds = cls(name, notes, users, creators, ev, soc, dict(meta or {}))
        ds.validate()
        return ds

    @classmethod
    def build_coded(
        cls,
        name: str,
        events: pd.DataFrame,
        notes: pd.DataFrame,
        users: pd.DataFrame,
        creators: pd.DataFrame | None = None,
        social: pd.DataFrame | None = None,
        meta: Mapping[str, object] | None = None,
    ) -> Dataset:
        """:meth:`build` for events already coded against the rows of ``notes`` and ``users``
        (what the workspace store reads: it keeps every note and user an event names).

        ``events`` has the final columns (:data:`EVENT_COLUMNS`: ``type`` and ``surface``
        categorical over :data:`~notefeed.schema.EVENT_TYPES` / ``SURFACES``, ``position``
        -1 when unknown, optional ``request_id``), in ``(ts, user)`` order. ``notes`` and
        ``users`` must have unique ids (a coded row has nowhere else to point). Skips the
        string-id lookups that make :meth:`build` slow on millions of events.
        """
        for what, frame, key in (("notes", notes, "note_id"), ("users", users, "user_id")):
            if key not in frame.columns:
                raise DataError(f"{what}: missing column '{key}'")
            if not frame[key].is_unique:
                raise DataError(f"{what}: duplicate {key} {frame[key][frame[key].duplicated()].iloc[0]!r}")
        empty = pd.Series([], dtype=object)
        notes = _normalise_notes(notes, empty)
        users = _normalise_users(users, empty)
        creators = _normalise_creators(creators, notes["author_id"])
        for col, cats in (("type", EVENT_TYPES), ("surface", SURFACES)):
            if not isinstance(events[col].dtype, pd.CategoricalDtype) or list(events[col].cat.categories) != list(cats):
                raise DataError(f"events: coded column '{col}' must be categorical over {list(cats)}")
        ev = events.reset_index(drop=True)
        ds = cls(name, notes, users, creators, ev, _social_frame(social, pd.Index(users["user_id"])), dict(meta or {}))
        ds.validate()
        return ds

    def validate(self) -> None:
        """Check the invariants every algorithm relies on; raise :class:`DataError`."""
        for col in NOTE_COLUMNS:
            if col not in self.notes.columns:
                raise DataError(f"{self.name}: notes missing column '{col}'")
        if self.notes["note_id"].duplicated().any():
            dup = self.notes["note_id"][self.notes["note_id"].duplicated()].iloc[0]
            raise DataError(f"{self.name}: duplicate note_id {dup!r}")
        if self.users["user_id"].duplicated().any():
            dup = self.users["user_id"][self.users["user_id"].duplicated()].iloc[0]
            raise DataError(f"{self.name}: duplicate user_id {dup!r}")
        for col in EVENT_COLUMNS:
            if col not in self.events.columns:
                raise DataError(f"{self.name}: events missing column '{col}'")
        if len(self.events):
            u, i = self.events["user"].to_numpy(), self.events["item"].to_numpy()
            if u.min() < 0 or u.max() >= self.n_users:
                raise DataError(f"{self.name}: events.user index out of range")
            if i.min() < 0 or i.max() >= self.n_items:
                raise DataError(f"{self.name}: events.item index out of range")

    # ------------------------------------------------------------------ sizes and lookups
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.notes)

    @cached_property
    def item_index(self) -> dict[str, int]:
        """note_id -> item index."""
        return {nid: i for i, nid in enumerate(self.notes["note_id"].tolist())}

    @cached_property
    def user_index(self) -> dict[str, int]:
        """user_id -> user index."""
        return {uid: u for u, uid in enumerate(self.users["user_id"].tolist())}

    @cached_property
    def item_author(self) -> np.ndarray:
        """(n_items,) int32 creator index (row of ``creators``) of each note."""
        idx = pd.Index(self.creators["creator_id"]).get_indexer(self.notes["author_id"])
        return idx.astype(np.int32)

    @cached_property
    def item_category(self) -> tuple[np.ndarray, list[str]]:
        """(codes (n_items,) int32, category names); "" is a category of its own."""
        codes, names = pd.factorize(self.notes["category"].astype(str), sort=True)
        return codes.astype(np.int32), [str(x) for x in names]

    @cached_property
    def creator_followers(self) -> np.ndarray:
        """(n_creators,) int64 follower counts."""
        return self.creators["followers"].to_numpy(np.int64)

    @cached_property
    def item_is_small_creator(self) -> np.ndarray:
        """(n_items,) bool: the note's author has fewer than 1,000 followers."""
        return self.creator_followers[self.item_author] < SMALL_CREATOR_FOLLOWERS

    # ------------------------------------------------------------------ views
    def select_events(self, types: Iterable[str] | None = POSITIVE_TYPES) -> pd.DataFrame:
        """Events whose type is in ``types`` (all when ``None``)."""
        if types is None:
            return self.events
        types = list(types)
        unknown = set(types) - set(EVENT_TYPES)
        if unknown:
            raise DataError(f"unknown event types {sorted(unknown)}")
        return self.events[self.events["type"].isin(types)]

    def interactions(
        self,
        types: Iterable[str] | None = POSITIVE_TYPES,
        weights: Mapping[str, float] | None = None,
        binary: bool = True,
        events: pd.DataFrame | None = None,
    ) -> sp.csr_matrix:
        """User x item matrix (n_users, n_items), float32 CSR.

        ``binary`` gives 1 where any selected event exists; otherwise the sum of per-type
        ``weights`` (default 1 per event). Pass ``events`` to build from a subset (a split).
        """
        ev = self.select_events(types) if events is None else events
        u = ev["user"].to_numpy(np.int32)
        i = ev["item"].to_numpy(np.int32)
        if weights is not None and not binary:
            w = ev["type"].astype(str).map(dict(weights)).fillna(0.0).to_numpy(np.float32)
        else:
            w = np.ones(len(ev), np.float32)
        m = sp.csr_matrix((w, (u, i)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        m.eliminate_zeros()
        return m

    def with_events(self, events: pd.DataFrame, name: str | None = None) -> Dataset:
        """Same catalogue and users, different event table (used by splits)."""
        return Dataset(
            name or self.name, self.notes, self.users, self.creators,
            events.reset_index(drop=True), self.social, dict(self.meta),
        )

    def windowed(self, window_days: float, keep_per_user: int) -> Dataset:
        """The same dataset with the events a data window keeps (:func:`window_mask`); itself
        when the window keeps them all. Keeps ``log_marks``: the entries past the window were
        read and dropped, not missed."""
        keep = window_mask(self.events, window_days, keep_per_user)
        if keep.all():
            return self
        out = self.with_events(self.events[keep])
        out.log_marks = self.log_marks
        return out

    def subsample_users(self, n_users: int, seed: int = 0) -> Dataset:
        """Keep the events of ``n_users`` random users (ids and catalogue unchanged)."""
        rng = np.random.default_rng(seed)
        active = np.unique(self.events["user"].to_numpy())
        keep = rng.choice(active, size=min(n_users, len(active)), replace=False)
        ev = self.events[self.events["user"].isin(keep)]
        return self.with_events(ev, f"{self.name}-sub{n_users}")

    def stats(self) -> dict[str, object]:
        """Counts, time span and sparsity, for ``notefeed data stats``."""
        ev = self.events
        n_pairs = int(self.interactions(types=None).nnz) if len(ev) else 0
        out: dict[str, object] = {
            "name": self.name,
            "users": self.n_users,
            "notes": self.n_items,
            "creators": len(self.creators),
            "events": len(ev),
            "events_by_type": {k: int(v) for k, v in ev["type"].value_counts().items() if v},
            "active_users": int(ev["user"].nunique()),
            "active_notes": int(ev["item"].nunique()),
            "user_note_pairs": n_pairs,
            "sparsity": 1.0 - n_pairs / max(1, self.n_users * self.n_items),
            "small_creator_note_share": float(self.item_is_small_creator.mean()) if self.n_items else 0.0,
            "social_edges": 0 if self.social is None else len(self.social),
        }
        if len(ev):
            out["ts_min"] = int(ev["ts"].min())
            out["ts_max"] = int(ev["ts"].max())
            out["span_days"] = (out["ts_max"] - out["ts_min"]) / 86400.0  # type: ignore[operator]
        return out


# ---------------------------------------------------------------------- helpers
def _social_frame(social: pd.DataFrame | None, user_of: pd.Index) -> pd.DataFrame | None:
    """``social`` keyed by user index (edges of unknown users dropped); ``None`` when empty."""
    if social is None or not len(social):
        return None
    known = user_of.get_indexer(_as_str_ids(social["user_id"], "social.user_id"))
    keep = known >= 0
    out = pd.DataFrame(
        {
            "user": known[keep].astype(np.int32),
            "target_id": social["target_id"].astype(str).to_numpy()[keep],
            "kind": (social["kind"].astype(str).to_numpy()[keep] if "kind" in social else "follow"),
        }
    )
    if "at" in social and social["at"].notna().any():  # edges from the relation log carry their time
        out["at"] = pd.to_numeric(social["at"], errors="coerce").to_numpy(np.float64)[keep]
    return out


def _normalise_notes(notes: pd.DataFrame | None, ev_notes: pd.Series) -> pd.DataFrame:
    if notes is None:
        notes = pd.DataFrame({"note_id": pd.unique(ev_notes)})
    notes = notes.copy()
    if "note_id" not in notes.columns:
        raise DataError("notes: missing column 'note_id'")
    notes["note_id"] = _as_str_ids(notes["note_id"], "notes.note_id")
    notes = notes.drop_duplicates("note_id", keep="last")
    extra = _missing_from(ev_notes, notes["note_id"])
    if len(extra):
        notes = pd.concat([notes, pd.DataFrame({"note_id": extra})], ignore_index=True)
    defaults: dict[str, object] = {"author_id": "unknown", "title": "", "text": "", "category": "", "created_at": 0}
    for col, val in defaults.items():
        if col not in notes.columns:
            notes[col] = val
        else:
            notes[col] = notes[col].fillna(val)
    notes["author_id"] = notes["author_id"].astype(str)
    notes["title"] = notes["title"].astype(str)
    notes["text"] = notes["text"].astype(str)
    notes["category"] = notes["category"].astype(str)
    notes["created_at"] = pd.to_numeric(notes["created_at"], errors="coerce").fillna(0).astype(np.int64)
    if "tags" not in notes.columns:
        notes["tags"] = [[] for _ in range(len(notes))]
    else:
        notes["tags"] = [t if type(t) is list else list(t) if isinstance(t, tuple | np.ndarray) else []
                         for t in notes["tags"]]
    cols = list(NOTE_COLUMNS) + [c for c in notes.columns if c not in NOTE_COLUMNS]
    return notes[cols].reset_index(drop=True)


def _normalise_users(users: pd.DataFrame | None, ev_users: pd.Series) -> pd.DataFrame:
    if users is None:
        users = pd.DataFrame({"user_id": pd.unique(ev_users)})
    users = users.copy()
    if "user_id" not in users.columns:
        raise DataError("users: missing column 'user_id'")
    users["user_id"] = _as_str_ids(users["user_id"], "users.user_id")
    users = users.drop_duplicates("user_id", keep="last")
    extra = _missing_from(ev_users, users["user_id"])
    if len(extra):
        users = pd.concat([users, pd.DataFrame({"user_id": extra})], ignore_index=True)
    return users.reset_index(drop=True)


def _normalise_creators(creators: pd.DataFrame | None, authors: pd.Series) -> pd.DataFrame:
    if creators is None:
        creators = pd.DataFrame({"creator_id": pd.unique(authors), "followers": 0})
    creators = creators.copy()
    if "creator_id" not in creators.columns:
        raise DataError("creators: missing column 'creator_id'")
    creators["creator_id"] = _as_str_ids(creators["creator_id"], "creators.creator_id")
    if "followers" not in creators.columns:
        creators["followers"] = 0
    f = pd.to_numeric(creators["followers"], errors="coerce")
    if (f < 0).any():
        row = int(np.flatnonzero((f < 0).to_numpy())[0])
        raise DataError(f"creators: negative followers at row {row} (field 'followers')")
    creators["followers"] = f.fillna(0).astype(np.int64)
    creators = creators.drop_duplicates("creator_id", keep="last")
    extra = _missing_from(authors, creators["creator_id"])
    if len(extra):
        creators = pd.concat(
            [creators, pd.DataFrame({"creator_id": extra, "followers": np.zeros(len(extra), np.int64)})],
            ignore_index=True,
        )
    return creators.reset_index(drop=True)
