"""Commands of the sim stage: ``notefeed sim generate|run`` and ``notefeed bench sim``."""

from __future__ import annotations

import math
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from notefeed.clierror import fail as _fail

__all__ = ["register", "sim_app"]

sim_app = typer.Typer(help="Simulated community: generate data, run policies in closed loop.", no_args_is_help=True)
_console = Console()


@sim_app.command("generate")
def generate_cmd(
    preset: str = typer.Option("demo", help="tiny | demo | 100k | 1m"),
    workspace: Path = typer.Option(..., help="workspace directory to write (notefeed.duckdb inside)"),
    seed: int = typer.Option(0, help="random seed"),
    replace: bool = typer.Option(False, help="overwrite a non-empty workspace"),
) -> None:
    """Generate a community with its logged history and save it into a workspace."""
    from notefeed.sim.community import generate
    from notefeed.sim.config import PRESETS

    if preset not in PRESETS:
        _fail(f"--preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if not replace and _has_data(workspace):  # checked before minutes of generation, not after
        _fail(f"--workspace: {workspace} already holds a dataset; add --replace to overwrite it")
    t0 = time.perf_counter()
    comm = generate(preset, seed=seed)
    with Progress(console=_console, transient=True) as prog:
        task = prog.add_task("catalogue", total=None)
        _ = comm.notes, comm.users, comm.creators, comm.social
        prog.update(task, description="history", total=None)
        # the logger reports finished requests; the total is only known once requests are drawn
        ds = comm.history(progress=lambda n: prog.advance(task, n))
    t1 = time.perf_counter()
    try:
        from notefeed.data.store import Workspace
    except ImportError:  # pragma: no cover - the store ships with notefeed.data
        Workspace = None  # type: ignore[assignment,misc]  # noqa: N806
    if Workspace is not None:
        with Workspace.open(workspace) as ws:
            ws.save_dataset(ds, replace=replace)
        where = str(workspace)
    else:  # pragma: no cover
        workspace.mkdir(parents=True, exist_ok=True)
        for name in ("notes", "users", "creators", "events"):
            getattr(ds, name).to_parquet(workspace / f"{name}.parquet")
        where = f"{workspace} (parquet)"
    s = ds.stats()
    _console.print(f"[bold]{ds.name}[/]: {s['notes']:,} notes, {s['users']:,} users, {s['creators']:,} creators, "
                   f"{s['events']:,} events; generated in {t1 - t0:.1f}s, saved to {where} "
                   f"in {time.perf_counter() - t1:.1f}s")


def _has_data(workspace: Path) -> bool:
    if workspace.exists() and not workspace.is_dir():
        _fail(f"--workspace: {workspace} is a file, not a folder")
    if not (workspace / "notefeed.duckdb").exists():
        return False
    from notefeed.data.store import Workspace

    with Workspace.open(workspace, create=False) as ws:
        return sum(ws.counts().values()) > 0


@sim_app.command("policies")
def policies_cmd() -> None:
    """List the closed-loop policies (for `notefeed sim run --policy`) with a one-line description."""
    import notefeed.serve.simpolicy  # noqa: F401  (registers the pipeline policies)
    from notefeed.sim.policies import POLICIES

    t = Table(show_header=True, box=None)
    t.add_column("policy")
    t.add_column("what it does")
    for name in POLICIES.names():
        doc = (POLICIES.get(name).__doc__ or "").strip().splitlines()
        t.add_row(name, doc[0] if doc else "")
    Console(width=200).print(t)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}")
    return str(v)


_ROWS = ("impressions", "ctr", "like_rate", "collect_rate", "comment_rate", "share_rate", "hide_rate",
         "mean_dwell_s", "small_creator_share", "creator_gini", "creators_exposed", "diversity",
         "interest_coverage", "new_note_share", "new_notes_clicked_share", "new_note_steps_to_first_click",
         "new_notes_exposed_share", "new_note_ctr", "old_note_ctr", "new_notes_reached_target_share",
         "new_note_steps_to_target", "new_note_minutes_to_target", "new_note_mean_impressions", "boost_impressions",
         "boost_ctr", "pool_handed_over", "requests_per_s")


