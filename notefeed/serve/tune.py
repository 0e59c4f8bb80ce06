"""Fusion weights tuned against the simulator: the objective runs the real serving pipeline.

Each trial builds an :class:`~notefeed.serve.engine.Engine` with the candidate fusion weights on
the same logged history, serves a closed loop of simulated requests through it (fixed seeds, so
trials differ only by their weights) and scores the outcome: engagement per impression minus a
penalty for each point of small-creator exposure share below the floor. Optuna's TPE search
itself lives in :func:`notefeed.rank.fusion.tune_fusion`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from notefeed.serve.config import ServeConfig

__all__ = ["sim_fusion_objective", "ENGAGEMENT_GAINS"]

#: Value of one action per impression in the objective (clicks count once, deeper actions more).
ENGAGEMENT_GAINS: dict[str, float] = {"ctr": 1.0, "like_rate": 1.0, "collect_rate": 1.5,
                                      "comment_rate": 2.0, "share_rate": 2.0}


def sim_fusion_objective(preset: str = "demo", seed: int = 0, steps: int = 8, requests: int = 40,
                         page_size: int = 10, min_small_share: float = 0.5, penalty: float = 2.0,
                         config: ServeConfig | None = None,
                         log: list[dict[str, Any]] | None = None) -> Callable[[Mapping[str, float]], float]:
    """``objective(weights) -> float`` for :func:`~notefeed.rank.fusion.tune_fusion`.

    value = sum over actions of gain x rate per impression
            - ``penalty`` x max(0, ``min_small_share`` - realised small-creator share).
    Every evaluation is appended to ``log`` (weights, value, the closed-loop metrics).
    """
    if steps <= 0 or requests <= 0 or page_size <= 0:
        raise ValueError("sim_fusion_objective: steps, requests and page_size must be positive")
    if not 0.0 <= min_small_share <= 1.0:
        raise ValueError(f"sim_fusion_objective: min_small_share must be in [0, 1], got {min_small_share}")
    from notefeed.serve.engine import Engine
    from notefeed.serve.simpolicy import EnginePolicy
    from notefeed.sim import SimEnvironment, generate, run_closed_loop

    community = generate(preset, seed=seed)
    ds = community.history()
    base = config or ServeConfig()

    def objective(weights: Mapping[str, float]) -> float:
        cfg = base.with_overrides(fusion={"weights": dict(weights)})
        with tempfile.TemporaryDirectory(prefix="notefeed-tune-") as ws:
            engine = Engine(ds, cfg.offline(), ws)
            try:
                env = SimEnvironment(community, seed=seed + 1, dataset=ds)
                r = run_closed_loop(env, EnginePolicy(engine=engine), steps=steps,
                                    requests_per_step=requests, page_size=page_size)
            finally:
                engine.close()
        gain = sum(g * float(r[k]) for k, g in ENGAGEMENT_GAINS.items())
        value = gain - penalty * max(0.0, min_small_share - float(r["small_creator_share"]))
        if log is not None:
            log.append({"weights": dict(weights), "value": value,
                        **{k: r[k] for k in ("ctr", "like_rate", "collect_rate", "small_creator_share")}})
        return value

    return objective
