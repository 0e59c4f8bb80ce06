"""Policies for the closed loop: the :class:`Policy` protocol, baselines and the ``POLICIES`` registry.

A policy factory takes keyword ``seed`` (and optional settings); other stages register their
own (``@POLICIES.register("pipeline")``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from notefeed.registry import Registry
from notefeed.sim.env import SimEnvironment

__all__ = ["Policy", "POLICIES", "RandomPolicy", "PopularPolicy", "OraclePolicy", "make_policy"]


@runtime_checkable
class Policy(Protocol):
    """Chooses pages in the closed loop and may learn from the events it caused."""

    name: str

    def recommend(self, env_view: SimEnvironment, user: int, k: int) -> np.ndarray:
        """(<= k,) distinct item indices, best first."""
        ...

    def observe(self, events: pd.DataFrame) -> None:
        """Events (Dataset event columns) produced by the last pages."""
        ...


POLICIES: Registry[Policy] = Registry("sim policy")


def _fresh_sample(rng: np.random.Generator, n_items: int, k: int, exclude: np.ndarray) -> np.ndarray:
    """Up to k distinct random items not in ``exclude``, without materialising the catalogue."""
    k = min(k, n_items)
    out = np.zeros(0, np.int64)
    for _ in range(8):
        cand = rng.integers(0, n_items, size=2 * k + 8)
        cand = cand[~np.isin(cand, exclude)]
        _, first = np.unique(cand, return_index=True)
        out = np.concatenate([out, cand[np.sort(first)]])
        _, first = np.unique(out, return_index=True)
        out = out[np.sort(first)]
        if len(out) >= k:
            return out[:k]
    return out[:k]


@POLICIES.register("random")
class RandomPolicy:
    """Uniformly random unseen notes: the exploration floor."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def recommend(self, env_view: SimEnvironment, user: int, k: int) -> np.ndarray:
        return _fresh_sample(self.rng, env_view.n_items, k, env_view.seen_items(user))

    def observe(self, events: pd.DataFrame) -> None:
        return None


@POLICIES.register("popular")
class PopularPolicy:
    """Most-clicked notes recently (exponential decay with ``half_life_h``), unseen ones first.

    Counts start from the clicks of ``env_view.dataset`` (the logged history) when there is one.
    """

    name = "popular"

    def __init__(self, seed: int = 0, half_life_h: float = 24.0, pool: int = 2_000) -> None:
        self.rng = np.random.default_rng(seed)
        self.half_life_s = half_life_h * 3600.0
        self.pool = pool
        self.scores = np.zeros(0, np.float64)
        self._ref_ts: int | None = None
        self._ranked: np.ndarray | None = None

    def _grow(self, n: int) -> None:
        if len(self.scores) < n:
            self.scores = np.concatenate([self.scores, np.zeros(n - len(self.scores))])

    def _add(self, items: np.ndarray, ts: np.ndarray) -> None:
        if not len(items):
            return
        if self._ref_ts is None:
            self._ref_ts = int(ts.max())
        self._grow(int(items.max()) + 1)
        # weights relative to a fixed reference time: no global rescaling per event
        w = np.exp2((ts - self._ref_ts) / self.half_life_s)
        np.add.at(self.scores, items, w)
        self._ranked = None

    def _init_from(self, env_view: SimEnvironment) -> None:
        self._grow(env_view.n_items)
        if self._ref_ts is None:
            self._ref_ts = env_view.now
            ds = env_view.dataset
            if ds is not None and len(ds.events):
                clicks = ds.events[ds.events["type"] == "click"]
                self._add(clicks["item"].to_numpy(np.int64), clicks["ts"].to_numpy(np.int64))

    def recommend(self, env_view: SimEnvironment, user: int, k: int) -> np.ndarray:
        self._init_from(env_view)
        self._grow(env_view.n_items)
        if self._ranked is None or len(self._ranked) == 0:
            s = self.scores[: env_view.n_items]
            m = min(self.pool, len(s))
            top = np.argpartition(-s, m - 1)[:m] if m < len(s) else np.arange(len(s))
            self._ranked = top[np.argsort(-s[top], kind="stable")]
        seen = env_view.seen_items(user)
        cand = self._ranked[~np.isin(self._ranked, seen)][:k] if len(seen) else self._ranked[:k]
        if len(cand) < k:  # pool exhausted for this user: fill at random
            more = _fresh_sample(self.rng, env_view.n_items, k - len(cand), np.concatenate([seen, cand]))
            cand = np.concatenate([cand, more])
        return cand.astype(np.int64)

    def observe(self, events: pd.DataFrame) -> None:
        clicks = events[events["type"] == "click"]
        self._add(clicks["item"].to_numpy(np.int64), clicks["ts"].to_numpy(np.int64))


@POLICIES.register("oracle")
class OraclePolicy:
    """Top expected engagement under the true model (with fatigue): an upper bound, not a system."""

    name = "oracle"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def recommend(self, env_view: SimEnvironment, user: int, k: int) -> np.ndarray:
        s = env_view.expected_engagement(user, np.arange(env_view.n_items))
        k = min(k, len(s))
        top = np.argpartition(-s, k - 1)[:k]
        return top[np.argsort(-s[top], kind="stable")].astype(np.int64)

    def observe(self, events: pd.DataFrame) -> None:
        return None


def make_policy(name: str, seed: int = 0, **params: object) -> Policy:
    """Instantiate a registered policy by name (``KeyError`` lists the known names)."""
    return POLICIES.create(name, seed=seed, **params)