@sim_app.command("run")
def run_cmd(
    preset: str = typer.Option("tiny", help="tiny | demo | 100k | 1m"),
    policy: str | None = typer.Option(None, help="comma-separated names from POLICIES "
                                      "(default: random,popular,oracle; none with --config)"),
    config: str | None = typer.Option(None, "--config", help="comma-separated serving config files, each run as a "
                                      "policy: trained on the logged history as `notefeed train` would, then served"),
    steps: int = typer.Option(20, min=1, max=100_000, help="closed-loop steps"),
    requests: int = typer.Option(100, min=1, max=1_000_000, help="requests per step"),
    page_size: int = typer.Option(10, min=1, max=1000, help="items per page"),
    new_notes: int = typer.Option(5, min=0, help="notes published per step (cold-start)"),
    seed: int = typer.Option(0, help="random seed (same for every policy)"),
    seeds: str | None = typer.Option(None, "--seeds", help="comma-separated seeds (overrides --seed): mean, 95% "
                                     "interval and paired difference to the first policy per metric"),
    pairs: str | None = typer.Option(None, "--pairs", help="with --seeds: paired differences B - A to report, as "
                                     "comma-separated A:B policy names (default: the first policy against each)"),
    json_path: Path | None = typer.Option(None, "--json", help="write results (with per-step series) here"),
) -> None:
    """Run policies side by side in the closed loop and print their online metrics."""
    import notefeed.serve.simpolicy  # noqa: F401  (registers the pipeline policies)
    from notefeed.eval.timing import machine_info, write_json
    from notefeed.sim.compare import PolicySpec, compare_policies
    from notefeed.sim.config import PRESETS
    from notefeed.sim.policies import POLICIES, make_policy

    if preset not in PRESETS:
        _fail(f"--preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    names = [p.strip() for p in (policy if policy is not None else "" if config else "random,popular,oracle")
             .split(",") if p.strip()]
    for n in names:
        if n not in POLICIES:
            raise typer.BadParameter(f"unknown policy {n!r}; known: {', '.join(POLICIES.names())}",
                                     param_hint="--policy")
    specs = [PolicySpec(n, lambda s, _h, n=n: make_policy(n, seed=s), n) for n in names]
    specs += _config_specs(config, {s.name for s in specs})
    seed_list = _seed_list(seeds, seed)
    pair_list = _pairs(pairs, [s.name for s in specs])
    git = _git_state()
    t0 = time.perf_counter()
    with Progress(console=_console, transient=True) as prog:
        tasks = {s.name: prog.add_task(s.name, total=steps * len(seed_list)) for s in specs}
        out = compare_policies(preset, specs, seed_list, steps, requests, page_size, new_notes,
                               progress=lambda n, k: prog.advance(tasks[n], k),
                               log=lambda msg: prog.console.print(f"[dim]{msg}[/dim]", highlight=False),
                               pairs=pair_list)
    _print_runs(out, f"closed loop: {preset}, {steps} steps x {requests} requests", _ROWS)
    if json_path is not None:
        write_json(json_path, {"preset": preset, "seed": seed_list[0], "steps": steps, "requests_per_step": requests,
                               "page_size": page_size, "new_notes_per_step": new_notes, **out,
                               "wall_s": time.perf_counter() - t0, "git": git, "machine": machine_info()})


def _git_state() -> dict[str, object]:
    """The code a run used: short HEAD commit and the tracked files under ``notefeed/`` that
    differed from it when the run started (uncommitted edits are run too)."""
    from notefeed.models.store import git_output

    status = git_output("status", "--porcelain", "--untracked-files=no", "--", ":/notefeed", timeout=20) or ""
    return {"commit": git_output("rev-parse", "--short", "HEAD", timeout=20) or None,
            "modified": [ln[3:] for ln in status.splitlines()]}


