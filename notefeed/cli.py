"""The ``notefeed`` command line.

Each stage owns its commands in ``notefeed/<stage>/cli.py`` and adds them here through an
explicit ``register(app, bench)`` call: ``bench`` is the ``notefeed bench ...`` group, where
every benchmark writes JSON.
"""

from __future__ import annotations

from pathlib import Path

import typer

from notefeed.ads import cli as ads_cli
from notefeed.batch import cli as batch_cli
from notefeed.clierror import fail as _fail
from notefeed.content import cli as content_cli
from notefeed.data import cli as data_cli
from notefeed.eval import cli as eval_cli
from notefeed.llm import cli as llm_cli
from notefeed.models import cli as models_cli
from notefeed.models.train import MAX_RANK_USERS
from notefeed.online import cli as online_cli
from notefeed.rank import cli as rank_cli
from notefeed.recall import cli as recall_cli
from notefeed.rerank import cli as rerank_cli
from notefeed.search import cli as search_cli
from notefeed.serve import bench_console
from notefeed.serve import cli as serve_cli
from notefeed.sim import cli as sim_cli
from notefeed.sim import rlcli as rl_cli
from notefeed.sim import search_data as _search_data  # noqa: F401  (the sim* query sets, the search bench corpus)

app = typer.Typer(
    name="notefeed",
    help="notefeed: a multi-stage recommendation engine for content communities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench = typer.Typer(help="Benchmarks: speed and quality figures, JSON out.", no_args_is_help=True)
app.add_typer(bench, name="bench")

for _module in (data_cli, sim_cli, eval_cli, content_cli, recall_cli, rank_cli, rerank_cli, online_cli, serve_cli,
                models_cli, search_cli, llm_cli, batch_cli, rl_cli, ads_cli):
    _module.register(app, bench)
bench_console.register(bench)  # notefeed bench console


def _print_version(value: bool) -> None:
    if value:
        from notefeed import __version__

        typer.echo(f"notefeed {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """notefeed: a multi-stage recommendation engine for content communities."""


@app.command("demo")
def demo(
    workspace: Path | None = typer.Option(None, "--workspace", help="where to build it (default: a new temp dir)"),
    preset: str = typer.Option("demo", "--preset", help="simulator preset: tiny, demo, 100k"),
    seed: int = typer.Option(0, "--seed"),
    steps: int = typer.Option(10, "--steps", min=1, max=1000, help="closed-loop steps"),
    requests: int = typer.Option(40, "--requests", min=1, max=10_000, help="page requests per step"),
    config: Path | None = typer.Option(None, "--config", help="serving config to train and serve (default: configs/default.yaml)"),
    sequence_max_s: float = typer.Option(60.0, "--sequence-max-s", min=0.0,
                                         help="cap on sequence/sasrec training time in seconds (0: no cap)"),
    rank_users: int = typer.Option(MAX_RANK_USERS, "--rank-users", min=20, max=1_000_000,
                                   help=f"users whose candidate sets train the rankers (`notefeed train`: {MAX_RANK_USERS})"),
    json_path: Path | None = typer.Option(None, "--json", help="write the summary here"),
    replace: bool = typer.Option(False, "--replace", help="overwrite the data of a non-empty --workspace"),
) -> None:
    """Generate a simulated community, `notefeed train` it, serve it over HTTP and show what it does."""
    import tempfile

    from notefeed.demo import DemoOptions, demo_config, run_demo
    from notefeed.eval.timing import write_json
    from notefeed.models.train import TrainError
    from notefeed.serve.config import ConfigError
    from notefeed.sim.config import PRESETS

    if preset not in PRESETS:
        _fail(f"--preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if workspace is not None and workspace.exists():
        if not workspace.is_dir():
            _fail(f"--workspace: {workspace} is a file, not a folder")
        if any(workspace.iterdir()) and not replace:
            _fail(f"--workspace: {workspace} is not empty; add --replace to overwrite its data")
    ws = workspace or Path(tempfile.mkdtemp(prefix="notefeed-demo-"))
    opts = DemoOptions(workspace=ws, preset=preset, seed=seed, loop_steps=steps, loop_requests=requests,
                       config=config, sequence_max_s=sequence_max_s or None,
                       rank_users=rank_users)
    try:
        demo_config(opts)
    except ConfigError as e:
        _fail(f"--config: {e}")
    try:
        summary = run_demo(opts)
    except TrainError as e:
        _fail(str(e))
    if json_path is not None:
        write_json(json_path, summary)


if __name__ == "__main__":  # pragma: no cover
    app()
