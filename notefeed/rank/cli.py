"""Commands of the rank stage: ``notefeed bench rank`` (``notefeed tune fusion`` scores trials through
the serving pipeline in the simulator, so it lives with serving: ``notefeed/serve/cli.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""

    @bench.command("rank")
    def bench_rank(
        json_path: Path = typer.Option(None, "--json", help="write the figures here"),
        device: str = typer.Option("cpu", help="cpu or cuda"),
        seconds: float = typer.Option(10.0, min=0.1, max=86_400, help="seconds of training per mode"),
        threads: int = typer.Option(2, min=1, max=256, help="torch CPU threads"),
        rows: int = typer.Option(1_000_000, min=1, help="rows of the user and note id tables"),
    ) -> None:
        """Training samples/s naive vs fast, fine 500-candidate and coarse 10k-candidate p99."""
        from notefeed.rank.bench import run_bench

        out = run_bench(seconds=seconds, device=device, threads=threads, n_rows=rows)
        text = json.dumps(out, indent=2)
        typer.echo(text)
        if json_path is not None:
            json_path.write_text(text)