def _config_specs(config: str | None, taken: set[str]) -> list:
    """One policy per serving config file, named after the file (made unique)."""
    from notefeed.serve.config import ConfigError, load_config
    from notefeed.serve.simpolicy import config_policy
    from notefeed.sim.compare import PolicySpec

    specs = []
    for raw in (config or "").split(","):
        if not raw.strip():
            continue
        path = Path(raw.strip())
        try:
            cfg = load_config(path)
        except ConfigError as e:
            _fail(f"--config: {e}")
        name, k = path.stem, 2
        while name in taken:
            name, k = f"{path.stem}-{k}", k + 1
        taken.add(name)
        specs.append(PolicySpec(name, config_policy(cfg, name, progress=False,
                                                    log=lambda m: _console.print(f"[dim]  {m}[/dim]", highlight=False)),
                                str(path)))
    return specs


def _seed_list(seeds: str | None, seed: int) -> list[int]:
    """``--seeds`` as distinct integers (``[seed]`` without it); a bad list fails naming the flag."""
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()] if seeds is not None else [seed]
    except ValueError:
        _fail(f"--seeds: expected comma-separated integers, got {seeds!r}")
    if not seed_list or len(set(seed_list)) != len(seed_list):
        _fail(f"--seeds: expected distinct comma-separated integers, got {seeds!r}")
    return seed_list


def _pairs(pairs: str | None, names: list[str]) -> list[tuple[str, str]] | None:
    from notefeed.sim.compare import parse_pairs

    try:
        return parse_pairs(pairs, names)
    except ValueError as e:
        _fail(f"--pairs: {e}")
    return None  # pragma: no cover - _fail exits


def _print_runs(out: dict, title: str, rows: tuple[str, ...] | list[str]) -> None:
    """A study over seeds (:func:`notefeed.sim.compare.aggregate_runs` output): per arm the
    mean ± 95% half-interval of each metric in ``rows``, then each paired difference."""
    seeds = out["seeds"]
    pols = out["policies"]
    multi = len(seeds) > 1
    what = f"seeds {', '.join(map(str, seeds))}: mean [95% interval]" if multi else f"seed {seeds[0]}"
    table = Table(title=f"{title}, {what}")
    table.add_column("metric")
    for p in pols:
        table.add_column(p["name"], justify="right")
    for d in out["differences"] if multi else ():
        table.add_column(f"{d['b']} - {d['a']}", justify="right")
    for key in rows:
        cells = []
        for p in pols:
            m = p["summary"].get(key)
            cells.append("nan" if m is None else _fmt(m["mean"]) + (f" ±{_fmt(m['half'])}" if multi else ""))
        for d in out["differences"] if multi else ():
            m = d["metrics"].get(key)
            cells.append("nan" if m is None else f"{m['mean']:+.4f} [{m['lo']:+.4f}, {m['hi']:+.4f}]")
        if any(c != "nan" for c in cells):
            table.add_row(key, *cells)
    _console.print(table)


