"""Commands of the model store: ``notefeed models list | promote VERSION | rollback``."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import typer

from notefeed.clierror import fail as _fail
from notefeed.threads import trim_heap

__all__ = ["register", "models_app"]

models_app = typer.Typer(help="Trained model versions in WORKSPACE/models: list, promote, roll back; sync "
                         "the serving logs into the store.",
                         no_args_is_help=True)

_WS = typer.Option(..., "--workspace", help="workspace directory (holds models/)")


def _store(workspace: Path) -> Any:
    from notefeed.models.store import ModelStore

    if not workspace.is_dir():
        _fail(f"--workspace: {workspace} is not a directory")
    return ModelStore(workspace)


def _metrics(metrics: dict[str, Any], limit: int = 3) -> str:
    """``place metric=value`` for the first few numeric metrics."""
    parts = []
    for place, ms in sorted(metrics.items()):
        if not isinstance(ms, dict):
            continue
        for k, v in ms.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                parts.append(f"{place} {k}={v:.4g}")
    return ", ".join(parts[:limit]) + (f" (+{len(parts) - limit})" if len(parts) > limit else "")


@models_app.command("list")
def list_cmd(workspace: Path = _WS) -> None:
    """Stored versions, oldest first; * marks the promoted one (the one `serve` loads)."""
    from rich.console import Console
    from rich.table import Table

    from notefeed.models.artifacts import ModelError

    store = _store(workspace)
    try:
        infos = store.list()
    except ModelError as e:
        _fail(str(e))
    if not infos:
        typer.echo(f"no model versions in {store.root} (train one with `notefeed train --workspace {workspace}`)")
        return
    table = Table(title=f"model versions in {store.root}")
    for col in ("", "version", "created (UTC)", "events", "components", "key metrics"):
        table.add_column(col)
    for info in infos:
        n = info.n_events
        table.add_row("*" if info.promoted else "", info.version, info.created_at.replace("+00:00", ""),
                      "" if n is None else f"{n:,}", str(len(info.manifest.get("components", {}))),
                      _metrics(info.metrics))
    Console().print(table)


@models_app.command("promote")
def promote_cmd(version: str = typer.Argument(..., help="a version from `notefeed models list`"),
                workspace: Path = _WS) -> None:
    """Make VERSION the one `notefeed serve` loads (a running server: POST /v1/admin/models/reload)."""
    from notefeed.models.artifacts import ModelError

    store = _store(workspace)
    try:
        prev = store.promoted()
        store.promote(version)
    except ModelError as e:
        _fail(f"VERSION: {e}")
    typer.echo(f"promoted {version}" + (f" (was {prev})" if prev and prev != version else ""))


@models_app.command("rollback")
def rollback_cmd(workspace: Path = _WS) -> None:
    """Return to the version promoted before the current one."""
    from notefeed.models.artifacts import ModelError

    store = _store(workspace)
    try:
        prev = store.promoted()
        v = store.rollback()
    except ModelError as e:
        _fail(str(e))
    typer.echo(f"rolled back to {v} (was {prev})")


def _config(config: Path | None) -> Any:
    """The serving config ``--config`` names (the default config when omitted); a bad one is
    a one-line error."""
    from notefeed.serve.config import ConfigError, ServeConfig, load_config

    try:
        return load_config(config) if config is not None else ServeConfig()
    except (ConfigError, OSError) as e:
        _fail(f"--config: {e}")


def _sync(workspace: Path, cfg: Any, hint: str = "") -> Any:
    """:func:`~notefeed.models.sync.sync_workspace`; a log or store it cannot read is a
    one-line error (``hint`` appended)."""
    from notefeed.data.dataset import DataError
    from notefeed.models.sync import sync_workspace

    try:
        return sync_workspace(workspace, cfg)
    except (DataError, ValueError, OSError) as e:
        _fail(f"--workspace: syncing the serving logs into the store failed ({e}){hint}")


@models_app.command("sync")
def sync_cmd(
    workspace: Path = _WS,
    config: Path | None = typer.Option(None, "--config", help="serving config (its online section names the "
                                       "event log's backend; default config when omitted)"),
) -> None:
    """Copy into the workspace's store what `serve` logged since the last sync (posted events,
    published notes, follows and blocks), as `notefeed train`, `search`, `llm embed` and `data
    lake export` do first (unless --no-sync); with --config, the event log its online section
    names (a Redis stream)."""
    _store(workspace)
    typer.echo(_sync(workspace, _config(config)).line())


def train_cmd(
    workspace: Path = _WS,
    config: Path | None = typer.Option(None, "--config", help="serving config naming what to train (default config when omitted)"),
    promote: bool = typer.Option(True, "--promote/--no-promote", help="make the new version the one `serve` loads"),
    seed: int = typer.Option(0, "--seed", help="random seed of sampling and training"),
    engine: str = typer.Option("local", "--engine", help="where batch jobs (Swing/ItemCF) run: local or ray"),
    address: str | None = typer.Option(None, "--address", help="with --engine ray: a running cluster (auto, "
                                       "ray://host:10001); default: start Ray on this machine"),
    json_path: Path | None = typer.Option(None, "--json", help="write the version, the data snapshot and the "
                                          "training report (wall and CPU seconds per phase) here"),
    sync: bool = typer.Option(True, "--sync/--no-sync", help="first copy into the workspace's store what "
                              "`serve` logged since the last sync (posted events, published notes)"),
    every: float = typer.Option(0.0, "--every", min=0.0, max=7 * 86_400.0,
                                help="seconds: keep running, and every so often sync again and train a new "
                                "version when the sync copied something (a running `serve` follows each "
                                "promotion); 0: train once"),
    rounds: int = typer.Option(0, "--rounds", min=0, help="with --every: stop after this many rounds (0: until "
                               "interrupted)"),
    search_fusion: bool = typer.Option(True, "--search-fusion/--no-search-fusion", help="also fit the search "
                                       "fusion from the search log's clicks when it is due (none yet, or the "
                                       "last one lost its interleaving and the log has doubled since)"),
) -> None:
    """Fit every component the config names on the workspace and store a new model version
    (and the search fusion, when it is due)."""
    from notefeed.models.train import TrainError, train_workspace

    _store(workspace)
    cfg = _config(config)
    from notefeed.batch.cli import engine_or_fail, lake_dataset

    if every and not sync:
        _fail("--every: retrains on what the sync copies in; it needs --sync")
    batch = engine_or_fail(engine, address, _fail)
    done = 0
    try:
        while True:
            if sync:  # before the lake export too: the batch engines read the store through it
                report = _sync(workspace, cfg, "; --no-sync trains without")
                if report.copied:
                    typer.echo(report.line())
                elif done:  # a round after the first with nothing new: the promoted version stands
                    typer.echo(f"{time.strftime('%H:%M:%S')} nothing new in the serving logs; not retrained")
            if not done or report.notes or report.events or report.relations or report.edits or report.erased:
                try:  # batch engines read the event lake
                    ds = lake_dataset(workspace, _fail, typer.echo) if batch.name != "local" else None
                    t0, c0 = time.perf_counter(), time.process_time()
                    version = train_workspace(workspace, cfg, seed=seed, progress=True, promote=promote,
                                              log=typer.echo, ds=ds,
                                              batch_engine=None if batch.name == "local" else batch, sync=False)
                    if json_path is not None:
                        _write_train_json(json_path, workspace, version, time.perf_counter() - t0,
                                          time.process_time() - c0)
                except TrainError as e:
                    _fail(str(e))
            if search_fusion:
                _train_search_fusion(workspace, seed)
            done += 1
            if not every or (rounds and done >= rounds):
                return
            gc.collect()  # the round's data and models are garbage now: hand their memory back
            trim_heap()
            time.sleep(every)
    except KeyboardInterrupt:  # between or during rounds: the versions stored so far stand
        typer.echo("stopped")
        raise typer.Exit(130) from None
    finally:
        batch.close()


def _train_search_fusion(workspace: Path, seed: int) -> None:
    """Fit and install the search fusion when :func:`~notefeed.search.cli.fusion_due` says so; a
    failure is reported on one line and leaves the feed's new version in place."""
    from notefeed.search.cli import fusion_due, train_workspace_fusion

    try:
        why = fusion_due(workspace)
        if why is None:
            return
        typer.echo(f"search fusion: training ({why})")
        rep, saved = train_workspace_fusion(workspace, seed=seed)
        typer.echo(("search fusion: fusion.json saved: " if saved else "search fusion: none trained: ") + rep.reason)
    except Exception as e:  # noqa: BLE001 - the feed's version is stored; search keeps the fusion it had
        typer.echo(f"search fusion: not trained ({type(e).__name__}: {e})")


def _write_train_json(path: Path, workspace: Path, version: str, wall_s: float, cpu_s: float) -> None:
    """``notefeed train --json``: what was trained on, how long each phase took, the metrics."""
    import json

    from notefeed.eval.timing import machine_info
    from notefeed.models.store import ModelStore

    man = ModelStore(workspace).manifest(version)
    out = {"command": "notefeed train", "workspace": str(workspace), "version": version,
           "wall_s": wall_s, "cpu_s_main_process": cpu_s, "machine": machine_info(),
           "data": man.get("data"), "metrics": man.get("metrics"), "train_report": man.get("train_report")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    typer.echo(f"wrote {path}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``notefeed train`` and ``notefeed models ...`` to ``notefeed``."""
    app.command("train")(train_cmd)
    app.add_typer(models_app, name="models")
