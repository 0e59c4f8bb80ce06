"""Commands of the serve stage: ``notefeed serve`` and ``notefeed bench serve``."""

from __future__ import annotations

import json
import os
import secrets
import signal
from pathlib import Path
from typing import Any

import typer

from notefeed.clierror import fail
from notefeed.data.dataset import Dataset

__all__ = ["register", "load_workspace_dataset", "resolve_token"]


def load_workspace_dataset(workspace: Path, read_only: bool = False, lock_wait_s: float = 0.0,
                           data: Any = None) -> Dataset:
    """The workspace's community (``notefeed.duckdb`` written by ``notefeed data import`` or
    ``notefeed sim generate``); an empty dataset when there is none yet. ``read_only``: open it
    so that other processes may read it at the same time (``serve --workers N``: each worker
    loads it); ``lock_wait_s``: retry that long while another process holds it for writing;
    ``data``: the serving config's ``data`` section (its window of events; None: every event)."""
    from notefeed.serve.engine import empty_dataset

    if not (workspace / "notefeed.duckdb").exists():
        return empty_dataset(workspace.name or "workspace")
    from notefeed.data.store import Workspace
    from notefeed.threads import gc_paused

    # opened read-then-closed: DuckDB allows one writer, and ``sim``/``data`` may write later
    with Workspace.open_waiting(workspace, lock_wait_s, create=False, read_only=read_only) as ws, gc_paused():
        if data is None:
            return ws.load_dataset()
        return ws.load_dataset(window_days=data.window_days, keep_per_user=data.keep_per_user)


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


def _serve_workers(con: Any, workspace: Path, config: Path | None, cfg: Any, token: str, source: str,
                   host: str, port: int, workers: int, synthetic_notes: int) -> None:
    """``serve --workers N``: uvicorn's supervisor starts N processes, each building the
    engine itself (:mod:`notefeed.serve.workers`)."""
    import uvicorn

    from notefeed.serve.workers import worker_env

    if synthetic_notes:
        con.print("[red]error:[/red] --workers: not with --synthetic-notes (each worker would build its own "
                  "community); generate a workspace with `notefeed sim generate` instead", soft_wrap=True)
        raise typer.Exit(2)
    if cfg.online.backend != "redis":
        con.print("[red]error:[/red] --workers: several workers share state through Redis; set "
                  "online.backend: redis and online.redis_url in --config", soft_wrap=True)
        raise typer.Exit(2)
    os.environ.update(worker_env(workspace, config, token))
    con.print(f"notefeed: {workers} workers on {workspace}; write token from {source}; http://{host}:{port}/docs")
    # each worker loads the engine before it answers the supervisor's health check: at 100k+
    # notes (or on a busy machine) that takes longer than uvicorn's 5 s default
    uvicorn.run("notefeed.serve.workers:create_worker_app", factory=True, workers=workers, host=host, port=port,
                log_level="warning", access_log=False, timeout_worker_healthcheck=600)
    con.print("notefeed: workers stopped, state saved")


