"""``notefeed bench serve``: a bounded loopback load generator against ``notefeed serve``.

For each community size it starts the server in a subprocess on a free 127.0.0.1 port with
a synthetic community, then sends a fixed number of feed requests per pipeline (the full
funnel ``default`` and the ``popular`` baseline, interleaved, so both see the same machine
load), a few event batches, and measures the event -> next-feed lag. Every run stops by
itself: a request count, a wall-clock cap and a per-request timeout. Nothing leaves loopback.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from notefeed.eval.timing import latency_stats, machine_info

__all__ = ["run_bench", "free_port", "start_server", "stop_server", "parse_server_timing", "process_cpu_s"]

HOST = "127.0.0.1"
TOKEN = "bench-token-not-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(workspace: Path, port: int, extra: list[str] | None = None, timeout: float = 600.0,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``notefeed serve`` on 127.0.0.1:``port`` and wait for ``/healthz``."""
    import httpx

    cmd = [sys.executable, "-m", "notefeed.cli", "serve", "--workspace", str(workspace),
           "--host", HOST, "--port", str(port), *(extra or [])]
    full_env = {**os.environ, "NOTEFEED_API_TOKEN": TOKEN, **(env or {})}
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"notefeed serve exited with {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"notefeed serve did not answer /healthz within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def parse_server_timing(header: str) -> dict[str, float]:
    """``"source;dur=1.2, total;dur=3.4"`` -> ``{"source": 1.2, "total": 3.4}``."""
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name and dur:
            out[name] = float(dur)
    return out


def _load(base: str, user_ids: list[str], requests: int, concurrency: int, max_seconds: float,
          rate: float | None = None, seed: int = 0) -> dict[str, Any]:
    """``requests`` feed requests per pipeline (default and popular, alternating) from
    ``concurrency`` client threads. Closed loop by default: each thread sends its next request
    when the last one is answered. With ``rate`` (requests per second, both pipelines
    together), open loop: requests arrive as a seeded Poisson process whatever the server's
    pace, and a request's latency counts from its arrival time, so time spent waiting for a
    free client thread is included (no coordinated omission; the threads must be enough for
    the rate, which ``late_starts`` shows).

    The clock starts once every client thread has built its HTTP client and opened its
    connection (one ``/healthz`` each): building an ``httpx.Client`` costs tens of ms of CPU
    (its TLS context), and with the arrivals already running, 16 threads doing that at once
    made the first requests of an open-loop run start up to 0.2 s late, a client artefact
    that filled the p99 of runs with many threads."""
    import httpx

    pipelines = ("default", "popular")
    lat: dict[str, list[float]] = {p: [] for p in pipelines}
    stages: dict[str, dict[str, list[float]]] = {p: {} for p in pipelines}
    errors = {p: 0 for p in pipelines}
    ev_lat: list[float] = []
    ev_errors = 0
    lock = threading.Lock()
    counter = iter(range(2 * requests))
    deadline = time.monotonic() + max_seconds
    arrivals = None
    if rate is not None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate}")
        arrivals = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, 2 * requests))
    late = 0

    def worker(wid: int) -> None:
        nonlocal ev_errors, late
        rng = random.Random(wid)
        with httpx.Client(base_url=base, timeout=10.0) as c:
            try:  # open the keep-alive connection before the clock starts
                c.get("/healthz")
            except httpx.HTTPError:
                pass
            ready.wait(timeout=300)
            for i in counter:
                if time.monotonic() > deadline:
                    return
                p = pipelines[i % 2]
                # one user in ten is new to the server: the cold-start path gets load too
                uid = rng.choice(user_ids) if rng.random() > 0.1 else f"new{rng.randrange(10**9)}"
                if arrivals is None:
                    t0 = time.perf_counter()
                else:  # open loop: wait for the request's arrival; latency counts from it
                    t0 = t_start + float(arrivals[i])
                    wait = t0 - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    elif wait < -0.001:
                        with lock:
                            late += 1
                try:
                    r = c.get("/v1/feed", params={"user_id": uid, "n": 20, "pipeline": p})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok, r = False, None
                dt = time.perf_counter() - t0
                with lock:
                    if not ok or r is None:
                        errors[p] += 1
                        continue
                    lat[p].append(dt)
                    for k, v in parse_server_timing(r.headers.get("server-timing", "")).items():
                        stages[p].setdefault(k, []).append(v / 1e3)
                if i % 20 == 0 and p == "default":
                    items = r.json()["items"]
                    evs = [{"user_id": uid, "note_id": it["note_id"], "ts": int(time.time()),
                            "type": "impression"} for it in items[:5]]
                    if items:
                        evs.append({"user_id": uid, "note_id": items[0]["note_id"], "ts": int(time.time()),
                                    "type": "click"})
                        t1 = time.perf_counter()
                        er = c.post("/v1/events", json={"events": evs},
                                    headers={"Authorization": f"Bearer {TOKEN}"})
                        with lock:
                            if er.status_code == 200 and er.json()["accepted"] == len(evs):
                                ev_lat.append(time.perf_counter() - t1)
                            else:
                                ev_errors += 1

    t_start = 0.0

    def start_clock() -> None:  # run once every thread is ready, before any is released
        nonlocal t_start
        t_start = time.perf_counter()  # the arrivals count from here

    ready = threading.Barrier(concurrency, action=start_clock)
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    out: dict[str, Any] = {"wall_s": wall, "concurrency": concurrency, "pipelines": {}}
    if rate is not None:
        out["open_loop"] = {"rate_rps": rate, "achieved_rps": sum(map(len, lat.values())) / wall,
                            "late_starts": late}
    for p in pipelines:
        out["pipelines"][p] = {
            "requests": len(lat[p]),
            "errors": errors[p],
            "throughput_rps_interleaved": len(lat[p]) / wall,
            "end_to_end": latency_stats(lat[p]) if lat[p] else None,
            "server_stages": {k: latency_stats(v) for k, v in sorted(stages[p].items())},
        }
    d, b = out["pipelines"]["default"]["end_to_end"], out["pipelines"]["popular"]["end_to_end"]
    if d and b:
        out["p99_ratio_full_vs_popular"] = d["p99_ms"] / b["p99_ms"]
    # the pipelines alone: the server's own total, without the wait for a place at the feed gate
    ds, bs = (out["pipelines"][p]["server_stages"].get("total") for p in pipelines)
    if ds and bs:
        out["p99_ratio_server_total_full_vs_popular"] = ds["p99_ms"] / bs["p99_ms"]
    out["events"] = {"batches": len(ev_lat), "errors": ev_errors,
                     "post_latency": latency_stats(ev_lat) if ev_lat else None}
    return out


