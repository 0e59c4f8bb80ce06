"""``notefeed ads ...``: the ads commands (``train-towers``, ``train-pctr``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["register"]


def register(app: typer.Typer, bench: typer.Typer) -> None:
    ads = typer.Typer(help="Ads: train the query/ad towers of search-ad recall and the auction's pCTR model.",
                      no_args_is_help=True)
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

    @ads.command("train-pctr")
    def train_pctr(
        workspace: Path = typer.Option(..., "--workspace", help="the serving workspace (its ads/ folder)"),
        min_clicks: int = typer.Option(100, "--min-clicks", min=2, help="refuse to train on fewer logged clicks"),
        holdout: float = typer.Option(0.2, "--holdout", min=0.01, max=0.9,
                                      help="latest share of impressions the model is checked on"),
        c: float = typer.Option(1.0, "--c", min=1e-6, help="inverse L2 strength of the logistic regression"),
        force: bool = typer.Option(False, "--force", help="write the model even when it does not beat the served "
                                   "pCTR on the held-out impressions"),
        explore_only: bool = typer.Option(False, "--explore-only", help="fit and check on the impressions of "
                                          "exploration requests only (explore in serving.json)"),
    ) -> None:
        """Train the auction's pCTR (a logistic efficiency model) on <workspace>/ads/impressions.jsonl
        (ads shown, with their features, and their clicks, logged by serving) and write
        <workspace>/ads/pctr/ when it predicts the latest impressions' clicks better (lower
        log-loss) than the pCTR that served them. Serving prices with it when <workspace>/ads/serving.json
        has "pctr": "model" (within 2 s of a new one; the default is the heuristic pCTR). Prints JSON."""
        from notefeed.ads.efficiency import train_workspace_pctr

        try:
            out = train_workspace_pctr(workspace, min_clicks, holdout, c, force, explore_only)
        except ValueError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        typer.echo(json.dumps(out))
        if not out["written"]:
            typer.echo("not written: the model does not beat the served pCTR on the held-out impressions "
                       "(--force writes it anyway)", err=True)
