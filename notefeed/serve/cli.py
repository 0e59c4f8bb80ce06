"""Commands of the serve stage: ``notefeed serve`` and ``notefeed bench serve``."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import typer

from notefeed.data.dataset import Dataset

__all__ = ["register", "load_workspace_dataset", "resolve_token"]


def load_workspace_dataset(workspace: Path) -> Dataset:
    """The workspace's community (``notefeed.duckdb`` written by ``notefeed data import`` or
    ``notefeed sim generate``); an empty dataset when there is none yet."""
    from notefeed.serve.engine import empty_dataset

    if not (workspace / "notefeed.duckdb").exists():
        return empty_dataset(workspace.name or "workspace")
    from notefeed.data.store import Workspace

    # opened read-then-closed: DuckDB allows one writer, and ``sim``/``data`` may write later
    with Workspace.open(workspace, create=False) as ws:
        return ws.load_dataset()


def resolve_token(configured: str | None, workspace: Path) -> tuple[str, str]:
    """The API token and where it came from: config, ``$NOTEFEED_API_TOKEN``, or a new random
    one saved to ``WORKSPACE/api_token`` (mode 600) and reused on the next start."""
    if configured:
        return configured, "config"
    env = os.environ.get("NOTEFEED_API_TOKEN")
    if env:
        return env, "NOTEFEED_API_TOKEN"
    p = workspace / "api_token"
    if p.exists():
        return p.read_text().strip(), str(p)
    token = secrets.token_urlsafe(24)
    workspace.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, str(p)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""

    @app.command("serve")
    def serve(
        workspace: Path = typer.Option(..., "--workspace", help="workspace directory (created if missing)"),
        config: Path | None = typer.Option(None, "--config", help="YAML config (default: built-in defaults)"),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port", min=1, max=65535),
        synthetic_notes: int = typer.Option(0, "--synthetic-notes", min=0,
                                            help="serve a synthetic community of this many notes (benchmarks)"),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Run the HTTP API (uvicorn) on WORKSPACE."""
        import uvicorn
        from rich.console import Console

        from notefeed.serve.app import create_app
        from notefeed.serve.config import ConfigError, load_config
        from notefeed.serve.engine import Engine
        from notefeed.serve.synth import synthetic_community
        from notefeed.serve.versions import engine_from_store

        con = Console(stderr=True)
        try:
            cfg = load_config(config)
        except ConfigError as e:
            con.print(f"[red]config error:[/red] --config: {e}", soft_wrap=True)
            raise typer.Exit(2) from None
        token, source = resolve_token(cfg.api.token, workspace)
        try:
            cfg = cfg.with_overrides(api={"token": token})
        except ConfigError:  # only a token from the environment or the token file gets here
            con.print(f"[red]error:[/red] the write token from {source} is too short (at least 8 characters)",
                      soft_wrap=True)
            raise typer.Exit(2) from None
        with con.status("loading community"):
            ds = synthetic_community(synthetic_notes, seed=seed) if synthetic_notes else load_workspace_dataset(workspace)
        if ds.n_items == 0:
            con.print(f"[yellow]empty workspace[/yellow]: fill it with `notefeed sim generate --workspace {workspace}`"
                      " (or `notefeed data import`), or publish notes with POST /v1/notes")
        with con.status(f"building engine on {ds.n_items:,} notes"):
            try:
                # the promoted model version (nothing trained here); the fallback otherwise
                engine = Engine(ds, cfg, workspace) if synthetic_notes else engine_from_store(ds, cfg, workspace)
            except ConfigError as e:
                con.print(f"[red]config error:[/red] {e}")
                raise typer.Exit(2) from None
        if engine.served.fallback:
            con.print("[yellow]serving the built-in fallback[/yellow] (/healthz says degraded): "
                      + "; ".join(engine.served.fallback))
        else:
            con.print(f"model version {engine.model_version}")
        con.print(f"notefeed: {engine.catalog.n_items:,} notes, {engine.replayed:,} events replayed; "
                  f"write token from {source}; http://{host}:{port}/docs")
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it with the previous handler:
        # the default one would kill the process before engine.close() saves the state
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            uvicorn.run(create_app(engine), host=host, port=port, log_level="warning", access_log=False)
        except SystemExit:
            pass
        finally:
            engine.close()
            signal.signal(signal.SIGTERM, previous)
        con.print("notefeed: stopped, state saved")

    @bench.command("serve")
    def bench_serve(
        json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
        sizes: str = typer.Option("100000,1000000", "--sizes", help="community sizes (notes), comma-separated"),
        requests: int = typer.Option(2000, "--requests", min=10, max=100_000, help="feed requests per pipeline and size"),
        concurrency: int = typer.Option(2, "--concurrency", min=1, max=64, help="client threads"),
        max_seconds: float = typer.Option(120.0, "--max-seconds", min=1, max=1800,
                                          help="stop each run after this long"),
        community: str = typer.Option("sim", "--community",
                                      help="sim (notefeed sim generate presets 100k/1m) or synthetic"),
        config: Path | None = typer.Option(None, "--config", help="serving config for the full funnel"),
    ) -> None:
        """Load-test `notefeed serve` on 127.0.0.1: full funnel vs popularity-only, event->feed lag."""
        from notefeed.eval.timing import write_json
        from notefeed.serve.bench import run_bench

        result = run_bench([int(s) for s in sizes.split(",") if s.strip()], requests, concurrency, max_seconds,
                           community, config)
        text = write_json(json_path, result)
        if json_path is None:
            typer.echo(text)
