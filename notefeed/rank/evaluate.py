"""``notefeed eval --stage rank``: AUC / GAUC / logloss per task, CGC vs PLE vs MMoE vs single-task.

Datasets: ``taobao`` (tasks reported under their original names through ``meta["type_map"]``),
``synthetic`` (the in-repo feed log with impressions; stands in for the simulator log) and
``qilin`` (toy sample: a schema check, metrics mostly NaN at 10 rows). Samples are split by time
(last 20% = test); "single" trains one independent single-task model per task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.eval.stages import EVAL_STAGES
from notefeed.rank.base import TASKS
from notefeed.rank.features import FeatureBuilder
from notefeed.rank.finenet import FineConfig
from notefeed.rank.metrics import auc, gauc, logloss
from notefeed.rank.multitask import FineRanker
from notefeed.rank.samples import build_samples
from notefeed.rank.synthetic import synthetic_feed

__all__ = ["evaluate_rank", "evaluate_dataset"]

DEFAULT_DATASETS = ["taobao", "synthetic", "qilin"]
DEFAULT_MODELS = ["cgc", "ple", "mmoe", "single"]


def _load(name: str, seed: int, quick: bool) -> Dataset:
    if name in ("synthetic", "sim"):
        return synthetic_feed(n_users=150 if quick else 1000, n_items=600 if quick else 4000,
                              requests_per_user=6 if quick else 12, seed=seed)
    from notefeed.data.loaders import load_dataset

    ds = load_dataset(name)
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
            r = FineRanker(FineConfig(tasks=tuple(tasks), arch=m, epochs=epochs, batch_size=bs, seed=seed))
            preds = r.fit(ds, train, fb).predict(ft)
        row: dict = {"dataset": ds.name, "model": m, "samples": samples.source, "n_train": len(train),
                     "n_test": len(test)}
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


@EVAL_STAGES.register("rank")
def evaluate_rank(datasets: list[str], models: list[str] | None, seed: int, quick: bool,
                  report_dir: Path | None) -> list[dict]:
    rows: list[dict] = []
    for name in datasets or DEFAULT_DATASETS:
        try:
            ds = _load(name, seed, quick)
        except Exception as e:  # a missing dataset should not hide the others
            rows.append({"dataset": name, "error": f"{type(e).__name__}: {e}"})
            continue
        try:
            rows.extend(evaluate_dataset(ds, models or DEFAULT_MODELS, seed, quick))
        except Exception as e:
            rows.append({"dataset": name, "error": f"{type(e).__name__}: {e}"})
    if report_dir is not None:
        import json

        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "rank_eval.json").write_text(json.dumps(rows, indent=2, default=float))
    return rows
