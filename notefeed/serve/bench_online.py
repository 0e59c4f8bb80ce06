"""``notefeed bench workers`` and ``notefeed bench online-train``: how fast serving learns.

- **workers**: a private ``redis-server`` (or ``--redis-url``), two ``notefeed serve``
  processes on one workspace sharing it (what ``serve --workers 2`` runs behind one port);
  a note published on A, timed until B serves it; a click posted to A, timed until B's next
  feed for that user no longer shows the note (the shared online state); repeated ``trials``
  times, plus the p50/p99 of feed requests spread over both.
- **workers --scaling** (:func:`run_worker_scaling`): one port, ``serve --workers 1`` then
  ``--workers 2`` on fresh copies of a (trained) workspace, each at the same load per worker:
  the feed p50/p99 side by side.
- **online-train**: an engine with a trained ``rank/ltr`` fine ranker and ``online.train``
  (background thread, as ``serve`` runs it) on a synthetic community; simulated users ask
  for pages and click one shown note each; per update, the wall seconds from each click's
  arrival to the hot swap of the version that learned from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from notefeed.eval.timing import latency_stats, machine_info
from notefeed.serve.bench import TOKEN, free_port, start_server, stop_server

__all__ = ["run_workers_bench", "run_online_train_bench", "run_worker_scaling", "redis_server"]

H = {"Authorization": f"Bearer {TOKEN}"}


def redis_server(url: str | None, tmp: Path) -> tuple[str, subprocess.Popen | None]:
    """``url`` when given (a running Redis), else a private ``redis-server`` on a free loopback
    port with no persistence, its files in ``tmp``: (its URL, the process to terminate)."""
    if url:
        return url, None
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("--redis-url: no redis-server binary on PATH; pass the URL of a running Redis")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    r = redis.Redis(port=port)
    try:
        for _ in range(200):
            try:
                r.ping()
                return f"redis://127.0.0.1:{port}/0", proc
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        r.close()
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _stats(seconds: list[float]) -> dict[str, float] | None:
    return latency_stats(seconds) if seconds else None


def _until(check: Any, timeout: float = 10.0) -> float | None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if check():
            return time.perf_counter() - t0
        time.sleep(0.005)
    return None


def run_workers_bench(trials: int = 30, requests: int = 400, redis_url: str | None = None) -> dict[str, Any]:
    import httpx
    import yaml

    with tempfile.TemporaryDirectory(prefix="notefeed-bench-workers-") as tmp:
        url, rproc = redis_server(redis_url, Path(tmp))
        cfg = {"recall": {"channels": [{"name": "fresh/recent", "quota": 50},
                                       {"name": "non-personalized/popular", "quota": 300}]},
               "coarse": {"scorer": "builtin/popularity"}, "fine": {"scorer": "builtin/linear"},
               "coldstart": {"enabled": False},
               "online": {"backend": "redis", "redis_url": url, "redis_prefix": f"bench{time.time_ns()}"}}
        cfg_path = Path(tmp) / "workers.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        ws = Path(tmp) / "ws"
        ports = [free_port(), free_port()]
        procs = []
        try:
            for p in ports:
                procs.append(start_server(ws, p, ["--config", str(cfg_path)], timeout=300))
            a, b = (httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=10) for p in ports)
            note_s, feed_s, misses = [], [], 0
            for i in range(200):  # a catalogue to serve from
                a.post("/v1/notes", json={"note_id": f"base{i}", "author_id": f"a{i % 50}"}, headers=H)
            _until(lambda: b.get("/healthz").json()["notes"] >= 200, 30)
            for t in range(trials):
                nid = f"n{t}"
                a.post("/v1/notes", json={"note_id": nid, "author_id": f"a{t}"}, headers=H)
                got = _until(lambda t=t: b.get("/healthz").json()["notes"] >= 201 + t)
                note_s.append(got) if got is not None else None
                uid = f"user{t}"
                top = b.get("/v1/feed", params={"user_id": uid, "n": 10}).json()["items"][0]["note_id"]
                t0 = time.perf_counter()
                a.post("/v1/events", headers=H, json={"events": [{"user_id": uid, "note_id": top,
                                                                   "ts": int(time.time()), "type": "click"}]})
                ok = _until(lambda uid=uid, top=top: top not in [
                    x["note_id"] for x in b.get("/v1/feed", params={"user_id": uid, "n": 10}).json()["items"]])
                if ok is None:
                    misses += 1
                else:
                    feed_s.append(time.perf_counter() - t0)
            lat: list[float] = []
            for r in range(requests):
                c = (a, b)[r % 2]
                t0 = time.perf_counter()
                c.get("/v1/feed", params={"user_id": f"load{r % 97}", "n": 10})
                lat.append(time.perf_counter() - t0)
            followed = [c.get("/healthz").json()["followed_events"] for c in (a, b)]
        finally:
            for p in procs:
                stop_server(p)
            if rproc is not None:
                rproc.terminate()
                rproc.wait(10)
    return {"bench": "workers", "machine": machine_info(), "workers": 2, "trials": trials,
            "note_to_other_worker": _stats(note_s), "event_to_other_workers_feed": _stats(feed_s),
            "event_misses": misses, "feed_over_both": _stats(lat), "followed_events": followed,
            "notes": "two `notefeed serve` processes on one workspace and one Redis, on the same 2 cores as the "
                     "client; built-in pipeline (the sharing, not the ranking, is measured)"}


def run_online_train_bench(pages: int = 600, min_groups: int = 32, seed: int = 0) -> dict[str, Any]:
    from notefeed.models.train import train_components
    from notefeed.schema import Event
    from notefeed.serve.config import ServeConfig
    from notefeed.serve.engine import Engine
    from notefeed.serve.synth import synthetic_community

    ds = synthetic_community(5000, n_users=500, n_events=20_000, seed=seed)
    cfg = ServeConfig().with_overrides(
        recall={"channels": [{"name": "item-to-item/swing", "quota": 200}, {"name": "embedding/als", "quota": 200},
                             {"name": "non-personalized/popular", "quota": 100}]},
        coldstart={"enabled": False},
        online={"train": True, "train_params": {"min_groups": min_groups, "max_wait_s": 5.0}})
    t0 = time.perf_counter()
    fitted, _ = train_components(cfg, ds, progress=False)
    train_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    ids = ds.users["user_id"].astype(str).to_numpy()
    updates: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="notefeed-bench-online-") as tmp:
        eng = Engine(ds, cfg, Path(tmp), fitted=fitted)
        try:
            base = eng.models.current().version
            feed_ms = []
            for _p in range(pages):
                u = str(ids[rng.integers(len(ids))])
                t1 = time.perf_counter()
                _, res = eng.feed(u, 10)
                feed_ms.append(time.perf_counter() - t1)
                pick = int(res.items[min(len(res.items) - 1, int(rng.integers(10)))])
                eng.ingest([Event(user_id=u, note_id=eng.catalog.note_ids[pick], ts=int(eng.clock()), type="click")])
                if eng.online_ltr.last and (not updates or eng.online_ltr.last["version"] != updates[-1]["version"]):
                    updates.append(dict(eng.online_ltr.last))
            _until(lambda: eng.online_ltr.stats()["ready"] == 0, 30)
            last = eng.online_ltr.last
            if last and (not updates or last["version"] != updates[-1]["version"]):
                updates.append(dict(last))
            st = eng.online_ltr.stats()
            served = eng.models.current().version
        finally:
            eng.close()
    med = [u["event_to_model_s_median"] for u in updates]
    mx = [u["event_to_model_s_max"] for u in updates]
    return {"bench": "online-train", "machine": machine_info(), "pages": pages, "min_groups": min_groups,
            "community": {"notes": ds.n_items, "users": ds.n_users, "events": len(ds.events)},
            "offline_train_s": train_s, "base_version": base, "served_version_at_end": served,
            "updates": st["updates"], "groups": st["groups"], "failed": st["failed"],
            "event_to_model_s": {"median_of_update_medians": float(np.median(med)) if med else None,
                                 "max": float(max(mx)) if mx else None},
            "train_per_update": _stats([u["train_s"] for u in updates]),
            "feed_while_training": _stats(feed_ms), "per_update": updates,
            "notes": "one process: requests and ingest on the main thread, updates on the trainer thread (as in "
                     "`serve` with online.train); each simulated user clicks one shown note per page"}


def _live_workers(server_pid: int) -> list[int]:
    """The pids of the live worker processes (uvicorn's ``spawn_main`` children) of ``server_pid``;
    a worker that died is a zombie with no command line and is not counted."""
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{server_pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    except OSError:
        return []
    out = []
    for k in kids:
        try:
            if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes():
                out.append(k)
        except OSError:
            pass
    return sorted(out)


def _pin(pid: int, core: int) -> int:
    """Every thread of process ``pid`` on ``core`` (threads it starts later inherit it from
    the thread that starts them); returns ``core``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {core})
        except (ProcessLookupError, FileNotFoundError):  # a thread that just ended
            pass
    return core