def bench_sim(
    json_path: Path | None = typer.Option(None, "--json", help="write the figures here"),
    sizes: str = typer.Option("100k,1m", help="presets to generate, each in a fresh subprocess"),
    log_events: int = typer.Option(10_000_000, min=0, help="events for the simulate_log fast path (0 skips)"),
    loop_preset: str = typer.Option("demo", help="preset for closed-loop throughput"),
    steps: int = typer.Option(20, min=1, max=100_000, help="closed-loop steps per policy"),
    requests: int = typer.Option(100, min=1, max=1_000_000, help="requests per step"),
) -> None:
    """Generation time and peak memory per size; simulate_log speed; closed-loop requests/s."""
    from notefeed.eval.timing import machine_info, write_json
    from notefeed.sim.bench import bench_closed_loop, run_in_subprocess

    out: dict[str, object] = {"machine": machine_info()}
    gen = []
    for size in [s.strip() for s in sizes.split(",") if s.strip()]:
        _console.print(f"generating {size} in a subprocess...")
        gen.append(run_in_subprocess(["generate", size]))
    out["generate"] = gen
    if log_events > 0:
        _console.print(f"simulate_log {log_events:,} events (100k preset) in a subprocess...")
        out["simulate_log"] = run_in_subprocess(["log", "100k", str(log_events)])
    _console.print("closed loop: random vs popular...")
    out["closed_loop"] = bench_closed_loop(loop_preset, ["random", "popular"], steps, requests)
    table = Table(title="notefeed bench sim")
    table.add_column("what")
    table.add_column("figure", justify="right")
    for g in gen:
        if "error" in g:
            table.add_row(f"generate {g['args']}", f"error: {g['error']}")
            continue
        table.add_row(f"generate {g['preset']} ({g['notes']:,} notes, {g['events']:,} events)",
                      f"{g['total_s']:.1f}s (world {g['world_s']:.1f}, catalogue {g['catalogue_s']:.1f}, "
                      f"history {g['history_s']:.1f}); peak {g['peak_rss_mb']:.0f} MiB")
    if "simulate_log" in out:
        s = out["simulate_log"]
        assert isinstance(s, dict)
        table.add_row("simulate_log", f"{s.get('events', 0):,} events in {s.get('seconds', float('nan')):.1f}s"
                      if "error" not in s else f"error: {s['error']}")
    for r in out["closed_loop"]:  # type: ignore[union-attr]
        table.add_row(f"closed loop {r['preset']} {r['policy']}",
                      f"{r['requests_per_s']:.0f} requests/s ({r['steps_per_s']:.2f} steps/s)")
    _console.print(table)
    write_json(json_path, out)


def _spark(values: list[float]) -> str:
    """A compact text series: one block character per step, scaled over the values' own range."""
    blocks = " ▁▂▃▄▅▆▇█"
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo
    return "".join(blocks[4 if span <= 0 else 1 + round((v - lo) / span * 7)] for v in values)


_BUBBLE_ROWS = ("ctr", "like_rate", "coverage_first", "coverage_last", "coverage_growth", "diversity",
                "small_creator_share", "creators_exposed", "explore_share", "explore_only_share", "wall_s")