def _register_backup(app: typer.Typer) -> None:
    """``notefeed backup`` and ``notefeed restore`` (:mod:`notefeed.serve.backup`)."""

    @app.command("backup")
    def backup(
        workspace: Path = typer.Option(..., "--workspace", help="the workspace to back up (it may be serving)"),
        to: Path = typer.Option(..., "--to", help="a new folder for the backup"),
        config: Path | None = typer.Option(None, "--config", help="the serving config: with online.backend "
                                           "redis the event stream is synced into the store first"),
    ) -> None:
        """Copy WORKSPACE, while it serves, into a new folder: store, logs, models, search
        index, lake and state, each consistent, with a manifest of checksums."""
        from notefeed.data.dataset import DataError
        from notefeed.data.store import WorkspaceLocked
        from notefeed.serve.backup import BackupError, backup_workspace

        if config is not None:
            from notefeed.models.sync import sync_workspace
            from notefeed.serve.config import ConfigError, load_config

            try:
                report = sync_workspace(workspace, load_config(config))
            except (ConfigError, DataError, ValueError, OSError) as e:
                fail(f"--config: syncing the serving logs into the store failed ({e})")
            if report.copied:
                typer.echo(report.line())
        try:
            m = backup_workspace(workspace, to, progress=lambda what: typer.echo(f"copying {what}"))
        except (BackupError, DataError, WorkspaceLocked, OSError) as e:
            fail(str(e))
        size = sum(f["size"] for f in m["files"].values())
        typer.echo(f"backed up {len(m['files']):,} files ({size / 1e6:,.1f} MB) of {workspace} to {to}")

    @app.command("restore")
    def restore(
        from_: Path = typer.Option(..., "--from", help="a folder written by `notefeed backup`"),
        workspace: Path = typer.Option(..., "--workspace", help="a new (or empty) folder for the workspace"),
    ) -> None:
        """Restore a backup as a new workspace, after checking every file against its manifest."""
        from notefeed.serve.backup import BackupError, restore_workspace

        try:
            m = restore_workspace(from_, workspace)
        except (BackupError, OSError) as e:
            fail(str(e))
        typer.echo(f"restored {len(m['files']):,} files of the backup of {m['created_at']} to {workspace}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""
    _register_tune(app)
    _register_backup(app)
    _register_online_benches(bench)
    _register_steps_bench(bench)
    from notefeed.serve import expcli

    expcli.register(app, bench)  # notefeed experiments report, notefeed sim ab
    from notefeed.serve import bench_ads

    bench_ads.register(bench)  # notefeed bench ads

    @app.command("serve")
    def serve(
        workspace: Path = typer.Option(..., "--workspace", help="workspace directory (created if missing)"),
        config: Path | None = typer.Option(None, "--config", help="YAML config (default: built-in defaults)"),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port", min=1, max=65535),
        synthetic_notes: int = typer.Option(0, "--synthetic-notes", min=0,
                                            help="serve a synthetic community of this many notes (benchmarks)"),
        seed: int = typer.Option(0, "--seed"),
        workers: int = typer.Option(1, "--workers", min=1, max=64,
                                    help="worker processes behind the port (> 1 needs online.backend: redis)"),
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
        if workers > 1:
            _serve_workers(con, workspace, config, cfg, token, source, host, port, workers, synthetic_notes)
            return
        from notefeed.threads import one_thread_for_process

        one_thread_for_process()  # request-sized work: see notefeed.threads
        try:
            with con.status("loading community"):
                ds = synthetic_community(synthetic_notes, seed=seed) if synthetic_notes else \
                    load_workspace_dataset(workspace, data=cfg.data)
            if ds.n_items == 0:
                con.print(f"[yellow]empty workspace[/yellow]: fill it with `notefeed sim generate --workspace "
                          f"{workspace}` (or `notefeed data import`), or publish notes with POST /v1/notes")
            with con.status(f"building engine on {ds.n_items:,} notes"):
                # the promoted model version (nothing trained here); the fallback otherwise
                engine = Engine(ds, cfg, workspace) if synthetic_notes else engine_from_store(ds, cfg, workspace)
        except ConfigError as e:
            con.print(f"[red]config error:[/red] {e}")
            raise typer.Exit(2) from None
        except ValueError as e:  # a workspace file the server cannot use and must not replace (the store, the logs)
            con.print(f"[red]error:[/red] cannot start on {workspace}: {e}", soft_wrap=True)
            raise typer.Exit(1) from None
        for w in engine.startup_warnings:
            con.print(f"[yellow]warning:[/yellow] {w}", soft_wrap=True)
        if engine.served.fallback:
            con.print("[yellow]serving the built-in fallback[/yellow] (/healthz says degraded): "
                      + "; ".join(engine.served.fallback))
        else:
            con.print(f"model version {engine.model_version}")
        read = "generated" if synthetic_notes else "read from the store" + (
            f" (data.window_days {cfg.data.window_days:g})" if cfg.data.window_days else "")
        con.print(f"notefeed: {engine.catalog.n_items:,} notes, {len(ds.events):,} events {read}, "
                  f"{engine.replayed:,} replayed; "
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
        train: bool = typer.Option(False, "--train", help="`notefeed train` each generated community first "
                                   "(the learned default pipeline; without it the untrained fallback is served)"),
        workspace: Path | None = typer.Option(None, "--workspace", help="bench this workspace as it is "
                                              "(its promoted model version) instead of generating communities"),
    ) -> None:
        """Load-test `notefeed serve` on 127.0.0.1: full funnel vs popularity-only, event->feed lag."""
        from notefeed.serve.bench import run_bench

        try:
            result = run_bench([int(s) for s in sizes.split(",") if s.strip()], requests, concurrency,
                               max_seconds, community, config, train=train, workspace=workspace)
        except ValueError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        _emit(json_path, result)


def _register_steps_bench(bench: typer.Typer) -> None:
    @bench.command("steps")
    def bench_steps(
        workspace: Path = typer.Option(..., "--workspace", help="a workspace (its promoted model version is served)"),
        json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
        users: int = typer.Option(400, "--users", min=1, help="known users to ask a page for, one at a time"),
        seed: int = typer.Option(0, "--seed", help="seed of the user sample"),
        config: Path | None = typer.Option(None, "--config", help="serving config (default config when omitted)"),
    ) -> None:
        """The serving pipeline in this process, one request at a time: time per step, p50/p99."""
        from notefeed.serve.bench import run_steps

        if not (workspace / "notefeed.duckdb").exists():
            typer.echo(f"error: --workspace: {workspace} is not a notefeed workspace (no notefeed.duckdb)", err=True)
            raise typer.Exit(2)
        try:
            result = run_steps(workspace, users, seed, config)
        except ValueError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        _emit(json_path, result)


def _emit(json_path: Path | None, result: dict[str, Any]) -> None:
    """Write a benchmark's result to ``json_path``, or print it when none is given."""
    from notefeed.eval.timing import write_json

    text = write_json(json_path, result)
    if json_path is None:
        typer.echo(text)


def _register_online_benches(bench: typer.Typer) -> None:
    @bench.command("workers")
    def bench_workers(
        json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
        trials: int = typer.Option(30, "--trials", min=1, max=1000, help="notes published and clicks posted"),
        requests: int = typer.Option(400, "--requests", min=10, max=100_000, help="feed requests over both workers"),
        redis_url: str | None = typer.Option(None, "--redis-url", help="a running Redis (default: a private redis-server)"),
        scaling: bool = typer.Option(False, "--scaling", help="instead: one port, `serve --workers 1` then `--workers 2` "
                                     "on copies of --workspace at the same load per worker; feed p50/p99 side by side"),
        workspace: Path | None = typer.Option(None, "--workspace", help="with --scaling: the (trained) workspace to serve"),
        config: Path | None = typer.Option(None, "--config", help="with --scaling: serving config (default: the default config)"),
        concurrency: int = typer.Option(2, "--concurrency", min=1, max=64, help="with --scaling: client threads per worker"),
        rates: str | None = typer.Option(None, "--rate", help="with --scaling: open loop instead, at these feed "
                                         "requests/s per worker (comma-separated, e.g. 5,10,20; Poisson arrivals); "
                                         "give --concurrency enough threads for the rate"),
        warmup: int = typer.Option(0, "--warmup", min=0, max=100_000, help="with --scaling: requests per pipeline "
                                   "and worker sent first and not measured"),
        pin: bool = typer.Option(False, "--pin", help="with --scaling: each worker on a core of its own "
                                 "(the one-worker run too): one core per worker on a machine with few"),
    ) -> None:
        """Two serving processes sharing one Redis: note and event visibility across them
        (``--scaling``: one vs two workers behind one port, p99 at the same per-worker load)."""
        from notefeed.serve.bench_online import run_worker_scaling, run_workers_bench

        if not scaling:
            if workspace is not None or config is not None or pin:
                typer.echo("error: --workspace/--config/--pin: only with --scaling", err=True)
                raise typer.Exit(2)
            _emit(json_path, run_workers_bench(trials, requests, redis_url))
            return
        if workspace is None:
            typer.echo("error: --workspace: --scaling serves a workspace (a trained one: `notefeed train`)", err=True)
            raise typer.Exit(2)
        try:
            rate_list = tuple(float(r) for r in rates.split(",") if r.strip()) if rates else ()
        except ValueError:
            typer.echo(f"error: --rate: comma-separated numbers, got {rates!r}", err=True)
            raise typer.Exit(2) from None
        if any(not r > 0 for r in rate_list):
            typer.echo(f"error: --rate: every rate must be > 0, got {rates!r}", err=True)
            raise typer.Exit(2)
        try:
            result = run_worker_scaling(workspace, requests, concurrency, redis_url, config, rates_per_worker=rate_list,
                                        warmup_per_worker=warmup, pin=pin)
        except (ValueError, RuntimeError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        _emit(json_path, result)

    @bench.command("durability")
    def bench_durability(
        json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
        rounds: int = typer.Option(10, "--rounds", min=1, max=1000, help="kill -9 rounds per backend"),
        backend: str = typer.Option("sqlite,redis", "--backend", help="sqlite, redis or both, comma-separated"),
        redis_url: str | None = typer.Option(None, "--redis-url", help="a running Redis (default: a private redis-server)"),
    ) -> None:
        """kill -9 a real server mid-write, N rounds per backend: acknowledged writes lost, restarts failed."""
        from notefeed.serve.durability import run_durability

        names = tuple(b.strip() for b in backend.split(",") if b.strip())
        bad = [b for b in names if b not in ("sqlite", "redis")]
        if bad or not names:
            typer.echo(f"error: --backend: sqlite and/or redis, got {backend!r}", err=True)
            raise typer.Exit(2)
        _emit(json_path, run_durability(rounds, names, redis_url))

    @bench.command("online-train")
    def bench_online_train(
        json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
        pages: int = typer.Option(600, "--pages", min=10, max=1_000_000, help="pages served (one click each)"),
        min_groups: int = typer.Option(32, "--min-groups", min=1, max=100_000, help="online.train_params.min_groups"),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """online.train in a serving engine: click -> fine ranker version that learned from it."""
        from notefeed.serve.bench_online import run_online_train_bench

        _emit(json_path, run_online_train_bench(pages, min_groups, seed))


def _register_tune(app: typer.Typer) -> None:
    """``notefeed tune fusion``: here, not in the rank stage, because its default objective
    serves a closed loop through the serving pipeline in the simulator."""
    tune = typer.Typer(help="Hyper-parameter searches.", no_args_is_help=True)
    app.add_typer(tune, name="tune")

    @tune.command("fusion")
    def tune_fusion_cmd(
        dataset: str = typer.Option("synthetic", help="'synthetic' or a load_dataset name"),
        trials: int = typer.Option(40, min=1, max=10_000, help="optuna trials (the first is today's default)"),
        seed: int = typer.Option(0),
        k: int = typer.Option(3, min=1, max=1000, help="top-k per logged request (user-minute; pages hold ~10 impressions)"),
        min_small_share: float = typer.Option(0.5, min=0.0, max=1.0, help="floor on small-creator share of the top-k"),
        quick: bool = typer.Option(False, help="small synthetic world / user subsample"),
        objective: str = typer.Option("sim", help="'sim': closed loop through the serving pipeline in the "
                                      "simulator; 'offline': held-out logged requests of --dataset"),
        preset: str = typer.Option("demo", help="simulator preset for --objective sim"),
        steps: int = typer.Option(8, min=1, max=10_000, help="closed-loop steps per trial (--objective sim)"),
        requests: int = typer.Option(40, min=1, max=100_000, help="page requests per step (--objective sim)"),
        json_path: Path = typer.Option(None, "--json"),
    ) -> None:
        """Search fusion weights (optuna TPE): engagement with a floor on small-creator share."""
        if objective not in ("sim", "offline"):
            raise typer.BadParameter(f"--objective must be 'sim' or 'offline', got {objective!r}")
        if objective == "sim":
            from notefeed.rank.fusion import tune_fusion
            from notefeed.serve.config import ServeConfig
            from notefeed.serve.tune import sim_fusion_objective
            from notefeed.sim.config import preset as sim_preset

            try:
                sim_preset("tiny" if quick else preset)
            except ValueError as e:
                typer.echo(f"error: --preset: {e}", err=True)
                raise typer.Exit(2) from None
            log: list[dict] = []
            obj = sim_fusion_objective("tiny" if quick else preset, seed, steps, requests,
                                       min_small_share=min_small_share, log=log)
            serving = ServeConfig().fusion.weights  # today's serving default is the baseline trial
            res = tune_fusion(obj, trials, seed, tuple(serving), progress=True, baseline=serving)
            res.pop("trials")
            res["default_value"] = log[0]["value"]  # the hand-set default is the first trial
            res["best_metrics"] = max(log, key=lambda e: e["value"])
            res["default_metrics"] = log[0]
            res["objective"] = (f"sim: closed loop through the serving pipeline on preset "
                                f"{'tiny' if quick else preset}, {steps} steps x {requests} requests; engagement "
                                f"per impression - penalty x shortfall below small share {min_small_share}")
            text = json.dumps(res, indent=2, default=float)
            typer.echo(text)
            if json_path is not None:
                json_path.write_text(text)
            return
        from notefeed.rank.evaluate import _load
        from notefeed.rank.features import FeatureBuilder
        from notefeed.rank.finenet import FineConfig
        from notefeed.rank.fusion import offline_objective, tune_fusion
        from notefeed.rank.multitask import FineRanker
        from notefeed.rank.samples import build_samples
        from notefeed.registry import error_text

        try:
            ds = _load(dataset, seed, quick=quick)
        except (KeyError, ValueError, FileNotFoundError) as e:  # an unknown name, or its files missing
            typer.echo(f"error: --dataset: {error_text(e)}", err=True)
            raise typer.Exit(2) from None
        s = build_samples(ds, seed=seed)
        tasks = tuple(t for t, y in s.labels.items() if (y == y).any())
        train, test = s.split_time(0.3)
        fb = FeatureBuilder(ds)
        r = FineRanker(FineConfig(tasks=tasks, epochs=2 if quick else 3, batch_size=512 if quick else 1024)).fit(ds, train, fb, progress=True)
        preds = r.predict(fb.features(test.users, test.items, test.ts, test.position, test.surface))
        group = test.users * 100_000 + (test.ts // 60)  # a request ~ one user-minute
        obj = offline_objective(preds, test.labels, group, ds.item_is_small_creator[test.items], k=k,
                                min_small_share=min_small_share)
        res = tune_fusion(obj, trials, seed, tasks, progress=True)
        res.pop("trials")
        res["objective"] = f"offline: held-out logged requests of {ds.name}, top-{k} engagement, small share >= {min_small_share}"
        text = json.dumps(res, indent=2)
        typer.echo(text)
        if json_path is not None:
            json_path.write_text(text)
