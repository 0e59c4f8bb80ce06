"""``notefeed data lake export | compact | query``: the workspace's day-partitioned event lake."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["lake_app"]

lake_app = typer.Typer(help="The event lake: the event log as Parquet by day (WORKSPACE/lake/events).",
                       no_args_is_help=True)
_WS = typer.Option(..., "--workspace", "-w", help="workspace directory (holds notefeed.duckdb and lake/)")


def _lake(workspace: Path):  # type: ignore[no-untyped-def]
    from notefeed.data.lake import EventLake

    if not workspace.is_dir():
        typer.echo(f"error: --workspace: {workspace} is not a directory", err=True)
        raise typer.Exit(2)
    return EventLake.for_workspace(workspace)


@lake_app.command("export")
def export_cmd(workspace: Path = _WS,
               rebuild: bool = typer.Option(False, "--rebuild", help="delete the lake and export everything "
                                            "(after the workspace was replaced)"),
               sync: bool = typer.Option(True, "--sync/--no-sync", help="first copy into the store what `serve` "
                                         "logged since the last sync, as `notefeed train` does")) -> None:
    """Append the workspace's events not yet in the lake (resumable; rerunning adds nothing)."""
    from notefeed.data.dataset import DataError

    lake = _lake(workspace)
    if sync:
        from notefeed.clierror import fail
        from notefeed.models.sync import sync_first

        sync_first(workspace, typer.echo, lambda msg: fail(msg, 1))
    try:
        n = lake.export_workspace(workspace, progress=True, rebuild=rebuild)
    except (DataError, FileNotFoundError) as e:
        typer.echo(f"error: --workspace: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"exported {n:,} events to {lake.root} ({len(lake.days())} days, {len(lake.files())} part files)")


@lake_app.command("compact")
def compact_cmd(workspace: Path = _WS,
                min_files: int = typer.Option(2, "--min-files", min=1, help="merge days with at least this many parts")) -> None:
    """Merge each day's part files into one (each event once)."""
    r = _lake(workspace).compact(min_files=max(1, min_files), progress=True)
    typer.echo(f"compacted {r.days} day(s): {r.files_before} -> {r.files_after} files, "
               f"{r.rows_before:,} -> {r.rows_after:,} rows ({r.rows_before - r.rows_after:,} repeats dropped)")


@lake_app.command("query")
def query_cmd(sql: str = typer.Argument(..., help="DuckDB SQL over the view `events` (with a `day` column)"),
              workspace: Path = _WS,
              limit: int = typer.Option(50, "--limit", min=1, help="rows printed at most")) -> None:
    """Run SQL over the lake with DuckDB, e.g. \"SELECT day, count(*) FROM events GROUP BY 1\"."""
    import duckdb
    import pandas as pd

    try:
        df = _lake(workspace).query(sql)
    except duckdb.Error as e:
        typer.echo(f"error: SQL: {str(e).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None
    with pd.option_context("display.max_columns", None, "display.width", 200):
        typer.echo(df.head(limit).to_string(index=False))
    if len(df) > limit:
        typer.echo(f"... {len(df) - limit:,} more rows")
