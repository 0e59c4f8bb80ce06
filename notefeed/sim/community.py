"""A simulated community: ground truth, catalogue frames and logged history as a Dataset."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.sim import behaviour
from notefeed.sim.config import SimConfig, preset
from notefeed.sim.history import EventArrays, LoggingPolicy, events_frame, log_requests
from notefeed.sim.text import compose_tags, compose_texts
from notefeed.sim.world import AGE_BUCKETS, CITIES, World, generate_world

__all__ = ["Community", "generate", "note_frame", "sim_dataset"]

_CHUNK = 100_000


def note_frame(world: World, items: np.ndarray, seed: int) -> pd.DataFrame:
    """Notes frame (Dataset columns) for note indices ``items`` (n,), texts drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(0, len(items), _CHUNK):
        it = items[s : s + _CHUNK]
        topics, w, zh = world.note_topics[it], world.note_topic_w[it], world.note_zh[it]
        titles = compose_texts(rng, world.vocab, topics[:, :1], w[:, :1], zh, (3, 7), common_share=0.15)
        texts = compose_texts(rng, world.vocab, topics, w, zh, (15, 40))
        parts.append(pd.DataFrame({
            "note_id": [f"n{i}" for i in it.tolist()],
            "author_id": [f"c{c}" for c in world.note_creator[it].tolist()],
            "title": titles,
            "text": texts,
            "tags": compose_tags(rng, world.vocab, topics),
            "category": np.array(world.vocab.topic_names, dtype=object)[topics[:, 0]],
            "created_at": world.note_created_at[it].astype(np.int64),
        }))
    if not parts:
        return pd.DataFrame({c: [] for c in ("note_id", "author_id", "title", "text", "tags", "category",
                                             "created_at")})
    return pd.concat(parts, ignore_index=True)


