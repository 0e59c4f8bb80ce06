"""Policies compared in closed loop over several seeds, with intervals.

Each seed draws its own community (and logged history) and runs every policy on the same
environment seed, so policies are compared *paired*: the difference B - A is taken seed by
seed, which removes the community-to-community variance the two share. Per metric the report
has the mean over seeds with its 95% Student-t interval, and for every policy after the first
the paired difference to the first with its interval (an interval that excludes 0 is a
difference the seeds agree on).

A policy is given as a factory ``(seed, logged history) -> Policy``: registered policies
ignore the history; a serving-config policy trains on it first
(:func:`notefeed.serve.simpolicy.config_policy`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.eval.metrics import t_half_width
from notefeed.sim.community import generate
from notefeed.sim.env import SimEnvironment
from notefeed.sim.loop import run_closed_loop
from notefeed.sim.policies import Policy

__all__ = ["PolicySpec", "mean_interval", "summarise", "paired_differences", "paired_relative", "parse_pairs",
           "aggregate_runs", "compare_policies"]

#: a policy for one seed, built from the seed and the community's logged history
PolicyFactory = Callable[[int, Dataset], Policy]


@dataclass
class PolicySpec:
    name: str
    factory: PolicyFactory
    #: where it came from (a config path, a registered name), for the report
    source: str = ""


def mean_interval(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of ``values`` with its Student-t ``level`` interval: ``{mean, lo, hi, half, n,
    values}``; the bounds are NaN with fewer than two finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    half = t_half_width(v, level)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "half": half, "n": n,
            "values": [float(x) for x in values]}


def _numeric(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("seed", "steps", "requests")}


def summarise(runs: Sequence[dict[str, Any]], level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Per metric, :func:`mean_interval` over the runs of one policy (one per seed)."""
    keys = sorted({k for r in runs for k in _numeric(r)})
    return {k: mean_interval([_numeric(r).get(k, float("nan")) for r in runs], level) for k in keys}


def _paired(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], op: Callable[[float, float], float],
            level: float) -> dict[str, dict[str, Any]]:
    """Per metric both sides have, :func:`mean_interval` of ``op(a, b)`` seed by seed."""
    na, nb = [_numeric(r) for r in a], [_numeric(r) for r in b]
    keys = sorted(set.intersection(*[set(r) for r in [*na, *nb]])) if a and b else []
    return {k: mean_interval([op(ra[k], rb[k]) for ra, rb in zip(na, nb, strict=True)], level) for k in keys}


def paired_differences(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], level: float = 0.95
                       ) -> dict[str, dict[str, Any]]:
    """Per metric, :func:`mean_interval` of ``b - a`` seed by seed (runs in the same seed order)."""
    return _paired(a, b, lambda x, y: y - x, level)


def paired_relative(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], level: float = 0.95
                    ) -> dict[str, dict[str, Any]]:
    """Per metric, :func:`mean_interval` of ``b / a - 1`` seed by seed (a seed where ``a`` is 0
    counts as NaN and is left out; ``n`` says how many seeds remain)."""
    return _paired(a, b, lambda x, y: y / x - 1.0 if x != 0 else float("nan"), level)


def parse_pairs(text: str | None, names: Sequence[str]) -> list[tuple[str, str]] | None:
    """``"A:B,C:D"`` -> ``[("A", "B"), ("C", "D")]`` (each a paired difference B - A); None for
    an empty ``text``. Raises ValueError naming a malformed pair or a name not in ``names``."""
    if text is None or not text.strip():
        return None
    out = []
    for raw in text.split(","):
        if not raw.strip():
            continue
        parts = [p.strip() for p in raw.split(":")]
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"expected A:B pairs separated by commas, got {raw.strip()!r}")
        for p in parts:
            if p not in names:
                raise ValueError(f"unknown name {p!r} in pair {raw.strip()!r}; known: {', '.join(names)}")
        if parts[0] == parts[1]:
            raise ValueError(f"a pair needs two different names, got {raw.strip()!r}")
        out.append((parts[0], parts[1]))
    return out or None


