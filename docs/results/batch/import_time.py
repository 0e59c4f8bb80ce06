"""What a fresh process pays to import a module (a Ray worker's first task imports
``notefeed.batch.jobs``) or to run a ``notefeed`` command line, for two source trees side by side.

``python3 docs/results/batch/import_time.py OLD_TREE NEW_TREE [--module M | --cli ARGS] [--reps N] --json OUT``
runs ``python3 -c "import M"`` (or ``notefeed ARGS``, e.g. ``--cli=--help``, through
``notefeed.cli.app`` in the same way) with ``PYTHONPATH`` set to each tree, alternating, ``N``
times each, and writes each run's CPU (user + system, of the child) and wall seconds and whether
torch was imported, with the medians. (For an older commit: ``git worktree add /tmp/old REV``.)
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def one(tree: str, module: str, cli: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": tree}
    code = f"import sys, {module}; print(int('torch' in sys.modules))"
    if cli is not None:  # the command's own output first, then the torch line
        code = (f"import sys, shlex; sys.argv = ['notefeed', *shlex.split({cli!r})]\n"
                "import notefeed.cli\ntry:\n    notefeed.cli.app()\nexcept SystemExit:\n    pass\n"
                "print(int('torch' in sys.modules))")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True,
                         check=True).stdout
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "torch": out.strip().split("\n")[-1] == "1"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--module", default="notefeed.batch.jobs")
    ap.add_argument("--cli", default=None, help="run `notefeed CLI` instead of importing --module")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for _ in range(a.reps):
        for name, tree in (("old", a.old), ("new", a.new)):
            runs[name].append(one(os.path.abspath(tree), a.module, a.cli))
    commits = {}
    for name, tree in (("old", a.old), ("new", a.new)):
        commits[name] = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip()
    summary = {name: {"median_cpu_s": statistics.median(r["cpu_s"] for r in rs),
                      "median_wall_s": statistics.median(r["wall_s"] for r in rs),
                      "torch_imported": all(r["torch"] for r in rs)} for name, rs in runs.items()}
    doc = {"module": a.module if a.cli is None else None, "cli": a.cli, "reps": a.reps, "commits": commits, "summary": summary, "runs": runs,
           "load_average": os.getloadavg()}
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
