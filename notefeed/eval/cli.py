"""Commands of the eval stage: ``notefeed eval``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from notefeed.registry import error_text

__all__ = ["register", "eval_command", "parse_list", "parse_ks", "parse_params", "print_rows"]

_ERRORS = (KeyError, ValueError, TypeError, FileNotFoundError)


def parse_list(text: str | None, what: str) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]``; ``None`` stays ``None``; empty items are an error."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not items or any(not t for t in items):
        raise ValueError(f"--{what}: expected a comma-separated list of names, got {text!r}")
    return items


def parse_ks(text: str, what: str = "k", positive: bool = True) -> list[int]:
    """``"10,20"`` -> ``[10, 20]``; every cut-off must be a positive integer (``--seeds``: >= 0)."""
    out = []
    for t in text.split(","):
        try:
            k = int(t.strip())
        except ValueError:
            raise ValueError(f"--{what}: {t.strip()!r} is not an integer (expected e.g. 10,20,50)") from None
        if k <= 0 if positive else k < 0:
            raise ValueError(f"--{what}: {'cut-offs must be positive' if positive else 'values must be >= 0'}, got {k}")
        out.append(k)
    return out


def parse_params(items: Sequence[str] | None) -> dict[str, dict[str, object]]:
    """``["bpr.learning_rate=0.005", "als.alpha=1"]`` -> ``{"bpr": {"learning_rate": 0.005}, ...}``.

    Values are read as JSON (numbers, true/false, quoted strings), else kept as text.
    """
    out: dict[str, dict[str, object]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        model, dot, name = key.strip().partition(".")
        if not sep or not dot or not model or not name:
            raise ValueError(f"--param: expected MODEL.KEY=VALUE (e.g. bpr.learning_rate=0.005), got {item!r}")
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(model, {})[name] = value
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def _print_feed(console: Console, rows: Sequence[dict]) -> None:
    """The feed stage: accuracy with intervals, the ratio to the best baseline, and HR@10
    after each stage of the served funnel (recall order, coarse, fine, re-ranked page)."""
    t = Table(title="feed stage: the served page vs baselines (same split, same users)")
    for c in ("dataset", "model", "seed", "users", "HR@10", "±95%", "NDCG@10", "HR@20", "x best", "recall", "coarse",
              "fine", "page", "cand. hit", "p50 ms"):
        t.add_column(c, justify="right")
    for r in rows:
        ratio = r.get("hit@10_vs_best")
        # a summary row (--seeds): the mean over seeds, the interval over seeds
        seed, ci = ("mean", "hit@10_ci95_seeds") if "summary" in r else (str(r.get("seed", "")), "hit@10_ci95")
        t.add_row(str(r.get("dataset", "")), str(r.get("model", "")), seed, str(r.get("test_users", "")),
                  *(_fmt(r.get(k, "")) for k in ("hit@10", ci, "ndcg@10", "hit@20")),
                  "" if ratio is None else f"{ratio:.2f}x",
                  *(_fmt(r.get(f"stage.{s}.hit@10", "")) for s in ("recall", "coarse", "fine", "page")),
                  _fmt(r.get("stage.recall.hit@all", "")), _fmt(r.get("feed_p50_ms", "")))
    console.print(t)


def print_rows(console: Console, stage: str, rows: Sequence[dict], ks: Sequence[int] | None) -> None:
    """The model stage gets one table per k; any other stage one table of all columns."""
    if not rows:
        console.print(f"[yellow]stage {stage}: no rows[/yellow]")
        return
    if stage == "feed":
        _print_feed(console, rows)
        return
    if stage == "model" and ks:
        for k in ks:
            t = Table(title=f"model stage @ {k}", show_lines=False)
            cols = [("dataset", "dataset"), ("model", "model"), ("test_users", "users")]
            cols += [(f"{m}@{k}", f"{label}@{k}") for m, label in
                     (("recall", "Recall"), ("ndcg", "NDCG"), ("hit", "Hit"), ("mrr", "MRR"),
                      ("coverage", "Cov"), ("novelty", "Nov"), ("ilad", "ILAD"),
                      ("small_creator", "Small"))]
            cols += [("fit_s", "fit s")]
            for _, label in cols:
                t.add_column(label, justify="right")
            for r in rows:
                t.add_row(*(_fmt(r.get(key, "")) for key, _ in cols))
            console.print(t)
        return
    keys: list[str] = []
    for r in rows:
        keys.extend(c for c in r if c not in keys)

    def nested(v: Any) -> bool:  # per-seed detail: in the JSON, not the table (an interval pair stays)
        return isinstance(v, dict) or (isinstance(v, list) and (len(v) > 2 or any(isinstance(x, dict | list) for x in v)))

    keys = [k for k in keys if not any(nested(r.get(k)) for r in rows)]
    t = Table(title=f"{stage} stage")
    for key in keys:
        t.add_column(key, justify="right")
    for r in rows:
        t.add_row(*(_fmt(r.get(key, "")) for key in keys))
    console.print(t)


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> ``null``: Python writes bare ``NaN``, which strict JSON readers reject."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _console() -> Console:
    # a pipe or a test runner reports 80 columns, which would squeeze the wide tables
    c = Console()
    return c if c.is_terminal else Console(width=200)


def _mtime(report: Path | None) -> float | None:
    p = None if report is None else report / "index.html"
    return p.stat().st_mtime_ns if p is not None and p.exists() else None


def eval_command(
    dataset: str | None = typer.Option(None, "--dataset", help="dataset name(s), comma-separated (see `notefeed data list`)"),
    path: Path | None = typer.Option(None, "--path", help="where the dataset is read from; alone, a sequence file (seqfile) or a folder of events.csv (csv)"),
    models: str | None = typer.Option(None, "--models", help="models/methods, comma-separated (stage default when omitted)"),
    stage: str = typer.Option("model", "--stage", help="which stage's evaluation: model, feed, recall, rank, rerank, ..."),
    split: str | None = typer.Option(None, "--split", help="loo (leave-last-out, default), temporal (global time cut) or ratio (per-user random 20%)"),
    k: str | None = typer.Option(None, "--k", help="cut-offs, comma-separated (default 10,20,50)"),
    param: list[str] | None = typer.Option(None, "--param", help="model parameter MODEL.KEY=VALUE (repeatable)"),
    seed: int = typer.Option(0, "--seed", help="random seed for splits, subsampling and models"),
    seeds: str | None = typer.Option(None, "--seeds", help="rank, feed and search stages: seeds to repeat the run over, comma-separated (adds mean and 95%% interval rows)"),
    quick: bool = typer.Option(False, "--quick", help="subsample users (smoke runs, tests)"),
    json_path: Path | None = typer.Option(None, "--json", help="write {stage, rows, meta} JSON here"),
    report: Path | None = typer.Option(None, "--report", help="write index.html and PNG figures into this folder"),
    config: Path | None = typer.Option(None, "--config", help="feed stage: the serving config to evaluate (default config when omitted)"),
    users: int | None = typer.Option(None, "--users", min=1, help="feed stage: test users to sample (all when omitted)"),
    engine: str = typer.Option("local", "--engine", help="feed stage: where the page requests run: local (forked "
                               "workers) or ray (sharded by user, each worker loading the stored model version)"),
    address: str | None = typer.Option(None, "--address", help="with --engine ray: a running cluster (auto, "
                                       "ray://host:10001); default: start Ray on this machine"),
) -> None:
    """Offline evaluation of one funnel stage on one or more datasets."""
    # every stage registers its evaluator when its package is imported (or names its module to
    # EVAL_STAGES there, imported at the first lookup); the simulator's modules register its
    # studies and data with those stages (a stage never imports the simulator)
    import notefeed.ads.evaluate  # noqa: F401
    import notefeed.content  # noqa: F401
    import notefeed.eval.feed  # noqa: F401
    import notefeed.eval.runner  # noqa: F401
    import notefeed.llm  # noqa: F401
    import notefeed.rank  # noqa: F401
    import notefeed.recall  # noqa: F401
    import notefeed.rerank  # noqa: F401
    import notefeed.search  # noqa: F401
    import notefeed.sim.ads_feed  # noqa: F401  (the closed-loop ads loads: ads.load=feed, feed-recall)
    import notefeed.sim.ads_search  # noqa: F401  (ads.load=search-recall)
    import notefeed.sim.ads_serving  # noqa: F401  (ads.load=serving-pctr)
    import notefeed.sim.search_data  # noqa: F401  (the search stage's sim* query sets)
    from notefeed.data.dataset import DataError
    from notefeed.data.loaders import dataset_for_path
    from notefeed.eval.report import write_report
    from notefeed.eval.stages import EVAL_STAGES, run_stage
    from notefeed.eval.timing import machine_info, write_json

    err = Console(stderr=True)
    try:
        if dataset is None and path is None:
            raise ValueError("--dataset: give a dataset name (or --path FILE for your own sequence file)")
        datasets = parse_list(dataset, "dataset") or [dataset_for_path(path)]  # type: ignore[arg-type]
        if path is not None and len(datasets) != 1:
            raise ValueError(f"--path: reads one dataset, but --dataset names {len(datasets)}")
        model_list = parse_list(models, "models")
        ks = parse_ks(k) if k is not None else None
        if stage not in EVAL_STAGES:
            raise KeyError(f"unknown eval stage '{stage}'; known: {', '.join(EVAL_STAGES.names())}")
        options: dict[str, object] = {}
        if split is not None:
            options["split"] = split
        if ks is not None:
            options["k"] = ks
        if param:
            options["params"] = parse_params(param)
        if path is not None:
            options["path"] = str(path)
        if config is not None:
            options["config"] = str(config)
        if seeds is not None:
            options["seeds"] = parse_ks(seeds, "seeds", positive=False)
        if users is not None:
            if users < 1:
                raise ValueError(f"--users: must be >= 1, got {users}")
            options["users"] = users
        if engine != "local" or address is not None:
            options["engine"] = engine
            if address is not None:
                options["address"] = address
        before = _mtime(report)
        rows = run_stage(stage, datasets, model_list, seed, quick, report, **options)
    except (*_ERRORS, DataError) as e:
        err.print(f"[red]error:[/red] {error_text(e)}", highlight=False)
        raise typer.Exit(2) from None

    from notefeed.eval.runner import DEFAULT_KS

    shown_ks = ks if ks is not None else (list(DEFAULT_KS) if stage == "model" else None)
    print_rows(_console(), stage, rows, sorted(set(shown_ks)) if shown_ks else None)
    meta = {
        "machine_info": machine_info(),
        "stage": stage,
        "datasets": datasets,
        **({"path": str(path)} if path is not None else {}),
        "models": model_list,
        "split": split if split is not None else ("loo" if stage == "model" else None),
        "k": shown_ks,
        "seed": seed,
        **({"seeds": parse_ks(seeds, "seeds", positive=False)} if seeds is not None else {}),
        "quick": quick,
        "params": parse_params(param),
    }
    if json_path is not None:
        write_json(json_path, {"stage": stage, "rows": _json_safe(rows), "meta": meta})
        Console().print(f"wrote {json_path}")
    if report is not None:
        if _mtime(report) == before:  # the stage wrote no page: a table-only one
            write_report(report, f"notefeed eval: {stage} stage", rows, {}, meta)
        Console().print(f"wrote {report / 'index.html'}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""
    app.command("eval")(eval_command)
