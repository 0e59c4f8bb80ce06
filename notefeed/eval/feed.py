"""``notefeed eval --stage feed``: the page ``serve`` returns, scored on real logs.

Protocol (the same split and users for every row): per-user leave-last-out, the serving
system fitted on the training split only, exactly as ``notefeed train`` fits it (same config,
same code: :func:`notefeed.models.train.train_components`), then an :class:`Engine` on the
training split answers ``feed(user, n)`` for every test user (its clock set just after the
training log ends). Baselines (pop / ItemKNN / ALS / BPR) rank all items minus the user's
training items, as the ``model`` stage does. The pipeline's seen filter removes the same
training items, so both sides rank the same pool.

Per-stage attribution comes from the same requests (``probe=True``): HR@10 of the merged
recall order (best rank-normalised channel score), of the coarse keep, of the fused order
(after fine ranking) and of the re-ranked page, so it is visible which stage adds or loses
signal. ``--users N`` subsamples test users; every HR/NDCG comes with a 95% interval
(normal approximation over users).

``--seeds 0,1,2`` repeats the whole run per seed: the seed draws the user sample, the
baselines, the learned rankers and every recall channel with a ``seed`` parameter the config
leaves unset (SASRec's and ALS's initialisation: :func:`reseeded`). Seed 0 is the served
config itself. Summary rows then give each model's mean and 95% t-interval over seeds, and for
the pipeline the per-seed ratio to that seed's best baseline, its mean and interval.

On a batch engine (``--engine ray``) the page requests are sharded by user: the fitted system
is written to a model store (a temporary workspace holding the training split and one model
version, as ``notefeed train`` writes it), and each task's worker loads that version once,
as ``serve`` does, and asks it for its users' pages. Same pages as in one process (tested).
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing as mp
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from notefeed.data.dataset import Dataset
from notefeed.eval import metrics as M
from notefeed.eval.runner import DEFAULT_KS, DEFAULT_MODELS, check_ks, check_models, evaluate_lists
from notefeed.eval.splits import Split, has_seen_target, make_split, seen_items
from notefeed.eval.stages import EVAL_STAGES
from notefeed.threads import default_workers, forked_imap, one_thread, one_thread_for_process

__all__ = ["feed_stage", "evaluate_feed", "reseeded", "summarize_seeds", "run_feed", "run_feed_sharded", "subsample_split", "STAGE_LABELS"]

#: snapshot name (pipeline step) -> the stage it closes, in funnel order
STAGE_LABELS = {"recall": "recall", "coarse/keep": "coarse", "rerank/window": "fine"}


def subsample_split(split: Split, n_users: int | None, seed: int) -> Split:
    """``split`` with at most ``n_users`` random test users (same train)."""
    if n_users is None or n_users >= len(split.test_users):
        return split
    if n_users < 1:
        raise ValueError(f"--users: must be >= 1, got {n_users}")
    rows = np.sort(np.random.default_rng(seed).choice(len(split.test_users), n_users, replace=False))
    return Split(split.kind, split.train, split.test_users[rows], split.test_items[rows],
                 params={**split.params, "sampled_users": int(n_users)})


def seen_targets(split: Split) -> tuple[Split, int]:
    """``split`` without the test users whose held-out notes have no positive in its training
    log, and how many those were. Offline the catalogue holds only the notes that occur in
    the log, so a note with no positive left in training is always a held-out target: no
    collaborative model can rank it, and a pipeline could find it by its empty history, which
    a live catalogue full of new notes would not allow."""
    keep = has_seen_target(split.test_items, seen_items(split.train))
    dropped = int((~keep).sum())
    if not dropped:
        return split, 0
    rows = np.flatnonzero(keep)
    return (Split(split.kind, split.train, split.test_users[rows], split.test_items[rows],
                  params={**split.params, "unseen_targets_dropped": dropped}), dropped)


def _interval(hits: np.ndarray) -> float:
    """Half-width of the normal-approximation 95% interval of a per-user mean."""
    n = len(hits)
    return float(1.96 * hits.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def _pad(lists: Sequence[np.ndarray], k: int) -> np.ndarray:
    out = np.full((len(lists), k), -1, np.int64)
    for r, li in enumerate(lists):
        li = np.asarray(li, np.int64)[:k]
        out[r, : len(li)] = li
    return out


def _with_ci(row: dict[str, Any], recs: np.ndarray, truth: sp.csr_matrix, ks: Sequence[int]) -> None:
    h = M.hit_matrix(recs, truth)
    n_true = np.diff(truth.indptr)
    disc = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    for k in ks:
        row[f"hit@{k}_ci95"] = _interval(h[:, :k].any(1).astype(float))
        idcg = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_true, k)]
        row[f"ndcg@{k}_ci95"] = _interval((h[:, :k] * disc[:k]).sum(1) / np.where(idcg > 0, idcg, 1.0))


def _feed_chunk(engine: Any, ids: np.ndarray, users: np.ndarray, n: int) -> dict[str, Any]:
    """Pages, stage orders, latencies, per-step ms and error count for ``users``."""
    out: dict[str, Any] = {"pages": [], "stages": {}, "lat": [], "step_ms": {}, "errors": 0}
    for u in users:
        _, res = engine.feed(str(ids[int(u)]), n, probe=True)
        out["pages"].append(res.items)
        out["lat"].append(res.total_ms)
        out["errors"] += bool(res.errors)
        for st in res.stages:
            out["step_ms"][st.name] = out["step_ms"].get(st.name, 0.0) + st.ms
        for name, order in res.snapshots:
            out["stages"].setdefault(name, []).append(order)
    return out


_FORKED: tuple[Any, np.ndarray, int] | None = None  # (engine, ids, n), inherited by forked workers


def _forked_chunk(users: np.ndarray) -> dict[str, Any]:
    assert _FORKED is not None
    engine, ids, n = _FORKED
    return _feed_chunk(engine, ids, users, n)


#: (key, engine, its temp dir, user ids) of the stored version a batch worker serves from
_STORED: tuple[tuple[str, str], Any, Any, np.ndarray] | None = None


def _drop_stored() -> None:
    global _STORED
    if _STORED is not None:
        _, engine, tmp, _ = _STORED
        _STORED = None
        engine.close()
        tmp.cleanup()


def _stored_chunk(shared: dict[str, Any], users: np.ndarray) -> dict[str, Any]:
    """A batch task: :func:`_feed_chunk` on an engine serving ``shared``'s stored version,
    loaded once per worker process (its own state folder, the store's fitted models)."""
    global _STORED
    from notefeed.data.store import Workspace
    from notefeed.models.store import ModelStore
    from notefeed.serve.config import ServeConfig
    from notefeed.serve.engine import Engine

    key = (str(shared["workspace"]), str(shared["version"]))
    if _STORED is None or _STORED[0] != key:
        _drop_stored()
        ws = Path(key[0])
        with Workspace.open(ws, create=False, read_only=True) as w:  # workers read it at once
            ds = w.load_dataset()
        fitted = ModelStore(ws).load(key[1])
        tmp = tempfile.TemporaryDirectory(prefix="notefeed-feed-shard-")
        engine = Engine(ds, ServeConfig.model_validate(shared["config"]).offline(), Path(tmp.name), fitted=fitted,
                        model_version=key[1])
        engine.at_end_of_log()  # the same frozen moment as the one-process run
        _STORED = (key, engine, tmp, ds.users["user_id"].astype(str).to_numpy())
    _, engine, _, ids = _STORED
    with one_thread():  # request-sized work (notefeed.threads); scoped: the task may run in the driver
        return _feed_chunk(engine, ids, users, int(shared["n"]))


def run_feed(engine: Any, ds: Dataset, users: np.ndarray, n: int, progress: bool = True, workers: int = 1,
             chunk: int = 256) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """Ask ``engine`` for the page of every user; (pages (n_users, n), stage orders, timing).

    ``workers > 1`` forks that many processes after fitting, each asking the same engine (a
    copy-on-write image of it) for its share of the users: the same code path and the same
    answers as one process, in about ``1 / workers`` of the wall time. Latencies are per
    request either way (with ``workers`` requests running at once on as many cores).
    """
    global _FORKED
    ids = ds.users["user_id"].astype(str).to_numpy()
    users = np.asarray(users, np.int64)
    chunks = [users[i : i + chunk] for i in range(0, len(users), chunk)]
    bar = tqdm(total=len(users), desc=f"{ds.name}: feed", disable=None if progress else True, leave=False)
    parts: list[dict[str, Any]] = []
    workers = max(1, min(workers, len(chunks)))
    _FORKED = (engine, ids, n)
    try:
        for part in forked_imap(_forked_chunk, chunks, workers):
            parts.append(part)
            bar.update(len(part["pages"]))
    finally:
        _FORKED = None
    bar.close()
    return _merge_parts(parts, len(users), n, workers)


def run_feed_sharded(batch: Any, workspace: Path, version: str, config: Any, ds: Dataset, users: np.ndarray,
                     n: int, progress: bool = True, chunk: int = 256
                     ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """:func:`run_feed` on a batch engine (:mod:`notefeed.batch`): chunks of users as tasks,
    each worker serving ``version`` of the model store in ``workspace`` (which holds ``ds``,
    so user and note rows are the driver's). Same return value."""
    users = np.asarray(users, np.int64)
    chunks = [users[i : i + chunk] for i in range(0, len(users), chunk)]
    shared = {"workspace": str(workspace), "version": version, "config": config.model_dump(mode="json"), "n": n}
    try:
        parts = batch.map(_stored_chunk, chunks, shared, desc=f"{ds.name}: feed" if progress else None)
    finally:
        _drop_stored()  # the local engine ran the tasks in this process
    return _merge_parts(parts, len(users), n, batch.workers)


def _merge_parts(parts: list[dict[str, Any]], n_users: int, n: int, workers: int
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    pages = [p for part in parts for p in part["pages"]]
    lat = [x for part in parts for x in part["lat"]]
    errors = sum(part["errors"] for part in parts)
    step_ms: dict[str, float] = {}
    stages: dict[str, list[np.ndarray]] = {}
    for part in parts:
        for k, v in part["step_ms"].items():
            step_ms[k] = step_ms.get(k, 0.0) + v
        for k, v in part["stages"].items():
            stages.setdefault(k, []).extend(v)
    out = {name: _pad(v, max(n, max(len(o) for o in v))) for name, v in stages.items() if len(v) == n_users}
    timing = {"feed_p50_ms": float(np.percentile(lat, 50)), "feed_p99_ms": float(np.percentile(lat, 99)),
              "requests_with_errors": float(errors), "feed_workers": float(workers),
              **{f"ms.{k}": v / max(1, n_users) for k, v in step_ms.items()}}
    return _pad(pages, n), out, timing


def evaluate_feed(ds: Dataset, config: Any = None, models: Sequence[str] = DEFAULT_MODELS,
                  ks: Sequence[int] = DEFAULT_KS, seed: int = 0, n_users: int | None = None,
                  progress: bool = True, workers: int | None = None, batch_engine: Any = None,
                  work_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Baselines and the served funnel on one leave-last-out split of ``ds``; one row each.

    ``config`` is a :class:`~notefeed.serve.config.ServeConfig` (the default config when None);
    ``seed`` seeds the user sample, the baselines and the learned rankers (the recall channels'
    seeds are config parameters: the served system's own);
    ``workers``: processes asking for the pages (:func:`run_feed`; default :func:`default_workers`).
    ``batch_engine``: ask for the pages on it instead (:func:`run_feed_sharded`), through a
    model store in a temporary folder under ``work_dir`` (on a cluster: a path every node sees).
    """
    from notefeed.models.train import train_components
    from notefeed.serve.config import ServeConfig
    from notefeed.serve.engine import Engine

    t_all = time.perf_counter()
    cfg = config if config is not None else ServeConfig()
    ks = check_ks(ks)
    split, unseen = seen_targets(make_split(ds, "loo"))
    split = subsample_split(split, n_users, seed)
    if len(split.test_users) == 0:
        raise ValueError(f"{ds.name}: the leave-last-out split has no test users whose held-out note occurs in training")
    train = split.train.interactions()
    # what serving reads of the training events: its data window (none by default); the
    # baselines keep every training event
    served = split.train.windowed(cfg.data.window_days, cfg.data.keep_per_user)
    base = {"dataset": ds.name, "users": ds.n_users, "items": ds.n_items, "test_users": int(len(split.test_users)),
            "unseen_targets_dropped": unseen}
    workers = default_workers() if workers is None else workers
    names = check_models(list(models)) if models else []
    # the baselines run in a forked process while the funnel trains here (its heaviest fit,
    # sequence/sasrec, uses one core): the same fits and lists, ~30 s less wall time on Beauty
    with _baselines(names, split, train, max(ks), seed, background=workers > 1) as baseline_results:
        t0 = time.perf_counter()
        fitted, report = train_components(cfg, served, progress=progress, seed=seed,  # channels: config
                                          workers=workers)
        fit_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    for name, took, recs in baseline_results:
        row = {"model": name, "fit_s": took}
        row.update(evaluate_lists(recs, split.test_items, ks, train, split.train))
        _with_ci(row, recs, split.test_items, ks)
        rows.append({**base, **row})
    with tempfile.TemporaryDirectory(prefix="notefeed-feed-eval-", dir=work_dir) as tmp:
        if batch_engine is not None:
            t0 = time.perf_counter()
            ws, version = _store_fitted(Path(tmp) / "workspace", served, cfg, fitted)
            pages, stage_orders, timing = run_feed_sharded(batch_engine, ws, version, cfg, served,
                                                           split.test_users, max(ks), progress)
            feed_s = time.perf_counter() - t0
        else:
            engine = Engine(served, cfg.offline(), Path(tmp), fitted=fitted)
            try:
                engine.at_end_of_log()  # offline = online: clock after the log, its last hour warmed
                t0 = time.perf_counter()
                pages, stage_orders, timing = run_feed(engine, served, split.test_users, max(ks), progress,
                                                       workers)
                feed_s = time.perf_counter() - t0
            finally:
                engine.close()
    row = {**base, "model": "pipeline", "fit_s": fit_s, "recommend_s": feed_s, **timing,
           "train_events": len(split.train.events), "served_events": len(served.events)}
    row.update(evaluate_lists(pages, split.test_items, ks, train, split.train))
    _with_ci(row, pages, split.test_items, ks)
    k10 = min(ks)
    hm = M.hit_matrix(pages, split.test_items)
    h = hm[:, :k10].any(1)
    # per test user (in test_users order), the page position of the held-out note, -1 when it
    # is not on the page: two configs' runs on the same split pair up user by user
    # (docs/results/feed/bag/compare.py); the hash says whether the users are the same
    row["page_rank"] = np.where(hm.any(1), hm.argmax(1), -1).tolist()
    row["test_users_sha1"] = hashlib.sha1(np.ascontiguousarray(split.test_users, np.int64).tobytes()).hexdigest()
    for name, recs in stage_orders.items():
        label = STAGE_LABELS.get(name, name)
        row[f"stage.{label}.hit@{k10}"] = M.hit_rate_at_k(recs, split.test_items, k10)
        row[f"stage.{label}.small_creator@{k10}"] = M.small_creator_share(recs[:, :k10],
                                                                         split.train.item_is_small_creator)
        if name == "recall":  # is the answer among the candidates at all
            row["stage.recall.hit@all"] = float(M.hit_matrix(recs, split.test_items).any(1).mean())
            row["stage.recall.candidates"] = float((recs >= 0).sum(1).mean())
    row[f"stage.page.hit@{k10}"] = float(h.mean())
    # what the page logic (diversity, author rules, small-creator share, cold-start slots)
    # costs in accuracy against the fused order it starts from: the stated trade
    if f"stage.fine.hit@{k10}" in row:
        row[f"rerank_cost.hit@{k10}"] = row[f"stage.fine.hit@{k10}"] - row[f"stage.page.hit@{k10}"]
    row["train_report"] = report
    best = max((r for r in rows), key=lambda r: float(r.get(f"hit@{k10}", 0.0)), default=None)
    if best is not None:
        for k in ks:
            for m in ("hit", "ndcg"):
                b = float(best.get(f"{m}@{k}", float("nan")))
                row[f"{m}@{k}_vs_best"] = float(row[f"{m}@{k}"]) / b if b > 0 else float("nan")
        row["best_baseline"] = best["model"]
    # the whole evaluation of this dataset: split, baselines, fitting, pages, scoring
    row["eval_s"] = time.perf_counter() - t_all
    rows.append(row)
    return rows


def reseeded(cfg: Any, seed: int) -> Any:
    """``cfg`` with ``seed`` as the seed of every recall channel whose factory takes one and
    whose params leave it unset. Seed 0, every channel's default, returns ``cfg`` itself."""
    import inspect

    from notefeed.recall.base import CHANNELS

    if seed == 0:
        return cfg
    channels = []
    for ch in cfg.recall.channels:
        takes = False
        if ch.name in CHANNELS and "seed" not in ch.params:
            try:  # a dataclass's signature is its __init__'s: fields with init=False are not in it
                takes = "seed" in inspect.signature(CHANNELS.get(ch.name)).parameters
            except (TypeError, ValueError):
                takes = False
        channels.append(ch.model_copy(update={"params": {**ch.params, "seed": int(seed)}}) if takes else ch)
    return cfg.model_copy(update={"recall": cfg.recall.model_copy(update={"channels": channels})})


def summarize_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (dataset, model) over the seeds' rows: mean and 95% t-interval of HR/NDCG (and the
    stage attribution); for the pipeline also of its per-seed ratio to that seed's best
    baseline (``hit@10_vs_best``), and the ratio of its mean to the best baseline's mean."""
    from notefeed.eval.metrics import mean_ci

    runs = [r for r in rows if "seed" in r and "summary" not in r]
    out: list[dict[str, Any]] = []
    for ds in dict.fromkeys(r["dataset"] for r in runs):
        by_model: dict[str, dict[int, dict[str, Any]]] = {}
        for r in runs:
            if r["dataset"] == ds:
                by_model.setdefault(r["model"], {})[int(r["seed"])] = r
        means: dict[str, dict[str, float]] = {}
        for m, per_seed in by_model.items():
            seeds = sorted(per_seed)
            first = per_seed[seeds[0]]
            row: dict[str, Any] = {"dataset": ds, "model": m, "test_users": first.get("test_users"),
                                   "summary": f"mean and 95% t-interval over seeds {seeds}",
                                   "seeds": seeds, "n_seeds": len(seeds)}
            keys = [k for k, v in first.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and (k.split("@")[0] in ("hit", "ndcg", "recall", "mrr", "coverage", "novelty")
                         or k.startswith("stage.") or k.startswith("rerank_cost.")) and not k.endswith("_ci95")]
            for k in keys:
                vals = [float(per_seed[s].get(k, float("nan"))) for s in seeds]
                row[k], row[f"{k}_ci95_seeds"] = mean_ci(vals)
                if k.endswith("_vs_best") or k in ("hit@10", "ndcg@10"):
                    row[f"{k}_per_seed"] = vals
            if m == "pipeline":
                row["best_baseline_per_seed"] = [per_seed[s].get("best_baseline") for s in seeds]
            means[m] = row
            out.append(row)
        pipe = means.get("pipeline")
        if pipe is not None:
            for metric in [k for k in pipe if k.split("@")[0] in ("hit", "ndcg") and "_" not in k]:
                base = [(r[metric], m) for m, r in means.items() if m != "pipeline" and metric in r]
                if base:
                    b, name = max(base)
                    pipe[f"{metric}_vs_best_mean"] = float(pipe[metric]) / b if b > 0 else float("nan")
                    pipe[f"{metric}_best_mean_baseline"] = name
    return out


def _store_fitted(ws: Path, ds: Dataset, cfg: Any, fitted: dict[str, Any]) -> tuple[Path, str]:
    """Write ``ds`` and the fitted components to a new workspace ``ws`` as ``notefeed train``
    does; ``(ws, version)``. Checks that the workspace reads back with the same user and
    note rows (the pages the workers return are rows)."""
    from notefeed.data.store import Workspace
    from notefeed.models.store import ModelStore, data_snapshot
    from notefeed.serve.cli import load_workspace_dataset

    with Workspace.open(ws) as w:
        w.save_dataset(ds)
    back = load_workspace_dataset(ws)
    for what, a, b in (("users", ds.users["user_id"], back.users["user_id"]),
                       ("notes", ds.notes["note_id"], back.notes["note_id"])):
        if len(a) != len(b) or not (a.astype(str).to_numpy() == b.astype(str).to_numpy()).all():
            raise RuntimeError(f"feed eval: the stored workspace reads its {what} back in another order")
    version = ModelStore(ws).save(fitted, {"config": cfg.model_dump(mode="json"), "data": data_snapshot(ds)})
    return ws, version


#: (split, train matrix, k, seed) of the baselines a forked process fits (:func:`_baselines`)
_BASE: tuple[Split, sp.csr_matrix, int, int] | None = None


def _timed_baseline(name: str) -> tuple[str, float, np.ndarray]:
    assert _BASE is not None
    split, train, k, seed = _BASE
    t0 = time.perf_counter()
    recs, _ = _baseline_recs(name, split, train, k, seed)
    return name, time.perf_counter() - t0, np.asarray(recs)


@contextlib.contextmanager
def _baselines(names: Sequence[str], split: Split, train: sp.csr_matrix, k: int, seed: int,
               background: bool) -> Iterator[list[tuple[str, float, np.ndarray]]]:
    """Fits and lists of the baselines ``names``: ``[(name, fit seconds, lists)]``, filled when
    the block ends. ``background``: in one forked process (one thread) while the block runs;
    otherwise here, before it."""
    global _BASE
    out: list[tuple[str, float, np.ndarray]] = []
    _BASE = (split, train, k, seed)
    try:
        if not names or not background or "fork" not in mp.get_all_start_methods():
            out.extend(_timed_baseline(n) for n in names)
            yield out
            return
        with mp.get_context("fork").Pool(1, initializer=one_thread_for_process) as pool:
            pending = pool.map_async(_timed_baseline, list(names))  # forked now: _BASE is inherited
            yield out
            out.extend(pending.get())
    finally:
        _BASE = None


def _baseline_recs(name: str, split: Split, train: sp.csr_matrix, k: int, seed: int) -> tuple[np.ndarray, Any]:
    from notefeed.eval.baselines import MODELS

    model = MODELS.create(name, seed=seed)
    if hasattr(model, "fit_dataset"):
        model.fit_dataset(split.train)
    else:
        model.fit(train)
    return model.recommend(split.test_users, k, filter_seen=True)


@EVAL_STAGES.register("feed")
def feed_stage(
    datasets: list[str],
    models: list[str] | None,
    seed: int,
    quick: bool,
    report_dir: Path | None,
    k: Sequence[int] = DEFAULT_KS,
    config: str | None = None,
    users: int | None = None,
    path: str | None = None,
    engine: str = "local",
    address: str | None = None,
    seeds: Sequence[int] | None = None,
) -> list[dict]:
    """``notefeed eval --stage feed``: baselines and the served page side by side.

    ``config``: a serving config file (the default config when omitted); ``users``: test
    users to sample (all when omitted; ``--quick`` samples 300); ``path``: where the dataset
    is read from; ``engine``/``address``: shard the page requests by user on a batch engine
    (``ray``; ``local`` runs them here, in forked workers). ``seeds``: repeat per seed
    (:func:`reseeded`) and add :func:`summarize_seeds` rows.
    """
    from notefeed.batch.cli import engine_or_fail
    from notefeed.eval.datasets import load_eval_dataset
    from notefeed.serve.config import ServeConfig, load_config

    def fail(msg: str) -> None:
        raise ValueError(msg)

    cfg = load_config(config) if config is not None else ServeConfig()
    # local: forked workers here (run_feed), not a batch engine
    batch = engine_or_fail(engine, address, fail) if engine != "local" or address else None
    rows: list[dict] = []
    try:
        for dname in datasets:
            for sd in list(seeds) if seeds else [seed]:
                ds = load_eval_dataset(dname, sd, path, quick=quick)
                n = users if users is not None else (300 if quick else None)
                got = evaluate_feed(ds, reseeded(cfg, sd), models if models is not None else DEFAULT_MODELS,
                                    k, sd, n, progress=True, batch_engine=batch)
                rows.extend({**r, "seed": sd} for r in got)
    finally:
        if batch is not None:
            batch.close()
    if seeds is not None and len(seeds) > 1:
        rows.extend(summarize_seeds(rows))
    return rows
