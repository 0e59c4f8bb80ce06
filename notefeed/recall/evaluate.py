"""``notefeed eval --stage recall``: Recall@{100,500,1000} and coverage per channel and merged.

Protocol: leave-last-out. Each user's last new positive note is the target; training keeps
the user's events before it. Per channel we retrieve 1000 candidates; the merged rows reuse
those lists and merge them at the same total K, with

- ``merged-even``: every channel's list cut at K, merged by the served merge
  (:func:`~notefeed.recall.merge.merge_lists`) and ranked by its ``recall`` score (each
  list's rank-normalised score: equal turns for lists of equal length), no tuning;
- ``merged-tuned``: quotas per K chosen greedily (:func:`tune_quotas`) to cover the most
  targets of a *validation* split (the second-to-last positive, models refit without it),
  never the test targets; ranked the same way, topped up to K when channels overlap.

``non-personalized/popular`` is the ``pop`` baseline. Datasets: real names from
:func:`notefeed.data.loaders.load_dataset` and ``sim`` (the simulator's demo community).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.eval.stages import EVAL_STAGES
from notefeed.recall.base import Candidates, UserContext
from notefeed.recall.merge import RecallStage, merge_candidates

__all__ = ["leave_last_out", "evaluate_recall", "tune_quotas", "EVAL_CHANNELS", "KS"]

KS = (100, 500, 1000)
EVAL_CHANNELS: dict[str, dict[str, object]] = {
    "item-to-item/swing": {},
    "item-to-item/itemcf": {},
    "embedding/two-tower": {"epochs": 4},
    "explore/es-noise": {},
    "explore/multi-interest": {},
    "tag/interest": {},
    "user-to-user/default": {},
    "social/follow": {},
    "fresh/pool": {},
    "non-personalized/popular": {},
}


def leave_last_out(ds: Dataset) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Split: (train dataset, test users (n,), target items (n,)).

    A user's target is the note of their last *first-time* positive (repeat actions on a note
    already in the history are not a retrieval target); users with < 2 distinct positives are
    not tested. Train drops the user's events at or after the target's time.
    """
    pos = ds.select_events()
    first = pos.sort_values("ts", kind="stable").drop_duplicates(["user", "item"], keep="first")
    n_pos = first.groupby("user").size()
    last = first.groupby("user").tail(1)
    last = last[last["user"].map(n_pos) >= 2]
    cut = pd.Series(np.iinfo(np.int64).max, index=pd.RangeIndex(ds.n_users), dtype=np.int64)
    cut.loc[last["user"].to_numpy()] = last["ts"].to_numpy()
    ev = ds.events
    keep = ev["ts"].to_numpy() < cut.to_numpy()[ev["user"].to_numpy()]
    return ds.with_events(ev[keep], ds.name), last["user"].to_numpy(np.int64), last["item"].to_numpy(np.int64)


def _histories(ds: Dataset, users: np.ndarray) -> list[np.ndarray]:
    pos = ds.select_events()
    pos = pos[pos["user"].isin(users)].sort_values(["user", "ts"], kind="stable")
    groups = {int(u): g["item"].to_numpy(np.int64) for u, g in pos.groupby("user")}
    return [groups.get(int(u), np.empty(0, np.int64)) for u in users]


def _run(stage: RecallStage, ds: Dataset, users: np.ndarray, k: int) -> dict[str, list[Candidates]]:
    hists = _histories(ds, users)
    out: dict[str, list[Candidates]] = {n: [] for n in stage.channels}
    for u, h in zip(users, hists, strict=True):
        ctx = UserContext(str(ds.users["user_id"].iat[int(u)]), int(u), history=h, ts=int(ds.events["ts"].max()))
        lists, _ = stage.run_channels(ctx, cold=False)
        for c in lists:
            out[c.channel].append(Candidates(c.channel, c.items[:k], c.scores[:k], c.error))
    return out


def _metrics(lists: list[np.ndarray], targets: np.ndarray, n_items: int) -> dict[str, float]:
    row: dict[str, float] = {}
    for k in KS:
        row[f"recall@{k}"] = float(np.mean([t in li[:k] for li, t in zip(lists, targets, strict=True)]))
    allk = np.concatenate([li[: KS[-1]] for li in lists]) if lists else np.empty(0)
    row[f"coverage@{KS[-1]}"] = float(np.unique(allk).size / max(n_items, 1))
    row["mean_len"] = float(np.mean([len(li) for li in lists])) if lists else 0.0
    return row


