"""Commands of the rank stage: ``notefeed bench rank``, ``notefeed tune fusion``."""

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
        seconds: float = typer.Option(10.0, help="seconds of training per mode"),
        threads: int = typer.Option(2, help="torch CPU threads"),
        rows: int = typer.Option(1_000_000, help="rows of the user and note id tables"),
    ) -> None:
        """Training samples/s naive vs fast, fine 500-candidate and coarse 10k-candidate p99."""
        from notefeed.rank.bench import run_bench

        out = run_bench(seconds=seconds, device=device, threads=threads, n_rows=rows)
        text = json.dumps(out, indent=2)
        typer.echo(text)
        if json_path is not None:
            json_path.write_text(text)

    tune = typer.Typer(help="Hyper-parameter searches.", no_args_is_help=True)
    app.add_typer(tune, name="tune")

    @tune.command("fusion")
    def tune_fusion_cmd(
        dataset: str = typer.Option("synthetic", help="'synthetic' or a load_dataset name"),
        trials: int = typer.Option(40),
        seed: int = typer.Option(0),
        k: int = typer.Option(3, help="top-k per logged request (user-minute; pages hold ~10 impressions)"),
        min_small_share: float = typer.Option(0.5, help="floor on small-creator share of the top-k"),
        quick: bool = typer.Option(False, help="small synthetic world / user subsample"),
        objective: str = typer.Option("sim", help="'sim': closed loop through the serving pipeline in the "
                                      "simulator; 'offline': held-out logged requests of --dataset"),
        preset: str = typer.Option("demo", help="simulator preset for --objective sim"),
        steps: int = typer.Option(8, help="closed-loop steps per trial (--objective sim)"),
        requests: int = typer.Option(40, help="page requests per step (--objective sim)"),
        json_path: Path = typer.Option(None, "--json"),
    ) -> None:
        """Search fusion weights (optuna TPE): engagement with a floor on small-creator share."""
        if objective not in ("sim", "offline"):
            raise typer.BadParameter(f"--objective must be 'sim' or 'offline', got {objective!r}")
        if objective == "sim":
            from notefeed.rank.fusion import tune_fusion
            from notefeed.serve.config import ServeConfig
            from notefeed.serve.tune import sim_fusion_objective

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

        ds = _load(dataset, seed, quick=quick)
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
