"""``notefeed bench batch`` (the scaling study) and the engine choice of ``notefeed train --engine``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from notefeed.clierror import fail as _fail

__all__ = ["register", "engine_or_fail", "lake_dataset"]


def engine_or_fail(name: str, address: str | None, fail: Callable[[str], Any], num_cpus: int | None = None) -> Any:
    """``open_engine(name, address)``, or ``fail`` with a one-line message naming the flag."""
    from notefeed.batch.base import ENGINES, open_engine

    if name not in ENGINES:
        fail(f"--engine: must be one of {', '.join(ENGINES)}, got {name!r}")
    if address and name != "ray":
        fail("--address: only with --engine ray")
    try:
        return open_engine(name, address=address, num_cpus=num_cpus)
    except ImportError as e:
        fail(f"--engine {name}: {e}")
    except Exception as e:  # noqa: BLE001  (Ray raises many kinds when it cannot reach a cluster)
        fail(f"--address {address}: cannot start or reach Ray ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return None


def lake_dataset(workspace: Path, fail: Callable[[str], Any], log: Callable[[str], Any]) -> Any:
    """The workspace's dataset read through its event lake (exported first, incrementally;
    rebuilt when the workspace was replaced since):
    what batch jobs train on. ``None`` when the workspace has no database yet."""
    from notefeed.data.dataset import DataError
    from notefeed.data.lake import EventLake, load_lake_dataset

    if not (workspace / "notefeed.duckdb").exists():
        return None
    try:
        n = EventLake.for_workspace(workspace).export_workspace(workspace, progress=True, rebuild=True)
        log(f"event lake: {n:,} new events exported to {workspace / 'lake' / 'events'}; training reads the lake")
        return load_lake_dataset(workspace)
    except (DataError, OSError) as e:
        fail(f"--workspace: {e}")
    return None


def bench_batch_cmd(
    events: int = typer.Option(10_000_000, "--events", min=1000, help="simulated events (notefeed.recall.synthetic)"),
    engine: str = typer.Option("local,ray", "--engine", help="comma-separated engines to run: local, ray"),
    kernel: str = typer.Option("swing", "--kernel", help="swing or itemcf"),
    workers: int = typer.Option(2, "--workers", min=1, max=1024, help="Ray CPUs (workers)"),
    block: int = typer.Option(512, "--block", min=1, help="kernel block (user pairs / 4096 per block): bounds the "
                              "memory of one task; both engines use it, so their tables stay comparable"),
    json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
    seed: int = typer.Option(0, "--seed"),
    recycle: str = typer.Option("auto", "--recycle", help="Ray: recycle worker processes (a fresh one every --worker-tasks "
                                "tasks) -- auto (maps with large inputs), on, off"),
    worker_tasks: int = typer.Option(4, "--worker-tasks", min=1, help="Ray: tasks a recycled worker runs before it "
                                     "exits (fewer worker starts, more memory per worker; 4 measured best at 100M)"),
) -> None:
    """Swing on a large simulated log: local kernel vs Ray (throughput, peak memory per worker,
    same bytes?) and the labelled arithmetic for a cluster."""
    from notefeed.batch.base import ENGINES
    from notefeed.batch.bench import bench_batch

    engines = [e.strip() for e in engine.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        _fail(f"--engine: each must be one of {', '.join(ENGINES)}, got {engine!r}")
    if kernel not in ("swing", "itemcf"):
        _fail(f"--kernel: swing or itemcf, got {kernel!r}")
    recycles = {"auto": "auto", "on": True, "off": False}
    if recycle not in recycles:
        _fail(f"--recycle: auto, on or off, got {recycle!r}")
    if "ray" in engines:
        try:
            import ray  # noqa: F401
        except ImportError:
            _fail("--engine ray: the ray engine needs Ray: pip install 'notefeed[ray]'")
    out = bench_batch(events, engines, kernel=kernel, workers=max(1, workers), block=max(1, block), seed=seed,
                      log=typer.echo, recycle=recycles[recycle], worker_tasks=worker_tasks)
    typer.echo(json.dumps(out["summary"], indent=2, default=str))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
        typer.echo(f"wrote {json_path}")


def bench_lake_cmd(
    dataset: str = typer.Option("taobao", "--dataset", help="a dataset of `notefeed data list` with events"),
    engine: str = typer.Option("local,ray", "--engine", help="engines that build Swing from the lake"),
    json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
) -> None:
    """The event lake on a real dataset: export, compaction, a query, equality with the
    workspace, Swing from the lake on each engine (same table?)."""
    from notefeed.batch.base import ENGINES
    from notefeed.batch.lake_bench import bench_lake
    from notefeed.data.dataset import DataError

    engines = [e.strip() for e in engine.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        _fail(f"--engine: each must be one of {', '.join(ENGINES)}, got {engine!r}")
    try:
        out = bench_lake(dataset, engines, log=typer.echo)
    except (DataError, FileNotFoundError, KeyError) as e:
        _fail(f"--dataset: {e}")
    except ImportError as e:
        _fail(f"--engine: {e}")
    typer.echo(json.dumps({k: v for k, v in out.items() if k != "query"}, indent=2, default=str))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
        typer.echo(f"wrote {json_path}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``notefeed bench batch`` and ``bench lake`` (``notefeed train --engine`` lives in models/cli.py)."""
    bench.command("batch")(bench_batch_cmd)
    bench.command("lake")(bench_lake_cmd)
