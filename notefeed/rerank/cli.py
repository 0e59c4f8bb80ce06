"""Commands of the rerank stage: ``notefeed bench rerank``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

_console = Console()


def bench_rerank(
    json_path: Path = typer.Option(None, "--json", help="write the result JSON here"),
    n: int = typer.Option(500, min=1, help="candidates per request"),
    d: int = typer.Option(64, min=1, max=4096, help="vector dimension"),
    k: int = typer.Option(80, min=1, help="page size"),
    window: int = typer.Option(10, min=0, help="SSD / sliding-DPP window and author-rule window"),
    reps: int = typer.Option(200, min=1, help="timed requests per method"),
    scaling: bool = typer.Option(True, help="also time N in 100..2000 and d in 16..256"),
    seed: int = typer.Option(0),
) -> None:
    """Latency of SSD, DPP (full and windowed), MMR and top-k side by side, single-thread."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from rich.progress import Progress

    from notefeed.eval.timing import write_json

    for name, v in (("n", n), ("d", d), ("k", k), ("reps", reps)):
        if v <= 0:
            raise typer.BadParameter(f"--{name} must be positive, got {v}")
    # A fresh process: this one has torch & co loaded, whose OpenMP threads would compete.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    with tempfile.TemporaryDirectory() as tmp, Progress(console=_console, transient=True) as prog:
        task = prog.add_task("rerank bench", total=None)
        out_path = os.path.join(tmp, "bench.json")
        args = [sys.executable, "-m", "notefeed.rerank.bench", out_path, str(n), str(d), str(k),
                str(window), str(reps), "1" if scaling else "0", str(seed)]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            prog.update(task, description=line.strip())
        if proc.wait() != 0:
            raise typer.Exit(code=1)
        with open(out_path) as fh:
            res = json.load(fh)
    t = Table(title=f"rerank latency, N={n} -> k={k}, d={d}, window={window} ({res['config']['blas_threads']})")
    for col in ("method", "median ms", "p90 ms", "p99 ms"):
        t.add_column(col, justify="right")
    for label, st in res["core"].items():
        t.add_row(label, f"{st['median_ms']:.3f}", f"{st['p90_ms']:.3f}", f"{st['p99_ms']:.3f}")
    _console.print(t)
    _console.print({k2: round(v, 3) for k2, v in res["ratios"].items()})
    _console.print(res["targets"])
    if "scaling" in res:
        for axis in ("n", "d"):
            ts = Table(title=f"scaling in {axis} (median ms)")
            cols = list(res["scaling"][axis][0])
            for c in cols:
                ts.add_column(c, justify="right")
            for row in res["scaling"][axis]:
                ts.add_row(*(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols))
            _console.print(ts)
    write_json(json_path, res)
    if json_path:
        _console.print(f"wrote {json_path}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""
    bench.command("rerank")(bench_rerank)