def _worker_pids(base: str, server_pid: int, n: int, timeout: float = 600.0) -> list[int]:
    """The pids of the ``n`` live workers behind ``base`` once every one of them has answered
    ``/healthz`` or, where connections do not reach each in turn, once ``n`` are alive and one
    answers. Raises RuntimeError when fewer than ``n`` are alive within ``timeout``: a worker that
    died at start-up would leave the others serving all the load, and the comparison would be
    wrong."""
    import httpx

    answered: set[int] = set()
    deadline = time.monotonic() + timeout
    live: list[int] = []
    while time.monotonic() < deadline:
        try:
            answered.add(int(httpx.get(f"{base}/healthz", timeout=30.0).json()["pid"]))
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        live = _live_workers(server_pid) if n > 1 else sorted(answered)
        if len(live) >= n and (answered >= set(live) or time.monotonic() > deadline - timeout / 2):
            return live
        time.sleep(0.1)
    raise RuntimeError(f"only {len(live)} of {n} workers alive within {timeout:.0f} s (did one die at start-up? "
                       "see the server's log)")


def run_worker_scaling(workspace: Path, requests_per_worker: int = 500, concurrency_per_worker: int = 2,
                       redis_url: str | None = None, config: Path | None = None, workers: tuple[int, ...] = (1, 2),
                       max_seconds: float = 900.0, rates_per_worker: tuple[float, ...] = (),
                       warmup_per_worker: int = 0, pin: bool = False) -> dict[str, Any]:
    """One port, ``serve --workers N`` for each N in ``workers``, at the same load per worker
    (``N x concurrency_per_worker`` client threads, ``N x requests_per_worker`` requests per
    pipeline): the p50/p99 of each, side by side. Each N serves a fresh copy of ``workspace``
    (its promoted version) with ``config`` (default: the default config) and its online
    state in Redis (what several workers need). The client threads share the machine's cores
    with the workers: on a small machine that caps what the comparison can show.

    Closed loop by default (each client thread always has a request in flight: the workers
    are saturated, so this measures p99 at full load). ``rates_per_worker``: instead, for each
    rate R, an open-loop Poisson load of ``N x R`` requests/s (both pipelines together) on the
    same server, one rate after the other -- the same per-worker load as an arrival rate.
    ``warmup_per_worker``: first, that many requests per pipeline and worker, not measured (a
    fresh worker's first requests pay for lazy loading and cold caches: seconds at 1M notes).

    ``pin``: each worker's threads on a core of its own (worker k on the k-th core this process
    may use), the one-worker run included, so that every worker has one core whatever the run:
    the comparison "one core per worker" means, on a machine with few cores (the client and
    Redis still share them). Each run also records its workers' CPU seconds per request."""
    import yaml

    from notefeed.serve.bench import _load, _served, _workspace_users, process_cpu_s
    from notefeed.serve.config import ServeConfig, load_config

    cores = sorted(os.sched_getaffinity(0)) if pin else []
    if pin and len(cores) < max(workers):
        raise ValueError(f"--pin: {max(workers)} workers need as many cores, this process may use {len(cores)}")

    if not (workspace / "notefeed.duckdb").exists():
        raise ValueError(f"--workspace: {workspace} holds no workspace (notefeed.duckdb)")
    n_notes, user_ids = _workspace_users(workspace)
    base_cfg = load_config(config) if config is not None else ServeConfig()
    runs = []
    with tempfile.TemporaryDirectory(prefix="notefeed-bench-scaling-") as tmp:
        url, rproc = redis_server(redis_url, Path(tmp))
        try:
            for n in workers:
                ws = Path(tmp) / f"ws{n}"
                shutil.copytree(workspace, ws)
                cfg = base_cfg.with_overrides(online={"backend": "redis", "redis_url": url,
                                                      "redis_prefix": f"scaling{n}-{time.time_ns()}"})
                cfg_path = Path(tmp) / f"workers{n}.yaml"
                cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
                port = free_port()
                t0 = time.perf_counter()
                proc = start_server(ws, port, ["--config", str(cfg_path), "--workers", str(n)], timeout=1800)
                startup = time.perf_counter() - t0
                base = f"http://127.0.0.1:{port}"
                try:
                    served = _served(base)
                    served["worker_pids"] = pids = _worker_pids(base, proc.pid, n)
                    if pin:
                        served["worker_cores"] = [_pin(pid, cores[k]) for k, pid in enumerate(pids)]
                    if warmup_per_worker:
                        _load(base, user_ids, n * warmup_per_worker, n * concurrency_per_worker, max_seconds)
                    for rate in rates_per_worker or (None,):
                        c0, w0 = time.process_time(), [process_cpu_s(p) for p in pids]
                        load = _load(base, user_ids, n * requests_per_worker, n * concurrency_per_worker, max_seconds,
                                     rate=None if rate is None else n * rate, seed=n)
                        client_cpu = time.process_time() - c0
                        w1 = [process_cpu_s(p) for p in pids]
                        worker_cpu = (sum(b - a for a, b in zip(w0, w1, strict=True))
                                      if None not in w0 + w1 else None)  # type: ignore[operator]
                        served_n = sum(p["requests"] for p in load["pipelines"].values())
                        runs.append({"workers": n, "rate_per_worker": rate, "startup_s": startup, "served": served,
                                     **load, "client_cpu_s": client_cpu, "workers_cpu_s": worker_cpu,
                                     # every worker's CPU (the event posts' work included) per
                                     # feed request of both pipelines
                                     "workers_cpu_ms_per_request": None if worker_cpu is None or not served_n
                                     else 1e3 * worker_cpu / served_n})
                finally:
                    stop_server(proc)
                shutil.rmtree(ws, ignore_errors=True)
        finally:
            if rproc is not None:
                rproc.terminate()
                rproc.wait(10)
    out: dict[str, Any] = {"bench": "worker-scaling", "machine": machine_info(), "workspace": str(workspace),
                           "notes": n_notes, "config": str(config) if config else "built-in defaults",
                           "requests_per_worker": requests_per_worker,
                           "concurrency_per_worker": concurrency_per_worker, "warmup_per_worker": warmup_per_worker,
                           "pinned": pin,
                           "load": "open loop, Poisson arrivals" if rates_per_worker else "closed loop", "runs": runs}
    by_rate: dict[str, Any] = {}
    for rate in rates_per_worker or (None,):
        p99 = {r["workers"]: (r["pipelines"]["default"]["end_to_end"] or {}).get("p99_ms")
               for r in runs if r["rate_per_worker"] == rate}
        row: dict[str, Any] = {"p99_default_client_ms": p99}
        if len(workers) >= 2 and all(p99.get(n) for n in workers[:2]):
            row["p99_ratio"] = p99[workers[1]] / p99[workers[0]]
        by_rate["closed" if rate is None else f"{rate:g}/s"] = row
    if rates_per_worker:
        out["by_rate_per_worker"] = by_rate
    else:  # the closed-loop layout as before
        out.update(by_rate["closed"])
    return out