class Community:
    """A generated community. ``world`` holds the ground truth; :meth:`history` the logged data."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.config = world.config

    # ------------------------------------------------------------------ catalogue
    @cached_property
    def notes(self) -> pd.DataFrame:
        return note_frame(self.world, np.arange(self.world.n_notes), self.config.seed + 1)

    @cached_property
    def users(self) -> pd.DataFrame:
        w = self.world
        return pd.DataFrame({
            "user_id": [f"u{i}" for i in range(w.n_users)],
            "age": pd.Categorical.from_codes(w.user_age, categories=list(AGE_BUCKETS)),
            "gender": pd.Categorical.from_codes(w.user_gender, categories=["f", "m"]),
            "city": pd.Categorical.from_codes(w.user_city, categories=list(CITIES)),
        })

    @cached_property
    def creators(self) -> pd.DataFrame:
        w = self.world
        return pd.DataFrame({"creator_id": [f"c{i}" for i in range(w.n_creators)],
                             "followers": w.creator_followers.astype(np.int64)})

    @cached_property
    def social(self) -> pd.DataFrame:
        w = self.world
        users = np.repeat(np.arange(w.n_users, dtype=np.int32), np.diff(w.follow_indptr))
        cid = np.array([f"c{i}" for i in range(w.n_creators)], dtype=object)
        return pd.DataFrame({"user": users, "target_id": cid[w.follow_creator], "kind": "follow"})

    # ------------------------------------------------------------------ oracles
    def true_affinity(self, users: np.ndarray, items: np.ndarray, short_topic: np.ndarray | None = None) -> np.ndarray:
        """(n,) cosine affinity in [-1, 1] of (n,) user/item index pairs.

        ``short_topic`` (n,) overrides each user's short-term interest (default: the initial one).
        """
        w = self.world
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError(f"true_affinity: users {users.shape} and items {items.shape} must be equal 1-d shapes")
        st = w.user_short_topic[users] if short_topic is None else np.asarray(short_topic)
        return affinity(w, users, items, st)

    def expected_engagement(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n,) expected positive actions of showing ``items[j]`` to ``users[j]`` at the top (no fatigue)."""
        aff = self.true_affinity(users, items)
        return behaviour.expected_engagement(aff, self.world.note_quality[np.asarray(items)], self.config.behaviour)

    # ------------------------------------------------------------------ logs
    def _requests(self, rng: np.random.Generator, days: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
        w = self.world
        lam = np.outer(w.user_activity, np.ones(days)) * rate
        counts = rng.poisson(lam)  # (U, days)
        users = np.repeat(np.repeat(np.arange(w.n_users), days), counts.ravel())
        day = np.repeat(np.tile(np.arange(days), w.n_users), counts.ravel())
        # diurnal: evenings are busier (a mixture of a uniform day and an evening peak)
        sec = np.where(rng.random(len(day)) < 0.5, rng.integers(0, 86400, len(day)),
                       np.clip(rng.normal(20.5 * 3600, 2.5 * 3600, len(day)), 0, 86399)).astype(np.int64)
        return users.astype(np.int64), self.config.start_ts + day.astype(np.int64) * 86400 + sec

    def history(self, days: int | None = None, seed: int | None = None, policy: LoggingPolicy = LoggingPolicy(),
                requests_per_user_day: float | None = None, progress: Callable[[int], None] | None = None) -> Dataset:
        """The logged history over ``days`` (default ``config.history_days``) as a validated Dataset."""
        days = self.config.history_days if days is None else int(days)
        if days <= 0:
            raise ValueError(f"history: days must be positive, got {days}")
        seed = self.config.seed + 7 if seed is None else seed
        rng = np.random.default_rng(seed)
        rate = self.config.requests_per_user_day if requests_per_user_day is None else requests_per_user_day
        users, ts = self._requests(rng, days, rate)
        ev = log_requests(self.world, users, ts, seed + 1, policy, progress=progress)
        return self._dataset(ev, request_prefix="r", suffix="")

    def simulate_log(self, n_events: int, seed: int = 0, policy: LoggingPolicy = LoggingPolicy()) -> Dataset:
        """Fast path: about ``n_events`` logged events over the history window (no request ids).

        Requests are drawn per user by activity; the count is calibrated on a small pilot.
        """
        if n_events <= 0:
            raise ValueError(f"simulate_log: n_events must be positive, got {n_events}")
        rng = np.random.default_rng(seed)
        w, cfg = self.world, self.config
        span = cfg.history_days * 86400
        pilot_u = rng.choice(w.n_users, size=2000, p=w.user_activity / w.user_activity.sum())
        pilot = log_requests(w, pilot_u, cfg.start_ts + rng.integers(0, span, 2000), seed + 1, policy)
        per_req = len(pilot) / 2000
        n_req = max(1, int(np.ceil(n_events / per_req)))
        users = rng.choice(w.n_users, size=n_req, p=w.user_activity / w.user_activity.sum())
        ts = cfg.start_ts + rng.integers(0, span, n_req)
        ev = log_requests(w, users, ts, seed + 2, policy, batch_requests=50_000)
        return self._dataset(ev, request_prefix=None, suffix=f"-log{n_events}")

    def _dataset(self, ev: EventArrays, request_prefix: str | None, suffix: str) -> Dataset:
        frame = events_frame(ev, request_prefix)
        meta = {"source": "notefeed.sim", "config": self.config.to_dict()}
        ds = Dataset(self.config.name + suffix, self.notes, self.users, self.creators, frame, self.social, meta)
        ds.validate()
        return ds


def affinity(world: World, users: np.ndarray, items: np.ndarray, short_topic: np.ndarray) -> np.ndarray:
    """(n,) cosine of the users' effective taste (long-term + short-term interest) and the notes."""
    s = world.config.behaviour.short_weight
    ueff = (1 - s) * world.user_long[users] + s * world.topic_vecs[short_topic]
    ueff /= np.maximum(np.linalg.norm(ueff, axis=1, keepdims=True), 1e-9)
    return np.einsum("nd,nd->n", ueff, world.note_vec[items]).astype(np.float32)


def generate(config: SimConfig | str = "demo", **overrides: object) -> Community:
    """Generate a community from a :class:`SimConfig` or a preset name (with field overrides)."""
    cfg = preset(config, **overrides) if isinstance(config, str) else config.with_(**overrides).validate()
    return Community(generate_world(cfg))


def sim_dataset(path: object = None, preset_name: str = "demo", seed: int = 0) -> Dataset:
    """The logged history of a preset community; loader-shaped (``path`` is ignored) so that
    ``LOADERS.register("sim-demo")(sim_dataset)`` makes it a named dataset."""
    return generate(preset_name, seed=seed).history()
