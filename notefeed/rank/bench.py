"""``notefeed bench rank``: training throughput (naive vs fast) and inference latency.

Same process, same network (6-task CGC + DIN over 50 short and 20 long sequence items,
1M-row user and note tables): *naive* = dense ``nn.Embedding`` + Adam over every parameter with
small batches; *fast* = sparse id gradients + :class:`RowwiseAdam` + dense Adam, large batches,
pre-tensorised data. Then p99 of fine-ranking 500 candidates and of coarse-ranking 10,000.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from notefeed.rank.finenet import FineConfig, FineNet
from notefeed.rank.multitask import FineRanker, masked_loss

__all__ = ["synthetic_batch", "train_throughput", "latency", "run_bench"]


def synthetic_batch(n: int, vocab: dict[str, int], short: int = 50, long: int = 20,
                    seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Random pre-tensorised features with the shapes of real ones (ids >= 1)."""
    g = torch.Generator().manual_seed(seed)

    def ids(hi: int, *shape: int) -> torch.Tensor:
        return torch.randint(1, hi, shape, generator=g)

    b = {
        "user": ids(vocab["n_users"], n), "item": ids(vocab["n_items"], n),
        "attrs": ids(vocab["hash_buckets"], n, vocab["n_attrs"]), "fbucket": ids(9, n),
        "surface": torch.zeros(n, dtype=torch.long), "dense": torch.rand(n, vocab["n_dense"], generator=g),
        "seq_items": ids(vocab["n_items"], n, short), "seq_types": ids(8, n, short),
        "long_items": ids(vocab["n_items"], n, long), "long_types": ids(8, n, long),
    }
    return {k: v.to(device) for k, v in b.items()}


def bench_vocab(n_rows: int = 1_000_000) -> dict[str, int]:
    return {"n_users": n_rows, "n_items": n_rows, "n_cats": 1000, "n_authors": 100_000,
            "hash_buckets": 1 << 16, "n_attrs": 4, "n_tags": 4, "n_dense": 26}


def _make(sparse: bool, batch: int, vocab: dict[str, int], device: str) -> FineRanker:
    cfg = FineConfig(arch="cgc", sparse=sparse, batch_size=batch, vocab=vocab)
    r = FineRanker(cfg, device)
    g = torch.Generator().manual_seed(1)
    n = vocab["n_items"]
    r.net = FineNet(cfg, torch.randint(1, vocab["n_cats"], (n,), generator=g),
                    torch.randint(1, vocab["n_authors"], (n,), generator=g),
                    torch.randint(0, vocab["hash_buckets"], (n, vocab["n_tags"]), generator=g)).to(device)
    return r


def train_throughput(sparse: bool, batch: int, vocab: dict[str, int], seconds: float = 10.0,
                     device: str = "cpu", warmup: int = 2) -> dict[str, Any]:
    """Samples/s of training steps for ``seconds`` (after ``warmup`` steps)."""
    r = _make(sparse, batch, vocab, device)
    assert r.net is not None
    pool = synthetic_batch(batch * 4, vocab, device=device)
    y = (torch.rand(batch * 4, 6) < 0.3).float().to(device)
    opts = r.optimizers() if sparse else [torch.optim.Adam(r.net.parameters(), lr=r.cfg.lr)]
    r.net.train()
    step_times: list[float] = []
    k = 0
    t_end = None
    while True:
        s = (k % 4) * batch
        b = {kk: v[s:s + batch] for kk, v in pool.items()}
        t0 = time.perf_counter()
        loss, _ = masked_loss(r.net(b), y[s:s + batch], r.cfg.tasks, {})
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        k += 1
        if k == warmup:
            t_end = time.perf_counter() + seconds
        elif k > warmup:
            step_times.append(time.perf_counter() - t0)
            if t_end is not None and time.perf_counter() > t_end and len(step_times) >= 3:
                break
    st = np.array(step_times)
    return {"mode": "fast" if sparse else "naive", "batch": batch, "steps": len(st),
            "median_step_s": float(np.median(st)), "samples_per_s": float(batch / np.median(st)),
            "samples_per_s_mean": float(batch * len(st) / st.sum())}


