"""Commands of the data stage: ``notefeed data import`` and ``notefeed data stats``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from notefeed.clierror import fail
from notefeed.data.dataset import DataError, Dataset, window_mask
from notefeed.data.loaders import DATASET_NAMES, dataset_for_path, load_dataset

__all__ = ["register", "data_app", "stats_table"]

data_app = typer.Typer(help="Datasets and workspaces: list, import, stats.", no_args_is_help=True)
_console = Console()


def _fail(msg: str) -> None:
    # library messages name Python arguments; on the command line they are flags
    fail(msg.replace("pass replace=True to overwrite", "add --replace to overwrite").replace("pass path=", "give --path "), 1)


_DATASET_HELP = f"One of: {', '.join(DATASET_NAMES)}; csv, seqfile (with --path); see `notefeed data list`."
_PATH_HELP = ("Where the dataset is read from (default: shared/datasets/...). Alone: a sequence file "
              "'user item item ...' per line (seqfile) or a folder with events.csv (csv).")


def _dataset_for(path: Path) -> str:
    try:
        return dataset_for_path(path)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
        raise


def stats_table(stats: dict[str, object]) -> Table:
    """A rich table of :meth:`Dataset.stats` output."""
    t = Table(title=f"dataset {stats.get('name', '')}", show_header=True)
    t.add_column("statistic")
    t.add_column("value", justify="right")
    for key, val in stats.items():
        if key in ("name", "events_by_type"):
            continue
        if key in ("ts_min", "ts_max"):
            ts = int(val)  # type: ignore[call-overload]
            # Sequence datasets use positions as ts; only show a date for plausible unix times.
            when = datetime.fromtimestamp(ts, tz=UTC).strftime(" (%Y-%m-%d %H:%M UTC)") if ts > 10**8 else ""
            shown = f"{ts}{when}"
        elif key == "sparsity":
            shown = f"{float(val):.6f}"  # type: ignore[arg-type]
        elif isinstance(val, float):
            shown = f"{val:,.3f}"
        elif isinstance(val, int):
            shown = f"{val:,}"
        else:
            shown = str(val)
        t.add_row(key, shown)
    for typ, n in dict(stats.get("events_by_type", {})).items():  # type: ignore[call-overload]
        t.add_row(f"events: {typ}", f"{int(n):,}")
    return t


@data_app.command("import")
def import_cmd(
    workspace: Path = typer.Option(..., "--workspace", "-w", help="Workspace folder (created if needed)."),
    dataset: str | None = typer.Option(None, "--dataset", help=_DATASET_HELP),
    path: Path | None = typer.Option(None, "--path", help=_PATH_HELP),
    csv: Path | None = typer.Option(None, "--csv", help="Folder with events.csv/parquet (+ notes, users, creators)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="With --csv: skip bad rows and list them."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite a non-empty workspace."),
) -> None:
    """Load a public dataset (--dataset) or your files (--csv) into a DuckDB workspace."""
    from notefeed.data.importer import import_folder
    from notefeed.data.store import Workspace

    if dataset is None and csv is None and path is not None:
        dataset = _dataset_for(path)
    if (dataset is None) == (csv is None):
        _fail("give exactly one of --dataset NAME (or --path FILE) or --csv FOLDER")
    problems: list[str] = []
    try:
        with _console.status("reading input..."):
            if csv is not None:
                res = import_folder(csv, skip_bad=skip_bad)
                ds, problems = res.dataset, res.problems
            else:
                ds = load_dataset(str(dataset), path)
        with _console.status(f"writing {len(ds.events):,} events to {workspace}..."), Workspace.open(workspace) as ws:
            ws.save_dataset(ds, replace=replace)
            counts = ws.counts()
    except (DataError, FileNotFoundError, KeyError) as e:
        _fail(str(e).strip("'\""))
        return
    for p in problems:
        _console.print(f"[yellow]skipped[/yellow] {escape(p)}", highlight=False, soft_wrap=True)
    if problems:
        _console.print(f"{len(problems)} bad row(s) skipped")
    summary = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    _console.print(escape(f"imported {ds.name} into {workspace}: {summary}"), soft_wrap=True, highlight=False)


@data_app.command("list")
def list_cmd() -> None:
    """The datasets --dataset takes, each with a one-line description."""
    from notefeed.data.loaders import LOADERS, _all  # noqa: F401  (_all: every loader registers on import)

    t = Table(show_header=True, box=None)
    t.add_column("dataset")
    t.add_column("what it is")
    for name in LOADERS.names():
        doc = (LOADERS.get(name).__doc__ or "").strip().splitlines()
        t.add_row(name, _DESCRIPTIONS.get(name) or (doc[0].replace("``", "") if doc
                                                     else "a registered loader without a description"))
    Console(width=200).print(t, soft_wrap=True)


#: one line per dataset for `notefeed data list` (loaders not named here show their docstring)
_DESCRIPTIONS = {
    "movielens-small": "MovieLens latest-small: ratings (>= 4 adds a like), genres, tags (movielens/ml-latest-small)",
    "movielens-100k": "MovieLens 100k: ratings, genres, user demographics (movielens/ml-100k)",
    "taobao": "Taobao UserBehavior subset: pv/cart/fav/buy over 9 days (taobao_userbehavior_subset)",
    "beauty": "Amazon Beauty sequences with item attributes, S3Rec format (amazon_s3rec/Beauty.txt)",
    "lastfm-s3rec": "LastFM sequences, S3Rec format (amazon_s3rec/LastFM.txt)",
    "kuairec": "KuaiRec side info: captions and categories, no interactions (kuairec_side)",
    "kuairand": "KuaiRand-Pure side info: authors and fan counts, no logs (kuairand_pure_side)",
    "qilin": "Qilin toy: Xiaohongshu feed and search logs with notes (qilin_toy)",
    "lastfm-hetrec": "HetRec Last.fm: artist plays, tags and the friend graph (lastfm_hetrec2k)",
    "microlens": "MicroLens-100k titles and comment counts (microlens100k_titles)",
    "csv": "your own export: --path FOLDER with events.csv/parquet (+ notes, users, creators)",
    "seqfile": "your own sequence log: --path FILE, one user per line 'user item item ...' in time order",
}


@data_app.command("stats")
def stats_cmd(
    dataset: str | None = typer.Option(None, "--dataset", help=_DATASET_HELP),
    path: Path | None = typer.Option(None, "--path", help=_PATH_HELP),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help="A workspace folder instead."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the statistics as JSON here."),
    window_days: float = typer.Option(0.0, "--window-days", min=0.0, max=36_500.0,
                                      help="also say how many events a data window of this many days keeps "
                                      "(the serving config's data.window_days: what serve and train would read)"),
    keep_per_user: int = typer.Option(200, "--keep-per-user", min=0,
                                      help="with --window-days: each user's newest positives kept whatever their age"),
) -> None:
    """Counts, time span, sparsity and events by type of a dataset or workspace."""
    from notefeed.data.store import Workspace

    if dataset is None and workspace is None and path is not None:
        dataset = _dataset_for(path)
    if (dataset is None) == (workspace is None):
        _fail("give exactly one of --dataset NAME (or --path FILE) or --workspace DIR")
    waiting: dict[str, int] | None = None
    try:
        if workspace is not None:
            from notefeed.models.sync import pending

            with Workspace.open(workspace, create=False) as ws:
                ds: Dataset = ws.load_dataset()
                waiting = pending(ws, workspace)
        else:
            ds = load_dataset(str(dataset), path)
    except (DataError, FileNotFoundError, KeyError, ValueError) as e:
        _fail(str(e).strip("'\""))
        return
    stats = ds.stats()
    if waiting is not None:
        stats["not_yet_in_store"] = waiting
    _console.print(stats_table({k: v for k, v in stats.items() if k != "not_yet_in_store"}))
    if window_days:
        kept, n = int(window_mask(ds.events, window_days, keep_per_user).sum()), len(ds.events)
        stats["window"] = {"window_days": window_days, "keep_per_user": keep_per_user, "events_read": kept}
        _console.print(f"data.window_days {window_days:g} (keep_per_user {keep_per_user}): serve and train would read "
                       f"{kept:,} of {n:,} events ({kept / max(n, 1):.0%})")
    if waiting is not None:
        _console.print(f"in the serving logs, not yet in the store: {waiting['notes']:,} notes, {waiting['events']:,} "
                       f"events (SQLite event log), {waiting['follower_counts']:,} follower counts, "
                       f"{waiting['relations']:,} follows, unfollows or blocks, {waiting['edits']:,} note edits, "
                       f"{waiting['erasures']:,} user erasures"
                       + (" (`notefeed models sync` or `notefeed train` copies them)" if any(waiting.values()) else ""))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""
    from notefeed.data.lake_cli import lake_app

    data_app.add_typer(lake_app, name="lake")
    app.add_typer(data_app, name="data")
