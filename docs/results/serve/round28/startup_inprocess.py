"""A trained workspace's start-up, in process, for two source trees side by side.

``python3 docs/results/serve/round28/startup_inprocess.py OLD_TREE NEW_TREE WORKSPACE [--reps N] --json OUT``

Each run is a fresh process with ``PYTHONPATH`` set to one tree (the two alternate, ``N`` runs
each). It copies ``WORKSPACE`` (a trained one, before any serving: the first start after
``notefeed train``) to a temporary folder and times what ``notefeed serve`` does before it
answers: importing the server, loading the workspace's dataset (``load_workspace_dataset``) and
building the engine of the promoted version (``engine_from_store``, the default config). It
records the seconds of each part, the CPU seconds of the process, the version served and any
fallback (a run that falls back is an error).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, shutil, sys, tempfile, time
t0 = time.perf_counter(); c0 = time.process_time()
from pathlib import Path
import notefeed.serve.app  # noqa: F401  (what the server imports)
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.config import load_config
from notefeed.serve.versions import engine_from_store
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    ws = Path(tmp) / "ws"
    shutil.copytree(sys.argv[1], ws)
    t2 = time.perf_counter(); c2 = time.process_time()
    ds = load_workspace_dataset(ws)
    t3 = time.perf_counter()
    engine = engine_from_store(ds, load_config(None), ws)
    t4 = time.perf_counter(); c4 = time.process_time()
    print(json.dumps({"import_s": t1 - t0, "load_s": t3 - t2, "engine_s": t4 - t3, "total_s": (t1 - t0) + (t4 - t2),
                      "cpu_s": (c4 - c2) + (c2 - c0), "version": engine.model_version,
                      "fallback": list(engine.served.fallback)}))
"""


def one(tree: str, workspace: str) -> dict:
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run([sys.executable, "-c", CHILD, workspace], env=env, cwd=tree, capture_output=True,
                         text=True, check=True).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    if rec["fallback"]:
        raise SystemExit(f"{tree}: the engine fell back: {rec['fallback']}")
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("workspace")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for _ in range(a.reps):
        for name, tree in (("old", a.old), ("new", a.new)):
            runs[name].append(one(os.path.abspath(tree), os.path.abspath(a.workspace)))
    commits = {name: subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip() for name, tree in (("old", a.old), ("new", a.new))}
    summary = {name: {f"median_{k}": round(statistics.median(r[k] for r in rs), 3)
                      for k in ("import_s", "load_s", "engine_s", "total_s", "cpu_s")}
               for name, rs in runs.items()}
    doc = {"workspace": a.workspace, "reps": a.reps, "commits": commits, "summary": summary, "runs": runs,
           "load_average": os.getloadavg()}
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
