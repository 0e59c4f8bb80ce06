"""The scaling study: Swing (or ItemCF) on a large simulated log, local kernel vs Ray.

``bench_batch`` writes the log once (``.npy`` files), then runs each engine in a fresh child
process (``python -m notefeed.batch.bench``) so that every peak-memory figure belongs to one
engine. Each child times capping + the neighbour table, records the peak RSS of the driver and
(Ray) of every worker, and a SHA-256 of the table, so the parent can state whether the engines
produced the same bytes. The cluster arithmetic at the end is labelled as such: it is derived
from the measured rates and sizes, not measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bench_batch", "run_engine"]

_GIB = 1024.0**3


def _sha(sim: Any) -> str:
    h = hashlib.sha256()
    for a in (sim.indptr.astype(np.int64), sim.indices.astype(np.int64), sim.data.astype(np.float32)):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _csr_bytes(m: Any) -> int:
    return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


def run_engine(engine: str, log_dir: Path, kernel: str, workers: int, item_cap: int, user_cap: int,
               top_n: int, block: int, progress: bool = True, recycle: bool | str = "auto",
               worker_tasks: int = 4) -> dict[str, Any]:
    """One engine on the log in ``log_dir`` (users/items/ts ``.npy`` + meta.json), in this process."""
    from notefeed.batch.base import open_engine

    meta = json.loads((log_dir / "meta.json").read_text())
    users, items, ts = (np.load(log_dir / f"{c}.npy", allow_pickle=False) for c in ("users", "items", "ts"))
    n_users, n_items, n = int(meta["n_users"]), int(meta["n_items"]), int(users.size)
    out: dict[str, Any] = {"engine": engine, "workers": workers if engine == "ray" else 1,
                           "loadavg_1_5_15_before": list(os.getloadavg())}
    t0 = time.perf_counter()
    eng = open_engine(engine, num_cpus=workers if engine == "ray" else None, recycle=recycle,
                      worker_tasks=worker_tasks)
    if engine == "ray":  # start the worker processes before the clock, as a running cluster has them
        out["recycle"], out["worker_tasks"] = recycle, worker_tasks
        eng.map(_noop, list(range(workers)))
        eng.task_stats.clear()
    out["startup_s"] = time.perf_counter() - t0
    mem = _TreeMemory()
    try:
        mem.__enter__()
        t0, c0, tree0 = time.perf_counter(), _cpu_s(), _tree_cpu(os.getpid())
        hist, iu = eng.cap_log(users, items, ts, n_users, n_items, item_cap, user_cap)
        del users, items, ts  # the table needs only the capped matrices
        out["cap_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        sim = eng.build_rows(kernel, hist, iu, np.arange(n_items), top_n, block=block, progress=progress)
        out["rows_s"] = time.perf_counter() - t1
        out["total_s"] = time.perf_counter() - t0
        out["driver_cpu_s"] = _cpu_s() - c0
        tree1 = _tree_cpu(os.getpid())
        # the processes alive at the end (driver, Ray daemons, workers still up), in this window
        out["process_tree_cpu_s"] = sum(v - tree0.get(pid, 0.0) for pid, v in tree1.items())
        stats = list(getattr(eng, "task_stats", []))
        # workers gone by the end (recycled) took their CPU with them: their tasks' CPU, and in
        # a worker started for recycled tasks, everything before its first task (its start)
        starts: dict[int, float] = {}
        for s in stats:
            if s.get("fresh"):
                starts[s["pid"]] = min(starts.get(s["pid"], float("inf")), s.get("cpu_before_s", 0.0))
        out["exited_workers_cpu_s"] = (sum(s["cpu_s"] for s in stats if s["pid"] not in tree1)
                                       + sum(v for pid, v in starts.items() if pid not in tree1))
        out["fresh_worker_start_cpu_s"] = sum(starts.values())
    finally:
        mem.__exit__()
        eng.close()
    cores = out["workers"]
    out.update({
        "events_per_s": n / out["total_s"], "events_per_s_per_core": n / out["total_s"] / cores,
        "capped_pairs": int(hist.nnz), "item_users_pairs": int(iu.nnz), "table_nnz": int(sim.nnz),
        "hist_mib": _csr_bytes(hist) / 2**20, "item_users_mib": _csr_bytes(iu) / 2**20,
        "table_mib": _csr_bytes(sim) / 2**20, "table_sha256": _sha(sim),
        "driver_peak_rss_mib": _own_peak_rss_mib(),
        "loadavg_1_5_15_after": list(os.getloadavg()),
    })
    out["driver_peak_anon_mib_sampled"] = mem.peak_anon_mib.get(os.getpid(), 0.0)
    out["tree_peak_anon_mib_sampled"] = mem.peak_tree_anon_mib  # driver + workers + daemons, summed
    out["dev_shm_peak_used_mib_sampled"] = mem.peak_shm_used_mib  # the object store (and any other /dev/shm use)
    # all CPU the engine used: driver, tasks, and (Ray) its daemons, idle workers and the
    # workers that exited (recycled), their start included
    out["cpu_s"] = max(out["process_tree_cpu_s"] + out["exited_workers_cpu_s"],
                       out["driver_cpu_s"] + sum(s["cpu_s"] for s in stats))
    out["events_per_cpu_s"] = n / out["cpu_s"]
    if stats:
        out["tasks"] = len(stats)
        out["worker_peak_rss_mib"] = max(s["peak_rss_mb"] for s in stats)
        out["worker_peak_private_mib"] = max(s["private_mb"] for s in stats)
        out["worker_processes"] = len({s["pid"] for s in stats})
        # sampled by the driver every 0.2 s (see _TreeMemory): memory the object store does not share
        # (over the whole run: the same worker processes run every job)
        out["worker_peak_anon_mib_sampled"] = max(mem.peak_anon_mib.get(s["pid"], 0.0) for s in stats)
        for job in sorted({s["job"] for s in stats}):
            js = [s for s in stats if s["job"] == job]
            out[f"{job}_task_s_sum"] = sum(s["seconds"] for s in js)
            out[f"{job}_cpu_s_sum"] = sum(s["cpu_s"] for s in js)
            out[f"{job}_worker_peak_rss_mib"] = max(s["peak_rss_mb"] for s in js)
    return out


class _TreeMemory:
    """Samples, every ``every_s`` seconds on a thread, the memory of this process and its
    descendants (a local Ray cluster's workers and daemons): each process's peak anonymous
    (private) resident memory, the peak of their sum, and the peak use of ``/dev/shm`` (where
    Ray's object store lives on Linux). A worker's RSS also counts every object-store page it
    has touched, shared with the driver and the other workers; its anonymous memory does not.
    Sampled, so a peak shorter than ``every_s`` (or while this process holds the GIL) can be
    missed."""

    def __init__(self, every_s: float = 0.2) -> None:
        import threading

        self.every_s = every_s
        self.peak_anon_mib: dict[int, float] = {}
        self.peak_tree_anon_mib = 0.0
        self.peak_shm_used_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        root = os.getpid()
        while not self._stop.is_set():
            total = 0.0
            for pid in _descendants(root) | {root}:
                try:
                    with open(f"/proc/{pid}/status") as f:
                        anon = next((int(x.split()[1]) for x in f if x.startswith("RssAnon")), 0) / 1024.0
                except OSError:
                    continue
                total += anon
                self.peak_anon_mib[pid] = max(self.peak_anon_mib.get(pid, 0.0), anon)
            self.peak_tree_anon_mib = max(self.peak_tree_anon_mib, total)
            try:
                st = os.statvfs("/dev/shm")
                self.peak_shm_used_mib = max(self.peak_shm_used_mib,
                                             (st.f_blocks - st.f_bfree) * st.f_frsize / 2**20)
            except OSError:
                pass
            self._stop.wait(self.every_s)


def _descendants(root: int) -> set[int]:
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out: set[int] = set()
    for pid in parent:
        p = pid
        while p > 1 and p != root:
            p = parent.get(p, 0)
        if p == root and pid != root:
            out.add(pid)
    return out


def _own_peak_rss_mib() -> float:
    """This process's peak RSS since it was exec'ed (VmHWM), MiB. Not ``ru_maxrss``: Linux
    carries that across fork + exec, so an engine child of the bench would report the parent's
    peak (the log's generation) whenever it is larger than its own."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024.0
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds used so far by ``root`` and by each live descendant (a local Ray cluster's
    GCS, raylet, object store and workers are descendants of the driver), by pid, with what
    their exited children that they reaped used (``cutime``/``cstime``). A Ray worker's CPU is
    not reaped into its raylet's: a bench counts exited workers from their task stats."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d.name)] = int(f[1])
        used[int(d.name)] = (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick
    out: dict[int, float] = {}
    for pid in used:
        p = pid
        while p > 1 and p != root:
            p = parent.get(p, 0)
        if p == root:
            out[pid] = used[pid]
    return out


def _noop(shared: dict, item: int) -> int:
    return item


def _child(engine: str, log_dir: Path, args: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        res_path = Path(f.name)
    cmd = [sys.executable, "-m", "notefeed.batch.bench", engine, str(log_dir), str(res_path), json.dumps(args)]
    try:
        subprocess.run(cmd, check=True)
        return json.loads(res_path.read_text())
    finally:
        res_path.unlink(missing_ok=True)


def bench_batch(n_events: int, engines: list[str], kernel: str = "swing", workers: int = 2, item_cap: int = 50,
                user_cap: int = 100, top_n: int = 100, block: int = 512, seed: int = 0,
                log: Any = print, recycle: bool | str = "auto", worker_tasks: int = 4) -> dict[str, Any]:
    """The study's JSON (see the module docstring)."""
    from notefeed.recall.synthetic import synthetic_log

    t0 = time.perf_counter()
    users, items, ts, n_users, n_items = synthetic_log(n_events, seed=seed)
    gen_s = time.perf_counter() - t0
    log(f"simulated log: {n_events:,} events, {n_users:,} users, {n_items:,} items ({gen_s:.0f} s)")
    out: dict[str, Any] = {
        "bench": "batch", "kernel": kernel,
        "machine": {"cpus": os.cpu_count(), "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                                             / _GIB, 1), "python": sys.version.split()[0]},
        "log": {"generator": "notefeed.recall.synthetic.synthetic_log", "seed": seed, "events": n_events,
                "users": n_users, "items": n_items, "generate_s": gen_s,
                "generator_peak_rss_mib": _own_peak_rss_mib()},
        "params": {"item_cap": item_cap, "user_cap": user_cap, "top_n": top_n, "block": block, "workers": workers,
                   "recycle": recycle, "worker_tasks": worker_tasks},
        "runs": {},
    }
    args = {"kernel": kernel, "workers": workers, "item_cap": item_cap, "user_cap": user_cap, "top_n": top_n,
            "block": block, "recycle": recycle, "worker_tasks": worker_tasks}
    with tempfile.TemporaryDirectory(prefix="notefeed-bench-batch-") as tmp:
        d = Path(tmp)
        for name, arr in (("users", users), ("items", items), ("ts", ts)):
            np.save(d / f"{name}.npy", arr, allow_pickle=False)
        (d / "meta.json").write_text(json.dumps({"n_users": n_users, "n_items": n_items}))
        del users, items, ts
        for eng in engines:
            log(f"engine {eng}: running in a child process...")
            out["runs"][eng] = r = _child(eng, d, args)
            log(f"engine {eng}: {r['total_s']:.1f} s, {r['events_per_s']:,.0f} events/s "
                f"({r['events_per_s_per_core']:,.0f} per core)")
    out["summary"] = _summary(out)
    return out


def _summary(out: dict[str, Any]) -> dict[str, Any]:
    runs = out["runs"]
    s: dict[str, Any] = {}
    if "local" in runs and "ray" in runs:
        lo, ra = runs["local"], runs["ray"]
        s["same_table_as_local"] = lo["table_sha256"] == ra["table_sha256"]
        # wall clock per core: what a user sees, but on a shared machine it also counts the
        # time other processes held the cores; CPU seconds count only the work done
        s["local_over_ray_per_core_wall"] = lo["events_per_s_per_core"] / ra["events_per_s_per_core"]
        s["local_over_ray_per_cpu_second"] = lo["events_per_cpu_s"] / ra["events_per_cpu_s"]
        s["target_per_core_within_1_5x_wall"] = bool(s["local_over_ray_per_core_wall"] <= 1.5)
        s["target_per_core_within_1_5x_cpu"] = bool(s["local_over_ray_per_cpu_second"] <= 1.5)
        s["ray_speedup"] = lo["total_s"] / ra["total_s"]
    if "ray" in runs:
        ra = runs["ray"]
        s["ray_worker_peak_rss_gib"] = ra["worker_peak_rss_mib"] / 1024
        s["target_worker_within_2_gib"] = bool(ra["worker_peak_rss_mib"] <= 2048)
        if "worker_peak_anon_mib_sampled" in ra:  # RSS less the object-store pages a worker maps
            s["ray_worker_peak_anon_gib_sampled"] = ra["worker_peak_anon_mib_sampled"] / 1024
            s["target_worker_private_within_2_gib_sampled"] = bool(ra["worker_peak_anon_mib_sampled"] <= 2048)
    s["cluster_arithmetic"] = _arithmetic(out)
    return s


def _arithmetic(out: dict[str, Any]) -> dict[str, Any]:
    """Derived, not measured: what a cluster would need, from this machine's rates and sizes."""
    runs, p, lg = out["runs"], out["params"], out["log"]
    r = runs.get("ray") or next(iter(runs.values()))
    n = lg["events"]
    per_worker = r["events_per_cpu_s"]  # a worker that has its core to itself
    ev100 = 100_000_000
    scale = ev100 / n
    # synthetic_log has users = items = events / 25; the caps bound every structure
    users100, items100 = ev100 // 25, ev100 // 25
    hist_per_m_users = r["hist_mib"] / lg["users"] * 1e6
    iu_per_m_items = r["item_users_mib"] / lg["items"] * 1e6
    table_per_m_items = r["table_mib"] / lg["items"] * 1e6
    return {
        "label": "ARITHMETIC from the measured run above, not a measurement; assumes the rate per worker "
                 "holds (work per event is constant once the caps bind) and ignores network transfer",
        "events_per_s_per_worker": per_worker,
        "memory_mib_per_million_items": {"item_users (user_cap per item)": iu_per_m_items,
                                         "neighbour table (top_n per item)": table_per_m_items},
        "memory_mib_per_million_users": {"capped histories (item_cap per user)": hist_per_m_users},
        "bounds_bytes": {"hist": f"<= users * item_cap * 8 = users * {p['item_cap'] * 8}",
                         "item_users": f"<= items * user_cap * 8 = items * {p['user_cap'] * 8}",
                         "table": f"<= items * top_n * 8 = items * {p['top_n'] * 8}"},
        "grows_with": {
            "cap phase (by user)": "work grows with events / shards; shards hold <= 5M events each, so a "
                                   "task's memory does not grow with the log",
            "rows phase (by item)": "work grows with items * user_cap**2 (pairs of each item's capped users), "
                                    "not with events once the caps bind; each worker maps the capped matrices "
                                    "(users * item_cap + items * user_cap) once per node and holds one block "
                                    "(fixed by `block`)",
            "driver": "the capped histories (<= users * item_cap) and the final table (items * top_n)",
        },
        "at_100M_events": {
            "users": users100, "items": items100,
            "worker_seconds": ev100 / per_worker,
            "minutes_on_2_workers": ev100 / per_worker / 2 / 60,
            "minutes_on_16_workers": ev100 / per_worker / 16 / 60,
            "shared_capped_matrices_gib_per_node": (hist_per_m_users * users100 / 1e6
                                                    + iu_per_m_items * items100 / 1e6) / 1024,
            "table_gib": table_per_m_items * items100 / 1e6 / 1024,
            "worker_private_mib_measured": r.get("worker_peak_private_mib"),
            # the rows phase maps the shared capped matrices; its block working set does not grow
            "rows_worker_peak_rss_gib_projected": (
                (r["_rows_task_worker_peak_rss_mib"] - r["hist_mib"] - r["item_users_mib"]) / 1024
                + (hist_per_m_users * users100 / 1e6 + iu_per_m_items * items100 / 1e6) / 1024
                if "_rows_task_worker_peak_rss_mib" in r else None),
            "cap_worker_peak_rss_gib_projected": (r["_cap_shard_worker_peak_rss_mib"] / 1024
                                                  if "_cap_shard_worker_peak_rss_mib" in r else None),
            "scale_from_measured": scale,
        },
    }


if __name__ == "__main__":  # the child process of bench_batch
    _engine, _dir, _res, _args = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])
    _res.write_text(json.dumps(run_engine(_engine, _dir, **_args)))
