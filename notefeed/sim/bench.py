"""Benchmarks of the simulator: generation time and memory per preset, closed-loop throughput.

Each generation size runs in a fresh subprocess (``python -m notefeed.sim.bench generate PRESET``)
so that peak memory is per size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

from notefeed.eval.timing import peak_rss_mb

__all__ = ["bench_generate", "bench_simulate_log", "bench_closed_loop", "run_in_subprocess"]


def bench_generate(preset_name: str, seed: int = 0) -> dict[str, Any]:
    """Time the world, the catalogue frames and the history of a preset (in this process)."""
    from notefeed.sim.community import generate

    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    comm = generate(preset_name, seed=seed)
    t1 = time.perf_counter()
    _ = comm.notes, comm.users, comm.creators, comm.social
    t2 = time.perf_counter()
    ds = comm.history()
    t3 = time.perf_counter()
    return {
        "preset": preset_name,
        "notes": ds.n_items,
        "users": ds.n_users,
        "creators": len(ds.creators),
        "events": len(ds.events),
        "world_s": t1 - t0,
        "catalogue_s": t2 - t1,
        "history_s": t3 - t2,
        "total_s": t3 - t0,
        "events_per_s_history": len(ds.events) / (t3 - t2),
        "rss_before_mb": rss0,
        "peak_rss_mb": peak_rss_mb(),
    }


def bench_simulate_log(preset_name: str, n_events: int, seed: int = 0) -> dict[str, Any]:
    """Time :meth:`Community.simulate_log` (world and catalogue excluded)."""
    from notefeed.sim.community import generate

    comm = generate(preset_name, seed=seed)
    _ = comm.notes
    t0 = time.perf_counter()
    ds = comm.simulate_log(n_events, seed=seed)
    dt = time.perf_counter() - t0
    return {"preset": preset_name, "target_events": n_events, "events": len(ds.events), "seconds": dt,
            "events_per_s": len(ds.events) / dt, "peak_rss_mb": peak_rss_mb()}


def bench_closed_loop(preset_name: str, policies: list[str], steps: int, requests_per_step: int,
                      page_size: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    """Requests per second of the closed loop per policy, same community and seed (side by side)."""
    from notefeed.sim.community import generate
    from notefeed.sim.env import SimEnvironment
    from notefeed.sim.loop import run_closed_loop
    from notefeed.sim.policies import make_policy

    comm = generate(preset_name, seed=seed)
    ds = comm.history()
    rows = []
    for name in policies:
        env = SimEnvironment(comm, seed=seed, dataset=ds)
        t0 = time.perf_counter()
        res = run_closed_loop(env, make_policy(name, seed=seed), steps, requests_per_step, page_size)
        dt = time.perf_counter() - t0
        rows.append({
            "preset": preset_name, "policy": name, "steps": steps, "requests": res["requests"],
            "seconds": dt, "steps_per_s": steps / dt, "requests_per_s": res["requests"] / dt,
            "env_requests_per_s": res["requests"] / max(res["env_s"], 1e-9),
            "policy_requests_per_s": res["requests"] / max(res["policy_s"], 1e-9), "ctr": res["ctr"],
        })
    return rows


def run_in_subprocess(args: list[str], timeout_s: float = 1800) -> dict[str, Any]:
    """Run ``python -m notefeed.sim.bench ARGS`` and parse the JSON line it prints last."""
    proc = subprocess.run([sys.executable, "-m", "notefeed.sim.bench", *args], capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        return {"args": args, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "generate":
        out: Any = bench_generate(argv[1])
    elif kind == "log":
        out = bench_simulate_log(argv[1], int(argv[2]))
    else:
        raise SystemExit(f"unknown bench kind {kind!r}")
    print(json.dumps(out, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1:])
