"""``notefeed eval --stage rank``: AUC / GAUC / logloss per task, CGC vs PLE vs MMoE vs single-task.

Datasets: ``taobao`` (tasks reported under their original names through ``meta["type_map"]``),
``synthetic`` (the in-repo feed log with impressions; stands in for the simulator log) and
``qilin`` (toy sample: a schema check, metrics mostly NaN at 10 rows), and the simulator's
``sim-tiny`` / ``sim-demo``. Samples are split by time (last 20% = test); "single" trains one
independent single-task model per task. A model name with ``-plain`` (``cgc-plain``) trains with
summed task gradients (``aux_grad=1``), the behaviour before the seesaw guard, for comparison.

With several seeds (``seeds``) every (dataset, seed) is one run (the seed draws the Taobao
negatives, the synthetic log and the model init) and summary rows follow: per model and task the
mean AUC with a 95% t-interval over seeds and, for the main task of every multi-task model, the
paired difference to single-task (same seed, same samples) with its interval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.eval.metrics import mean_ci
from notefeed.eval.stages import EVAL_STAGES
from notefeed.rank.base import TASKS
from notefeed.rank.features import FeatureBuilder
from notefeed.rank.finenet import FineConfig
from notefeed.rank.metrics import auc, gauc, logloss
from notefeed.rank.multitask import FineRanker
from notefeed.rank.samples import build_samples
from notefeed.rank.synthetic import synthetic_feed

__all__ = ["evaluate_rank", "evaluate_dataset", "summarize", "mean_ci"]

DEFAULT_DATASETS = ["taobao", "synthetic", "qilin"]
DEFAULT_MODELS = ["cgc", "ple", "mmoe", "single"]


def _load(name: str, seed: int, quick: bool) -> Dataset:
    if name in ("synthetic", "sim"):
        return synthetic_feed(n_users=150 if quick else 1000, n_items=600 if quick else 4000,
                              requests_per_user=6 if quick else 12, seed=seed)
    from notefeed.eval.datasets import load_eval_dataset

    ds = load_eval_dataset(name, seed, quick=quick)
    if quick and ds.events["user"].nunique() > 200:
        ds = ds.subsample_users(200, seed)
    return ds


def evaluate_dataset(ds: Dataset, models: list[str], seed: int = 0, quick: bool = False) -> list[dict]:
    samples = build_samples(ds, seed=seed)
    tasks = [t for t, y in samples.labels.items() if np.isfinite(y).any()]
    if not tasks:
        return [{"dataset": ds.name, "model": m, "note": "no labelled tasks"} for m in models]
    train, test = samples.split_time(0.2)
    fb = FeatureBuilder(ds)
    ft = fb.features(test.users, test.items, test.ts, test.position, test.surface)
    tm = {str(k): str(v) for k, v in dict(ds.meta.get("type_map", {}) or {}).items()}
    # notefeed type -> original name; accept the map in either direction
    names = tm if set(tm) <= set(TASKS) else {v: k for k, v in tm.items()}
    epochs = 2 if quick else 4
    bs = 512 if quick or len(train) < 50_000 else 2048
    rows = []
    for m in models:
        preds: dict[str, np.ndarray] = {}
        if m == "single":
            for t in tasks:
                r = FineRanker(FineConfig(tasks=(t,), arch="single", epochs=epochs, batch_size=bs, seed=seed))
                preds[t] = r.fit(ds, train, fb).predict(ft)[t]
        else:
            arch, _, variant = m.partition("-")
            extra = {"aux_grad": 1.0} if variant == "plain" else {}
            if variant not in ("", "plain"):
                raise ValueError(f"rank eval: unknown model '{m}' (an arch, optionally with -plain)")
            r = FineRanker(FineConfig(tasks=tuple(tasks), arch=arch, epochs=epochs, batch_size=bs, seed=seed, **extra))
            preds = r.fit(ds, train, fb).predict(ft)
        row: dict = {"dataset": ds.name, "model": m, "seed": seed, "samples": samples.source,
                     "n_train": len(train), "n_test": len(test), "main_task": names.get(tasks[0], tasks[0])}
        aucs = []
        for t in tasks:
            y, p = test.labels[t], preds[t]
            ok = np.isfinite(y)
            label = names.get(t, t)
            if t == "dwell":
                row["dwell_rmse_log1p"] = float(np.sqrt(np.mean((y[ok] - p[ok]) ** 2))) if ok.any() else float("nan")
                continue
            a = auc(y[ok], p[ok])
            row[f"{label}_auc"] = a
            row[f"{label}_gauc"] = gauc(y[ok], p[ok], test.users[ok])
            row[f"{label}_logloss"] = logloss(y[ok], p[ok]) if ok.any() else float("nan")
            if np.isfinite(a):
                aucs.append(a)
        row["mean_auc"] = float(np.mean(aucs)) if aucs else float("nan")
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per (dataset, model): mean and 95% interval over seeds of every ``*_auc``; for multi-task
    models the paired main-task AUC difference to ``single`` (same dataset and seed)."""
    runs = [r for r in rows if "error" not in r and "note" not in r]
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in runs):
        by_model: dict[str, dict[int, dict]] = {}
        for r in runs:
            if r["dataset"] == ds:
                by_model.setdefault(r["model"], {})[r["seed"]] = r
        single = by_model.get("single", {})
        for m, per_seed in by_model.items():
            seeds = sorted(per_seed)
            row: dict = {"dataset": ds, "model": m, "summary": f"mean ± 95% t-interval over seeds {seeds}",
                         "n_seeds": len(seeds)}
            keys = [k for k in per_seed[seeds[0]] if k.endswith("_auc") or k == "dwell_rmse_log1p"]
            for k in keys:
                row[k], row[f"{k}_ci95"] = mean_ci([per_seed[s].get(k, float("nan")) for s in seeds])
            main = f"{per_seed[seeds[0]]['main_task']}_auc"
            paired = [s for s in seeds if s in single]
            if m != "single" and paired and main in per_seed[seeds[0]]:
                d = [per_seed[s][main] - single[s][main] for s in paired]
                mean, half = mean_ci(d)
                row[f"{main}_minus_single"], row[f"{main}_minus_single_ci95"] = mean, half
                row[f"{main}_minus_single_per_seed"] = d
                others = [k for k in keys if k not in (main, "mean_auc", "dwell_rmse_log1p")]
                wins = sum(per_seed[s][k] > single[s][k] for s in paired for k in others if k in single[s])
                row["sparse_task_wins_vs_single"] = f"{wins}/{len(paired) * len(others)}"
            out.append(row)
    return out


@EVAL_STAGES.register("rank")
def evaluate_rank(datasets: list[str], models: list[str] | None, seed: int, quick: bool,
                  report_dir: Path | None, seeds: list[int] | None = None) -> list[dict]:
    rows: list[dict] = []
    for name in datasets or DEFAULT_DATASETS:
        for sd in seeds or [seed]:
            try:
                ds = _load(name, sd, quick)
            except Exception as e:  # a missing dataset should not hide the others
                rows.append({"dataset": name, "seed": sd, "error": f"{type(e).__name__}: {e}"})
                break
            try:
                rows.extend(evaluate_dataset(ds, models or DEFAULT_MODELS, sd, quick))
            except Exception as e:
                rows.append({"dataset": name, "seed": sd, "error": f"{type(e).__name__}: {e}"})
    if seeds is not None and len(seeds) > 1:
        rows.extend(summarize(rows))
    if report_dir is not None:
        import json

        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "rank_eval.json").write_text(json.dumps(rows, indent=2, default=float))
    return rows
