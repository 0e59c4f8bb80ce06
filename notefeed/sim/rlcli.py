"""``notefeed rl train|tune|ensemble|eval|robust`` and ``notefeed bench rl``: learned exposure control.

Needs the ``rl`` extra (gymnasium, stable-baselines3) for ``train``; ``tune``, ``eval`` and
the bench need gymnasium only (the environment module), optuna for ``tune``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from notefeed.clierror import fail as _fail

__all__ = ["register", "rl_app"]

rl_app = typer.Typer(help="Exposure control learned by reinforcement learning in the simulator.",
                     no_args_is_help=True)
_console = Console()
#: notefeed.sim.rl.ALGOS, restated so that flags are checked without the rl extra installed
_ALGOS = ("ppo", "dqn", "sac")


def _command() -> str:
    return " ".join(["notefeed", *sys.argv[1:]])


def _need(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        _fail(f"{what} needs {module}: pip install -e '.[rl]'")


def _preset(preset: str) -> None:
    from notefeed.sim.config import PRESETS

    if preset not in PRESETS:
        _fail(f"--preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")


def _ints(raw: str, flag: str) -> list[int]:
    try:
        vals = [int(s) for s in raw.split(",") if s.strip()]
    except ValueError:
        _fail(f"{flag}: expected comma-separated integers, got {raw!r}")
    if not vals or len(set(vals)) != len(vals) or min(vals) < 0:
        _fail(f"{flag}: expected distinct non-negative comma-separated integers, got {raw!r}")
    return vals


def _positive(**flags: int) -> None:
    for name, v in flags.items():
        if v <= 0:
            _fail(f"--{name.replace('_', '-')}: must be a positive integer, got {v}")


def _write(path: Path | None, out: dict[str, Any]) -> None:
    from notefeed.eval.timing import machine_info, write_json

    if path is not None:
        write_json(path, {"command": _command(), **out, "machine": machine_info()})
        _console.print(f"wrote {path}")


@rl_app.command("train")
def train_cmd(
    algo: str = typer.Option("ppo", help="ppo (continuous knobs) | sac (continuous, off-policy) | dqn (24 discrete "
                             "knob vectors)"),
    preset: str = typer.Option("demo", help="simulator preset: tiny | demo | 100k | 1m"),
    communities: str = typer.Option("1000,1001,1002", help="community seeds to train on (evaluation uses 0-999)"),
    timesteps: int = typer.Option(20_000, min=1, help="environment steps (one step = one feed request)"),
    steps: int = typer.Option(10, min=1, max=100_000, help="closed-loop rounds per episode"),
    requests: int = typer.Option(20, min=1, max=1_000_000, help="requests per round"),
    seed: int = typer.Option(0, help="random seed"),
    residual_to: Path | None = typer.Option(None, help="ppo or sac: a `notefeed rl tune` JSON; learn per-request "
                                            "changes to its knobs (actions span them -/+ --margin)"),
    margin: float = typer.Option(0.5, min=0.0, help="with --residual-to: how far the policy may move each knob"),
    drift_at: int = typer.Option(0, min=0, help="shift half of the users' interests after this round of an episode "
                                 "(0: never)"),
    drift_episodes: float = typer.Option(1.0, help="with --drift-at: the share of episodes that drift (drawn "
                                         "per episode; the rest stay stable)"),
    out: Path = typer.Option(..., help="directory for policy.safetensors + policy.json"),
    json_path: Path | None = typer.Option(None, "--json", help="write the training summary here"),
) -> None:
    """Train an agent on the exposure environment; save its actor as safetensors + JSON."""
    if algo not in _ALGOS:
        _fail(f"--algo: unknown algorithm {algo!r}; known: {', '.join(_ALGOS)}")
    _preset(preset)
    _positive(timesteps=timesteps, steps=steps, requests=requests)
    if out.exists() and not out.is_dir():
        _fail(f"--out: {out} is a file, not a folder")
    comms = _ints(communities, "--communities")
    if drift_at < 0 or drift_at >= steps:
        _fail(f"--drift-at: must be in [0, {steps - 1}] (0: none), got {drift_at}")
    if not 0 <= drift_episodes <= 1:
        _fail(f"--drift-episodes: must be in [0, 1], got {drift_episodes}")
    env_kwargs: dict[str, Any] = {"steps": steps, "requests_per_step": requests}
    if drift_at:
        env_kwargs.update(drift_at=drift_at, drift_episodes=drift_episodes)
    base = None
    if residual_to is not None:
        if algo == "dqn":
            _fail("--residual-to: needs --algo ppo or sac (continuous knobs)")
        if not 0 < margin <= 2:
            _fail(f"--margin: must be in (0, 2], got {margin}")
        base = _tuned_knobs(residual_to, "--residual-to")
    _need("stable_baselines3", "notefeed rl train")
    from notefeed.sim.rl import train_agent

    _console.print(f"training {algo} on {preset} communities {comms} for {timesteps:,} requests...")
    policy, info = train_agent(algo, preset, comms, timesteps, seed,
                               env_kwargs=env_kwargs,
                               log=lambda m: _console.print(f"[dim]{m}[/dim]"), base_knobs=base, margin=margin)
    policy.meta["command"] = _command()
    policy.save(out)
    _console.print(f"{algo}: {info['episodes']} episodes of {info['episode_length']} requests in "
                   f"{info['wall_s']:.0f}s; reward per request {info['mean_reward_per_step_first_half']:.4f} "
                   f"(first half) -> {info['mean_reward_per_step_second_half']:.4f} (second half); saved {out}")
    _write(json_path, {**info, "out": str(out)})


@rl_app.command("tune")
def tune_cmd(
    preset: str = typer.Option("demo", help="simulator preset"),
    communities: str = typer.Option("1000,1001,1002", help="community seeds to tune on"),
    trials: int = typer.Option(30, min=1, max=10_000, help="optuna trials"),
    steps: int = typer.Option(10, min=1, max=100_000, help="closed-loop rounds per trial and community"),
    requests: int = typer.Option(20, min=1, max=1_000_000, help="requests per round"),
    seed: int = typer.Option(0, help="sampler seed"),
    json_path: Path = typer.Option(..., "--json", help="write the tuned knobs (and every trial) here"),
) -> None:
    """Tune one fixed knob vector with optuna on the same objective: the baseline to beat."""
    _preset(preset)
    _positive(trials=trials, steps=steps, requests=requests)
    comms = _ints(communities, "--communities")
    _need("optuna", "notefeed rl tune")
    from notefeed.sim.rl import tune_knobs

    res = tune_knobs(preset, comms, trials, seed, steps, requests, log=lambda m: _console.print(f"[dim]{m}[/dim]"))
    _console.print(f"tuned knobs {res['knobs']}: objective {res['best_value']:.4f} "
                   f"(default knobs {res['default_value']:.4f}) in {res['wall_s']:.0f}s")
    _write(json_path, res)


def _tuned_knobs(path: Path, flag: str) -> dict[str, float]:
    from notefeed.serve.config import EXPOSURE_KNOBS

    try:
        knobs = json.loads(path.read_text())["knobs"]
        if set(knobs) != set(EXPOSURE_KNOBS):
            _fail(f"{flag}: knobs {sorted(knobs)} differ from {list(EXPOSURE_KNOBS)}")
        return {k: float(v) for k, v in knobs.items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        _fail(f"{flag}: {path} is not a `notefeed rl tune` JSON ({type(e).__name__}: {e})")
    raise AssertionError  # unreachable: _fail exits


def _arms(policy: list[str], tuned: Path | None, fixed: list[str] | None = None) -> dict[str, dict[str, Any]]:
    from notefeed.models.artifacts import ModelError
    from notefeed.serve.config import EXPOSURE_KNOBS
    from notefeed.serve.exposure import load_policy

    arms: dict[str, dict[str, Any]] = {"fixed": {"name": "policy/fixed", "knobs": {k: 0.0 for k in EXPOSURE_KNOBS}}}
    if tuned is not None:
        arms["tuned"] = {"name": "policy/fixed", "knobs": _tuned_knobs(tuned, "--tuned")}
    for raw in fixed or []:
        name, sep, vals = raw.partition("=")
        try:
            knobs = [float(v) for v in vals.split(",")]
        except ValueError:
            knobs = []
        if not sep or not name or len(knobs) != len(EXPOSURE_KNOBS) or not all(0 <= k <= 2 for k in knobs):
            _fail(f"--fixed: expected NAME={','.join(EXPOSURE_KNOBS)} with values in [0, 2], got {raw!r}")
        if name in arms:
            _fail(f"--fixed: arm name {name!r} is taken")
        arms[name] = {"name": "policy/fixed", "knobs": dict(zip(EXPOSURE_KNOBS, knobs, strict=True))}
    for raw in policy:
        name, sep, path = raw.partition("=")
        if not sep or not name or not path:
            _fail(f"--policy: expected NAME=DIR, got {raw!r}")
        if name in arms:
            _fail(f"--policy: arm name {name!r} is taken")
        try:
            load_policy(path)
        except ModelError as e:
            _fail(f"--policy: {e}")
        arms[name] = {"name": "policy/rl", "model_dir": path}
    return arms


@rl_app.command("ensemble")
def ensemble_cmd(
    policy: list[Path] = typer.Option(..., "--policy", help="a `notefeed rl train` output directory (repeat: "
                                      "at least two)"),
    out: Path = typer.Option(..., help="directory for ensemble.json + one folder per member"),
) -> None:
    """Serve several trained policies as one: each request's knobs are the mean of theirs."""
    from notefeed.models.artifacts import ModelError
    from notefeed.serve.exposure import KnobEnsemble, KnobPolicy

    if len(policy) < 2:
        _fail(f"--policy: an ensemble needs at least two policies, got {len(policy)}")
    if out.exists() and not out.is_dir():
        _fail(f"--out: {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        _fail(f"--out: {out} is not empty")
    members = []
    for p in policy:
        try:
            members.append(KnobPolicy.load(p))
        except ModelError as e:
            _fail(f"--policy: {e}")
    ens = KnobEnsemble(members, {"members_from": [str(p) for p in policy], "command": _command()})
    ens.save(out)
    _console.print(f"ensemble of {len(members)} policies ({ens.meta['algo']}), trained on communities "
                   f"{ens.meta['communities']}; saved {out}")


@rl_app.command("eval")
def eval_cmd(
    policy: list[str] = typer.Option([], "--policy", help="NAME=DIR of a trained policy or ensemble (repeatable)"),
    tuned: Path | None = typer.Option(None, help="`notefeed rl tune` JSON with the tuned knobs"),
    fixed: list[str] = typer.Option([], "--fixed", help="NAME=small_boost,fresh_boost,explore,interest: "
                                    "another fixed-knob arm (repeatable)"),
    preset: str = typer.Option("demo", help="simulator preset"),
    seeds: str = typer.Option("0,1,2,3,4", help="held-out community seeds (never trained or tuned on)"),
    steps: int = typer.Option(20, min=1, max=100_000, help="closed-loop steps per run"),
    requests: int = typer.Option(30, min=1, max=1_000_000, help="requests per step"),
    drift_at: int = typer.Option(10, min=0, help="also run with half of the users' interests shifted after this "
                                 "step (0: no drift setting)"),
    policy_mean: bool = typer.Option(False, help="also a fixed arm NAME-mean per --policy: its mean knobs on its "
                                     "own training communities (what a better average gives, vs per-request "
                                     "adaptation)"),
    json_path: Path | None = typer.Option(None, "--json", help="write the report here"),
) -> None:
    """Learned policies vs the fixed and tuned knobs on held-out communities, with and without drift."""
    _preset(preset)
    _positive(steps=steps, requests=requests)
    if drift_at < 0 or drift_at >= steps:
        _fail(f"--drift-at: must be in [0, {steps - 1}] (0: none), got {drift_at}")
    seed_list = _ints(seeds, "--seeds")
    if len(seed_list) < 2:
        _fail("--seeds: intervals need at least two seeds")
    if any(s >= 1000 for s in seed_list):
        _fail("--seeds: seeds >= 1000 are the training communities; evaluate on held-out ones (< 1000)")
    arms = _arms(policy, tuned, fixed)
    _need("gymnasium", "notefeed rl eval")
    from notefeed.sim.rleval import evaluate_arms

    t0 = time.perf_counter()
    out: dict[str, Any] = {"preset": preset, "steps": steps, "requests_per_step": requests}
    if policy_mean:
        out["policy_means"] = _policy_means(arms, preset, steps, requests)
    for setting, drift in (("stable", None), ("drift", drift_at or None)):
        if setting == "drift" and drift is None:
            continue
        res = evaluate_arms(arms, preset, seed_list, steps, requests, drift_at=drift,
                            log=lambda m: _console.print(f"[dim]{m}[/dim]"))
        out[setting] = res
        _print(res, f"{setting}: {preset}, {steps} steps x {requests} requests, seeds {seed_list}")
    out["wall_s"] = time.perf_counter() - t0
    _write(json_path, out)


@rl_app.command("robust")
def robust_cmd(
    reports: list[Path] = typer.Argument(..., help="`notefeed rl eval` JSON reports (same seeds and run length)"),
    pairs: str = typer.Option(..., help="A:B,C:D: the paired differences B - A to check"),
    concat: bool = typer.Option(False, help="join reports on disjoint seed sets (the arms of each pair in every one)"),
    level: float = typer.Option(0.95, help="the intervals' level (e.g. 1 - 0.05 / m for a Bonferroni correction "
                                "over m comparisons)"),
    json_path: Path = typer.Option(..., "--json", help="write the checks here"),
) -> None:
    """Paired differences of saved eval reports checked for single-seed dependence: median,
    seeds each way, Wilcoxon p, and the interval (95% by default) with each seed left out."""
    from notefeed.sim.compare import parse_pairs
    from notefeed.sim.rleval import robust_report

    if not 0.5 <= level < 1:
        _fail(f"--level: must be in [0.5, 1), got {level}")
    loaded = []
    for p in reports:
        try:
            loaded.append(json.loads(p.read_text()))
        except (OSError, ValueError) as e:
            _fail(f"REPORTS: {p} is not readable JSON ({type(e).__name__}: {e})")
    arms = sorted({a for r in loaded for s in ("stable", "drift") if s in r for a in r[s].get("runs", {})})
    if not arms:
        _fail("REPORTS: no `notefeed rl eval` runs in them")
    try:
        pair_list = parse_pairs(pairs, arms) or []
        out = robust_report(loaded, pair_list, level=level, concat=concat)
    except ValueError as e:
        _fail(f"--pairs: {e}" if "robust_report" not in str(e) else f"REPORTS: {e}")
    for setting, res in out.items():
        for d in res["differences"]:
            o = d["metrics"]["objective"]
            _console.print(f"{setting}: {d['b']} - {d['a']}: objective {o['mean']:+.4f} [{o['lo']:+.4f}, "
                           f"{o['hi']:+.4f}], median {o['median']:+.4f}, {o['b_above']}/{o['n']} seeds above, "
                           f"Wilcoxon p {o['wilcoxon_p']:.3f}; one seed left out: lower bound >= "
                           f"{o['loo_lo_min']:+.4f} (seed {o['loo_lo_min_seed']})")
    _write(json_path, {"reports": [str(p) for p in reports], "level": level, **out})


def _policy_means(arms: dict[str, dict[str, Any]], preset: str, steps: int, requests: int) -> dict[str, Any]:
    """Add ``NAME-mean`` (fixed knobs at each learned arm's mean on its training communities)
    to ``arms``; returns how each was found."""
    from notefeed.serve.exposure import load_policy
    from notefeed.sim.rleval import training_mean_knobs

    found = {}
    for name, sec in list(arms.items()):
        if sec.get("name") != "policy/rl":
            continue
        comms = (load_policy(sec["model_dir"]).meta or {}).get("communities")
        if not comms or any(int(c) < 1000 for c in comms):
            _fail(f"--policy-mean: {name}'s policy.json names no training communities >= 1000 ({comms!r})")
        if f"{name}-mean" in arms:
            _fail(f"--policy-mean: arm name {name}-mean is taken")
        _console.print(f"[dim]{name}: mean knobs on its training communities {comms}[/dim]")
        res = training_mean_knobs(sec, preset, comms, steps, requests)
        arms[f"{name}-mean"] = {"name": "policy/fixed", "knobs": res["knobs"]}
        found[name] = res
        _console.print(f"{name}-mean: {', '.join(f'{k}={v:.3f}' for k, v in res['knobs'].items())}")
    return found


def _print(res: dict[str, Any], title: str) -> None:
    from notefeed.sim.rleval import REPORTED

    t = Table(title=title)
    t.add_column("metric")
    for a in res["arms"]:
        t.add_column(a, justify="right")
    for d in res["differences"]:
        t.add_column(f"{d['b']} - {d['a']}", justify="right")
    for k in REPORTED:
        cells = [f"{res['arms'][a]['summary'][k]['mean']:.4f} ±{res['arms'][a]['summary'][k]['half']:.4f}"
                 for a in res["arms"]]
        cells += [f"{d['metrics'][k]['mean']:+.4f} [{d['metrics'][k]['lo']:+.4f}, {d['metrics'][k]['hi']:+.4f}]"
                  for d in res["differences"]]
        t.add_row(k, *cells)
    _console.print(t)
    for a, v in res["verdict"].items():
        _console.print(f"{a}: beats tuned outside the interval: {v['beats_tuned_outside_interval']}; small-creator "
                       f"share {v['small_creator_share']:.3f}; coverage not lower: {v['interest_coverage_not_lower']}")
    for a, lat in res["latency"].items():
        _console.print(f"{a}: exposure step p99 {lat['step']['p99_ms']:.3f} ms (observation + policy "
                       f"{lat['observation_and_policy']['p99_ms']:.3f} ms)")


def bench_rl(
    policy_dir: Path = typer.Option(..., "--policy", help="a `notefeed rl train` or `rl ensemble` output directory"),
    preset: str = typer.Option("demo", help="simulator preset the requests come from"),
    requests: int = typer.Option(2_000, min=1, help="requests to time"),
    json_path: Path | None = typer.Option(None, "--json", help="write the figures here"),
) -> None:
    """Policy inference latency: the forward pass alone and the whole exposure step, p99."""
    from notefeed.models.artifacts import ModelError
    from notefeed.serve.exposure import load_policy

    _preset(preset)
    _positive(requests=requests)
    try:
        pol = load_policy(policy_dir)
    except ModelError as e:
        _fail(f"--policy: {e}")
    _need("gymnasium", "notefeed bench rl")
    from notefeed.sim.rlbench import bench_policy

    res = bench_policy(pol, str(policy_dir), preset, requests)
    _console.print(f"forward p99 {res['forward']['p99_ms']:.4f} ms; exposure step p99 {res['step']['p99_ms']:.3f} ms "
                   f"(policy/fixed {res['fixed_step']['p99_ms']:.3f} ms); feed p99 {res['feed']['p99_ms']:.2f} ms")
    _write(json_path, res)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``notefeed rl`` and ``notefeed bench rl``."""
    app.add_typer(rl_app, name="rl")
    bench.command("rl")(bench_rl)
