"""The event lake on a real dataset: export, compaction, a DuckDB query, the lake-read dataset
against the workspace's, and Swing from the lake on the local and the Ray engine.

Swing is built twice per engine: from the dataset the driver read from the lake, and with each
capping task reading its own users' events from the Parquet files (:func:`lake_cap_log`).

``notefeed bench lake --dataset taobao --json docs/results/batch/lake_taobao.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["bench_lake"]


def _dir_mib(d: Path) -> float:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) / 2**20


def bench_lake(dataset: str, engines: list[str], chunk: int = 5000, workers: int = 2,
               log: Any = print) -> dict[str, Any]:
    from notefeed.batch.base import open_engine
    from notefeed.batch.bench import _noop, _sha
    from notefeed.batch.jobs import lake_cap_log
    from notefeed.data.lake import EventLake, load_lake_dataset
    from notefeed.data.loaders import load_dataset
    from notefeed.data.store import DB_NAME, Workspace
    from notefeed.recall.item2item import SwingChannel

    out: dict[str, Any] = {"bench": "lake", "dataset": dataset, "export_chunk_rows": chunk}
    ds = load_dataset(dataset)
    with tempfile.TemporaryDirectory(prefix="notefeed-bench-lake-") as tmp:
        ws_dir = Path(tmp)
        with Workspace.open(ws_dir) as ws:
            ws.save_dataset(ds)
            want = ws.load_dataset()
        lake = EventLake.for_workspace(ws_dir)
        t0 = time.perf_counter()
        n = lake.export_workspace(ws_dir, chunk=chunk)
        out["export"] = {"events": n, "seconds": time.perf_counter() - t0, "days": len(lake.days()),
                         "files": len(lake.files()), "lake_mib": _dir_mib(lake.root),
                         "workspace_db_mib": (ws_dir / DB_NAME).stat().st_size / 2**20}
        out["export_again_adds"] = lake.export_workspace(ws_dir)
        t0 = time.perf_counter()
        r = lake.compact()
        out["compact"] = {"seconds": time.perf_counter() - t0, "days": r.days, "files_before": r.files_before,
                          "files_after": r.files_after, "rows_before": r.rows_before, "rows_after": r.rows_after,
                          "lake_mib": _dir_mib(lake.root)}
        t0 = time.perf_counter()
        per_day = lake.query("SELECT day, count(*) AS events, count(DISTINCT user_id) AS users FROM events "
                             "GROUP BY day ORDER BY day")
        out["query"] = {"sql": "events and users per day", "seconds": time.perf_counter() - t0,
                        "rows": per_day.to_dict("records")}
        t0 = time.perf_counter()
        got = load_lake_dataset(ws_dir)
        out["read_dataset_s"] = time.perf_counter() - t0
        try:
            pd.testing.assert_frame_equal(got.events, want.events)
            out["lake_dataset_equals_workspace"] = True
        except AssertionError:
            out["lake_dataset_equals_workspace"] = False
        out["swing_from_lake"] = {}
        for name in engines:
            eng = open_engine(name, num_cpus=workers if name == "ray" else None)
            try:
                if name == "ray":  # start the workers before the clock
                    eng.map(_noop, list(range(workers)))
                ch = SwingChannel(block=64)
                ch.engine = eng
                t0 = time.perf_counter()
                ch.fit(got)  # the dataset read from the lake by the driver
                res = {"seconds": time.perf_counter() - t0, "nnz": int(ch.sim.nnz), "sha256": _sha(ch.sim)}
                t0 = time.perf_counter()
                # each task reads its own users' events from the Parquet files
                capped = lake_cap_log(eng, lake.root, got.users["user_id"], got.notes["note_id"], ch.item_cap,
                                      ch.user_cap)
                direct = SwingChannel(block=64)
                direct.engine = eng
                direct.fit_capped(*capped)
                res.update(tasks_read_lake_seconds=time.perf_counter() - t0,
                         tasks_read_lake_sha256=_sha(direct.sim))
                out["swing_from_lake"][name] = res
            finally:
                eng.close()
            log(f"swing on {name}: {out['swing_from_lake'][name]}")
    shas = {v[k] for v in out["swing_from_lake"].values() for k in ("sha256", "tasks_read_lake_sha256")}
    out["swing_same_on_every_engine"] = len(shas) == 1
    return out
