"""Recall speed benchmarks: Swing vs ItemCF build, ANN latency/recall, full stage latency.

Every figure is measured next to its baseline in the same process (ItemCF beside Swing,
exact ``IndexFlatIP`` beside HNSW) because the shared machines are noisy.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np
import pandas as pd

from notefeed.eval.timing import latency_stats, peak_rss_mb
from notefeed.recall.ann import AnnIndex
from notefeed.recall.kernels import build_rows, cap_log
from notefeed.recall.synthetic import synthetic_log

__all__ = ["bench_i2i_build", "bench_ann", "bench_stage", "stage_setup", "stage_requests", "clustered_vectors"]


def _children_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def bench_i2i_build(users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int, n_items: int,
                    label: str, item_cap: int = 50, user_cap: int = 100, top_n: int = 100, n_jobs: int = 2,
                    progress: bool = False) -> dict[str, Any]:
    """Time cap + Swing build and cap + ItemCF build on one log; peak memory of this process and workers."""
    out: dict[str, Any] = {"log": label, "events": int(users.size), "users": n_users, "items": n_items,
                           "item_cap": item_cap, "user_cap": user_cap, "top_n": top_n, "n_jobs": n_jobs}
    t0 = time.perf_counter()
    hist, iu = cap_log(users, items, ts, n_users, n_items, item_cap, user_cap)
    out["cap_s"] = time.perf_counter() - t0
    out["capped_pairs"] = int(hist.nnz)
    rows = np.arange(n_items)
    for kernel in ("swing", "itemcf"):
        t0 = time.perf_counter()
        sim = build_rows(kernel, hist, iu, rows, top_n, n_jobs=n_jobs, progress=progress, block=1024)
        out[f"{kernel}_s"] = time.perf_counter() - t0
        out[f"{kernel}_total_s"] = out[f"{kernel}_s"] + out["cap_s"]
        out[f"{kernel}_nnz"] = int(sim.nnz)
        out[f"{kernel}_peak_rss_mb"] = peak_rss_mb()
        out[f"{kernel}_peak_worker_rss_mb"] = _children_peak_mb()
        del sim
    out["swing_over_itemcf"] = out["swing_s"] / max(out["itemcf_s"], 1e-9)
    return out


def clustered_vectors(n: int, dim: int, n_clusters: int = 1000, spread: float = 0.6, seed: int = 0) -> np.ndarray:
    """(n, dim) unit vectors around ``n_clusters`` centres: embedding-like, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, n_clusters, n)] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def bench_ann(n: int, dim: int = 64, n_queries: int = 500, k: int = 100, m: int = 32, ef_construction: int = 80,
              ef_grid: tuple[int, ...] = (100, 128, 192, 256, 384), seed: int = 0) -> dict[str, Any]:
    """HNSW vs exact flat IP: build time, single-query p50/p99 and recall@k per efSearch (an
    efSearch below ``k`` searches at ``k``: :meth:`AnnIndex.search`)."""
    import faiss

    faiss.omp_set_num_threads(1)  # serving latency is per request, one thread
    x = clustered_vectors(n + n_queries, dim, seed=seed)
    base, q = x[:n], x[n:]
    ids = np.arange(n, dtype=np.int64)
    flat = AnnIndex(dim, kind="flat")
    flat.add(base, ids)
    _, truth = flat.search(q, k)
    flat_lat = latency_stats(_per_query(flat, q[: min(100, n_queries)], k))
    faiss.omp_set_num_threads(2)
    t0 = time.perf_counter()
    hnsw = AnnIndex(dim, kind="hnsw", m=m, ef_construction=ef_construction)
    hnsw.add(base, ids)
    build_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    grid = []
    for ef in ef_grid:
        hnsw.set_ef_search(ef)
        _, got = hnsw.search(q, k)
        rec = float(np.mean([np.intersect1d(a, b).size / k for a, b in zip(got, truth, strict=True)]))
        grid.append({"ef_search": max(ef, k), "recall@k": rec, **latency_stats(_per_query(hnsw, q, k))})
    ok = [g for g in grid if g["recall@k"] >= 0.95]
    best = min(ok, key=lambda g: g["p99_ms"]) if ok else max(grid, key=lambda g: g["recall@k"])
    return {"n": n, "dim": dim, "k": k, "m": m, "ef_construction": ef_construction, "hnsw_build_s": build_s,
            "flat": flat_lat, "grid": grid, "chosen": best,
            "meets_target": bool(best["recall@k"] >= 0.95 and best["p99_ms"] < 2.0)}


def _per_query(index: AnnIndex, q: np.ndarray, k: int) -> np.ndarray:
    out = np.empty(len(q))
    for i in range(len(q)):
        t0 = time.perf_counter()
        index.search(q[i : i + 1], k)
        out[i] = time.perf_counter() - t0
    return out


