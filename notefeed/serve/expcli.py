"""Commands of A/B experiments: ``notefeed experiments report`` and ``notefeed sim ab``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from notefeed.clierror import fail as _fail

__all__ = ["register", "experiments_app", "print_report", "parse_seeds"]

experiments_app = typer.Typer(help="A/B experiments on serving configs: per-arm metrics with intervals.",
                              no_args_is_help=True)
_console = Console()


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-19"`` (inclusive) or a mix; ``ValueError`` otherwise."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "-" in part[1:]:
            lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
            out += list(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    if not out or len(set(out)) != len(out):
        raise ValueError(f"expected distinct integers ('0,1,2' or '0-19'), got {text!r}")
    return out


def _cell(m: dict[str, Any], pct: bool) -> str:
    v = m.get("value")
    if v is None:
        return "-"
    f = (lambda x: f"{100 * x:.2f}%") if pct else (lambda x: f"{x:.2f}")
    return f(v) + (f" [{f(m['lo'])}, {f(m['hi'])}]" if m.get("lo") is not None else "")


def print_report(rep: dict[str, Any], console: Console | None = None) -> None:
    """One table per experiment: arms as columns, metrics with intervals, differences."""
    con = console or _console
    level = rep["level"]
    t = Table(title=f"experiment {rep['name']} (primary {rep['primary']}, {level:.0%} intervals)")
    t.add_column("metric")
    for a in rep["arms"]:
        t.add_column(a["name"], justify="right")
    for d in rep["differences"]:
        t.add_column(f"{d['arm']} - {d['control']}", justify="right")
    for key in ("users", "pages", "impressions"):
        t.add_row(key, *[f"{a[key]:,}" for a in rep["arms"]], *["" for _ in rep["differences"]])
    for m in ("ctr", "like_rate", "collect_rate", "small_creator_share", "dwell_s", "latency_ms"):
        pct = m not in ("dwell_s", "latency_ms")
        cells = [_cell(a["metrics"][m], pct) for a in rep["arms"]]
        for d in rep["differences"]:
            x = d["metrics"][m]
            if x["diff"] is None or x["lo"] is None:
                cells.append("-")
                continue
            s = 100 if pct else 1
            cells.append(f"{s * x['diff']:+.2f} [{s * x['lo']:+.2f}, {s * x['hi']:+.2f}] p={x['p']:.3f}"
                         + (" *" if x["significant"] else ""))
        t.add_row(m, *cells)
    con.print(t)
    srm = rep["sample_ratio"]
    if srm["p"] is not None:
        con.print(f"sample ratio: users {[a['users'] for a in rep['arms']]} vs expected "
                  f"{[round(x, 1) for x in srm['expected']]}, chi2 {srm['chi2']:.2f}, p {srm['p']:.3f}"
                  + (" [red]MISMATCH: the split is broken, do not trust the metrics[/red]" if srm["mismatch"] else " ok"))
    sig = rep["significant"]
    con.print(f"verdict on {rep['primary']}: " + (f"significant for {', '.join(sig)}" if sig else "no significant difference"))


@experiments_app.command("report")
def report_cmd(
    workspace: Path = typer.Option(..., help="the served workspace (experiments.sqlite + its event log)"),
    config: Path | None = typer.Option(None, "--config", help="a serving config: its experiment only, and "
                                       "its event bus (default: every experiment logged, SQLite log)"),
    json_path: Path | None = typer.Option(None, "--json", help="write the reports here"),
) -> None:
    """Per-arm metrics with intervals, differences to the control and the sample-ratio check,
    from the workspace's page log and event log."""
    from notefeed.eval.timing import write_json
    from notefeed.serve.config import ConfigError, load_config
    from notefeed.serve.experiments import PAGE_LOG, report_workspace

    if not (workspace / PAGE_LOG).exists():
        _fail(f"--workspace: {workspace} has no {PAGE_LOG} (no experiment was served there)")
    try:
        cfg = load_config(config) if config is not None else None
    except ConfigError as e:
        _fail(f"--config: {e}")
    reports = report_workspace(workspace, cfg)
    for rep in reports:
        print_report(rep)
    if not reports:
        _console.print("no experiment logged")
    write_json(json_path, {"workspace": str(workspace), "experiments": reports})


def ab_cmd(
    config: Path = typer.Option(..., "--config", help="a serving config with an `experiments` section"),
    preset: str = typer.Option("tiny", help="tiny | demo | 100k | 1m"),
    seeds: str = typer.Option("0", help="seeds: '0,1,2' or '0-19'; each a fresh community and randomisation"),
    steps: int = typer.Option(5, min=1, max=100_000, help="closed-loop steps"),
    requests: int = typer.Option(100, min=1, max=1_000_000, help="requests per step"),
    page_size: int = typer.Option(10, min=1, max=1000, help="items per page"),
    new_notes: int = typer.Option(0, min=0, help="notes published per step"),
    train: bool = typer.Option(True, help="train the base config on each logged history first (as "
                               "`notefeed train`); --no-train fits the quick components at start-up"),
    json_path: Path | None = typer.Option(None, "--json", help="write every run's report here"),
) -> None:
    """Run the config's A/B experiment in the simulator: the arms served side by side in one
    closed loop per seed, each run's per-arm report, and the share of runs that detect a
    difference on the primary metric (power for A/B, false-positive rate for A/A)."""
    from notefeed.eval.timing import machine_info, write_json
    from notefeed.serve.abtest import run_ab
    from notefeed.serve.config import ConfigError, load_config
    from notefeed.sim.config import PRESETS

    if preset not in PRESETS:
        _fail(f"--preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    try:
        cfg = load_config(config)
    except ConfigError as e:
        _fail(f"--config: {e}")
    if not cfg.experiments.arms:
        _fail(f"--config: {config} has no experiment (set experiments.name and experiments.arms)")
    try:
        seed_list = parse_seeds(seeds)
    except ValueError as e:
        _fail(f"--seeds: {e}")
    out = run_ab(cfg, preset, seed_list, steps, requests, page_size, new_notes, train=train,
                 log=lambda m: _console.print(f"[dim]{m}[/dim]", highlight=False))
    if len(out["runs"]) == 1:
        print_report(out["runs"][0]["report"])
    share = ", ".join(f"{a}: {s:.0%}" for a, s in out["significant_share"].items())
    _console.print(f"{len(seed_list)} runs, {preset}, {steps} steps x {requests} requests: significant difference "
                   f"on {out['primary']} at {out['level']:.0%} in {share} of runs; sample-ratio mismatch in "
                   f"{out['srm_mismatch_share']:.0%}")
    write_json(json_path, {**out, "config": str(config), "machine": machine_info()})


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """``notefeed experiments ...`` and ``notefeed sim ab``."""
    from notefeed.sim.cli import sim_app

    app.add_typer(experiments_app, name="experiments")
    sim_app.command("ab")(ab_cmd)
