"""Learned exposure control vs fixed and tuned knobs, on held-out communities, with intervals.

Every arm serves the same pipeline (:func:`~notefeed.sim.gym.rl_base_config`) and differs
only in its exposure step: ``fixed`` (the default knobs, all 0), ``tuned`` (one knob vector
found by optuna, :func:`~notefeed.sim.rl.tune_knobs`) and each learned policy (``policy/rl``
with its model directory). Each seed is a community never trained or tuned on (training and
tuning use seeds >= 1000), run by :func:`~notefeed.sim.rl.run_knobs` for every arm with the
same environment seed, so arms are compared paired (as ``notefeed sim run --seeds`` does):
mean and 95% Student-t interval per metric and arm, and the paired difference of each
learned arm to ``tuned`` and to ``fixed`` (and to any other fixed-knob arm, e.g. one at a
learned policy's mean knobs: what per-request adaptation adds over a better average). A second setting shifts half of the users'
interests mid-run (``drift_at``).

Verdict per learned arm, on the issue's targets: the objective beats ``tuned`` with an
interval above 0, the small-creator share is >= the target, and interest coverage is not
lower than ``tuned``'s (the difference's interval reaches 0 or above).

:func:`training_mean_knobs` gives a learned policy's mean knobs on the communities it was
trained on (never the evaluation ones): fixed knobs there are the "better average" a policy
may have found, and the policy minus them is what per-request adaptation adds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from notefeed.eval.timing import latency_stats
from notefeed.sim.compare import paired_differences, summarise
from notefeed.sim.gym import RewardConfig
from notefeed.sim.rl import run_knobs

__all__ = ["evaluate_arms", "REPORTED", "verdict", "training_mean_knobs"]

#: metrics the report lists first (every numeric closed-loop metric is summarised)
REPORTED = ("objective", "ctr", "like_rate", "collect_rate", "small_creator_share", "interest_coverage",
            "diversity", "creator_gini", "new_note_share")


def evaluate_arms(arms: Mapping[str, dict[str, Any]], preset: str, seeds: Sequence[int], steps: int,
                  requests: int, page_size: int = 10, new_notes: int = 2, drift_at: int | None = None,
                  drift_share: float = 0.5, reward: RewardConfig = RewardConfig(),
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every arm (name -> exposure config section) on every seed; summary, paired
    differences (learned arms vs ``tuned`` and ``fixed`` where present) and latency."""
    say = log or (lambda _m: None)
    cache: dict[int, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    for seed in seeds:
        for name, section in arms.items():
            say(f"seed {seed}: {name}" + (f" (interests drift after step {drift_at})" if drift_at else ""))
            r = run_knobs(section, preset, seed, seed, steps, requests, page_size, new_notes, drift_at, drift_share,
                          reward, cache)
            r["seed"] = seed
            runs[name].append(r)
    learned = [a for a, sec in arms.items() if sec.get("name") == "policy/rl"]
    diffs = []
    for base in ("tuned", "fixed"):
        if base in runs:
            diffs += [{"a": base, "b": a, "metrics": _keep(paired_differences(runs[base], runs[a]))} for a in learned]
    if "tuned" in runs and "fixed" in runs:
        diffs.append({"a": "fixed", "b": "tuned", "metrics": _keep(paired_differences(runs["fixed"], runs["tuned"]))})
    # other fixed arms (e.g. a learned policy's mean knobs): vs tuned, and each learned arm vs them
    for other in (a for a in arms if a not in ("fixed", "tuned") and a not in learned):
        pairs = ([("tuned", other)] if "tuned" in runs else []) + [(other, a) for a in learned]
        diffs += [{"a": x, "b": y, "metrics": _keep(paired_differences(runs[x], runs[y]))} for x, y in pairs]
    latency = {}
    for name in arms:
        step = [x for r in runs[name] for x in r.pop("exposure_step_ms", [])]
        decide = [x for r in runs[name] for x in r.pop("exposure_decide_ms", [])]
        if step:
            latency[name] = {"step": latency_stats(np.asarray(step) / 1e3),
                             "observation_and_policy": latency_stats(np.asarray(decide) / 1e3)}
    return {"seeds": list(seeds), "drift_at": drift_at, "drift_share": drift_share if drift_at else None,
            "arms": {name: {"exposure": dict(sec), "summary": _keep(summarise(runs[name]))} for name, sec in arms.items()},
            "differences": diffs, "latency": latency,
            "verdict": {a: verdict(diffs, runs, a, reward) for a in learned if "tuned" in runs},
            "runs": {name: [{k: r[k] for k in (*REPORTED, "seed", "exposure_fallbacks", "exposure_requests", "knobs_mean")
                             if k in r}
                            for r in rs] for name, rs in runs.items()}}


def training_mean_knobs(section: Mapping[str, Any], preset: str, communities: Sequence[int], steps: int,
                        requests: int, page_size: int = 10, new_notes: int = 2,
                        reward: RewardConfig = RewardConfig()) -> dict[str, Any]:
    """The mean knobs the exposure step ``section`` (a learned policy) sets over one stable
    run on each of ``communities`` (environment seed 10,000 + community, as the tuning's), weighted
    by requests; with the per-community means. Meant for the policy's training communities."""
    if not communities:
        raise ValueError("training_mean_knobs: no communities")
    cache: dict[int, Any] = {}
    per, total, n = {}, None, 0
    for c in communities:
        r = run_knobs(dict(section), preset, c, 10_000 + c, steps, requests, page_size, new_notes, reward=reward,
                      cache=cache)
        k = np.array([r["knobs_mean"][name] for name in r["knobs_mean"]])
        per[int(c)] = {"knobs_mean": r["knobs_mean"], "objective": r["objective"], "requests": r["exposure_requests"]}
        total = k * r["exposure_requests"] if total is None else total + k * r["exposure_requests"]
        n += r["exposure_requests"]
        names = list(r["knobs_mean"])
    assert total is not None
    return {"knobs": dict(zip(names, (total / max(n, 1)).tolist(), strict=True)), "communities": [int(c) for c in communities],
            "env_seeds": [10_000 + int(c) for c in communities], "steps": steps, "requests_per_step": requests,
            "per_community": per}


def _keep(metrics: dict[str, Any]) -> dict[str, Any]:
    """The reported metrics first, then the rest (without per-seed values of the rest)."""
    out = {k: metrics[k] for k in REPORTED if k in metrics}
    for k, v in metrics.items():
        if k not in out and not k.startswith(("policy_s", "env_s", "exposure_")):
            out[k] = {x: y for x, y in v.items() if x != "values"}
    return out


def verdict(diffs: list[dict[str, Any]], runs: Mapping[str, list[dict[str, Any]]], arm: str,
            reward: RewardConfig = RewardConfig()) -> dict[str, Any]:
    """The issue's targets for ``arm`` against ``tuned`` (module docstring)."""
    d = next(x["metrics"] for x in diffs if x["a"] == "tuned" and x["b"] == arm)
    obj, cov = d["objective"], d["interest_coverage"]
    small = float(np.mean([r["small_creator_share"] for r in runs[arm]]))
    beats = bool(obj["lo"] > 0)
    small_ok = small >= reward.small_target
    cov_ok = bool(cov["hi"] >= 0)
    return {"objective_minus_tuned": {k: obj[k] for k in ("mean", "lo", "hi")},
            "beats_tuned_outside_interval": beats, "small_creator_share": small,
            "small_creator_share_ok": small_ok,
            "interest_coverage_minus_tuned": {k: cov[k] for k in ("mean", "lo", "hi")},
            "interest_coverage_not_lower": cov_ok, "target_met": beats and small_ok and cov_ok}
