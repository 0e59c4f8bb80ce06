"""Shared helpers for benchmarks: latency summaries and JSON output.

Benchmarks quote medians and tail percentiles, and always a baseline measured side by side
in the same process (these machines are noisy), so ratios are what to compare.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["latency_stats", "quantile_interval", "time_calls", "machine_info", "write_json", "peak_rss_mb", "phase",
           "time_method"]


@contextmanager
def phase(phases: dict[str, dict[str, float]], name: str, digits: int = 2) -> Iterator[None]:
    """Record the wall and CPU seconds (this process, all threads) of a block as
    ``phases[name] = {"wall_s", "cpu_s"}``, rounded to ``digits``."""
    w, c = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        phases[name] = {"wall_s": round(time.perf_counter() - w, digits),
                        "cpu_s": round(time.process_time() - c, digits)}


def time_method(owner: Any, name: str, record: Callable[[float, float, float], None]) -> None:
    """Wrap ``owner.name`` (a function of a module or class) so that each call ends with
    ``record(start, wall_s, cpu_s)``: its ``time.perf_counter()`` start and its wall and CPU
    seconds (this process, all threads), also when it raises. For scripts that time the parts
    of a larger call."""
    import functools

    f = getattr(owner, name)

    @functools.wraps(f)
    def timed(*args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        try:
            return f(*args, **kwargs)
        finally:
            record(w, time.perf_counter() - w, time.process_time() - c)

    setattr(owner, name, timed)


def quantile_interval(values: np.ndarray | list[float], q: float, level: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval for the ``q``-quantile: order statistics ``(x_(l), x_(u))``
    with ``P(x_(l) <= xi_q < x_(u)) >= level`` for independent draws of a continuous
    distribution (the number of draws below the quantile is binomial(n, q)). ``None`` when
    ``n`` is too small for a two-sided interval (for the 99th percentile at 95%: n < 368).

    Latencies are not independent draws (a slow stretch of the machine slows many requests in
    a row), so for them the interval is a lower bound on the uncertainty: identical runs
    minutes apart can differ by more."""
    from scipy.stats import binom

    if not 0.0 < q < 1.0 or not 0.0 < level < 1.0:
        raise ValueError(f"quantile_interval: q and level must be in (0, 1), got {q}, {level}")
    a = np.sort(np.asarray(values, dtype=np.float64))
    n, alpha = a.size, (1.0 - level) / 2
    if n == 0:
        return None
    k = np.arange(1, n + 1)
    below = binom.cdf(k - 1, n, q)  # P(fewer than k draws below the quantile)
    lows, highs = np.flatnonzero(below <= alpha), np.flatnonzero(below >= 1.0 - alpha)
    if lows.size == 0 or highs.size == 0:
        return None
    return float(a[lows[-1]]), float(a[highs[0]])


def latency_stats(seconds: np.ndarray | list[float]) -> dict[str, float]:
    """Summary of per-call durations (seconds in, milliseconds out). ``p99_lo95_ms`` and
    ``p99_hi95_ms``: the p99's distribution-free 95% interval (:func:`quantile_interval`;
    left out below 368 samples)."""
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    if a.size == 0:
        raise ValueError("latency_stats: no samples")
    out = {
        "n": int(a.size),
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
    }
    ci = quantile_interval(a, 0.99)
    if ci is not None:
        out["p99_lo95_ms"], out["p99_hi95_ms"] = ci
    return out


def time_calls(fn: Callable[[int], object], n: int, warmup: int = 3) -> dict[str, float]:
    """Call ``fn(i)`` ``warmup`` then ``n`` times; return :func:`latency_stats`."""
    for i in range(warmup):
        fn(i)
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - t0
    return latency_stats(out)


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB (Linux ``ru_maxrss`` is KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


#: packages whose version can change a result (ALS, SASRec, sparse products, FAISS): the same
#: code gave ml-100k's feed evaluation a recall-order HR@10 of 0.149 on 2026-12-03 and 0.134 on
#: 2026-12-04 (docs/feed.md "Feed quality"), with only the machine (its install, perhaps its CPU) in between
RESULT_PACKAGES = ("numpy", "scipy", "pandas", "torch", "implicit", "faiss-cpu", "scikit-learn")


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`RESULT_PACKAGES` (None: not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in RESULT_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def source_commit() -> str | None:
    """The git commit of the notefeed checkout that runs (``+dirty`` with uncommitted changes to
    tracked files), or None outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cpu_model() -> str | None:
    """The CPU's model name (Linux ``/proc/cpuinfo``), or None: numeric libraries pick their
    kernels by CPU, so the same code and seed can round differently on another one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    """Where a result was measured. ``cpu_capability`` is the instruction set torch's kernels
    use; ``cpu_bf16``: whether the CPU computes bfloat16 natively, in which case SASRec trains
    in bf16 autocast by default (:func:`notefeed.recall.sequential.native_bf16`), elsewhere in
    float32."""
    import torch

    from notefeed.recall.sequential import native_bf16

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": native_bf16(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15m": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "packages": package_versions(),
        "commit": source_commit(),
    }


def write_json(path: str | Path | None, obj: Any) -> str:
    """Serialise ``obj`` (numpy scalars allowed); write to ``path`` when given; return the text."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    text = json.dumps(obj, indent=2, default=default)
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")
    return text