def latency(fn: Callable[[], object], n: int = 500, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    a = np.array(ts) * 1e3
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max()), "n": n}


def _feed_world(n_items: int) -> tuple[Any, Any]:
    from notefeed.rank.features import FeatureBuilder
    from notefeed.rank.synthetic import synthetic_feed

    ds = synthetic_feed(n_users=300, n_items=n_items, requests_per_user=10, seed=5)
    return ds, FeatureBuilder(ds)


def bench_scorer_latency(n: int = 500) -> dict[str, float]:
    """p99 of :class:`FineRankerScorer` (features from the log + CGC forward) on ``n`` candidates."""
    from notefeed.rank.scorer import FineRankerScorer
    from notefeed.recall.base import UserContext

    ds, fb = _feed_world(5000)
    r = FineRanker(FineConfig(arch="cgc"))
    r.build(fb)
    sc = FineRankerScorer(r, fb)
    rng = np.random.default_rng(0)
    items = rng.choice(ds.n_items, n, replace=False)
    ctx = UserContext(user_id="u1", user=1)
    return latency(lambda: sc.score(ctx, items))


def bench_coarse_latency(n: int = 10_000) -> dict[str, Any]:
    """p99 of coarse scoring of ``n`` candidates (user tower + cached item vectors + cross MLP)."""
    from notefeed.rank.coarse import CoarseRanker
    from notefeed.recall.base import UserContext

    ds, fb = _feed_world(20_000)
    cr = CoarseRanker(fb)
    cr.cache_items()
    items = np.random.default_rng(0).choice(ds.n_items, n, replace=False)
    ctx = UserContext(user_id="u1", user=1)
    out: dict[str, Any] = {"score_10k": latency(lambda: cr.scores(ctx, items))}
    out["cascade_10k_to_5000_to_500"] = latency(lambda: cr.cascade(ctx, items, (5000, 500)))
    return out


def run_bench(seconds: float = 10.0, device: str = "cpu", threads: int = 2, n_rows: int = 1_000_000,
              naive_batch: int = 256, fast_batch: int = 4096) -> dict[str, Any]:
    torch.set_num_threads(threads)
    vocab = bench_vocab(n_rows)
    # naive before and after fast: on a shared machine the better of the two is the fair baseline
    naive_runs = [train_throughput(False, naive_batch, vocab, seconds / 2, device)]
    fast = train_throughput(True, fast_batch, vocab, seconds, device)
    naive_runs.append(train_throughput(False, naive_batch, vocab, seconds / 2, device))
    naive = max(naive_runs, key=lambda r: r["samples_per_s"])
    naive["all_runs_samples_per_s"] = [r["samples_per_s"] for r in naive_runs]
    r = _make(True, fast_batch, vocab, device)
    assert r.net is not None
    r.net.eval()
    cand = synthetic_batch(500, vocab, seed=3, device=device)
    cand["user"][:] = cand["user"][0]
    for k in ("attrs", "seq_items", "seq_types"):
        cand[k][:] = cand[k][0]

    def infer() -> None:
        r.predict(cand)

    out: dict[str, Any] = {
        "device": device, "threads": threads, "id_table_rows": n_rows,
        "model": "6-task CGC + DIN (50 short + 20 long items), dim 16",
        "train_naive": naive, "train_fast": fast,
        "speedup": fast["samples_per_s"] / naive["samples_per_s"],
        "fine_500_model_only": latency(infer),
        "fine_500_with_features": bench_scorer_latency(),
        "coarse_10k": bench_coarse_latency(),
        "targets": {"train_fast_samples_per_s": 10_000, "fine_500_p99_ms": 10, "coarse_10k_p99_ms": 5},
    }
    return out