def _lag(base: str, trials: int = 50) -> dict[str, Any]:
    """Post a click on the top note; time until a feed no longer shows it (polling)."""
    import httpx

    lags, failures = [], 0
    with httpx.Client(base_url=base, timeout=10.0) as c:
        for t in range(trials):
            uid = f"lag{t}-{random.randrange(10**9)}"
            items = c.get("/v1/feed", params={"user_id": uid, "n": 10}).json()["items"]
            if not items:
                failures += 1
                continue
            nid = items[0]["note_id"]
            t0 = time.perf_counter()
            c.post("/v1/events", json={"events": [{"user_id": uid, "note_id": nid, "ts": int(time.time()),
                                                   "type": "click"}]},
                   headers={"Authorization": f"Bearer {TOKEN}"})
            while time.perf_counter() - t0 < 5.0:
                got = [x["note_id"] for x in c.get("/v1/feed", params={"user_id": uid, "n": 10}).json()["items"]]
                if nid not in got:
                    lags.append(time.perf_counter() - t0)
                    break
            else:
                failures += 1
    return {"trials": trials, "failures": failures, "lag": latency_stats(lags) if lags else None}


SIM_PRESETS = {100_000: "100k", 1_000_000: "1m"}


def _sim_workspace(ws: Path, n: int, timeout: float) -> list[str]:
    """Fill ``ws`` with ``notefeed sim generate`` (preset by size); return some user ids."""
    preset = SIM_PRESETS.get(n)
    if preset is None:
        raise ValueError(f"--sizes: no simulator preset for {n} notes; known: {sorted(SIM_PRESETS)}"
                         " (use --community synthetic)")
    subprocess.run([sys.executable, "-m", "notefeed.cli", "sim", "generate", "--preset", preset,
                    "--workspace", str(ws)], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return _workspace_users(ws)[1]


def _workspace_users(ws: Path) -> tuple[int, list[str]]:
    """``(notes, some user ids)`` of a workspace (read-only)."""
    import duckdb

    con = duckdb.connect(str(ws / "notefeed.duckdb"), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM notes").fetchall()[0][0]
        return int(n), [r[0] for r in con.execute("SELECT user_id FROM users LIMIT 20000").fetchall()]
    finally:
        con.close()


def _train(ws: Path, config: Path | None, timeout: float) -> dict[str, Any]:
    """``notefeed train`` on ``ws`` (promotes the version); its wall time and phase lines."""
    cmd = [sys.executable, "-m", "notefeed.cli", "train", "--workspace", str(ws)]
    if config:
        cmd += ["--config", str(config)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"notefeed train failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return {"train_s": time.perf_counter() - t0, "train_log": done.stdout.strip().splitlines()}


def _served(base: str) -> dict[str, Any]:
    """What the server says it serves (``/healthz``): model version and any fallback."""
    import httpx

    h = httpx.get(f"{base}/healthz", timeout=30.0).json()
    return {k: h.get(k) for k in ("status", "model_version", "fallback", "fallback_reasons", "notes", "pipelines")}


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_during(proc_pid: int, load: dict[str, Any], cpu0: float | None, cpu1: float | None,
                client_cpu_s: float) -> dict[str, Any]:
    """The load phase's CPU seconds: the server's (all its threads) and this load generator's,
    per request served (both pipelines and the event posts together)."""
    n = sum(p["requests"] for p in load["pipelines"].values()) + load["events"]["batches"]
    server = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return {"server_cpu_s": server, "client_cpu_s": client_cpu_s, "requests": n,
            "server_cpu_ms_per_request": None if server is None or not n else server / n * 1e3}


def _bench_one(ws: Path, n: int, user_ids: list[str], extra: list[str], requests: int, concurrency: int,
               max_seconds: float, prog: Any, task: Any) -> dict[str, Any]:
    port = free_port()
    prog.update(task, description=f"start server on {n:,} notes")
    t0 = time.perf_counter()
    proc = start_server(ws, port, extra, timeout=1200)
    startup = time.perf_counter() - t0
    base = f"http://{HOST}:{port}"
    try:
        served = _served(base)
        prog.update(task, description=f"load {n:,} notes")
        cpu0, c0 = process_cpu_s(proc.pid), time.process_time()
        load = _load(base, user_ids, requests, concurrency, max_seconds)
        cpu = _cpu_during(proc.pid, load, cpu0, process_cpu_s(proc.pid), time.process_time() - c0)
        lag = _lag(base)
    finally:
        stop_server(proc)
    return {"startup_s": startup, "served": served, **load, "load_cpu": cpu, "event_to_feed": lag}


def run_bench(sizes: list[int], requests: int, concurrency: int, max_seconds: float,
              community: str = "sim", config: Path | None = None, train: bool = False,
              workspace: Path | None = None) -> dict[str, Any]:
    """Load-test ``notefeed serve``. Each size: a fresh community (``sim`` presets or
    ``synthetic``), trained first with ``notefeed train`` when ``train`` (the learned default
    pipeline; otherwise the untrained fallback), then served and loaded. ``workspace``: bench
    that workspace as it is (its promoted version) instead of generating any."""
    from rich.progress import Progress

    if community not in ("sim", "synthetic"):
        raise ValueError(f"--community must be sim or synthetic, got {community!r}")
    if train and community != "sim":
        raise ValueError("--train: only with --community sim (a synthetic community is built by the server)")
    runs = []
    extra = ["--config", str(config)] if config else []
    with Progress(transient=True) as prog:
        if workspace is not None:
            task = prog.add_task("bench serve", total=1)
            if not (workspace / "notefeed.duckdb").exists():
                raise ValueError(f"--workspace: {workspace} holds no workspace (notefeed.duckdb)")
            n, user_ids = _workspace_users(workspace)
            runs.append({"notes": n, "community": f"workspace {workspace}",
                         **_bench_one(workspace, n, user_ids, extra, requests, concurrency, max_seconds, prog, task)})
            prog.advance(task)
        else:
            task = prog.add_task("bench serve", total=len(sizes))
        for n in sizes if workspace is None else []:
            if n < 1:
                raise ValueError(f"--sizes: community size must be >= 1, got {n}")
            with tempfile.TemporaryDirectory(prefix="notefeed-bench-") as tmp:
                ws = Path(tmp) / "ws"
                run_extra = list(extra)
                t0 = time.perf_counter()
                trained: dict[str, Any] = {}
                if community == "sim":
                    prog.update(task, description=f"sim generate {n:,} notes")
                    user_ids = _sim_workspace(ws, n, timeout=1800)
                    gen = time.perf_counter() - t0
                    if train:
                        prog.update(task, description=f"notefeed train on {n:,} notes")
                        trained = _train(ws, config, timeout=4 * 3600)
                else:
                    run_extra += ["--synthetic-notes", str(n)]
                    user_ids = [f"u{i}" for i in range(max(10, n // 10))]
                    gen = time.perf_counter() - t0
                one = _bench_one(ws, n, user_ids, run_extra, requests, concurrency, max_seconds, prog, task)
            runs.append({"notes": n, "community": community, "generate_s": gen, **trained, **one})
            prog.advance(task)
    p99 = {r["notes"]: (r["pipelines"]["default"]["end_to_end"] or {}).get("p99_ms") for r in runs}
    srv = {r["notes"]: (r["pipelines"]["default"]["server_stages"].get("total") or {}).get("p99_ms") for r in runs}
    from notefeed.serve.config import ServeConfig, load_config

    gate = (load_config(config) if config else ServeConfig()).api.feed_concurrency
    return {
        "bench": "serve",
        "machine": machine_info(),
        "config": str(config) if config else "built-in defaults (configs/default.yaml)",
        "trained": bool(train) or workspace is not None,
        "feed_concurrency": gate,
        "targets_ms": {"p99_full_100k": 50, "p99_full_1M": 100, "p99_learned_default_1M": 50},
        "targets_s": {"startup_trained_100k": 10},
        "p99_full_funnel_client_ms": p99,
        "p99_full_funnel_server_ms": srv,
        "startup_s": {r["notes"]: r["startup_s"] for r in runs},
        "runs": runs,
        "notes": "client-side end-to-end over HTTP on loopback (load generator on the same cores), "
                 "one uvicorn worker; per-stage and server total from the Server-Timing header; "
                 "queue: the wait for one of the api.feed_concurrency places (feed_concurrency; 0: "
                 "no limit), outside the server total; both pipelines' pages share those places, "
                 "so a popularity-only page may wait for a full-funnel one; "
                 "startup_s: process start until /healthz answers; runs[].served: the model version "
                 "the server reported (fallback true = the untrained built-in pipeline); "
                 "runs[].load_cpu: CPU seconds of the server process and of the load generator "
                 "during the load phase (a figure the machine's other load barely moves)",
        "load_avg_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "stages_p50_ms_default": {r["notes"]: {k: v["median_ms"] for k, v in
                                                r["pipelines"]["default"]["server_stages"].items()} for r in runs},
    }


def run_steps(workspace: Path, users: int = 400, seed: int = 0, config: Path | None = None,
              progress: bool = True) -> dict[str, Any]:
    """``notefeed bench steps``: the serving engine of ``workspace`` (its promoted model version,
    as ``notefeed serve`` loads it) built in this process, then one feed request at a time for
    ``users`` of its known users (a seeded sample): the pipeline's own time per step and in
    all, p50 / p99, without HTTP, JSON or concurrent requests. Beside ``bench serve`` it shows
    how much of a page's latency is the pipeline and how much the server around it."""
    import gc

    from notefeed.serve.cli import load_workspace_dataset
    from notefeed.serve.config import ServeConfig, load_config
    from notefeed.serve.versions import engine_from_store
    from notefeed.threads import freeze_heap, one_thread

    if users < 1:
        raise ValueError(f"--users: must be >= 1, got {users}")
    with one_thread():  # as a serving process runs (scoped: the caller's settings come back)
        t0 = time.perf_counter()
        cfg = load_config(config) if config is not None else ServeConfig()
        ds = load_workspace_dataset(workspace, data=cfg.data)
        eng = engine_from_store(ds, cfg, workspace)
        startup = time.perf_counter() - t0
        freeze_heap()  # as a serving process freezes its built heap
        try:
            return _time_steps(eng, ds, users, seed, progress, workspace, config, startup)
        finally:
            gc.unfreeze()
            eng.close()


def _time_steps(eng: Any, ds: Any, users: int, seed: int, progress: bool, workspace: Path,
                config: Path | None, startup: float) -> dict[str, Any]:
    """:func:`run_steps`' requests on the built engine ``eng``."""
    import numpy as np
    from tqdm.auto import tqdm

    ids = ds.users["user_id"].astype(str).to_numpy()
    if not len(ids):
        raise ValueError(f"--workspace: {workspace} has no users")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(ids, min(users, len(ids)), replace=False)
    per: dict[str, list[float]] = {}
    total: list[float] = []
    for uid in tqdm(chosen, desc="feeds", disable=not progress):
        _, res = eng.feed(str(uid), 10, "default")
        total.append(res.total_ms / 1e3)
        for s in res.stages:
            per.setdefault(f"{s.kind}:{s.name}", []).append(s.ms / 1e3)
    steps = {k: latency_stats(v) for k, v in per.items()}
    order = sorted(steps, key=lambda k: -steps[k]["p99_ms"])
    return {"bench": "steps", "machine": machine_info(), "workspace": str(workspace),
            "model_version": eng.served.version, "fallback": list(eng.served.fallback),
            "config": str(config) if config else "built-in defaults (configs/default.yaml)",
            "startup_s": startup, "users": int(len(chosen)), "seed": seed,
            "total": latency_stats(total), "steps": {k: steps[k] for k in order}}
