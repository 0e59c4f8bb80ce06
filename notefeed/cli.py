"""The ``notefeed`` command line.

Each stage owns its commands in ``notefeed/<stage>/cli.py`` and adds them here through an
explicit ``register(app, bench)`` call: ``bench`` is the ``notefeed bench ...`` group, where
every benchmark writes JSON.
"""

from __future__ import annotations

import typer

from notefeed.content import cli as content_cli
from notefeed.data import cli as data_cli
from notefeed.eval import cli as eval_cli
from notefeed.online import cli as online_cli
from notefeed.rank import cli as rank_cli
from notefeed.recall import cli as recall_cli
from notefeed.rerank import cli as rerank_cli
from notefeed.serve import cli as serve_cli
from notefeed.sim import cli as sim_cli

app = typer.Typer(
    name="notefeed",
    help="notefeed: a multi-stage recommendation engine for content communities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench = typer.Typer(help="Benchmarks: speed and quality figures, JSON out.", no_args_is_help=True)
app.add_typer(bench, name="bench")

for _module in (data_cli, sim_cli, eval_cli, content_cli, recall_cli, rank_cli, rerank_cli, online_cli, serve_cli):
    _module.register(app, bench)


if __name__ == "__main__":  # pragma: no cover
    app()
