"""Latency of learned exposure control (``notefeed bench rl``).

Serves ``requests`` closed-loop requests on a community of ``preset`` (seed 0) through the RL
base pipeline twice, with ``policy/rl`` (the given policy) and with ``policy/fixed``, and
reports per request: the policy's forward pass alone (numpy, on the observations the run
produced), observation + forward, the whole exposure step (signals, decision, re-weighting)
and the whole feed. What the learned policy adds is the step's time over ``policy/fixed``'s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from notefeed.eval.timing import latency_stats, time_calls
from notefeed.serve.exposure import OBS_NAMES, ExposureStep, KnobEnsemble, KnobPolicy
from notefeed.serve.simpolicy import EnginePolicy
from notefeed.sim.community import generate
from notefeed.sim.env import SimEnvironment
from notefeed.sim.gym import rl_base_config
from notefeed.sim.loop import run_closed_loop

__all__ = ["bench_policy"]


def _serve(section: dict[str, Any], comm: Any, hist: Any, requests: int,
           record: list[np.ndarray] | None = None) -> dict[str, Any]:
    per_step = 20
    env = SimEnvironment(comm, seed=0, dataset=hist)
    policy = EnginePolicy(config=rl_base_config(**section), name="bench")
    feed_ms: list[float] = []
    try:
        policy._attach(env)  # build the engine now, to hook its pages and step  # noqa: SLF001
        engine = policy.engine
        assert engine is not None
        engine.page_observers.append(lambda _u, _p, res: feed_ms.append(res.total_ms))
        step = next(s.component for s in engine.pipelines["default"].steps if isinstance(s.component, ExposureStep))
        if record is not None and step.controller is not None:
            act = step.controller

            def recording(obs: np.ndarray) -> np.ndarray:
                record.append(obs.copy())
                return act(obs)

            step.controller = recording
        run_closed_loop(env, policy, math.ceil(requests / per_step), per_step, new_notes_per_step=2)
        return {"step": latency_stats(np.asarray(step.step_ms) / 1e3),
                "observation_and_policy": latency_stats(np.asarray(step.decide_ms) / 1e3),
                "feed": latency_stats(np.asarray(feed_ms) / 1e3), "fallbacks": step.fallbacks,
                "requests": step.requests}
    finally:
        policy.close()


def bench_policy(policy: KnobPolicy | KnobEnsemble, policy_dir: str, preset: str = "demo", requests: int = 2_000) -> dict[str, Any]:
    """Latency figures (module docstring), milliseconds."""
    comm = generate(preset, seed=0)
    hist = comm.history()
    observed: list[np.ndarray] = []
    rl = _serve({"name": "policy/rl", "model_dir": policy_dir}, comm, hist, requests, observed)
    fixed = _serve({"name": "policy/fixed"}, comm, hist, requests)
    obs = np.stack(observed) if observed else np.zeros((1, len(OBS_NAMES)), np.float32)
    forward = time_calls(lambda i: policy.act(obs[i % len(obs)]), max(len(obs), 1000), warmup=10)
    return {"preset": preset, "requests": requests, "policy": policy_dir, "algo": policy.meta.get("algo"),
            "forward": forward, "observation_and_policy": rl["observation_and_policy"], "step": rl["step"],
            "feed": rl["feed"], "fallbacks": rl["fallbacks"], "fixed_step": fixed["step"], "fixed_feed": fixed["feed"],
            "added_by_policy_p99_ms": rl["step"]["p99_ms"] - fixed["step"]["p99_ms"]}
