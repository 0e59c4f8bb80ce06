"""What a data window (``data.window_days``) saves on an older community: the simulator's
``demo`` community (3,000 users, 10,000 notes) with 60 days of logged history instead of 14,
read whole and with a 14-day window (each user's newest 200 positives kept, every follow and
hide). Per arm, each step in its own process (so peak memory is that step's): reading the
store (``load_workspace_dataset``), ``notefeed train`` with the default config (promoting its
version), and a server's start-up on that version (store read + ``engine_from_store`` + one
feed page).

``python3 docs/results/data/window/window.py [DAYS] [WINDOW]`` writes
``window_<DAYS>d.json`` here (defaults 60 and 14).
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def step(kind: str, ws: str, window: float) -> dict:
    from notefeed.serve.cli import load_workspace_dataset
    from notefeed.serve.config import ServeConfig

    cfg = ServeConfig().with_overrides(data={"window_days": window})
    t, c = time.perf_counter(), time.process_time()
    out: dict = {}
    if kind == "load":
        ds = load_workspace_dataset(Path(ws), data=cfg.data)
        out["events"] = len(ds.events)
    elif kind == "train":
        from notefeed.models.train import train_workspace

        out["version"] = train_workspace(ws, cfg, progress=False, sync=False)
    else:
        from notefeed.serve.versions import engine_from_store

        ds = load_workspace_dataset(Path(ws), data=cfg.data)
        eng = engine_from_store(ds, cfg, Path(ws))
        out["startup_s"] = time.perf_counter() - t
        _, res = eng.feed(str(ds.users["user_id"].iloc[0]), 20)
        out["version"], out["page_items"], out["errors"] = eng.model_version, len(res.items), len(res.errors)
        eng.close()
    out["wall_s"], out["cpu_s"] = time.perf_counter() - t, time.process_time() - c
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (``VmHWM``; ``ru_maxrss`` would
    carry the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if len(sys.argv) > 1 and sys.argv[1] == "--step":
    print(json.dumps(step(sys.argv[2], sys.argv[3], float(sys.argv[4]))))
    sys.exit(0)

from notefeed.data.store import Workspace  # noqa: E402
from notefeed.eval.timing import machine_info  # noqa: E402
from notefeed.sim.community import generate  # noqa: E402

days = int(sys.argv[1]) if len(sys.argv) > 1 else 60
window = float(sys.argv[2]) if len(sys.argv) > 2 else 14.0
out = {"command": f"python3 docs/results/data/window/window.py {days} {window:g}", "preset": "demo",
       "history_days": days, "window_days": window, "keep_per_user": 200, "arms": {}}
with tempfile.TemporaryDirectory() as tmp:
    ws = Path(tmp) / "ws"
    t = time.perf_counter()
    ds = generate("demo", seed=0, history_days=days).history()
    with Workspace.open(ws) as w:
        w.save_dataset(ds)
    out["events"], out["generate_s"] = len(ds.events), time.perf_counter() - t
    del ds
    for label, win in (("whole", 0.0), (f"{window:g}-day window", window)):
        arm = {}
        for kind in ("load", "train", "serve"):
            r = subprocess.run([sys.executable, __file__, "--step", kind, str(ws), str(win)], capture_output=True,
                               text=True, check=True)
            arm[kind] = json.loads(r.stdout.strip().splitlines()[-1])
            print(label, kind, arm[kind], flush=True)
        out["arms"][label] = arm
out["machine"] = machine_info()
path = Path(__file__).parent / f"window_{days}d.json"
path.write_text(json.dumps(out, indent=1))
print(f"wrote {path}")