def tune_quotas(per: dict[str, list[Candidates]], targets: np.ndarray, k: int, steps: int = 20) -> dict[str, int]:
    """Greedy quotas for total ``k`` from validation lists, in ``steps`` chunks of ``k/steps`` slots.

    Each round gives the next 1, 2, 4... chunks to the channel whose slots would cover the most
    validation targets not yet covered, per chunk (the best rate over those look-aheads).
    """
    names = list(per)
    rank = np.full((len(names), targets.size), np.inf)
    for c, n in enumerate(names):
        for u, (cand, t) in enumerate(zip(per[n], targets, strict=True)):
            pos = np.flatnonzero(cand.items == t)
            if pos.size:
                rank[c, u] = pos[0]
    q = np.zeros(len(names))
    chunk = max(1, k // steps)
    left = steps
    while left > 0:
        covered = (rank < q[:, None]).any(axis=0)
        # look ahead 1, 2, 4... chunks: a strong channel's hits spread over deep ranks, and a
        # one-chunk greedy would starve it in favour of channels with a few sharp top hits
        best, best_rate, best_m = 0, -1.0, 1
        m = 1
        while m <= left:
            gain = ((rank < (q + m * chunk)[:, None]) & ~covered).sum(axis=1) / m
            c = int(np.argmax(gain))
            if gain[c] > best_rate:
                best, best_rate, best_m = c, float(gain[c]), m
            m *= 2
        q[best] += best_m * chunk
        left -= best_m
    return {n: int(v) for n, v in zip(names, q, strict=True)}


def _merge_all(per: dict[str, list[Candidates]], quotas: dict[str, int] | None, n_users: int,
               k: int) -> list[np.ndarray]:
    out = []
    names = list(per)
    for u in range(n_users):
        lists = [per[n][u] for n in names]
        if quotas is not None:
            items = merge_candidates(lists, quotas, k).items
            if len(items) < k:  # top up from what the tuned quotas left unused (overlaps)
                more = merge_candidates(lists, {n: quotas[n] + k for n in names}, k).items
                items = np.concatenate([items, more[~np.isin(more, items)]])[:k]
        else:
            items = merge_candidates(lists, {n: k for n in names}, k).items
        out.append(items)
    return out


def evaluate_recall(ds: Dataset, channels: dict[str, dict[str, object]] | None = None, max_users: int = 2000,
                    seed: int = 0) -> list[dict]:
    """All rows for one dataset: one per channel, ``merged-even`` and ``merged-tuned``."""
    cfg = {n: {"quota": KS[-1], **p} for n, p in (channels or EVAL_CHANNELS).items()}
    rng = np.random.default_rng(seed)
    train, users, targets = leave_last_out(ds)
    if users.size > max_users:
        pick = np.sort(rng.choice(users.size, max_users, replace=False))
        users, targets = users[pick], targets[pick]
    # validation: the same split applied to the training data, for quota tuning only
    val_train, val_users, val_targets = leave_last_out(train)
    if val_users.size > max_users:
        pick = np.sort(rng.choice(val_users.size, max_users, replace=False))
        val_users, val_targets = val_users[pick], val_targets[pick]
    t0 = time.perf_counter()
    val_per = _run(RecallStage(cfg).fit(val_train), val_train, val_users, KS[-1])
    tuned = {k: tune_quotas(val_per, val_targets, k) for k in KS}
    stage = RecallStage(cfg).fit(train)
    fit_s = time.perf_counter() - t0
    per = _run(stage, train, users, KS[-1])
    rows = []
    base = {"dataset": ds.name, "test_users": int(users.size)}
    for n, cl in per.items():
        errs = sum(c.error is not None for c in cl)
        label = "pop" if n == "non-personalized/popular" else n
        rows.append({**base, "method": label, **_metrics([c.items for c in cl], targets, ds.n_items),
                     "errors": errs})
    for mode in ("merged-even", "merged-tuned"):
        lists = []
        metrics: dict[str, float] = {}
        for k in KS:
            lists = _merge_all(per, tuned[k] if mode == "merged-tuned" else None, users.size, k)
            metrics[f"recall@{k}"] = _metrics(lists, targets, ds.n_items)[f"recall@{k}"]
        m = _metrics(lists, targets, ds.n_items)
        metrics[f"coverage@{KS[-1]}"], metrics["mean_len"] = m[f"coverage@{KS[-1]}"], m["mean_len"]
        rows.append({**base, "method": mode, **metrics, "errors": 0})
    rows[-1]["quotas"] = {k: {n: q for n, q in tuned[k].items() if q} for k in KS}
    for r in rows:
        r["fit_s"] = round(fit_s, 1)
    return rows


@EVAL_STAGES.register("recall")
def recall_stage(datasets: list[str], models: list[str] | None, seed: int, quick: bool,
                 report_dir: Path | None, path: str | None = None) -> list[dict]:
    """The ``recall`` evaluator: ``models`` picks channels (default all), ``quick`` 300 users;
    ``path`` is where the (single) dataset is read from."""
    import faiss
    import torch

    from notefeed.eval.datasets import load_eval_dataset

    # one thread each: on a shared 2-core box, OpenMP spinning costs more than it gains
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    names = datasets or ["movielens-small", "beauty", "taobao", "sim"]
    chans = EVAL_CHANNELS if not models else {m: EVAL_CHANNELS.get(m, {}) for m in models}
    rows = []
    for name in names:
        ds = load_eval_dataset(name, seed, path)
        rows.extend(evaluate_recall(ds, chans, max_users=300 if quick else 2000, seed=seed))
    if report_dir is not None:
        from notefeed.eval.timing import write_json

        write_json(Path(report_dir) / "recall_eval.json", {"stage": "recall", "rows": rows})
    return rows
