"""Closed-loop environment: users ask for pages, policies choose, simulated users react.

The environment keeps a clock, each user's drifting short-term interest, what each user has
seen (for repeat fatigue) and recent same-topic exposure (topic fatigue). ``publish`` adds fresh
notes for cold-start experiments.

Policies may read the *observable* side: :attr:`n_items`, :attr:`now`, :attr:`item_created_at`,
:attr:`item_author`, :attr:`item_topic` (the category code), :attr:`creator_followers`,
:meth:`seen_items`, :meth:`notes_frame` and :attr:`dataset` (the logged history, if given).
:meth:`true_affinity` and :meth:`expected_engagement` are ground truth, for oracles only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.sim import behaviour
from notefeed.sim.community import Community, affinity, note_frame
from notefeed.sim.history import events_frame, reactions_to_events, same_topic_before
from notefeed.sim.world import draw_note_topics, note_vectors

__all__ = ["SimEnvironment"]


class SimEnvironment:
    """A live copy of a community's world that reacts to pages. Not thread-safe."""

    def __init__(self, community: Community, seed: int = 0, dataset: Dataset | None = None,
                 start_ts: int | None = None) -> None:
        self.community = community
        self.world = replace(community.world)  # own arrays grow on publish; the community is untouched
        self.config = community.config
        self.params = self.config.behaviour
        self.dataset = dataset
        self.rng = np.random.default_rng(seed)
        w = self.world
        self.now = int(start_ts if start_ts is not None else self.config.start_ts + self.config.history_days * 86400)
        self.creator_followers = w.creator_followers.copy()
        self.initial_followers = w.creator_followers.copy()
        self.short_topic = w.user_short_topic.copy()
        self._last_seen_ts = np.full(w.n_users, self.now, np.int64)
        self._recent = np.zeros((w.n_users, self.config.n_topics), np.float32)
        self._seen: dict[int, dict[int, int]] = {}
        self._follows: dict[int, set[int]] = {}
        self._n_requests = 0
        self._published: list[np.ndarray] = []
        self._published_frames: list[pd.DataFrame] = []
        self._all_notes: pd.DataFrame | None = None
        act = w.user_activity.astype(np.float64)  # normalised in float64: rng.choice checks the sum to ~1e-8
        self._p_user = act / act.sum()

    # ------------------------------------------------------------------ observable
    @property
    def n_items(self) -> int:
        return self.world.n_notes

    @property
    def n_users(self) -> int:
        return self.world.n_users

    @property
    def item_created_at(self) -> np.ndarray:
        return self.world.note_created_at

    @property
    def item_author(self) -> np.ndarray:
        return self.world.note_creator

    @property
    def item_topic(self) -> np.ndarray:
        return self.world.note_topic

    @property
    def published_items(self) -> np.ndarray:
        """Indices of notes added by :meth:`publish`."""
        return np.concatenate(self._published) if self._published else np.zeros(0, np.int64)

    def seen_items(self, user: int) -> np.ndarray:
        """Items already shown to ``user`` in this environment."""
        return np.fromiter(self._seen.get(int(user), {}).keys(), dtype=np.int64)

    def notes_frame(self, items: np.ndarray | None = None) -> pd.DataFrame:
        """Catalogue rows (Dataset note columns) of ``items`` (default: all)."""
        items = np.arange(self.n_items) if items is None else np.asarray(items, np.int64)
        if len(items) and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"notes_frame: items must be indices in [0, {self.n_items})")
        if self._all_notes is None or len(self._all_notes) != self.n_items:
            frames = [self.community.notes, *self._published_frames]
            self._all_notes = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        return self._all_notes.iloc[items].reset_index(drop=True)

    # ------------------------------------------------------------------ clock and requests
    def advance(self, seconds: int) -> int:
        if seconds < 0:
            raise ValueError(f"advance: seconds must be >= 0, got {seconds}")
        self.now += int(seconds)
        return self.now

    def sample_requests(self, n: int) -> np.ndarray:
        """(n,) user indices drawn by activity."""
        if n < 0:
            raise ValueError(f"sample_requests: n must be >= 0, got {n}")
        return self.rng.choice(self.n_users, size=n, p=self._p_user)

    def _drift(self, users: np.ndarray, ts: int) -> None:
        """Short-term interests switch at ``drift_per_day``; topic fatigue fades."""
        w = self.world
        dt = np.maximum(ts - self._last_seen_ts[users], 0).astype(np.float64)
        switch = self.rng.random(len(users)) < 1.0 - np.exp(-self.params.drift_per_day * dt / 86400.0)
        if switch.any():
            su = users[switch]
            cdf = np.cumsum(w.user_interest[su], axis=1)
            own = np.minimum((cdf < self.rng.random(len(su))[:, None]).sum(axis=1), self.config.n_topics - 1)
            explore = self.rng.choice(self.config.n_topics, size=len(su), p=w.topic_pop)
            self.short_topic[su] = np.where(self.rng.random(len(su)) < 0.75, own, explore)
        decay = np.exp(-dt / (self.params.topic_memory_h * 3600.0)).astype(np.float32)
        self._recent[users] *= decay[:, None]
        self._last_seen_ts[users] = ts

    # ------------------------------------------------------------------ ground truth (oracles)
    def true_affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n,) current affinity of (n,) user/item pairs, with today's short-term interests."""
        users = np.asarray(users, np.int64)
        return affinity(self.world, users, np.asarray(items, np.int64), self.short_topic[users])

    def expected_engagement(self, user: int, items: np.ndarray) -> np.ndarray:
        """(n,) expected positive actions if ``items`` were shown to ``user`` now at the top."""
        items = np.asarray(items, np.int64)
        users = np.full(len(items), int(user), np.int64)
        seen = self._seen.get(int(user), {})
        n_seen = np.array([seen.get(i, 0) for i in items.tolist()], np.float32) if seen else 0.0
        n_same = self._recent[int(user), self.world.note_topic[items]]
        return behaviour.expected_engagement(self.true_affinity(users, items), self.world.note_quality[items],
                                             self.params, n_seen, n_same)

    # ------------------------------------------------------------------ reacting
    def respond(self, user: int, items: np.ndarray, ts: int | None = None) -> pd.DataFrame:
        """Events (Dataset event columns + ``request_id``) of showing the ordered page ``items`` to ``user``."""
        return self.respond_batch(np.array([user]), [np.asarray(items)], ts)

    def respond_batch(self, users: np.ndarray, pages: list[np.ndarray], ts: int | None = None) -> pd.DataFrame:
        """Serve one page per request at time ``ts`` (default :attr:`now`); pages may differ in length."""
        users = np.asarray(users, np.int64)
        if len(users) != len(pages):
            raise ValueError(f"respond: {len(users)} users but {len(pages)} pages")
        if len(users) and (users.min() < 0 or users.max() >= self.n_users):
            raise ValueError(f"respond: user index out of range [0, {self.n_users})")
        ts = self.now if ts is None else int(ts)
        pages = [np.asarray(p) for p in pages]
        for p in pages:
            if p.ndim != 1 or (len(p) and (not np.issubdtype(p.dtype, np.integer) or p.min() < 0
                                           or p.max() >= self.n_items)):
                raise ValueError(f"respond: items must be a 1-d integer array of indices in [0, {self.n_items})")
        lens = np.array([len(p) for p in pages], np.int64)
        uniq_users = np.unique(users)
        self._drift(uniq_users, ts)
        w = self.world
        items = np.concatenate(pages).astype(np.int64) if len(pages) else np.zeros(0, np.int64)
        req = np.repeat(np.arange(len(pages), dtype=np.int64), lens)
        flat_u = users[req]
        pos = (np.arange(len(items)) - np.repeat(np.cumsum(lens) - lens, lens)).astype(np.int32)
        width = int(lens.max()) if len(lens) else 0
        topics = np.full((len(pages), width), -1, np.int64)
        topics[req, pos] = w.note_topic[items]
        within = same_topic_before(topics)[req, pos]
        n_same = self._recent[flat_u, w.note_topic[items]] + within
        n_seen = np.empty(len(items), np.float32)
        for j, (u, i) in enumerate(zip(flat_u.tolist(), items.tolist(), strict=True)):
            seen = self._seen.setdefault(u, {})
            c = seen.get(i, 0)
            n_seen[j] = c
            seen[i] = c + 1
        np.add.at(self._recent, (flat_u, w.note_topic[items]), 1.0)
        aff = affinity(w, flat_u, items, self.short_topic[flat_u])
        reqno = req + self._n_requests
        self._n_requests += len(pages)
        ev = reactions_to_events(self.rng, w, flat_u, items, np.full(len(items), ts, np.int64), pos, reqno,
                                 aff, n_seen, n_same)
        frame = events_frame(ev, request_prefix="live-r")
        return self._apply_follows(frame)

    def _apply_follows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Follows of creators already followed are dropped; new ones add a follower."""
        fol = np.flatnonzero((frame["type"] == "follow").to_numpy())
        if not len(fol):
            return frame
        w = self.world
        drop = []
        for j, u, i in zip(fol.tolist(), frame["user"].to_numpy()[fol].tolist(), frame["item"].to_numpy()[fol].tolist(),
                           strict=True):
            c = int(w.note_creator[i])
            mine = self._follows.get(u)
            if mine is None:
                mine = set(w.follow_creator[w.follow_indptr[u] : w.follow_indptr[u + 1]].tolist())
                self._follows[u] = mine
            if c in mine:
                drop.append(j)
            else:
                mine.add(c)
                self.creator_followers[c] += 1
        return frame.drop(index=frame.index[drop]).reset_index(drop=True) if drop else frame

    # ------------------------------------------------------------------ catalogue growth
    def publish(self, n_new_notes: int, creators: np.ndarray | None = None) -> np.ndarray:
        """Add ``n_new_notes`` notes created now (by posting propensity unless ``creators`` given)."""
        if n_new_notes < 0:
            raise ValueError(f"publish: n_new_notes must be >= 0, got {n_new_notes}")
        w = self.world
        if n_new_notes == 0:
            return np.zeros(0, np.int64)
        if creators is None:
            creators = self.rng.choice(w.n_creators, size=n_new_notes, p=w.creator_rate)
        creators = np.asarray(creators, np.int32)
        if creators.shape != (n_new_notes,) or creators.min() < 0 or creators.max() >= w.n_creators:
            raise ValueError(f"publish: creators must be ({n_new_notes},) indices in [0, {w.n_creators})")
        topics, tw = draw_note_topics(self.rng, w.creator_topic, w.topic_pop, creators)
        vec = note_vectors(self.rng, w.topic_vecs, topics, tw)
        q = np.clip(w.creator_quality[creators] + self.rng.normal(0, 0.15, n_new_notes), 0, 1).astype(np.float32)
        zh = self.rng.random(n_new_notes) < self.config.chinese_share
        start = w.n_notes
        self.world = replace(
            w,
            note_creator=np.concatenate([w.note_creator, creators]),
            note_topics=np.concatenate([w.note_topics, topics]),
            note_topic_w=np.concatenate([w.note_topic_w, tw]),
            note_vec=np.concatenate([w.note_vec, vec]),
            note_quality=np.concatenate([w.note_quality, q]),
            note_created_at=np.concatenate([w.note_created_at, np.full(n_new_notes, self.now, np.int64)]),
            note_zh=np.concatenate([w.note_zh, zh]),
        )
        idx = np.arange(start, start + n_new_notes, dtype=np.int64)
        self._published.append(idx)
        # texts are drawn once, at publication, so every later view of a note agrees
        self._published_frames.append(note_frame(self.world, idx, int(self.rng.integers(1 << 31))))
        return idx