@sim_app.command("bubble")
def bubble_cmd(
    preset: str = typer.Option("tiny", help="tiny | demo | 100k | 1m (the two-tower fit is slow above tiny)"),
    steps: int = typer.Option(30, min=1, max=100_000, help="closed-loop steps"),
    requests: int = typer.Option(40, min=1, max=1_000_000, help="requests per step"),
    quota: int = typer.Option(50, min=1, max=10_000, help="quota of each exploration channel"),
    seed: int = typer.Option(0, help="random seed (same for every variant)"),
    seeds: str | None = typer.Option(None, "--seeds", help="comma-separated seeds (overrides --seed): mean, 95% "
                                     "interval and paired difference to the no-exploration variant per metric"),
    pairs: str | None = typer.Option(None, "--pairs", help="with --seeds: paired differences B - A to report, as "
                                     "comma-separated A:B variant names (default: no-explore against each)"),
    train: bool = typer.Option(True, "--train/--no-train", help="train the default config's learned rankers and "
                               "offline channels on each seed's logged history first, as `notefeed train` would "
                               "(--no-train: serve their untrained fallbacks)"),
    variants: str = typer.Option("", help="comma-separated subset of the sweep's variants (default: all)"),
    json_path: Path | None = typer.Option(None, "--json", help="write results (with per-step series) here"),
) -> None:
    """Filter bubble: the pipeline without vs with exploration channels (a small sweep), same seeds."""
    from notefeed.eval.timing import machine_info, write_json
    from notefeed.sim.compare import aggregate_runs
    from notefeed.sim.experiments import BASELINE, default_variants, filter_bubble

    sweep = default_variants(quota=quota)
    picked = [v.strip() for v in variants.split(",") if v.strip()] or list(sweep)
    for v in picked:
        if v not in sweep:
            raise typer.BadParameter(f"unknown variant {v!r}; known: {', '.join(sweep)}", param_hint="--variants")
    chosen = {v: sweep[v] for v in picked}
    seed_list = _seed_list(seeds, seed)
    pair_list = _pairs(pairs, picked)
    if pair_list is None and BASELINE in chosen:
        pair_list = [(BASELINE, v) for v in picked if v != BASELINE]
    git = _git_state()
    t0 = time.perf_counter()
    per_seed = []
    with Progress(console=_console, transient=True) as prog:
        tasks = {n: prog.add_task(n, total=steps * len(seed_list)) for n in chosen}
        for s in seed_list:
            prog.console.print(f"[dim]seed {s}[/dim]", highlight=False)
            per_seed.append(filter_bubble(preset, steps, requests, s, variants=chosen, train=train,
                                          progress=lambda n, k: prog.advance(tasks[n], k)))
    wall = time.perf_counter() - t0
    if seeds is None:
        _print_bubble(per_seed[0], quota)
        _console.print(f"two-tower fit {per_seed[0]['tower_fit_s']:.1f}s; total {wall:.1f}s")
        if json_path is not None:
            write_json(json_path, {**per_seed[0], "quota": quota, "wall_s": wall, "git": git,
                                   "machine": machine_info()})
        return
    runs = {v: [next(r for r in o["variants"] if r["variant"] == v) for o in per_seed] for v in chosen}
    out = aggregate_runs(runs, seed_list, pair_list)
    _print_runs(out, f"filter bubble: {preset}, {steps} steps x {requests} requests, exploration quota {quota}"
                     f"{'' if train else ', untrained fallbacks'}", _BUBBLE_ROWS)
    _console.print(f"total {wall:.1f}s")
    if json_path is not None:
        write_json(json_path, {"preset": preset, "steps": steps, "requests_per_step": requests, "quota": quota,
                               "trained": train, "baseline": BASELINE if BASELINE in chosen else None, **out,
                               "per_seed": per_seed, "wall_s": wall, "git": git, "machine": machine_info()})