def aggregate_runs(runs: Mapping[str, Sequence[dict[str, Any]]], seeds: Sequence[int],
                   pairs: Sequence[tuple[str, str]] | None = None, level: float = 0.95,
                   sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Summary over seeds of every arm of a study, and paired differences between arms.

    ``runs``: arm name (a policy, a variant, an update mode) -> its per-seed result dicts, in
    the order of ``seeds`` (every numeric field is a metric). ``pairs``: ``(a, b)`` arms whose
    difference ``b - a`` is taken seed by seed (default: the first arm against each other one).
    Returns ``{seeds, level, policies: [{name, source, summary}], differences: [{a, b,
    metrics, relative}]}`` (``relative``: :func:`paired_relative`, ``b / a - 1``): what ``notefeed sim run --seeds``, ``sim bubble --seeds`` and ``sim
    online-train --seeds`` report."""
    names = list(runs)
    for n in names:
        if len(runs[n]) != len(seeds):
            raise ValueError(f"aggregate_runs: {n!r} has {len(runs[n])} runs for {len(seeds)} seeds")
    if pairs is None:
        pairs = [(names[0], n) for n in names[1:]]
    for a, b in pairs:
        if a not in runs or b not in runs:
            raise ValueError(f"aggregate_runs: pair {a}:{b} names an arm not in {names}")
    src = sources or {}
    return {
        "seeds": list(seeds),
        "level": level,
        "policies": [{"name": n, "source": src.get(n, n), "summary": summarise(runs[n], level)} for n in names],
        "differences": [{"a": a, "b": b, "metrics": paired_differences(runs[a], runs[b], level),
                         "relative": paired_relative(runs[a], runs[b], level)} for a, b in pairs],
    }


def compare_policies(preset: str, specs: Sequence[PolicySpec], seeds: Sequence[int], steps: int,
                     requests_per_step: int = 100, page_size: int = 10, new_notes_per_step: int = 0,
                     progress: Callable[[str, int], None] | None = None,
                     log: Callable[[str], None] | None = None, level: float = 0.95,
                     pairs: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Run every policy of ``specs`` for every seed; runs, per-policy summary and paired
    differences (``pairs`` of policy names, ``b - a``; default: the first policy against each
    other one; see the module docstring and :func:`aggregate_runs`)."""
    if not specs:
        raise ValueError("compare_policies: no policies")
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"compare_policies: policy names must differ, got {[s.name for s in specs]}")
    for a, b in pairs or ():
        if a not in {s.name for s in specs} or b not in {s.name for s in specs}:
            raise ValueError(f"compare_policies: pair {a}:{b} names a policy not among {[s.name for s in specs]}")
    say = log or (lambda _msg: None)
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in specs}
    for seed in seeds:
        comm = generate(preset, seed=seed)
        hist = comm.history()
        for spec in specs:
            t0 = time.perf_counter()
            say(f"seed {seed}: {spec.name}")
            policy = spec.factory(seed, hist)
            t1 = time.perf_counter()
            env = SimEnvironment(comm, seed=seed, dataset=hist)
            try:
                res = run_closed_loop(env, policy, steps, requests_per_step, page_size,
                                      new_notes_per_step=new_notes_per_step,
                                      progress=None if progress is None else (lambda k, n=spec.name: progress(n, k)))
            finally:
                close = getattr(policy, "close", None)
                if callable(close):
                    close()
            res["policy"] = spec.name
            res["seed"] = seed
            res["setup_s"] = t1 - t0
            res["requests_per_s"] = res["requests"] / max(time.perf_counter() - t1, 1e-9)
            runs[spec.name].append(res)
    return {
        **aggregate_runs(runs, seeds, pairs, level, {s.name: s.source for s in specs}),
        "results": [r for seed_i in range(len(seeds)) for s in specs for r in [runs[s.name][seed_i]]],
    }
