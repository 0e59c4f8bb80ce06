"""``notefeed bench rerank``: latency of every re-ranker side by side, and scaling in N and d.

Single-thread numpy (``threadpoolctl`` limits BLAS to one thread for the whole run; the CLI
runs it in a fresh subprocess with ``OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE`` so that no
OpenMP runtime loaded by other stages -- torch, faiss -- spins beside it), the same random
requests for every method in round-robin order, median and p99 over requests. Inputs are synthetic
(Gaussian scores and vectors): latency depends on N, d, k and window, not on the values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from notefeed.eval.timing import latency_stats, machine_info
from notefeed.rerank.base import ReRanker, RerankInput
from notefeed.rerank.constraints import FairnessConfig, RuleConfig
from notefeed.rerank.dpp import DPPReRanker
from notefeed.rerank.mmr import MMRReRanker, TopKReRanker
from notefeed.rerank.ssd import SSDReRanker

__all__ = ["bench_methods", "run_bench"]


def bench_methods(window: int = 10) -> dict[str, ReRanker]:
    """The methods compared, by label."""
    rules = RuleConfig(author_max=1, author_window=window, category_cap=20)
    fair = FairnessConfig(target=0.5, mode="hard")
    return {
        "topk": TopKReRanker(),
        "mmr": MMRReRanker(lam=0.7),
        "ssd": SSDReRanker(gamma=0.25, window=window),
        "ssd-unbounded": SSDReRanker(gamma=0.25, window=0),
        "dpp": DPPReRanker(theta=0.7),
        "dpp-window": DPPReRanker(theta=0.7, window=window),
        "ssd+rules+fair": SSDReRanker(gamma=0.25, window=window, rules=rules, fairness=fair),
        "dpp+rules+fair": DPPReRanker(theta=0.7, rules=rules, fairness=fair),
    }


def _requests(n_req: int, n: int, d: int, seed: int) -> list[RerankInput]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_req):
        out.append(
            RerankInput(
                scores=rng.normal(size=n),
                vectors=rng.normal(size=(n, d)),
                authors=rng.integers(0, max(2, n // 3), size=n),
                categories=rng.integers(0, 12, size=n),
                small_creator=rng.random(n) < 0.4,
            )
        )
    return out


def _time(rr: ReRanker, reqs: list[RerankInput], k: int, reps: int) -> dict[str, float]:
    for r in reqs[:3]:  # warm-up
        rr.select(r, k)
    out = np.empty(reps)
    for i in range(reps):
        r = reqs[i % len(reqs)]
        t0 = time.perf_counter()
        rr.select(r, k)
        out[i] = time.perf_counter() - t0
    return latency_stats(out)


def run_bench(
    n: int = 500,
    d: int = 64,
    k: int = 80,
    window: int = 10,
    reps: int = 200,
    scaling: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The benchmark; returns the JSON-able result (see the module docstring)."""
    try:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS too, so the limit covers it)
        from threadpoolctl import threadpool_info, threadpool_limits

        limiter: Any = threadpool_limits(limits=1)
        threads = "1 (threadpoolctl): " + ", ".join(
            f"{i.get('internal_api')}={i.get('num_threads')}" for i in threadpool_info()
        )
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        limiter, threads = None, "not limited (threadpoolctl missing)"
    try:
        methods = bench_methods(window)
        reqs = _requests(20, n, d, seed)
        # Round-robin over methods, request by request: the machine's noise then hits every
        # method alike, so the ratios stay meaningful on a shared box.
        samples: dict[str, list[float]] = {label: [] for label in methods}
        for rr in methods.values():
            for r in reqs[:3]:  # warm-up
                rr.select(r, k)
        for i in range(reps):
            if progress and i % 50 == 0:
                progress(f"core {i}/{reps}")
            r = reqs[i % len(reqs)]
            for label, rr in methods.items():
                t0 = time.perf_counter()
                rr.select(r, k)
                samples[label].append(time.perf_counter() - t0)
        core: dict[str, Any] = {label: latency_stats(v) for label, v in samples.items()}
        ratios = {
            "ssd_over_dpp_median": core["ssd"]["median_ms"] / core["dpp"]["median_ms"],
            "ssd_over_dpp_window_median": core["ssd"]["median_ms"] / core["dpp-window"]["median_ms"],
            "ssd_over_topk_median": core["ssd"]["median_ms"] / core["topk"]["median_ms"],
        }
        out: dict[str, Any] = {
            "config": {"n": n, "d": d, "k": k, "window": window, "reps": reps, "blas_threads": threads},
            "core": core,
            "ratios": ratios,
            "targets": {
                "ssd_median_under_2ms": core["ssd"]["median_ms"] < 2.0,
                "ssd_not_slower_than_dpp": core["ssd"]["median_ms"] <= core["dpp"]["median_ms"],
                "ssd_not_slower_than_dpp_window": core["ssd"]["median_ms"] <= core["dpp-window"]["median_ms"],
            },
            "machine": machine_info(),
        }
        if scaling:
            curve_methods = {lb: methods[lb] for lb in ("ssd", "dpp", "dpp-window", "mmr")}
            scale: dict[str, list[dict[str, Any]]] = {"n": [], "d": []}
            for n_i in (100, 250, 500, 1000, 2000):
                if progress:
                    progress(f"scaling N={n_i}")
                rq = _requests(5, n_i, d, seed + 1)
                row: dict[str, Any] = {"n": n_i, "d": d, "k": min(k, n_i)}
                for lb, rr in curve_methods.items():
                    row[f"{lb}_median_ms"] = _time(rr, rq, min(k, n_i), max(20, reps // 4))["median_ms"]
                scale["n"].append(row)
            for d_i in (16, 32, 64, 128, 256):
                if progress:
                    progress(f"scaling d={d_i}")
                rq = _requests(5, n, d_i, seed + 2)
                row = {"n": n, "d": d_i, "k": k}
                for lb, rr in curve_methods.items():
                    row[f"{lb}_median_ms"] = _time(rr, rq, k, max(20, reps // 4))["median_ms"]
                scale["d"].append(row)
            out["scaling"] = scale
        return out
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


def _main(argv: list[str]) -> None:
    """``python -m notefeed.rerank.bench JSON_PATH N D K WINDOW REPS SCALING SEED``."""
    from notefeed.eval.timing import write_json

    path, n, d, k, window, reps, scaling, seed = argv
    res = run_bench(int(n), int(d), int(k), int(window), int(reps), scaling == "1", int(seed),
                    progress=lambda s: print(s, flush=True))
    write_json(path, res)


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
