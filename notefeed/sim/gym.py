"""A Gymnasium environment of exposure control: the community simulator serving a real pipeline.

One environment step is one feed request. The serving engine (built from
:func:`rl_base_config`: the built-in components plus the ``policy/rl`` exposure step) runs the
request up to the exposure step; the step's own :func:`~notefeed.serve.exposure.observation`
of that request is the observation (the user's recent engagement and session depth from the
online state, and the composition of the fused leaders: creator-size mix, new notes,
popularity, topics, interest match). The action, in [-1, 1]^4, is scaled to the four exposure
knobs (:data:`~notefeed.serve.exposure.KNOBS`, each in [0, 2]); the request is then served
with them, the simulated user reacts, and the events flow back into the engine as the HTTP
API would send them. So the policy is trained on exactly the observation and the knobs it
will see and set when it serves (``notefeed serve`` with ``exposure.name: policy/rl``).

Reward of a page (:func:`page_reward`; the same formula over a whole run is
:func:`objective`): the engagement objective per impression (clicks 1, likes 1, collects 1.5,
comments 2, shares 2: the weights of the fusion tuning objective), minus ``ineffective_cost``
per impression without a click (an impression that triggered nothing), minus
``small_penalty`` x the shortfall of the small-creator share below ``small_target``. The
target is on the share of all exposure, not of every page: by default (``aggregate``) a
page is charged the change its impressions make to (impressions so far x shortfall of the
episode's share so far), so the charges of an episode add up to the run's shortfall x its
impressions, and the mean reward per page equals :func:`objective` of the episode. A policy
may then show small creators where they cost little engagement and fewer where they cost
much (the observation's ``small_share_served`` says how far the recent pages are from the
target); ``aggregate=False`` charges each page its own shortfall.

An episode is ``steps`` rounds of ``requests_per_step`` requests on one community (drawn
from ``communities``), as in :func:`~notefeed.sim.loop.run_closed_loop`: the clock advances
``step_seconds`` and ``new_notes_per_step`` notes are published after each round, and with
``drift_at`` the users' interests shift once (:func:`drift_interests`), in each episode or, with
``drift_episodes`` < 1, in that share of the episodes (drawn at reset: a policy trained so sees
stable and drifting communities alike; ``info['drift']`` says which). Seeded: the same
``reset(seed=...)`` and actions give the same trajectory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.schema import SMALL_CREATOR_FOLLOWERS
from notefeed.serve.config import ServeConfig, builtin_config
from notefeed.serve.engine import Engine
from notefeed.serve.exposure import KNOB_HIGH, KNOBS, OBS_NAMES, ExposureStep
from notefeed.serve.simpolicy import EnginePolicy
from notefeed.serve.tune import ENGAGEMENT_GAINS
from notefeed.sim.community import Community, generate
from notefeed.sim.env import SimEnvironment

__all__ = ["RewardConfig", "page_reward", "objective", "rl_base_config", "drift_interests", "ExposureEnv",
           "knobs_of_action", "action_of_knobs", "OBS_LIMIT"]

#: event type of each rate in the fusion tuning objective's gains
_RATE_EVENT = {"ctr": "click", "like_rate": "like", "collect_rate": "collect", "comment_rate": "comment",
               "share_rate": "share"}
#: observations are clipped to +- this (they are log counts and shares: far inside it)
OBS_LIMIT = 100.0


@dataclass(frozen=True)
class RewardConfig:
    """The reward / objective (module docstring). ``gains``: value of one action per
    impression, by event type (default: the fusion tuning objective's)."""

    gains: Mapping[str, float] = field(default_factory=lambda: {_RATE_EVENT[k]: g for k, g in ENGAGEMENT_GAINS.items()})
    ineffective_cost: float = 0.1
    small_target: float = 0.5
    small_penalty: float = 2.0
    #: charge the shortfall of the episode's share (True) or of each page's (False)
    aggregate: bool = True


def _charge(small: float, shown: float, target: float) -> float:
    """Impressions x shortfall of the small-creator share below ``target``."""
    return max(0.0, target * shown - small)


def page_reward(events: pd.DataFrame, small_items: np.ndarray, n_shown: int,
                reward: RewardConfig = RewardConfig(),
                served: tuple[int, int] | None = None) -> tuple[float, dict[str, float]]:
    """Reward of one page: ``events`` its simulated events, ``small_items`` (n_shown,) bool,
    whether each shown note is a small creator's; ``served``: (small-creator impressions,
    impressions) of the episode before this page, for the aggregate charge (module
    docstring; None: the page's own shortfall). Returns (reward, its parts)."""
    n = max(int(n_shown), 1)
    types = events["type"].to_numpy() if len(events) else np.zeros(0, object)
    counts = {t: int((types == t).sum()) for t in reward.gains}
    engagement = sum(g * counts[t] for t, g in reward.gains.items()) / n
    ineffective = 1.0 - int((types == "click").sum()) / n
    small = float(np.mean(small_items)) if len(small_items) else 0.0
    shortfall = max(0.0, reward.small_target - small)
    charge = shortfall
    if served is not None and reward.aggregate:
        s0, n0 = served
        s1, n1 = s0 + int(np.sum(small_items)), n0 + len(small_items)
        charge = (_charge(s1, n1, reward.small_target) - _charge(s0, n0, reward.small_target)) / n
    r = engagement - reward.ineffective_cost * ineffective - reward.small_penalty * charge
    return r, {"engagement": engagement, "ineffective": ineffective, "small_share": small, "shortfall": shortfall,
               "charge": charge}


def objective(metrics: Mapping[str, Any], reward: RewardConfig = RewardConfig()) -> float:
    """:func:`page_reward`'s formula over a closed-loop run (``run_closed_loop`` metrics)."""
    engagement = sum(g * float(metrics[_rate_of(t)]) for t, g in reward.gains.items())
    shortfall = max(0.0, reward.small_target - float(metrics["small_creator_share"]))
    return engagement - reward.ineffective_cost * (1.0 - float(metrics["ctr"])) - reward.small_penalty * shortfall


def _rate_of(event: str) -> str:
    for k, t in _RATE_EVENT.items():
        if t == event:
            return k
    raise KeyError(f"objective: no closed-loop rate for event type {event!r}")


def rl_base_config(**exposure: Any) -> ServeConfig:
    """The pipeline the agents train and are evaluated on: built-in components (fresh and
    popular recall, popularity coarse score, linear fine scores, author cap) with the exposure
    step (default ``policy/rl`` without a model, i.e. the fixed knobs at 0), no cold-start
    pool (new notes reach pages through fresh recall and the knobs), and a WAL-synchronous
    event log (no fsync per event: a simulated run needs no durability)."""
    return builtin_config().with_overrides(exposure={"name": "policy/rl", **exposure},
                                           coldstart={"enabled": False}, online={"synchronous": "NORMAL"})


def drift_interests(env: SimEnvironment, rng: np.random.Generator, share: float = 0.5) -> np.ndarray:
    """Shift the long-term interests of ``share`` of the users: each of them gets their
    topic weights permuted at random (new favourite topics, same breadth), and a short-term
    interest drawn from the new ones. Returns the users that drifted."""
    w = env.world
    users = np.flatnonzero(rng.random(w.n_users) < share)
    interest = w.user_interest.copy()
    k = interest.shape[1]
    for u in users.tolist():
        interest[u] = interest[u, rng.permutation(k)]
    long = interest @ w.topic_vecs
    long /= np.maximum(np.linalg.norm(long, axis=1, keepdims=True), 1e-9)
    env.world = replace(w, user_interest=interest, user_long=long.astype(w.user_long.dtype))
    cdf = np.cumsum(interest[users], axis=1)
    env.short_topic[users] = np.minimum((cdf < rng.random(len(users))[:, None]).sum(axis=1), k - 1)
    return users


def knobs_of_action(action: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None) -> np.ndarray:
    """[-1, 1]^d -> knob values: ``low + (a + 1) / 2 x (high - low)`` (default [0, KNOB_HIGH]
    per knob), clipped to [0, KNOB_HIGH]. A residual policy has ``low``/``high`` = base knobs
    -/+ a margin: its zero action is the base knobs."""
    lo = np.zeros(len(KNOBS)) if low is None else np.asarray(low, np.float64)
    hi = np.full(len(KNOBS), KNOB_HIGH) if high is None else np.asarray(high, np.float64)
    k = lo + (np.clip(np.asarray(action, np.float64), -1.0, 1.0) + 1.0) / 2.0 * (hi - lo)
    return np.clip(k, 0.0, KNOB_HIGH)


def action_of_knobs(knobs: np.ndarray) -> np.ndarray:
    return (np.asarray(knobs, np.float32) / KNOB_HIGH * 2.0 - 1.0).astype(np.float32)


class _Communities:
    """Generated communities and their logged histories, by seed (generated once)."""

    def __init__(self, preset: str) -> None:
        self.preset = preset
        self._cache: dict[int, tuple[Community, Dataset]] = {}

    def get(self, seed: int) -> tuple[Community, Dataset]:
        if seed not in self._cache:
            comm = generate(self.preset, seed=seed)
            self._cache[seed] = (comm, comm.history())
        return self._cache[seed]


class ExposureEnv(gym.Env[np.ndarray, np.ndarray]):
    """Exposure knobs per request in the closed loop (module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self, preset: str = "demo", communities: Sequence[int] = (1000,), steps: int = 10,
                 requests_per_step: int = 20, page_size: int = 10, step_seconds: int = 600,
                 new_notes_per_step: int = 2, drift_at: int | None = None, drift_share: float = 0.5,
                 drift_episodes: float = 1.0,
                 reward: RewardConfig = RewardConfig(), config: ServeConfig | None = None,
                 knob_low: Sequence[float] | None = None, knob_high: Sequence[float] | None = None) -> None:
        for name, v in (("steps", steps), ("requests_per_step", requests_per_step), ("page_size", page_size)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"ExposureEnv: {name} must be a positive integer, got {v!r}")
        if not communities:
            raise ValueError("ExposureEnv: communities must name at least one community seed")
        if not 0.0 <= drift_episodes <= 1.0:
            raise ValueError(f"ExposureEnv: drift_episodes must be in [0, 1], got {drift_episodes!r}")
        self.communities = [int(c) for c in communities]
        self.steps, self.requests_per_step, self.page_size = steps, requests_per_step, page_size
        self.step_seconds, self.new_notes_per_step = step_seconds, new_notes_per_step
        self.drift_at, self.drift_share, self.reward = drift_at, drift_share, reward
        self.drift_episodes = float(drift_episodes)
        #: whether this episode's interests drift (drawn at reset)
        self.drifts = drift_at is not None
        #: the knob range the action spans (default [0, KNOB_HIGH]; see knobs_of_action)
        self.knob_low = np.zeros(len(KNOBS)) if knob_low is None else np.asarray(knob_low, np.float64)
        self.knob_high = np.full(len(KNOBS), KNOB_HIGH) if knob_high is None else np.asarray(knob_high, np.float64)
        self.config = config or rl_base_config()
        if self.config.exposure.name != "policy/rl":
            raise ValueError("ExposureEnv: the serving config needs the exposure step policy/rl")
        self._worlds = _Communities(preset)
        self.horizon = steps * requests_per_step
        self.observation_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (len(OBS_NAMES),), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (len(KNOBS),), np.float32)
        self.sim: SimEnvironment | None = None
        self.engine: Engine | None = None
        self._policy: EnginePolicy | None = None
        self._step: ExposureStep | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._user = -1
        self._obs = np.zeros(len(OBS_NAMES), np.float32)
        self._t = 0
        self.community_seed = -1

    # ------------------------------------------------------------------ lifecycle
    def _teardown(self) -> None:
        if self._policy is not None:
            self._policy.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        self.sim = self.engine = self._policy = self._step = self._tmp = None

    def close(self) -> None:
        self._teardown()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """A fresh engine on a community (``options['community']``, else drawn from
        ``communities``) with an empty online state; the first request's observation."""
        super().reset(seed=seed)
        self._teardown()
        rng = self.np_random
        opt = options or {}
        cseed = int(opt["community"]) if "community" in opt else self.communities[int(rng.integers(len(self.communities)))]
        comm, hist = self._worlds.get(cseed)
        self.community_seed = cseed
        self.sim = SimEnvironment(comm, seed=int(rng.integers(1 << 31)), dataset=hist)
        self._drift_rng = np.random.default_rng(int(rng.integers(1 << 31)))
        # drawn only when some episodes drift and some do not: other settings keep their trajectories
        self.drifts = self.drift_at is not None and (self.drift_episodes >= 1.0 or
                                                    (self.drift_episodes > 0.0 and rng.random() < self.drift_episodes))
        self._tmp = tempfile.TemporaryDirectory(prefix="notefeed-rl-")
        engine = Engine(hist, self.config.offline(), self._tmp.name)
        # reproducible and in simulated time, as EnginePolicy sets up the engines it builds
        engine.catalog.top_max_age_s = 0.0
        sim = self.sim
        engine.clock = lambda: float(sim.now)
        self.engine = engine
        self._policy = EnginePolicy(engine=engine, name="rl-env")
        self._step = next(s.component for s in engine.pipelines["default"].steps
                          if isinstance(s.component, ExposureStep))
        self._small = sim.initial_followers < SMALL_CREATOR_FOLLOWERS
        self._served = (0, 0)  # small-creator impressions, impressions of this episode
        self._t = 0
        return self._next_request(), {"community": cseed, "drift": self.drifts}

    # ------------------------------------------------------------------ requests
    def _next_request(self) -> np.ndarray:
        """Draw the next user and observe their request as the exposure step will."""
        assert self.sim is not None and self._policy is not None and self.engine is not None
        assert self._step is not None
        self._user = int(self.sim.sample_requests(1)[0])
        self._policy._attach(self.sim)  # user ids, and notes published since the last page  # noqa: SLF001
        assert self._policy._user_ids is not None  # noqa: SLF001
        ctx = self.engine.context(str(self._policy._user_ids[self._user]))  # noqa: SLF001
        pipe = self.engine.pipelines["default"]
        res = pipe.run(ctx, self.page_size, stop_before=self._step.name)
        obs = self._step.observation(ctx, res.candidates)
        self._obs = np.clip(np.nan_to_num(obs, nan=0.0), -OBS_LIMIT, OBS_LIMIT).astype(np.float32)
        return self._obs.copy()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.sim is None or self._step is None or self._policy is None:
            raise RuntimeError("ExposureEnv: call reset() before step()")
        knobs = knobs_of_action(action, self.knob_low, self.knob_high)
        self._step.controller = lambda _obs: knobs  # this request's decision
        page = self._policy.recommend(self.sim, self._user, self.page_size)
        self._step.controller = None
        events = self.sim.respond(self._user, page)
        self._policy.observe(events)
        small = self._small[self.sim.world.note_creator[page]] if len(page) else np.zeros(0, bool)
        r, parts = page_reward(events, small, len(page), self.reward, self._served)
        self._served = (self._served[0] + int(small.sum()), self._served[1] + len(page))
        self._t += 1
        if self._t % self.requests_per_step == 0:
            step = self._t // self.requests_per_step
            self.sim.advance(self.step_seconds)
            self.sim.publish(self.new_notes_per_step)
            if self.drifts and step == self.drift_at:
                drift_interests(self.sim, self._drift_rng, self.drift_share)
        truncated = self._t >= self.horizon
        obs = self._next_request() if not truncated else self._obs.copy()
        info = {**parts, "knobs": knobs, "community": self.community_seed, "page": page}
        return obs, float(r), False, truncated, info
