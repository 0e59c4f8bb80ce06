"""The cold-start pool: interest profiles, seed / look-alike audiences, hand-over, state."""

from __future__ import annotations

import base64
import bisect
import json
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from notefeed.data.dataset import type_mask
from notefeed.online.bandit import thompson_sample, uniform_sample
from notefeed.online.coldstart.config import (
    _MIN_PSCALE,
    _MIN_RESCALE,
    _STATE_VERSION,
    EXPIRED,
    HANDED_OVER,
    LOOKALIKE,
    SEED,
    STAGES,
    ColdStartConfig,
    ObserveReport,
    _kth_largest,
    _Note,
)
from notefeed.schema import POSITIVE_TYPES

__all__ = ["ColdStartPool", "encode_state"]


class ColdStartPool:
    """New notes moving seed -> look-alike -> handed over; a recall channel for the boost slots."""

    name = "coldstart/bandit"

    def __init__(self, config: ColdStartConfig | None = None, **params: Any) -> None:
        self.config = replace(config or ColdStartConfig(), **params).validate()
        self.vocab: dict[str, int] = {}
        self.item_feats: dict[int, list[int]] = {}
        self.item_vecs: dict[int, np.ndarray] = {}
        #: item_feats' keys in order of first sight and whether that order is ascending (it is
        #: when the catalogue is indexed once and new notes are published with growing
        #: indices): a snapshot finds the notes from ``min_item`` on by bisection, not by
        #: filtering a million-key dict under the ingest lock
        self._feat_keys: list[int] = []
        self._feat_ascending = True
        self.notes: dict[int, _Note] = {}
        #: (U, F) decayed feature counts: a view of ``_pbuf``, which keeps spare rows and
        #: columns, so that a new user or tag does not copy the whole profile (a gigabyte at
        #: 100k users: every new user's first event took ~0.4 s)
        self._pbuf = np.zeros((0, 0), np.float32)
        self._pshape = (0, 0)
        self._cprof: np.ndarray | None = None  # (U, D) decayed content vectors
        self._ref_ts: int | None = None
        self._rnorm = np.zeros(0, np.float32)  # (U,) row norms of the profile, kept up to date
        #: the profiles in ``_ref_ts``'s units are the stored ones times this: a rebase of the
        #: reference time changes this number, not every stored value (see :meth:`_weights`)
        self._pscale = 1.0
        #: the profile as (user, feature, value) triples as of the last snapshot, and the rows
        #: changed since (a snapshot copies those rows only: the whole (U, F) profile is a
        #: gigabyte at 100k users, and copying it held ingest up for seconds)
        self._trip: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._dirty = np.zeros(0, bool)
        self._active: dict[str, np.ndarray] | None = None
        self._rng = np.random.default_rng(0)  # Thompson draws when used as a recall channel

    @property
    def _prof(self) -> np.ndarray:
        """The (U, F) view of ``_pbuf``. Read-only as an attribute (no setter): ``self._prof *=
        x`` would otherwise store the view as the buffer and lose its spare rows and columns."""
        return self._pbuf[: self._pshape[0], : self._pshape[1]]

    # ------------------------------------------------------------------ catalogue and profiles
    def index_items(self, items: np.ndarray, tags: list[list[str]], categories: list[str] | None = None,
                    vectors: np.ndarray | None = None) -> None:
        """Tell the pool the tags/category (and content vector) of catalogue items, for user profiles."""
        items = self._check_items(items)
        if len(tags) != len(items):
            raise ValueError(f"index_items: tags has {len(tags)} rows for {len(items)} items")
        cats = categories if categories is not None else [None] * len(items)
        if len(cats) != len(items):
            raise ValueError(f"index_items: categories has {len(cats)} rows for {len(items)} items")
        vecs = self._check_vectors(vectors, len(items))
        if vecs is not None and self._cprof is None:
            self._cprof = np.zeros((len(self._prof), vecs.shape[1]), np.float32)
        ids, cuts = self._feature_ids(tags, cats)
        feats, keys = self.item_feats, items.tolist()
        self._note_keys([i for i in dict.fromkeys(keys) if i not in feats])  # first sight, in order
        feats.update(zip(keys, (ids[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)), strict=True))
        if vecs is not None:
            self.item_vecs.update(zip(keys, vecs, strict=True))

    def _feature_ids(self, tags: list, cats: list) -> tuple[list[int], list[int]]:
        """Each item's feature ids, flat (``ids[cuts[j]:cuts[j + 1]]`` are item ``j``'s):
        ``tag:<t>`` per tag, then ``cat:<c>``; a feature new to :attr:`vocab` gets the next id in
        order of first sight, item by item, as a ``vocab.setdefault`` per feature would give
        (tested against that loop). Array operations over the distinct tags and categories: the
        whole catalogue is indexed at start-up (a million notes)."""
        vocab = self.vocab
        lens = np.fromiter((len(t) for t in tags), np.int64, len(tags))
        flat = np.empty(int(lens.sum()), object)
        flat[:] = [x for t in tags for x in t]
        has_cat = np.fromiter((bool(c) for c in cats), bool, len(cats))
        cat_vals = np.empty(int(has_cat.sum()), object)
        cat_vals[:] = [c for c in cats if c]
        for vals in (flat, cat_vals):  # a missing value is named by its text ("None", "nan")
            na = pd.isna(vals)
            if na.any():
                vals[na] = [str(x) for x in vals[na].tolist()]
        tag_code, tag_vals = pd.factorize(flat, sort=False)
        cat_code, cat_uniq = pd.factorize(cat_vals, sort=False)
        # distinct values whose feature names are equal (1 and "1") are one feature
        code, names = pd.factorize(np.array([f"tag:{x}" for x in tag_vals.tolist()]
                                            + [f"cat:{x}" for x in cat_uniq.tolist()], object), sort=False)
        names = names.tolist()
        tag_code, cat_code = code[tag_code], code[len(tag_vals) + cat_code]
        # the items' features in the loop's order: each item's tags, then its category
        per_item = lens + has_cat
        cuts = np.concatenate([[0], np.cumsum(per_item)])
        seq = np.empty(int(cuts[-1]), np.int64)
        is_cat = np.zeros(len(seq), bool)
        is_cat[(cuts[1:] - 1)[has_cat]] = True
        seq[~is_cat] = tag_code
        seq[is_cat] = cat_code
        # each distinct feature's id: the vocabulary's, else the next ones by first position
        known = np.fromiter((vocab.get(n, -1) for n in names), np.int64, len(names))
        first = np.full(len(names), len(seq), np.int64)
        np.minimum.at(first, seq, np.arange(len(seq)))
        new = np.flatnonzero(known < 0)
        new = new[np.argsort(first[new], kind="stable")]
        known[new] = len(vocab) + np.arange(len(new))
        for k in new.tolist():
            vocab[names[k]] = int(known[k])
        return known[seq].tolist(), cuts.tolist()

    def _note_keys(self, new: list[int]) -> None:
        """Add keys new to :attr:`item_feats`, in order of first sight, to ``_feat_keys``; the
        order stops being ascending at the first key below the one before it."""
        keys = self._feat_keys
        if new and ((keys and new[0] < keys[-1]) or (np.diff(new) < 0).any()):
            self._feat_ascending = False
        keys.extend(new)

    def _items_from(self, min_item: int) -> list[int]:
        """item_feats' keys >= ``min_item``, in order of first sight."""
        keys = self._feat_keys
        if self._feat_ascending:
            return keys[bisect.bisect_left(keys, min_item):]
        return [i for i in keys if i >= min_item]

    def _check_items(self, items: np.ndarray) -> np.ndarray:
        arr = np.asarray(items)
        if arr.ndim != 1 or (len(arr) and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0)):
            raise ValueError("items must be a 1-d array of non-negative integer item indices")
        return arr.astype(np.int64)

    def _check_vectors(self, vectors: np.ndarray | None, n: int) -> np.ndarray | None:
        if vectors is None:
            return None
        v = np.asarray(vectors, np.float32)
        if v.ndim != 2 or len(v) != n or not np.all(np.isfinite(v)):
            raise ValueError(f"vectors must be a finite ({n}, D) array, got shape {v.shape}")
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)

    def _grow(self, n_users: int) -> None:
        u, f = self._pshape
        nu, nf = max(u, n_users), max(f, len(self.vocab))
        if (nu, nf) != (u, f):
            cap_u, cap_f = self._pbuf.shape
            if nu > cap_u or nf > cap_f:  # out of room: a quarter more than needed (amortised).
                # Spare rows cost no memory until written (np.zeros maps zero pages lazily), so
                # the first fill (fit) reserves them too; spare columns share pages with the
                # used ones, so only a later growth adds those
                grown = np.zeros((max(cap_u, _with_spare(nu)),
                                  max(cap_f, nf + (nf // 4 + 16 if f else 0))), np.float32)
                grown[:u, :f] = self._prof
                self._pbuf = grown
            self._pshape = (nu, nf)  # the spare cells are zeros
            self._rnorm = _extend_rows(self._rnorm, nu)
            self._dirty = _extend_rows(self._dirty, nu)
        if self._cprof is not None and len(self._cprof) < nu:
            self._cprof = _extend_rows(self._cprof, nu)

    def _weights(self, ts: np.ndarray) -> np.ndarray:
        """exp2((ts - ref) / half-life) in the stored profiles' units (divided by
        ``_pscale``): relative to a reference time, so no per-event global decay."""
        hl = self.config.half_life_h * 3600.0
        if self._ref_ts is None:
            self._ref_ts = int(ts.min())
        expo = (ts.max() - self._ref_ts) / hl
        if expo > 30:  # rebase before float32 overflows: scaling every profile keeps cosines unchanged
            shift = int(ts.max()) - self._ref_ts
            # decay saturates at 2^-40: after a clock jump (a year-old dataset served today) the
            # old profiles would underflow to zero and every user would look alike
            self._pscale *= max(float(np.exp2(-shift / hl)), _MIN_RESCALE)
            self._ref_ts += shift
            if self._pscale < _MIN_PSCALE:
                self._fold_scale()
        return (np.exp2((ts - self._ref_ts) / hl) / self._pscale).astype(np.float32)

    def _fold_scale(self) -> None:
        """Multiply the stored profiles by ``_pscale`` and reset it to 1: a pass over the whole
        (U, F) profile, needed only when the scale nears float32's range (a rebase only moves
        the scale: the first live event after a years-old dataset used to rescale a gigabyte
        under the serving lock, and the next snapshot re-read every row)."""
        g = np.float32(self._pscale)
        prof = self._prof  # in place: assigning to the view would drop the buffer's spare room
        prof *= g
        if self._cprof is not None:
            self._cprof *= g
        self._rnorm *= g  # row norms scale with their rows
        self._trip = None  # every row changed: the next snapshot takes them all
        self._pscale = 1.0

    def profile_similarity(self, users: np.ndarray, feats: list[int], vector: np.ndarray | None = None) -> np.ndarray:
        """(n,) match in [0, 1] of (n,) users' interest profiles with a note's features (and vector)."""
        users = np.asarray(users, np.int64)
        out = np.zeros(len(users), np.float32)
        known = users < len(self._prof)
        if feats:
            # a feature no profile has seen yet (a new tag or category) matches nobody
            cols = np.array([f for f in feats if f < self._prof.shape[1]], np.int64)
            ku = users[known]
            out[known] = (self._prof[np.ix_(ku, cols)].sum(axis=1) / np.maximum(self._rnorm[ku], 1e-9)
                          / np.sqrt(len(feats)))
        if vector is not None and self._cprof is not None:
            cp = self._cprof[users[known]]
            cp = cp / np.maximum(np.linalg.norm(cp.astype(np.float64), axis=1, keepdims=True), 1e-9)
            w = self.config.content_weight
            out[known] = (1 - w) * out[known] + w * np.maximum(cp @ vector, 0.0)
        return out

    def _unit_rows(self, users: np.ndarray) -> np.ndarray:
        """The profiles of ``users`` scaled to unit length (rows of zeros stay zero)."""
        return self._prof[users] / np.maximum(self._rnorm[users], 1e-9)[:, None]

    # ------------------------------------------------------------------ new notes
    def publish(self, items: np.ndarray, vectors: np.ndarray | None, tags: list[list[str]],
                categories: list[str] | None = None, ts: int = 0) -> None:
        """Add new notes (tags: author or predicted; vectors: content, optional) in the seed stage."""
        items = self._check_items(items)
        dup = [i for i in items.tolist() if i in self.notes] + [int(i) for i in items[1:][np.diff(np.sort(items)) == 0]]
        if dup:
            raise ValueError(f"publish: items already in the pool: {dup[:5]}")
        self.index_items(items, tags, categories, vectors)
        vecs = self._check_vectors(vectors, len(items))
        self._grow(0)
        all_users = np.arange(len(self._prof))
        for j, i in enumerate(items.tolist()):
            v = vecs[j] if vecs is not None else None
            note = _Note(item=i, published_ts=int(ts), feats=self.item_feats[i],
                         vector=None if v is None else v.tolist(), stage_ts=int(ts))
            note.seed_thr = _kth_largest(self.profile_similarity(all_users, note.feats, v), self.config.seed_size)
            self.notes[i] = note
        self._active = None

    def observe(self, events: pd.DataFrame) -> ObserveReport:
        """Count impressions/clicks of pool notes, update profiles from positives, move stages."""
        for col in ("user", "item", "type", "ts"):
            if col not in events.columns:
                raise ValueError(f"observe: events lack the column {col!r}")
        rep = ObserveReport()
        if not len(events):
            return rep
        cols = {c: events[c].to_numpy() for c in ("user", "item", "ts")}
        for c, arr in cols.items():
            if not np.issubdtype(arr.dtype, np.integer) or (len(arr) and arr.min() < 0):
                raise ValueError(f"observe: column {c!r} must hold non-negative integers")
        users, items, ts = (cols[c].astype(np.int64) for c in ("user", "item", "ts"))
        known = _member(items, self.item_feats)
        rep.ignored = int((~known).sum())
        pos = known & type_mask(events, *POSITIVE_TYPES)
        if pos.any():
            self._update_profiles(users[pos], items[pos], ts[pos])
            rep.profile_updates = int(pos.sum())
        in_pool = _member(items, self.notes)
        rep.new_note_events = int(in_pool.sum())
        grew: set[int] = set()
        rows = np.flatnonzero(in_pool)
        types = np.asarray(events["type"].iloc[rows], dtype=object)  # only the pool notes' events as strings
        for u, i, t in zip(users[rows].tolist(), items[rows].tolist(), types.tolist(), strict=True):
            note = self.notes[i]
            if t == "impression":
                note.impressions += 1
            elif t == "click":
                note.clicks += 1
                if u not in note.engagers:
                    note.engagers.append(u)
                    grew.add(i)
        now = int(ts.max())
        self._expand([self.notes[i] for i in sorted(grew) if self.notes[i].stage in (SEED, LOOKALIKE)], now, rep)
        max_age = self.config.max_age_h * 3600.0
        for note in self.notes.values():
            if note.stage in (SEED, LOOKALIKE):
                if note.impressions >= self.config.handover_impressions:
                    self._move(note, HANDED_OVER, now, rep)
                elif now - note.published_ts > max_age:
                    self._move(note, EXPIRED, now, rep)
        self._active = None
        return rep

    def _move(self, note: _Note, stage: int, now: int, rep: ObserveReport) -> None:
        note.stage, note.stage_ts = stage, now
        rep.stage_changes[STAGES[stage]] = rep.stage_changes.get(STAGES[stage], 0) + 1

    def _update_profiles(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray) -> None:
        w = self._weights(ts)
        # each distinct note's feature ids once, then gathered per event (ragged arrays)
        uniq, inv = np.unique(items, return_inverse=True)
        ufeats = [self.item_feats[i] for i in uniq.tolist()]
        ulens = np.fromiter((len(f) for f in ufeats), np.int64, len(ufeats))
        uflat = np.fromiter((x for f in ufeats for x in f), np.int64, int(ulens.sum()))
        ustart = np.cumsum(ulens) - ulens
        lens = ulens[inv]
        total = int(lens.sum())
        offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
        flat = uflat[np.repeat(ustart[inv], lens) + offset]
        self._grow(int(users.max()) + 1)
        np.add.at(self._prof, (np.repeat(users, lens), flat), np.repeat(w, lens))
        if self._cprof is not None:
            has = _member(items, self.item_vecs)
            if has.any():
                vecs = np.stack([self.item_vecs[i] for i in items[has].tolist()])
                np.add.at(self._cprof, users[has], vecs * w[has, None])
        rows = np.unique(users)
        self._rnorm[rows] = _row_norms(self._prof[rows])
        self._dirty[rows] = True

    def _expand(self, notes: list[_Note], now: int, rep: ObserveReport) -> None:
        """Look-alike audiences: users close (cosine) to the mean profile of each note's engagers."""
        notes = [n for n in notes if len(n.engagers) >= self.config.lookalike_after_clicks]
        if not notes:
            return
        cents = np.zeros((self._prof.shape[1], len(notes)), np.float32)
        for j, note in enumerate(notes):
            eng = np.array([u for u in note.engagers if u < len(self._prof)], np.int64)
            if len(eng):
                cents[:, j] = self._unit_rows(eng).mean(axis=0)
        # (U, n): one matmul for every note that gained engagers in this batch, on unit rows
        sims = (self._prof @ cents) / np.maximum(self._rnorm, 1e-9)[:, None]
        for j, note in enumerate(notes):
            nz = np.flatnonzero(cents[:, j])
            if not len(nz):
                continue
            note.centroid = {int(k): float(cents[k, j]) for k in nz}
            note.look_thr = _kth_largest(sims[:, j], self.config.lookalike_size)
            if note.stage == SEED:
                self._move(note, LOOKALIKE, now, rep)

    # ------------------------------------------------------------------ serving
    def _active_arrays(self) -> dict[str, np.ndarray]:
        if self._active is None:
            act = [n for n in self.notes.values() if n.stage in (SEED, LOOKALIKE)]
            nf = max(len(self.vocab), self._prof.shape[1])
            feat = np.zeros((len(act), nf), np.float32)
            cent = np.zeros((len(act), nf), np.float32)
            for r, n in enumerate(act):
                if n.feats:
                    feat[r, n.feats] = 1.0 / np.sqrt(len(n.feats))
                for k, v in n.centroid.items():
                    cent[r, k] = v
            dim = self._cprof.shape[1] if self._cprof is not None else 0
            vec = np.zeros((len(act), dim), np.float32)
            has_vec = np.zeros(len(act), bool)
            for r, n in enumerate(act):
                if n.vector is not None and len(n.vector) == dim:
                    vec[r], has_vec[r] = n.vector, True
            self._active = {
                "items": np.array([n.item for n in act], np.int64), "vec": vec, "has_vec": has_vec,
                "feat": feat, "cent": cent,
                "stage": np.array([n.stage for n in act], np.int64),
                "seed_thr": np.array([n.seed_thr for n in act], np.float32),
                "look_thr": np.array([n.look_thr for n in act], np.float32),
                "alpha": np.array([n.clicks + self.config.prior_a for n in act], np.float64),
                "beta": np.array([n.impressions - n.clicks + self.config.prior_b for n in act], np.float64),
            }
        return self._active

    def candidates_for(self, user: int, k: int, rng: np.random.Generator, exclude: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Up to ``k`` pool notes whose audience holds ``user``: (items, scores desc, stage names)."""
        if not isinstance(k, int | np.integer) or k < 0:
            raise ValueError(f"candidates_for: k must be a non-negative integer, got {k!r}")
        a = self._active_arrays()
        if k == 0 or not len(a["items"]):
            return np.zeros(0, np.int64), np.zeros(0, np.float32), []
        p = np.zeros(a["feat"].shape[1], np.float32)
        if 0 <= user < len(self._prof):
            p[: self._prof.shape[1]] = self._prof[user] / max(float(self._rnorm[user]), 1e-9)
        match = a["feat"] @ p
        if self._cprof is not None and 0 <= user < len(self._cprof) and a["has_vec"].any():
            cp = self._cprof[user] / max(float(np.linalg.norm(self._cprof[user].astype(np.float64))), 1e-9)
            w = self.config.content_weight
            cm = np.maximum(a["vec"] @ cp, 0.0)
            match = np.where(a["has_vec"], (1 - w) * match + w * cm, match)
        look = np.where(a["stage"] == LOOKALIKE, a["cent"] @ p, -np.inf)
        # tolerance: thresholds were computed with a different float32 summation order
        ok = (match >= a["seed_thr"] - 1e-5) | (look >= a["look_thr"] - 1e-5)
        if exclude is not None and len(exclude):
            ok &= ~np.isin(a["items"], exclude)
        idx = np.flatnonzero(ok)
        if not len(idx):
            return np.zeros(0, np.int64), np.zeros(0, np.float32), []
        if self.config.bandit == "thompson":
            theta = thompson_sample(a["alpha"][idx], a["beta"][idx], rng)
        else:
            theta = uniform_sample(len(idx), rng)
        rel = np.clip(np.maximum(match[idx], look[idx]), 0.0, 1.0)
        score = theta * (self.config.relevance_floor + rel)
        top = np.argsort(-score, kind="stable")[:k]
        stages = [STAGES[int(s)] for s in a["stage"][idx[top]]]
        return a["items"][idx[top]], score[top].astype(np.float32), stages

    # -------------------------------------------------------------- recall-channel face (serving pipeline)
    def fit(self, ds: Any) -> ColdStartPool:
        """Index a :class:`~notefeed.data.Dataset`'s notes (tags, category) and build profiles from its positives."""
        self.index_items(np.arange(ds.n_items), [list(t) for t in ds.notes["tags"]], list(ds.notes["category"]))
        self.observe(ds.select_events())
        return self

    def recall(self, ctx: Any, k: int) -> Any:
        """:class:`~notefeed.recall.base.Candidates` for a ``UserContext`` (unknown users get none)."""
        from notefeed.recall.base import Candidates

        if ctx.user is None:
            return Candidates.empty(self.name)
        exclude = np.concatenate([ctx.seen, ctx.history, ctx.hidden]).astype(np.int64)
        items, scores, _ = self.candidates_for(int(ctx.user), k, self._rng, exclude)
        return Candidates(self.name, items, scores)

    def summary(self) -> dict[str, Any]:
        """Notes per stage and median seconds from publication to hand-over."""
        st = np.array([n.stage for n in self.notes.values()], np.int64)
        ho = [n.stage_ts - n.published_ts for n in self.notes.values() if n.stage == HANDED_OVER]
        return {"notes": len(self.notes), **{s: int((st == c).sum()) for c, s in enumerate(STAGES)},
                "median_s_to_handover": float(np.median(ho)) if ho else float("nan")}

    def forget_user(self, user: int) -> None:
        """Drop ``user``'s interest profile and their place among the notes' engagers (an
        erased user); the row stays, empty (rows are indices)."""
        if 0 <= user < len(self._prof):
            self._prof[user] = 0.0
            self._rnorm[user] = 0.0
            self._dirty[user] = True
            if self._cprof is not None and user < len(self._cprof):
                self._cprof[user] = 0.0
        for note in self.notes.values():
            if user in note.engagers:
                note.engagers = [u for u in note.engagers if u != user]
        self._active = None

    # ------------------------------------------------------------------ state
    def baseline(self, force: bool = False) -> None:
        """Take the whole profile as the snapshots' base triples (a pass over every row: done
        once at start-up, so that a snapshot under the ingest lock copies changed rows only);
        without ``force`` only where there is none yet."""
        if self._trip is not None and not force:
            return
        self._trip = _triples(self._prof, np.arange(len(self._prof)))
        self._dirty = np.zeros(len(self._prof), bool)

    def capture(self, min_item: int = 0) -> dict[str, Any]:
        """A consistent copy of the state (the notes from ``min_item`` on), quick enough to take
        under a lock: the profile rows changed since the last snapshot, no encoding.
        :func:`encode_state` turns it into :meth:`to_state`'s form afterwards, outside the lock;
        :meth:`settle` then takes or returns the snapshot's profile."""
        self.baseline()
        rows = np.flatnonzero(self._dirty)
        late = self._items_from(min_item)
        dirty, self._dirty = self._dirty, np.zeros(len(self._dirty), bool)
        return {
            "config": asdict(self.config),
            "vocab": sorted(self.vocab, key=self.vocab.__getitem__),
            "item_feats": {i: list(self.item_feats[i]) for i in late},
            "item_vecs": {i: self.item_vecs[i].copy() for i in late if i in self.item_vecs},
            "profile_shape": self._prof.shape,
            "profile_base": self._trip, "profile_rows": rows, "profile_block": self._prof[rows],
            "profile_dirty": dirty,
            "content_profile": None if self._cprof is None else self._cprof.copy(),
            "ref_ts": self._ref_ts, "profile_scale": self._pscale,
            "notes": [{**asdict(n), "centroid": dict(n.centroid)} for n in self.notes.values()],
        }

    def settle(self, captured: dict[str, Any], saved: bool) -> None:
        """After a snapshot of :meth:`capture`: ``saved``, its profile becomes the new base
        (unless a rescale replaced the base meanwhile); not saved, its rows count as changed
        again, so the next snapshot takes them."""
        if saved and "profile_merged" in captured:
            if self._trip is captured["profile_base"]:
                self._trip = captured["profile_merged"]
            return
        dirty = captured["profile_dirty"]
        self._dirty[: len(dirty)] |= dirty

    def to_state(self, min_item: int = 0) -> dict[str, Any]:
        """Everything as JSON-serialisable plain data (the notes from ``min_item`` on; profiles
        as sparse triples, arrays as base64): :func:`encode_state` of :meth:`capture`."""
        c = self.capture(min_item)
        try:
            state = encode_state(c)
        except BaseException:
            self.settle(c, saved=False)
            raise
        self.settle(c, saved=True)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ColdStartPool:
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"ColdStartPool state: expected a dict with version {_STATE_VERSION}")
        try:
            known = {f.name for f in fields(ColdStartConfig)}
            pool = cls(ColdStartConfig(**{k: v for k, v in state["config"].items() if k in known}))
            pool.vocab = {n: j for j, n in enumerate(state["vocab"])}
            pool.item_feats = {int(i): list(v) for i, v in state["item_feats"].items()}
            pool._note_keys(list(pool.item_feats))
            pool.item_vecs = {int(i): np.asarray(v, np.float32) for i, v in state["item_vecs"].items()}
            nu, nf = (int(x) for x in state["profile_shape"])
            # spare rows for new users (free until written: see _grow)
            pool._pbuf, pool._pshape = np.zeros((_with_spare(nu), nf), np.float32), (nu, nf)
            p = state["profile"]
            trip = (_decode(p["user"], np.int32), _decode(p["feat"], np.int32), _decode(p["value"], np.float32))
            pool._prof[trip[0], trip[1]] = trip[2]
            pool._rnorm = _row_norms(pool._prof)
            pool._trip, pool._dirty = trip, np.zeros(len(pool._prof), bool)
            cp = state["content_profile"]
            pool._cprof = None if cp is None else _decode(cp, np.float32).reshape(len(pool._prof), -1)
            pool._ref_ts = state["ref_ts"]
            pool._pscale = float(state.get("profile_scale", 1.0))
            if not _MIN_PSCALE <= pool._pscale <= 1.0:  # a pool folds its scale before it gets smaller
                raise ValueError(f"profile_scale must be in [2^-50, 1], got {pool._pscale}")
            for d in state["notes"]:
                d = {**d, "centroid": {int(k): float(v) for k, v in d["centroid"].items()},
                     "look_thr": float("inf") if d["look_thr"] is None else float(d["look_thr"])}
                pool.notes[int(d["item"])] = _Note(**d)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"ColdStartPool state is corrupt: {e!r}") from e
        return pool

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_state()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ColdStartPool:
        try:
            state = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"ColdStartPool: cannot read state file {path}: {e}") from e
        return cls.from_state(state)


#: profile rows turned into triples at a time: each step is short, so the serving threads
#: get the interpreter between steps while a snapshot is encoded (a 100k-user profile at
#: once held it for seconds)
_ROWS_PER_STEP = 4096


def encode_state(c: dict[str, Any]) -> dict[str, Any]:
    """:meth:`ColdStartPool.capture`'s copy as JSON-serialisable data. The profile goes as
    sparse (user, feature, value) triples (the base's, less the changed rows, plus those rows'
    own) and every large array as base64 of its little-endian bytes (``int32`` / ``float32``):
    a JSON list of millions of numbers takes seconds to write, all of it holding the
    interpreter lock. Leaves the merged triples in ``c`` for :meth:`ColdStartPool.settle`."""
    bu, bf, bv = c["profile_base"]
    dirty = c["profile_dirty"]
    keep = ~dirty[bu] if len(dirty) else np.ones(len(bu), bool)
    nu, nf, nv = _triples(c["profile_block"], c["profile_rows"])
    merged = (np.concatenate([bu[keep], nu]), np.concatenate([bf[keep], nf]), np.concatenate([bv[keep], nv]))
    order = np.lexsort((merged[1], merged[0]))  # by user, then feature: the same file for the same profile
    merged = tuple(m[order] for m in merged)
    c["profile_merged"] = merged
    cp = c["content_profile"]
    return {
        "version": _STATE_VERSION,
        "config": c["config"],
        "vocab": c["vocab"],
        "item_feats": {str(i): v for i, v in c["item_feats"].items()},
        "item_vecs": {str(i): v.tolist() for i, v in c["item_vecs"].items()},
        "profile_shape": list(c["profile_shape"]),
        "profile": {"user": _encode(merged[0]), "feat": _encode(merged[1]), "value": _encode(merged[2])},
        "content_profile": None if cp is None else _encode(np.asarray(cp, np.float32).ravel()),
        "ref_ts": c["ref_ts"],
        # the stored profiles times this are the profiles in ref_ts's units (absent: 1)
        "profile_scale": c["profile_scale"],
        # JSON has no infinity: a note without look-alike audience stores look_thr as null
        "notes": [{**n, "centroid": {str(k): v for k, v in n["centroid"].items()},
                   "look_thr": n["look_thr"] if np.isfinite(n["look_thr"]) else None} for n in c["notes"]],
    }


def _triples(block: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nonzero cells of ``block`` (the profile rows ``rows``) as (user, feature, value)
    int32 / int32 / float32, a few thousand rows per step so that serving threads get the
    interpreter between steps."""
    us, fs, vs = [], [], []
    for lo in range(0, len(block), _ROWS_PER_STEP):
        blk = block[lo: lo + _ROWS_PER_STEP]
        u, f = np.nonzero(blk)
        us.append(np.asarray(rows, np.int64)[lo + u].astype(np.int32))
        fs.append(f.astype(np.int32))
        vs.append(blk[u, f])
    return _concat(us, np.int32), _concat(fs, np.int32), _concat(vs, np.float32)


def _with_spare(rows: int) -> int:
    """Profile rows to allocate for ``rows`` users: a quarter more (growth is amortised)."""
    return rows + rows // 4 + 64


def _extend_rows(arr: np.ndarray, rows: int) -> np.ndarray:
    """``arr`` lengthened to ``rows`` rows of zeros, as a view of the first rows of a zeroed
    buffer with spare rows (:func:`_with_spare`): while the buffer has room, lengthening is a
    new view, not a copy of every row (a copy per new user cost O(users) under the lock)."""
    if len(arr) >= rows:
        return arr
    buf = arr.base
    if (isinstance(buf, np.ndarray) and buf.ndim == arr.ndim and buf.shape[1:] == arr.shape[1:]
            and buf.dtype == arr.dtype and len(buf) >= rows and arr.ctypes.data == buf.ctypes.data):
        return buf[:rows]  # the spare rows were never exposed: still zeros
    buf = np.zeros((_with_spare(rows), *arr.shape[1:]), arr.dtype)
    buf[: len(arr)] = arr
    return buf[:rows]


def _row_norms(prof: np.ndarray) -> np.ndarray:
    """(U,) Euclidean norms of the profile rows, without a (U, F) temporary; the squares are
    summed in float64 (stored values reach 2^100 under a small profile scale: see
    ``ColdStartPool._weights``)."""
    return np.sqrt(np.einsum("ij,ij->i", prof, prof, dtype=np.float64)).astype(np.float32)


def _concat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _encode(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def _decode(v: Any, dtype: Any) -> np.ndarray:
    """An array :func:`_encode` wrote, or a JSON list (the state files written before it)."""
    if isinstance(v, str):
        return np.frombuffer(base64.b64decode(v.encode("ascii"), validate=True),
                             np.dtype(dtype).newbyteorder("<")).astype(dtype)
    return np.asarray(v, dtype)


def _member(items: np.ndarray, keys: dict[int, Any]) -> np.ndarray:
    """(n,) bool: ``items[j] in keys``: a dict probe per item for a few items (one event
    against a million indexed notes), one array lookup for many."""
    if not len(items) or not keys:
        return np.zeros(len(items), bool)
    if 16 * len(items) < len(keys):
        return np.fromiter((i in keys for i in items.tolist()), bool, len(items))
    ks = np.fromiter(keys, np.int64, len(keys))
    top = max(int(items.max()), int(ks.max())) + 1
    mask = np.zeros(top, bool)
    mask[ks] = True
    return mask[items]
