"""Start-up of a server whose workspace received N events through the API, with the SQLite
event log kept whole (``online.log_keep: 0``: every start replays all of it) and compacted by
the sync to its newest 200,000 entries (the default ``log_keep``), the rest read from the
store's dataset. Same events, same process, one after the other.

``python3 docs/results/serve/log_compaction/startup.py [N]`` writes ``startup_<N>.json`` here.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from notefeed.data.store import Workspace
from notefeed.eval.timing import machine_info
from notefeed.models.sync import sync_workspace
from notefeed.online.bus import SqliteEventBus
from notefeed.online.events import EventRecord
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine, popular_config
from notefeed.serve.synth import synthetic_community

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
keep = 200_000
base = synthetic_community(2000, n_users=500, n_events=5000, seed=1)
rng = np.random.default_rng(0)
notes, users = base.notes["note_id"].tolist(), base.users["user_id"].tolist()
t0 = 1_700_000_000


def workspace(root: Path) -> Path:
    ws = root / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(base)
    bus = SqliteEventBus(ws / "events.sqlite", synchronous="NORMAL")
    for lo in range(0, n, 100_000):
        k = min(100_000, n - lo)
        u, i = rng.integers(0, len(users), k).tolist(), rng.integers(0, len(notes), k).tolist()
        bus.append([EventRecord(user_id=users[a], note_id=notes[b], ts=t0 + lo + j, type="like" if j % 3 == 0 else "click",
                                received_at=float(t0 + lo + j)) for j, (a, b) in enumerate(zip(u, i, strict=True))])
    bus.close()
    return ws


out = {"events": n, "kept_when_compacted": keep, "runs": {}}
for label, log_keep in (("log kept whole", 0), ("log compacted", keep)):
    cfg = popular_config(builtin_config()).with_overrides(online={"synchronous": "NORMAL", "log_keep": log_keep})
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp))
        if log_keep:
            t = time.perf_counter()
            rep = sync_workspace(ws, cfg)
            sync_s = time.perf_counter() - t
        t, c = time.perf_counter(), time.process_time()
        with Workspace.open(ws, create=False, read_only=True) as w:
            ds = w.load_dataset()
        load_s = time.perf_counter() - t
        eng = Engine(ds, cfg, ws)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        bus = SqliteEventBus(ws / "events.sqlite")
        row = {"start_wall_s": round(wall, 2), "start_cpu_s": round(cpu, 2), "dataset_load_s": round(load_s, 2),
               "dataset_events": len(ds.events), "log_rows_kept": bus.count() - bus.base, "replayed": eng.replayed,
               "popularity_sum": float(eng.catalog.popularity().sum())}
        if log_keep:
            row.update(sync_s=round(sync_s, 2), synced=rep.events, compacted=rep.compacted)
        bus.close()
        eng.close()
    out["runs"][label] = row
    print(label, row, flush=True)
out["machine"] = machine_info()
out["command"] = f"python3 docs/results/serve/log_compaction/startup.py {n}"
(Path(__file__).parent / f"startup_{n}.json").write_text(json.dumps(out, indent=1) + "\n")