def _print_bubble(out: dict, quota: int) -> None:
    """One seed of ``sim bubble``: per variant, coverage start -> end and a per-step sparkline."""
    table = Table(title=f"filter bubble: {out['preset']}, {out['steps']} steps x {out['requests_per_step']} requests, "
                        f"seed {out['seed']}, exploration quota {quota}")
    for col in ("variant", "ctr", "coverage (end)", "coverage start->end", "diversity", "small creators",
                "explore share", "explore-only share", "wall s"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in out["variants"]:
        cov = r["coverage_series"]
        mark = " *" if r["variant"] == out["best"] else ""
        table.add_row(r["variant"] + mark, _fmt(r["ctr"]), _fmt(r["interest_coverage"]),
                      f"{cov[0]:.3f}->{cov[-1]:.3f}" if cov else "", _fmt(r["diversity"]),
                      _fmt(r["small_creator_share"]), _fmt(r["explore_share"]), _fmt(r["explore_only_share"]),
                      f"{r['wall_s']:.1f}")
    _console.print(table)
    _console.print("interest coverage over time (per step; each line scaled to its own min..max):")
    width = max(len(r["variant"]) for r in out["variants"])
    for r in out["variants"]:
        cov = r["coverage_series"]
        _console.print(f"  {r['variant']:<{width}} {_spark(cov)}  {cov[0]:.3f} .. {cov[-1]:.3f}", markup=False)
    vs = out["best_vs_baseline"]
    if vs is not None:
        _console.print(f"best exploration variant by CTR: [bold]{out['best']}[/] (* above): CTR x{vs['ctr_ratio']:.3f}, "
                       f"coverage {vs['coverage_delta']:+.4f}, diversity {vs['diversity_delta']:+.4f}, "
                       f"small-creator share {vs['small_creator_share_delta']:+.4f} vs {out['baseline']}")


_ONLINE_ROWS = ("ctr", "ctr_first_half", "ctr_second_half", "like_rate", "updates", "median_update_latency_s",
                "median_event_to_publish_s", "train_s", "wall_s")


@sim_app.command("online-train")
def online_train_cmd(
    preset: str = typer.Option("tiny", help="tiny | demo | 100k | 1m"),
    steps: int = typer.Option(24, min=1, max=100_000, help="closed-loop steps per mode"),
    requests: int = typer.Option(100, min=1, max=1_000_000, help="requests per step"),
    retrain_every: int = typer.Option(8, min=1, help="periodic mode: retrain every this many steps"),
    epochs: int = typer.Option(2, min=1, max=1000, help="epochs of the initial fine-ranker fit"),
    modes: str = typer.Option("popular,frozen,periodic,online", help="comma-separated update modes"),
    seed: int = typer.Option(0, help="random seed"),
    seeds: str | None = typer.Option(None, "--seeds", help="comma-separated seeds (overrides --seed): mean, 95% "
                                     "interval and paired differences per metric"),
    pairs: str | None = typer.Option(None, "--pairs", help="with --seeds: paired differences B - A to report, as "
                                     "comma-separated A:B modes (default: frozen against each other mode, and "
                                     "periodic against online)"),
    json_path: Path | None = typer.Option(None, "--json", help="write the rows here"),
) -> None:
    """Fine ranker frozen vs periodically retrained vs updated online, in closed loop (same seeds)."""
    from notefeed.eval.timing import machine_info, write_json
    from notefeed.sim.compare import aggregate_runs
    from notefeed.sim.online_train import compare_update_modes

    names = tuple(m.strip() for m in modes.split(",") if m.strip())
    seed_list = _seed_list(seeds, seed)
    pair_list = _pairs(pairs, list(names))
    if pair_list is None and "frozen" in names:
        pair_list = [("frozen", m) for m in names if m != "frozen"]
        pair_list += [("periodic", "online")] if {"periodic", "online"} <= set(names) else []
    git = _git_state()
    t0 = time.perf_counter()
    per_seed = []
    with Progress(console=_console, transient=True) as prog:
        task = prog.add_task(f"{len(names)} modes x {steps} steps", total=len(seed_list))
        for s in seed_list:
            per_seed.append(compare_update_modes(preset, steps, s, requests_per_step=requests,
                                                 retrain_every=retrain_every, epochs=epochs, modes=names))
            prog.advance(task)
    wall = time.perf_counter() - t0
    if seeds is None:
        rows = per_seed[0]
        table = Table(title=f"online training: {preset}, {steps} steps x {requests} requests, seed {seed}, "
                            f"periodic every {retrain_every} steps")
        cols = ("mode", *_ONLINE_ROWS)
        for c in cols:
            table.add_column(c, justify="left" if c == "mode" else "right")
        for r in rows:
            table.add_row(*[_fmt(r.get(c)) if r.get(c) is not None else "-" for c in cols])
        _console.print(table)
        _console.print(f"total {wall:.1f}s")
        if json_path is not None:
            write_json(json_path, {"preset": preset, "steps": steps, "requests_per_step": requests,
                                   "retrain_every": retrain_every, "epochs": epochs, "seed": seed, "rows": rows,
                                   "wall_s": wall, "git": git, "machine": machine_info()})
        return
    runs = {m: [next(r for r in rows if r["mode"] == m) for rows in per_seed] for m in names}
    out = aggregate_runs(runs, seed_list, pair_list)
    _print_runs(out, f"online training: {preset}, {steps} steps x {requests} requests, periodic every "
                     f"{retrain_every} steps", _ONLINE_ROWS)
    _console.print(f"total {wall:.1f}s")
    if json_path is not None:
        write_json(json_path, {"preset": preset, "steps": steps, "requests_per_step": requests,
                               "retrain_every": retrain_every, "epochs": epochs, **out,
                               "rows": [r for rows in per_seed for r in rows], "wall_s": wall, "git": git,
                               "machine": machine_info()})


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""
    app.add_typer(sim_app, name="sim")
    bench.command("sim")(bench_sim)
