"""Resident memory of one process that trains round after round, as ``notefeed train --every``
does, with and without handing the freed memory back after each round
(:func:`notefeed.threads.trim_heap`, what ``train --every`` now calls).

Each arm runs in its own child process (memory cannot be compared inside one): a 5,000-note
synthetic community, the default config without SASRec, ``rounds`` rounds of
``train_workspace``; after each round ``gc.collect()`` and, in the ``trim`` arm, ``trim_heap()``,
then the resident size is read from ``/proc/self/statm``.

``python3 docs/results/train/memory_rounds/memory_rounds.py [rounds]`` writes
``memory_rounds.json`` here.
"""
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import gc, json, logging, sys, tempfile, time
from pathlib import Path
from notefeed.data.store import Workspace
from notefeed.models.train import train_workspace
from notefeed.serve.config import load_config
from notefeed.serve.synth import synthetic_community
from notefeed.threads import trim_heap
logging.disable(logging.CRITICAL)
rounds, trim = int(sys.argv[1]), sys.argv[2] == "trim"
ds = synthetic_community(5000, n_users=1000, n_events=60000, seed=3)
ws = Path(tempfile.mkdtemp()) / "ws"
with Workspace.open(ws) as w:
    w.save_dataset(ds)
cfg = load_config(None)
cfg = cfg.with_overrides(recall={"channels": [c.model_dump() for c in cfg.recall.channels if c.name != "sequence/sasrec"]})
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
out = []
for r in range(rounds):
    t = time.perf_counter()
    train_workspace(ws, cfg, progress=False)
    gc.collect()
    before = rss_mb()
    ms = trim_heap() if trim else None
    out.append({"round": r, "rss_mb": round(rss_mb(), 1), "rss_before_trim_mb": round(before, 1),
                "trim_ms": None if ms is None else round(ms, 1), "round_s": round(time.perf_counter() - t, 1)})
    print(json.dumps(out[-1]), file=sys.stderr, flush=True)
print(json.dumps(out))
"""


def arm(rounds: int, mode: str) -> list[dict]:
    p = subprocess.run([sys.executable, "-c", CHILD, str(rounds), mode], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    from notefeed.eval.timing import machine_info

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    res = {mode: arm(rounds, mode) for mode in ("no-trim", "trim")}
    summary = {mode: {"rss_mb_min": min(r["rss_mb"] for r in rows), "rss_mb_max": max(r["rss_mb"] for r in rows),
                      "rss_mb_last": rows[-1]["rss_mb"]} for mode, rows in res.items()}
    out = {"rounds": rounds, "summary": summary, "per_round": res, "machine": machine_info(),
           "command": f"python3 docs/results/train/memory_rounds/memory_rounds.py {rounds}"}
    (Path(__file__).parent / "memory_rounds.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
