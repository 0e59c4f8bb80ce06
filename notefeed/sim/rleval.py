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

:func:`robustness` checks a paired difference for dependence on single seeds: the median,
how many seeds favour each side, the Wilcoxon signed-rank test, and the Student-t interval
with each seed left out in turn (its lowest lower bound and the seed that gives it).
:func:`robust_report` applies it to the stored per-seed runs of saved reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from notefeed.eval.timing import latency_stats
from notefeed.sim.compare import paired_differences, summarise
from notefeed.sim.gym import RewardConfig
from notefeed.sim.rl import run_knobs

__all__ = ["evaluate_arms", "REPORTED", "verdict", "training_mean_knobs", "robustness", "robust_report"]

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


def robustness(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """The paired difference ``b - a`` (one value per seed): mean and Student-t interval, median,
    seeds with ``b`` above / below ``a``, Wilcoxon signed-rank p (two-sided), and the interval
    with each seed left out (``loo_lo_min``: the lowest lower bound, and ``loo_lo_min_seed``: the
    index of the seed whose removal gives it; ``loo_mean_min``/``_max``)."""
    from scipy.stats import wilcoxon

    from notefeed.sim.compare import mean_interval

    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    if len(d) < 3:
        raise ValueError(f"robustness: needs at least 3 paired values, got {len(d)}")
    mi = mean_interval(d.tolist(), level)
    loo = [mean_interval(np.delete(d, i).tolist(), level) for i in range(len(d))]
    worst = int(np.argmin([x["lo"] for x in loo]))
    p = float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return {"mean": mi["mean"], "lo": mi["lo"], "hi": mi["hi"], "n": len(d), "median": float(np.median(d)),
            "b_above": int((d > 0).sum()), "b_below": int((d < 0).sum()), "wilcoxon_p": p,
            "loo_lo_min": loo[worst]["lo"], "loo_lo_min_seed": worst,
            "loo_mean_min": float(min(x["mean"] for x in loo)), "loo_mean_max": float(max(x["mean"] for x in loo))}


def robust_report(reports: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[str, str]],
                  metrics: Sequence[str] = ("objective", "small_creator_share", "interest_coverage"),
                  level: float = 0.95, concat: bool = False) -> dict[str, Any]:
    """:func:`robustness` of ``b - a`` for each pair and metric, per setting (``stable``,
    ``drift``), from the per-seed ``runs`` of ``notefeed rl eval`` reports. Several reports may
    be given (e.g. a later one with another policy): an arm is taken from the first report that
    has it, and arms of different reports are paired only when they ran on the same seeds, the
    same run length and the same ``tuned`` knobs, whose per-seed results must also agree. An arm
    name in several reports must have the same exposure section (knobs or model directory).
    ``concat``: reports on disjoint seed sets are joined, seed sets one after another (each
    pair's arms must be in every seed set)."""
    out: dict[str, Any] = {}
    ref = reports[0] if reports else {}
    for setting in ("stable", "drift"):
        have = [r for r in reports if setting in r]
        if not have:
            continue
        groups: dict[tuple[int, ...], dict[str, list[dict[str, Any]]]] = {}
        sections: dict[str, Any] = {}
        for r in have:
            if (r.get("steps"), r.get("requests_per_step")) != (ref.get("steps"), ref.get("requests_per_step")):
                raise ValueError("robust_report: reports differ in run length")
            for arm, a in r[setting].get("arms", {}).items():
                if sections.setdefault(arm, a.get("exposure")) != a.get("exposure"):
                    raise ValueError(f"robust_report: arm {arm!r} is configured differently in the reports")
            key = tuple(int(x) for x in r[setting]["seeds"])
            if groups and key not in groups and not concat:
                raise ValueError("robust_report: reports differ in seeds (concat joins disjoint seed sets)")
            if key not in groups and any(set(key) & set(k) for k in groups):
                raise ValueError("robust_report: reports' seed sets overlap without being the same")
            runs = groups.setdefault(key, {})
            if "tuned" in runs and "tuned" in r[setting]["runs"]:
                mine = [x["objective"] for x in r[setting]["runs"]["tuned"]]
                if not np.allclose(mine, [x["objective"] for x in runs["tuned"]], atol=1e-9):
                    raise ValueError("robust_report: the reports' tuned runs differ (another tuned file or code)")
            for arm, rs in r[setting]["runs"].items():
                runs.setdefault(arm, rs)
        seeds = [x for k in groups for x in k]
        res = []
        for a, b in pairs:
            for arm in (a, b):
                for runs in groups.values():
                    if arm not in runs:
                        raise ValueError(f"robust_report: no arm {arm!r} in the reports on some seeds "
                                         f"({', '.join(runs)})")
            ra = [x for runs in groups.values() for x in runs[a]]
            rb = [x for runs in groups.values() for x in runs[b]]
            res.append({"a": a, "b": b, "metrics": {
                m: robustness([x[m] for x in ra], [x[m] for x in rb], level) for m in metrics}})
            for m in res[-1]["metrics"].values():
                m["loo_lo_min_seed"] = seeds[m["loo_lo_min_seed"]]
        common = set.intersection(*(set(runs) for runs in groups.values()))
        out[setting] = {"seeds": seeds, "differences": res,
                        "small_creator_share_by_seed": {
                            arm: [x["small_creator_share"] for runs in groups.values() for x in runs[arm]]
                            for arm in next(iter(groups.values())) if arm in common}}
    return out


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
