"""The new-note cold-start flow: seed audience -> look-alike expansion -> hand-over, boosted by a bandit.

A freshly published note has no engagement, so collaborative channels cannot recall it. The
:class:`ColdStartPool` keeps every new note with its tags/category (author or predicted) and
optional content vector, and serves it as a recall channel:

1. **seed**: users whose interest profile (decayed counts of the tags and categories of their
   positives, optionally a decayed content vector) matches the note; the audience is the
   ``seed_size`` best-matching users at publication time (a per-note score threshold).
2. **look-alike**: once the note has ``lookalike_after_clicks`` engagers, users whose profile is
   close (cosine) to the mean profile of the engagers join the audience (``lookalike_size``).
3. **hand-over**: at ``handover_impressions`` impressions the note leaves the pool; the normal
   channels (popularity, collaborative recall) have enough feedback by then. Notes older than
   ``max_age_h`` expire.

Which eligible notes get the few boosted slots is decided by Thompson sampling on clicks per
impression (:mod:`notefeed.online.bandit`), or uniformly at random (``bandit="uniform"``, the baseline).
State is plain JSON (:meth:`ColdStartPool.to_state`). Events on items the pool has never been told
about are ignored and counted in the :class:`ObserveReport` (the pool sees the whole event stream).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from notefeed.online.bandit import check_prior, thompson_sample, uniform_sample
from notefeed.schema import POSITIVE_TYPES

__all__ = ["ColdStartConfig", "ColdStartPool", "ColdStartPolicy", "ObserveReport", "STAGES"]

#: Stage of a note in the pool, by code.
STAGES: tuple[str, ...] = ("seed", "lookalike", "handed_over", "expired")
SEED, LOOKALIKE, HANDED_OVER, EXPIRED = range(4)
_STATE_VERSION = 1
_MIN_RESCALE = 2.0**-40


@dataclass(frozen=True)
class ColdStartConfig:
    """Settings of the cold-start pool (``validate()`` names any bad field)."""

    seed_size: int = 300  #: users in a note's seed audience
    lookalike_size: int = 600  #: users added by look-alike expansion
    lookalike_after_clicks: int = 2  #: engagers needed before expanding
    handover_impressions: int = 100  #: impressions after which the normal channels take over
    max_age_h: float = 72.0  #: notes older than this leave the pool unboosted
    prior_a: float = 1.0  #: Beta prior pseudo-clicks
    prior_b: float = 9.0  #: Beta prior pseudo-non-clicks (prior CTR a / (a + b) = 10%)
    bandit: str = "thompson"  #: "thompson" or "uniform" (feedback-blind baseline)
    half_life_h: float = 72.0  #: decay of interest profiles
    content_weight: float = 0.5  #: weight of content-vector match vs tag/category match
    relevance_floor: float = 0.1  #: score = theta * (floor + relevance): theta dominates the boost

    def validate(self) -> ColdStartConfig:
        for name in ("seed_size", "lookalike_size", "lookalike_after_clicks", "handover_impressions"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"ColdStartConfig.{name} must be a positive integer, got {v!r}")
        for name in ("max_age_h", "half_life_h"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and np.isfinite(v) and v > 0):
                raise ValueError(f"ColdStartConfig.{name} must be > 0, got {v!r}")
        for name in ("content_weight", "relevance_floor"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.0 <= v <= 1.0):
                raise ValueError(f"ColdStartConfig.{name} must be in [0, 1], got {v!r}")
        check_prior(self.prior_a, self.prior_b)
        if self.bandit not in ("thompson", "uniform"):
            raise ValueError(f"ColdStartConfig.bandit must be 'thompson' or 'uniform', got {self.bandit!r}")
        return self


@dataclass
class ObserveReport:
    """What one :meth:`ColdStartPool.observe` call did."""

    new_note_events: int = 0  #: events on notes in the pool (any stage)
    profile_updates: int = 0  #: positive events that updated a user's interest profile
    ignored: int = 0  #: events on items the pool was never told about
    stage_changes: dict[str, int] = field(default_factory=dict)


@dataclass
class _Note:
    item: int
    published_ts: int
    feats: list[int]
    vector: list[float] | None = None
    stage: int = SEED
    impressions: int = 0
    clicks: int = 0
    engagers: list[int] = field(default_factory=list)
    seed_thr: float = 0.0
    look_thr: float = float("inf")
    centroid: dict[int, float] = field(default_factory=dict)  # sparse mean profile of the engagers
    stage_ts: int = 0  # when the note entered its current stage


def _features(tags: list[str] | tuple[str, ...], category: str | None) -> list[str]:
    out = [f"tag:{t}" for t in tags]
    if category:
        out.append(f"cat:{category}")
    return out


def _kth_largest(x: np.ndarray, k: int) -> float:
    if len(x) <= k:
        return float(x.min()) if len(x) else 0.0
    return float(np.partition(x, len(x) - k)[len(x) - k])


class ColdStartPool:
    """New notes moving seed -> look-alike -> handed over; a recall channel for the boost slots."""

    name = "coldstart/bandit"

    def __init__(self, config: ColdStartConfig | None = None, **params: Any) -> None:
        self.config = replace(config or ColdStartConfig(), **params).validate()
        self.vocab: dict[str, int] = {}
        self.item_feats: dict[int, list[int]] = {}
        self.item_vecs: dict[int, np.ndarray] = {}
        self.notes: dict[int, _Note] = {}
        self._prof = np.zeros((0, 0), np.float32)  # (U, F) decayed feature counts
        self._cprof: np.ndarray | None = None  # (U, D) decayed content vectors
        self._ref_ts: int | None = None
        self._norm: np.ndarray | None = None
        self._active: dict[str, np.ndarray] | None = None
        self._rng = np.random.default_rng(0)  # Thompson draws when used as a recall channel

    # ------------------------------------------------------------------ catalogue and profiles
    def _feat_ids(self, names: list[str]) -> list[int]:
        return [self.vocab.setdefault(n, len(self.vocab)) for n in names]

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
        for j, (i, t, c) in enumerate(zip(items.tolist(), tags, cats, strict=True)):
            self.item_feats[i] = self._feat_ids(_features(list(t), c))
            if vecs is not None:
                self.item_vecs[i] = vecs[j]

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
        u, f = self._prof.shape
        nu, nf = max(u, n_users), max(f, len(self.vocab))
        if (nu, nf) != (u, f):
            grown = np.zeros((nu, nf), np.float32)
            grown[:u, :f] = self._prof
            self._prof = grown
            self._norm = None  # the cached normalised copy has the old shape
        if self._cprof is not None and len(self._cprof) < nu:
            self._cprof = np.concatenate([self._cprof, np.zeros((nu - len(self._cprof), self._cprof.shape[1]),
                                                                 np.float32)])

    def _weights(self, ts: np.ndarray) -> np.ndarray:
        """exp2((ts - ref) / half-life): relative to a reference time, so no per-event global decay."""
        hl = self.config.half_life_h * 3600.0
        if self._ref_ts is None:
            self._ref_ts = int(ts.min())
        expo = (ts.max() - self._ref_ts) / hl
        if expo > 30:  # rebase before float32 overflows: scaling every profile keeps cosines unchanged
            shift = int(ts.max()) - self._ref_ts
            # decay saturates at 2^-40: after a clock jump (a year-old dataset served today) the
            # old profiles would underflow to zero and every user would look alike
            scale = np.float32(max(np.exp2(-shift / hl), _MIN_RESCALE))
            self._prof *= scale
            if self._cprof is not None:
                self._cprof *= scale
            self._ref_ts += shift
        return np.exp2((ts - self._ref_ts) / hl).astype(np.float32)

    def profile_similarity(self, users: np.ndarray, feats: list[int], vector: np.ndarray | None = None) -> np.ndarray:
        """(n,) match in [0, 1] of (n,) users' interest profiles with a note's features (and vector)."""
        norm = self._normed()
        users = np.asarray(users, np.int64)
        out = np.zeros(len(users), np.float32)
        known = users < len(norm)
        if feats:
            # a feature no profile has seen yet (a new tag or category) matches nobody
            cols = [f for f in feats if f < norm.shape[1]]
            out[known] = norm[users[known]][:, cols].sum(axis=1) / np.sqrt(len(feats))
        if vector is not None and self._cprof is not None:
            cp = self._cprof[users[known]]
            cp = cp / np.maximum(np.linalg.norm(cp, axis=1, keepdims=True), 1e-9)
            w = self.config.content_weight
            out[known] = (1 - w) * out[known] + w * np.maximum(cp @ vector, 0.0)
        return out

    def _normed(self) -> np.ndarray:
        if self._norm is None:
            self._norm = self._prof / np.maximum(np.linalg.norm(self._prof, axis=1, keepdims=True), 1e-9)
        return self._norm

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
        types = events["type"].to_numpy()
        known = np.fromiter((i in self.item_feats for i in items.tolist()), bool, len(items))
        rep.ignored = int((~known).sum())
        pos = known & np.isin(types, POSITIVE_TYPES)
        if pos.any():
            self._update_profiles(users[pos], items[pos], ts[pos])
            rep.profile_updates = int(pos.sum())
        in_pool = np.fromiter((i in self.notes for i in items.tolist()), bool, len(items))
        rep.new_note_events = int(in_pool.sum())
        grew: set[int] = set()
        for u, i, t in zip(users[in_pool].tolist(), items[in_pool].tolist(), types[in_pool].tolist(), strict=True):
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
        feats = [self.item_feats[i] for i in items.tolist()]
        lens = np.fromiter((len(f) for f in feats), np.int64, len(feats))
        self._grow(int(users.max()) + 1)
        flat = np.fromiter((x for f in feats for x in f), np.int64, int(lens.sum()))
        np.add.at(self._prof, (np.repeat(users, lens), flat), np.repeat(w, lens))
        if self._cprof is not None:
            has = np.fromiter((i in self.item_vecs for i in items.tolist()), bool, len(items))
            if has.any():
                vecs = np.stack([self.item_vecs[i] for i in items[has].tolist()])
                np.add.at(self._cprof, users[has], vecs * w[has, None])
        self._norm = None

    def _expand(self, notes: list[_Note], now: int, rep: ObserveReport) -> None:
        """Look-alike audiences: users close (cosine) to the mean profile of each note's engagers."""
        notes = [n for n in notes if len(n.engagers) >= self.config.lookalike_after_clicks]
        if not notes:
            return
        norm = self._normed()
        cents = np.zeros((norm.shape[1], len(notes)), np.float32)
        for j, note in enumerate(notes):
            eng = np.array([u for u in note.engagers if u < len(norm)], np.int64)
            if len(eng):
                cents[:, j] = norm[eng].mean(axis=0)
        sims = norm @ cents  # (U, n): one matmul for every note that gained engagers in this batch
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
        norm = self._normed()
        p = np.zeros(a["feat"].shape[1], np.float32)
        if 0 <= user < len(norm):
            p[: norm.shape[1]] = norm[user]
        match = a["feat"] @ p
        if self._cprof is not None and 0 <= user < len(self._cprof) and a["has_vec"].any():
            cp = self._cprof[user] / max(float(np.linalg.norm(self._cprof[user])), 1e-9)
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

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        """Everything as JSON-serialisable plain data (profiles as sparse triples)."""
        u, f = np.nonzero(self._prof)
        return {
            "version": _STATE_VERSION,
            "config": asdict(self.config),
            "vocab": sorted(self.vocab, key=self.vocab.__getitem__),
            "item_feats": {str(i): v for i, v in self.item_feats.items()},
            "item_vecs": {str(i): v.tolist() for i, v in self.item_vecs.items()},
            "profile_shape": list(self._prof.shape),
            "profile": {"user": u.tolist(), "feat": f.tolist(), "value": self._prof[u, f].tolist()},
            "content_profile": None if self._cprof is None else self._cprof.tolist(),
            "ref_ts": self._ref_ts,
            # JSON has no infinity: a note without look-alike audience stores look_thr as null
            "notes": [{**asdict(n), "centroid": {str(k): v for k, v in n.centroid.items()},
                       "look_thr": n.look_thr if np.isfinite(n.look_thr) else None} for n in self.notes.values()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ColdStartPool:
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"ColdStartPool state: expected a dict with version {_STATE_VERSION}")
        try:
            known = {f.name for f in fields(ColdStartConfig)}
            pool = cls(ColdStartConfig(**{k: v for k, v in state["config"].items() if k in known}))
            pool.vocab = {n: j for j, n in enumerate(state["vocab"])}
            pool.item_feats = {int(i): list(v) for i, v in state["item_feats"].items()}
            pool.item_vecs = {int(i): np.asarray(v, np.float32) for i, v in state["item_vecs"].items()}
            pool._prof = np.zeros(tuple(state["profile_shape"]), np.float32)
            p = state["profile"]
            pool._prof[np.asarray(p["user"], np.int64), np.asarray(p["feat"], np.int64)] = p["value"]
            cp = state["content_profile"]
            pool._cprof = None if cp is None else np.asarray(cp, np.float32).reshape(len(pool._prof), -1)
            pool._ref_ts = state["ref_ts"]
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


# ---------------------------------------------------------------------- the simulator wrapper
class ColdStartPolicy:
    """Wraps a simulator policy: up to ``slots`` pool notes per page, the base policy fills the rest.

    The wrapper keeps the pool in sync with the environment's observable side: on first use it
    indexes the catalogue's tags/categories and builds interest profiles from the logged history;
    notes published later enter the pool with their (author) tags and category.
    """

    def __init__(self, base: Any, pool: ColdStartPool, slots: int = 2, seed: int = 0, content: bool = False) -> None:
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < 0:
            raise ValueError(f"ColdStartPolicy: slots must be a non-negative integer, got {slots!r}")
        self.base, self.pool, self.slots = base, pool, slots
        suffix = "" if pool.config.bandit == "thompson" else f"-{pool.config.bandit}"
        self.name = f"{base.name}+coldstart{suffix}" + ("-content" if content else "")
        # content=True: text vectors (TextEncoder) and predicted tags (TagPredictor) for new notes,
        # both fitted on the catalogue at first use; otherwise the author's tags and category only
        self.content = content
        self._encoder: Any = None
        self._tagger: Any = None
        self.rng = np.random.default_rng(seed)
        self._synced = False
        self._n_published = 0
        # (user, item) pairs this wrapper boosted, and their impressions/clicks: the boost's own CTR
        self._boosted: set[tuple[int, int]] = set()
        self.boost_impressions = 0
        self.boost_clicks = 0

    def _sync(self, env: Any) -> None:
        published = env.published_items
        if not self._synced:
            self._synced = True
            old = np.setdiff1d(np.arange(env.n_items), published)
            nf = env.notes_frame(old)
            vecs = None
            if self.content:
                from notefeed.content import TagPredictor, TextEncoder

                self._encoder = TextEncoder(dim=32)
                vecs = self._encoder.fit_transform((nf["title"] + " " + nf["text"]).tolist())
                self._tagger = TagPredictor(k=3).fit(vecs, list(nf["tags"]))
            self.pool.index_items(old, list(nf["tags"]), list(nf["category"]), vecs)
            ds = env.dataset
            if ds is not None and len(ds.events):
                self.pool.observe(ds.events[ds.events["type"].isin(POSITIVE_TYPES)])
        fresh = published[self._n_published:]  # publish appends, so only the tail is new
        self._n_published = len(published)
        if len(fresh):
            nf = env.notes_frame(fresh)
            tags, vecs = [list(t) for t in nf["tags"]], None
            if self.content:
                vecs = self._encoder.transform((nf["title"] + " " + nf["text"]).tolist())
                tags = [sorted(set(t) | set(p)) for t, p in zip(tags, self._tagger.predict_tags(vecs), strict=True)]
            self.pool.publish(fresh, vecs, tags, list(nf["category"]), ts=int(env.now))

    def recommend(self, env_view: Any, user: int, k: int) -> np.ndarray:
        self._sync(env_view)
        new, _, _ = self.pool.candidates_for(int(user), min(self.slots, k), self.rng, env_view.seen_items(user))
        self._boosted.update((int(user), i) for i in new.tolist())
        page = np.asarray(self.base.recommend(env_view, user, k), np.int64)
        page = page[~np.isin(page, new)][: k - len(new)]
        # spread the boosted notes over the page instead of stacking them where position bias is largest
        out = list(page.tolist())
        for j, i in enumerate(new.tolist()):
            out.insert(min(len(out), 1 + j * max(k // max(len(new), 1), 1)), i)
        return np.asarray(out[:k], np.int64)

    def observe(self, events: pd.DataFrame) -> None:
        self.base.observe(events)
        self.pool.observe(events)
        if self._boosted and len(events):
            pairs = zip(events["user"].tolist(), events["item"].tolist(), events["type"].tolist(), strict=True)
            for u, i, t in pairs:
                if t in ("impression", "click") and (u, i) in self._boosted:
                    if t == "impression":
                        self.boost_impressions += 1
                    else:
                        self.boost_clicks += 1

    def metrics(self) -> dict[str, float]:
        """Boosted impressions and their click-through; pool notes per stage (for the loop's result)."""
        out: dict[str, float] = {"boost_impressions": self.boost_impressions,
                                 "boost_ctr": self.boost_clicks / max(self.boost_impressions, 1)}
        out.update({f"pool_{k}": v for k, v in self.pool.summary().items()})
        return out


def _register() -> None:
    from notefeed.sim.policies import POLICIES, PopularPolicy, RandomPolicy

    def factory(base: type, bandit: str, content: bool) -> Any:
        def make(seed: int = 0, slots: int = 2, **params: Any) -> ColdStartPolicy:
            return ColdStartPolicy(base(seed=seed), ColdStartPool(bandit=bandit, **params), slots=slots, seed=seed,
                                   content=content)
        how = "Thompson-sampling" if bandit == "thompson" else "uniformly drawn"
        make.__doc__ = (f"{base.__name__.removesuffix('Policy').lower()} plus {how} new-note slots from the cold-start "
                        f"pool{' (content-vector look-alikes)' if content else ''}.")
        return make

    for base_name, base in (("popular", PopularPolicy), ("random", RandomPolicy)):
        for bandit, content in (("thompson", False), ("uniform", False), ("thompson", True)):
            name = f"{base_name}+coldstart" + ("" if bandit == "thompson" else f"-{bandit}") + \
                ("-content" if content else "")
            if name not in POLICIES:
                POLICIES.register(name)(factory(base, bandit, content))


_register()
