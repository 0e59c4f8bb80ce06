"""``notefeed ads ...``: the ads commands (``train-towers``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["register"]


def register(app: typer.Typer, bench: typer.Typer) -> None:
    ads = typer.Typer(help="Ads: train the query/ad towers of search-ad recall.", no_args_is_help=True)
    app.add_typer(ads, name="ads")

    @ads.command("train-towers")
    def train_towers(
        workspace: Path = typer.Option(..., "--workspace", help="the serving workspace (its ads/ folder)"),
        min_clicks: int = typer.Option(200, "--min-clicks", min=2, help="refuse to train on fewer logged clicks"),
        epochs: int = typer.Option(15, "--epochs", min=0, max=1000, help="at most; the best epoch on held-out clicks is kept"),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Train semantic/twotower on <workspace>/ads/clicks.jsonl (search-ad clicks with their query,
        logged by serving) and write <workspace>/ads/twotower/; serving switches to it within 2 s."""
        import torch

        from notefeed.ads.twotower import AdTowerConfig, train_workspace_towers

        torch.set_num_threads(1)
        try:
            out = train_workspace_towers(workspace, min_clicks, AdTowerConfig(epochs=epochs, seed=seed))
        except ValueError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        typer.echo(json.dumps(out))