def _synthetic_dataset(n_notes: int, n_events: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A Dataset with ``n_notes`` notes (tags, category, author, created_at) and a synthetic log."""
    from notefeed.data.dataset import Dataset

    u, i, t, n_users, _ = synthetic_log(n_events, n_items=n_notes, seed=seed)
    rng = np.random.default_rng(seed)
    per_topic = max(1, n_notes // 2000)
    topic = np.arange(n_notes) // per_topic
    n_creators = max(10, n_notes // 50)
    notes = pd.DataFrame({
        "note_id": np.char.add("n", np.arange(n_notes).astype(str)),
        "author_id": np.char.add("c", rng.integers(0, n_creators, n_notes).astype(str)),
        "title": "", "text": "",
        "tags": [[f"t{a}", f"t{b}"] for a, b in zip(topic, rng.integers(0, 5000, n_notes), strict=True)],
        "category": np.char.add("cat", (topic % 50).astype(str)),
        "created_at": rng.integers(0, 30 * 86400, n_notes),
    })
    ev = pd.DataFrame({"user_id": np.char.add("u", u.astype(str)), "note_id": np.char.add("n", i.astype(str)),
                       "ts": t, "type": "click"})
    creators = pd.DataFrame({"creator_id": np.char.add("c", np.arange(n_creators).astype(str)),
                             "followers": rng.pareto(1.2, n_creators) * 200})
    follows = pd.DataFrame({"user_id": np.char.add("u", rng.integers(0, n_users, n_users * 5).astype(str)),
                            "target_id": np.char.add("c", rng.integers(0, n_creators, n_users * 5).astype(str))})
    return Dataset.build(f"synthetic-{n_notes}", ev, notes=notes, creators=creators, social=follows)


def stage_setup(n_notes: int, n_events: int, progress: bool = False):  # type: ignore[no-untyped-def]
    """The :func:`bench_stage` setting: a synthetic catalogue of ``n_notes``, every default recall
    channel fitted on it (a short two-tower fit: speed, not quality), FAISS on one thread.
    Returns ``(ds, stage, dataset_build_s, fit_s)``."""
    import faiss

    from notefeed.recall.merge import DEFAULT_CONFIG, RecallStage

    t0 = time.perf_counter()
    ds = _synthetic_dataset(n_notes, n_events)
    build_ds_s = time.perf_counter() - t0
    cfg = {n: dict(e) for n, e in DEFAULT_CONFIG.items()}
    # speed, not quality: a short two-tower fit is enough to have real vectors in the index
    cfg["embedding/two-tower"].update(epochs=1, max_samples=20_000, progress=progress, ef_search=128)
    cfg["item-to-item/swing"].update(n_jobs=2)
    cfg["item-to-item/itemcf"].update(n_jobs=2)
    t0 = time.perf_counter()
    stage = RecallStage(cfg).fit(ds)
    fit_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    return ds, stage, build_ds_s, fit_s


def stage_requests(ds, n_requests: int = 200) -> list:  # type: ignore[no-untyped-def]
    """:func:`bench_stage`'s requests: ``n_requests`` users (a fixed draw), each with their last 50
    positives as history and a distinct time after the log."""
    from notefeed.recall.base import UserContext

    pos = ds.select_events().sort_values(["user", "ts"])
    groups = pos.groupby("user")["item"].apply(lambda s: s.to_numpy(np.int64)[-50:])
    users = groups.index.to_numpy()[np.random.default_rng(1).permutation(len(groups))[:n_requests]]
    t_end = int(ds.events["ts"].max())
    return [UserContext(f"u{u}", int(u), history=groups.loc[u], ts=t_end + j) for j, u in enumerate(users)]


def bench_stage(n_notes: int, n_events: int, n_requests: int = 200, total: int = 10_000,
                progress: bool = False) -> dict[str, Any]:
    """All channels + merge for one user at a time, on a synthetic catalogue of ``n_notes``."""
    ds, stage, build_ds_s, fit_s = stage_setup(n_notes, n_events, progress)
    per_channel: dict[str, list[float]] = {}
    total_s, sizes = [], []
    for ctx in stage_requests(ds, n_requests):
        t1 = time.perf_counter()
        m = stage.retrieve(ctx, total)
        total_s.append(time.perf_counter() - t1)
        sizes.append(len(m))
        for n, ms in m.timings_ms.items():
            per_channel.setdefault(n, []).append(ms / 1e3)
    return {"notes": n_notes, "events": n_events, "total": total, "dataset_build_s": build_ds_s, "fit_s": fit_s,
            "all_channels_plus_merge": latency_stats(total_s), "mean_candidates": float(np.mean(sizes)),
            "per_channel": {n: latency_stats(v) for n, v in per_channel.items()},
            "meets_target": bool(latency_stats(total_s)["p99_ms"] < 15.0), "peak_rss_mb": peak_rss_mb()}
