"""An experiment definition run in the simulator: the A/B test before it meets real users.

For each seed a community is generated, the base config's components are trained on its
logged history (as ``notefeed train`` would; optional), and the engine serves the closed loop
with the config's ``experiments`` section on: simulated users are hashed to the arms exactly as
in serving, and the report is the one ``GET /v1/admin/experiments`` gives (same tallies, same
statistics). Each seed is a fresh randomisation (salt ``<salt>:<seed>``), so over seeds the
share of runs that find a significant difference estimates the test's power (A/B) or its false
positive rate (A/A, where it should be <= 1 - level).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from notefeed.serve.config import ExperimentsConfig, ServeConfig

__all__ = ["run_ab", "aa_config", "popular_overlay"]

#: an arm overlay serving popularity only (no ranking, re-ranking or cold-start slots)
popular_overlay: dict[str, Any] = {
    "recall": {"channels": [{"name": "non-personalized/popular", "quota": 300}]},
    "coarse": {"scorer": None}, "fine": {"scorer": None}, "rerank": {"name": None},
    "coldstart": {"enabled": False},
}


def aa_config(base: ServeConfig, name: str = "aa") -> ServeConfig:
    """``base`` with an A/A experiment: two arms, no overlay."""
    return base.with_overrides(experiments={"name": name, "arms": [{"name": "A"}, {"name": "A2"}]})


def run_ab(config: ServeConfig, preset: str, seeds: Sequence[int], steps: int, requests_per_step: int = 100,
           page_size: int = 10, new_notes_per_step: int = 0, train: bool = True,
           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The experiment of ``config`` in closed loop, one run per seed; per run the experiment
    report, over runs the share in which each arm differs significantly from the control on
    the primary metric and the share with a sample-ratio mismatch."""
    from notefeed.serve.simpolicy import EnginePolicy
    from notefeed.sim.community import generate
    from notefeed.sim.env import SimEnvironment
    from notefeed.sim.loop import run_closed_loop

    spec = config.experiments
    if not spec.arms:
        raise ValueError("run_ab: the config has no experiment (field 'experiments')")
    say = log or (lambda _m: None)
    base = config.model_copy(update={"experiments": ExperimentsConfig()})
    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        comm = generate(preset, seed=seed)
        hist = comm.history()
        fitted = None
        if train:
            from notefeed.models.train import train_components

            say(f"seed {seed}: training the base config")
            fitted, _ = train_components(base, hist, progress=False, seed=seed)
        run_spec = spec.model_copy(update={"salt": f"{spec.salt or spec.name}:{seed}"})
        cfg = config.model_copy(update={"experiments": run_spec})
        with tempfile.TemporaryDirectory(prefix="notefeed-ab-") as ws:
            policy = EnginePolicy(config=cfg, fitted=fitted, workspace=ws, seed=seed, name=str(spec.name),
                                  model_version=f"{spec.name}@sim-seed-{seed}" if fitted else None)
            try:
                env = SimEnvironment(comm, seed=seed, dataset=hist)
                say(f"seed {seed}: closed loop")
                loop = run_closed_loop(env, policy, steps, requests_per_step, page_size,
                                       new_notes_per_step=new_notes_per_step)
                assert policy.engine is not None and policy.engine.experiment is not None
                report = policy.engine.experiment.report()
            finally:
                policy.close()
        runs.append({"seed": seed, "seconds": time.perf_counter() - t0, "loop_ctr": loop.get("ctr"),
                     "report": report})
    n = max(len(runs), 1)
    arms = [a.name for a in spec.arms]
    return {
        "experiment": spec.model_dump(), "preset": preset, "seeds": list(seeds), "steps": steps,
        "requests_per_step": requests_per_step, "page_size": page_size, "trained": train,
        "primary": spec.primary, "level": spec.level,
        "significant_share": {a: sum(a in r["report"]["significant"] for r in runs) / n for a in arms[1:]},
        "srm_mismatch_share": sum(bool(r["report"]["sample_ratio"]["mismatch"]) for r in runs) / n,
        "runs": runs,
    }
