"""Agents that learn the exposure knobs in the simulator, and the optuna-tuned fixed knobs.

``train_agent`` trains a stable-baselines3 agent on :class:`~notefeed.sim.gym.ExposureEnv`:
PPO on the continuous knobs, SAC on them as the off-policy comparison, or DQN on a discretised
set of knob vectors (:data:`DISCRETE_KNOBS`). Observations are normalised with running statistics
(``VecNormalize``). The result is exported as a :class:`~notefeed.serve.exposure.KnobPolicy`:
the actor's linear layers (PPO: the policy MLP and the action mean; SAC: the actor's MLP and
its mean, tanh-squashed as SAC's deterministic action is; DQN: the Q-network),
the observation statistics and the action scaling, in safetensors + JSON: the library's own
``.zip`` (which holds pickles) is never written. The export is checked against the library's
deterministic action on sample observations before it is returned.

``tune_knobs`` searches one fixed knob vector with optuna (the fusion tuning's TPE search,
:func:`~notefeed.rank.fusion.tune_fusion`) on the same objective and training communities:
the baseline a learned, per-request policy has to beat.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from notefeed.serve.exposure import KNOB_HIGH, KNOBS, KnobPolicy
from notefeed.sim.gym import ExposureEnv, RewardConfig, action_of_knobs, objective, rl_base_config

__all__ = ["DISCRETE_KNOBS", "ALGOS", "train_agent", "export_policy", "tune_knobs", "run_knobs"]

ALGOS = ("ppo", "dqn", "sac")
#: the algorithms with continuous knobs (a residual policy, ``base_knobs``, needs one)
CONTINUOUS = ("ppo", "sac")
#: DQN's action set: every combination of these levels per knob (3 x 2 x 2 x 2 = 24 vectors)
_LEVELS = {"small_boost": (0.0, 1.0, 2.0), "fresh_boost": (0.0, 1.0), "explore": (0.0, 1.0), "interest": (0.0, 1.5)}
DISCRETE_KNOBS = np.array(list(itertools.product(*(_LEVELS[k] for k in KNOBS))), np.float32)


def _discrete_env(env: ExposureEnv) -> Any:
    """``env`` with a Discrete action: an index into :data:`DISCRETE_KNOBS`."""
    import gymnasium as gym

    class DiscreteKnobs(gym.ActionWrapper):  # type: ignore[type-arg]
        def __init__(self, inner: ExposureEnv) -> None:
            super().__init__(inner)
            self.action_space = gym.spaces.Discrete(len(DISCRETE_KNOBS))

        def action(self, act: Any) -> np.ndarray:
            return action_of_knobs(DISCRETE_KNOBS[int(act)])

    return DiscreteKnobs(env)


def _linears(seq: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    import torch

    return [(m.weight.detach().cpu().numpy().copy(), m.bias.detach().cpu().numpy().copy())
            for m in seq.modules() if isinstance(m, torch.nn.Linear)]


def export_policy(model: Any, venv: Any, algo: str, meta: dict[str, Any] | None = None,
                  check_obs: np.ndarray | None = None, low: np.ndarray | None = None,
                  high: np.ndarray | None = None) -> KnobPolicy:
    """The trained ``model``'s actor as a :class:`KnobPolicy` (module docstring); ``low`` /
    ``high``: the knob range of PPO's actions (:func:`~notefeed.sim.gym.knobs_of_action`);
    with ``check_obs`` (n, d) raw observations, assert it acts as ``model.predict`` does."""
    from notefeed.sim.gym import knobs_of_action

    low = np.zeros(len(KNOBS)) if low is None else np.asarray(low, np.float64)
    high = np.full(len(KNOBS), KNOB_HIGH) if high is None else np.asarray(high, np.float64)
    rms = venv.obs_rms
    common = {"obs_mean": rms.mean.astype(np.float32), "obs_var": rms.var.astype(np.float32),
              "obs_clip": float(venv.clip_obs), "eps": float(venv.epsilon), "meta": meta}
    if algo == "ppo":
        layers = _linears(model.policy.mlp_extractor.policy_net) + _linears(model.policy.action_net)
        pol = KnobPolicy(layers, "tanh", "box", low=low, high=high, **common)
    elif algo == "sac":
        act = type(model.actor.latent_pi[1]).__name__.lower() if len(model.actor.latent_pi) > 1 else "relu"
        if act not in ("relu", "tanh"):
            raise ValueError(f"export_policy: SAC actor activation {act!r} is not one KnobPolicy evaluates")
        layers = _linears(model.actor.latent_pi) + _linears(model.actor.mu)
        pol = KnobPolicy(layers, act, "box", low=low, high=high, squash="tanh", **common)
    elif algo == "dqn":
        pol = KnobPolicy(_linears(model.q_net.q_net), "relu", "argmax", actions=DISCRETE_KNOBS, **common)
    else:
        raise ValueError(f"export_policy: algo must be one of {ALGOS}, got {algo!r}")
    if check_obs is not None:
        for o in np.asarray(check_obs, np.float32):
            a, _ = model.predict(venv.normalize_obs(o[None]), deterministic=True)
            want = DISCRETE_KNOBS[int(np.asarray(a).ravel()[0])] if algo == "dqn" else \
                knobs_of_action(np.asarray(a).ravel(), low, high)
            got = pol.act(o)
            if not np.allclose(got, want, atol=1e-4):
                raise RuntimeError(f"export_policy: exported policy gives {got}, the trained one {want}")
    return pol


def train_agent(algo: str = "ppo", preset: str = "demo", communities: Sequence[int] = (1000, 1001, 1002),
                timesteps: int = 20_000, seed: int = 0, env_kwargs: dict[str, Any] | None = None,
                reward: RewardConfig = RewardConfig(), algo_kwargs: dict[str, Any] | None = None,
                log: Callable[[str], None] | None = None, make_env: Callable[[], Any] | None = None,
                base_knobs: dict[str, float] | None = None, margin: float = 0.5) -> tuple[KnobPolicy, dict[str, Any]]:
    """Train ``algo`` (``ppo`` | ``dqn`` | ``sac``) for ``timesteps`` requests on ``communities``
    (seeds of ``preset``); returns the exported policy and a training summary (episode
    returns over time, wall time). Torch runs single-threaded. ``make_env``: another
    environment with the same spaces (tests use a toy one whose best knobs are known).
    ``base_knobs`` (PPO, SAC): a residual policy, whose actions span the base knobs -/+ ``margin``
    (its zero action, where training starts, is the base: e.g. the tuned knobs)."""
    if algo not in ALGOS:
        raise ValueError(f"train_agent: algo must be one of {ALGOS}, got {algo!r}")
    import torch
    from stable_baselines3 import DQN, PPO, SAC
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.set_num_threads(1)
    kw = dict(env_kwargs or {})
    low = high = None
    if base_knobs is not None:
        if algo not in CONTINUOUS:
            raise ValueError(f"train_agent: base_knobs (a residual policy) needs continuous knobs ({CONTINUOUS})")
        base = np.array([float(base_knobs[k]) for k in KNOBS])
        low, high = base - margin, base + margin
        kw.update(knob_low=low.tolist(), knob_high=high.tolist())
    say = log or (lambda _m: None)

    def make() -> Any:
        env = make_env() if make_env is not None else \
            ExposureEnv(preset=preset, communities=communities, reward=reward, **kw)
        return Monitor(_discrete_env(env) if algo == "dqn" else env)

    venv = VecNormalize(DummyVecEnv([make]), norm_obs=True, norm_reward=algo == "ppo", clip_obs=10.0, gamma=0.9)
    venv.seed(seed)
    if algo == "ppo":
        params = {"n_steps": 512, "batch_size": 128, "n_epochs": 5, "learning_rate": 3e-4, "gamma": 0.9,
                  "gae_lambda": 0.9, "ent_coef": 0.0,
                  "policy_kwargs": {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "log_std_init": -0.5},
                  **(algo_kwargs or {})}
        model: Any = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **params)
    elif algo == "sac":  # SB3's defaults but the discount and the network of the others
        params = {"learning_starts": 1_000, "buffer_size": 50_000, "batch_size": 256, "learning_rate": 3e-4,
                  "gamma": 0.9, "tau": 0.005, "train_freq": 1, "gradient_steps": 1, "ent_coef": "auto",
                  "policy_kwargs": {"net_arch": [64, 64]}, **(algo_kwargs or {})}
        model = SAC("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **params)
    else:
        params = {"learning_starts": 1_000, "buffer_size": 50_000, "train_freq": 4, "target_update_interval": 500,
                  "exploration_fraction": 0.3, "exploration_final_eps": 0.05, "gamma": 0.9, "learning_rate": 5e-4,
                  "batch_size": 64, "policy_kwargs": {"net_arch": [64, 64]}, **(algo_kwargs or {})}
        model = DQN("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **params)
    from stable_baselines3.common.logger import Logger

    # no outputs and no folder: SB3's default logger makes an empty /tmp/SB3-<time> folder per run
    model.set_logger(Logger(folder=None, output_formats=[]))
    t0 = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    wall = time.perf_counter() - t0
    mon = venv.venv.envs[0]
    returns = [float(r) for r in mon.get_episode_rewards()]
    lengths = [int(n) for n in mon.get_episode_lengths()]
    say(f"{algo}: {timesteps} steps in {wall:.0f}s, {len(returns)} episodes")
    check = np.array(venv.get_original_obs(), np.float32)
    rng = np.random.default_rng(seed)
    probe = np.concatenate([check, check + rng.normal(0, 0.3, (8, check.shape[1])).astype(np.float32)])
    meta = {"algo": algo, "preset": preset, "communities": list(communities), "timesteps": timesteps, "seed": seed,
            "env": kw, "reward": _reward_dict(reward), "hyperparameters": _jsonable(params)}
    if base_knobs is not None:
        meta.update(base_knobs=dict(base_knobs), margin=margin)
    policy = export_policy(model, venv, algo, meta, check_obs=probe, low=low, high=high)
    venv.close()
    half = max(len(returns) // 2, 1)
    return policy, {"algo": algo, "timesteps": timesteps, "wall_s": wall, "episodes": len(returns),
                    "episode_length": lengths[0] if lengths else 0,
                    "mean_reward_per_step_first_half": _per_step(returns[:half], lengths[:half]),
                    "mean_reward_per_step_second_half": _per_step(returns[half:], lengths[half:]),
                    "episode_returns": returns, **meta}


def _per_step(returns: Sequence[float], lengths: Sequence[int]) -> float:
    return float(sum(returns) / max(sum(lengths), 1)) if returns else float("nan")


def _reward_dict(reward: RewardConfig) -> dict[str, Any]:
    return {"gains": dict(reward.gains), "ineffective_cost": reward.ineffective_cost,
            "small_target": reward.small_target, "small_penalty": reward.small_penalty}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v if isinstance(v, int | float | str | bool) or v is None else str(v)


def run_knobs(config_overrides: dict[str, Any], preset: str, community: int, env_seed: int, steps: int,
              requests: int, page_size: int = 10, new_notes: int = 2, drift_at: int | None = None,
              drift_share: float = 0.5, reward: RewardConfig = RewardConfig(),
              cache: dict[int, Any] | None = None) -> dict[str, Any]:
    """One closed-loop run (:func:`~notefeed.sim.loop.run_closed_loop`) of the RL base pipeline
    with the exposure section ``config_overrides`` on community ``community``; with
    ``drift_at``, interests shift after that many steps. Adds ``objective``."""
    from notefeed.serve.simpolicy import EnginePolicy
    from notefeed.sim.community import generate
    from notefeed.sim.env import SimEnvironment
    from notefeed.sim.gym import drift_interests
    from notefeed.sim.loop import run_closed_loop

    cache = {} if cache is None else cache
    if community not in cache:
        comm = generate(preset, seed=community)
        cache[community] = (comm, comm.history())
    comm, hist = cache[community]
    env = SimEnvironment(comm, seed=env_seed, dataset=hist)
    policy = EnginePolicy(config=rl_base_config(**config_overrides), seed=env_seed, name="exposure")
    drng = np.random.default_rng(env_seed + 7919)
    done = [0]

    def tick(_n: int) -> None:
        done[0] += 1
        if drift_at is not None and done[0] == drift_at:
            drift_interests(env, drng, drift_share)

    try:
        res = run_closed_loop(env, policy, steps, requests, page_size, new_notes_per_step=new_notes, progress=tick)
        step = next((s.component for s in policy.engine.pipelines["default"].steps  # type: ignore[union-attr]
                     if s.name.startswith("policy/")), None)
        if step is not None:
            res["exposure_fallbacks"] = step.fallbacks
            res["exposure_requests"] = step.requests
            res["knobs_mean"] = dict(zip(KNOBS, (step.knob_sum / max(step.requests, 1)).tolist(), strict=True))
            res["exposure_step_ms"] = list(step.step_ms)
            res["exposure_decide_ms"] = list(step.decide_ms)
    finally:
        policy.close()
    res["objective"] = objective(res, reward)
    res.pop("series", None)
    return res


def tune_knobs(preset: str = "demo", communities: Sequence[int] = (1000, 1001, 1002), trials: int = 30,
               seed: int = 0, steps: int = 10, requests: int = 20, page_size: int = 10, new_notes: int = 2,
               reward: RewardConfig = RewardConfig(), log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Optuna TPE over one fixed knob vector, maximising the mean :func:`objective` over
    ``communities`` (the first trial: all knobs 0, the default)."""
    from notefeed.rank.fusion import tune_fusion

    cache: dict[int, Any] = {}
    say = log or (lambda _m: None)
    n = [0]

    def obj(knobs: dict[str, float]) -> float:
        vals = [run_knobs({"name": "policy/fixed", "knobs": dict(knobs)}, preset, c, 10_000 + c, steps, requests,
                          page_size, new_notes, reward=reward, cache=cache)["objective"] for c in communities]
        n[0] += 1
        say(f"trial {n[0]}/{trials}: {', '.join(f'{k}={v:.2f}' for k, v in knobs.items())} -> {np.mean(vals):.4f}")
        return float(np.mean(vals))

    t0 = time.perf_counter()
    out = tune_fusion(obj, trials, seed, tasks=KNOBS, high=KNOB_HIGH, baseline={k: 0.0 for k in KNOBS})
    return {"knobs": out["best_weights"], "best_value": out["best_value"], "default_value": out["default_value"],
            "trials": out["trials"], "preset": preset, "communities": list(communities), "n_trials": trials,
            "seed": seed, "steps": steps, "requests_per_step": requests, "wall_s": time.perf_counter() - t0,
            "reward": _reward_dict(reward)}
