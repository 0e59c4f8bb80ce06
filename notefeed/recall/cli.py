"""Commands of the recall stage: ``notefeed bench recall``."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register", "bench_recall"]


def bench_recall(
    json_path: Path | None = typer.Option(None, "--json", help="write the results here"),
    events: int = typer.Option(10_000_000, min=1, help="events in the synthetic log for the Swing build"),
    ann_sizes: str = typer.Option("100000,1000000", help="catalogue sizes for the ANN benchmark"),
    stage_notes: int = typer.Option(1_000_000, min=1, help="catalogue size for the full-stage latency"),
    stage_events: int = typer.Option(2_000_000, min=1, help="events behind the full-stage benchmark"),
    parts: str = typer.Option("taobao,synthetic,ann,stage", help="which parts to run"),
    item_cap: int = typer.Option(50, min=1, help="Swing/ItemCF: most recent items per user"),
    user_cap: int = typer.Option(100, min=1, help="Swing/ItemCF: most recent users per item"),
    n_jobs: int = typer.Option(2, min=1, max=256, help="worker processes for the neighbour builds"),
) -> None:
    """Swing vs ItemCF build (Taobao, synthetic log), HNSW vs exact ANN, all channels + merge p99."""
    import torch
    from rich.console import Console

    from notefeed.eval.timing import machine_info, write_json
    from notefeed.recall import bench as b
    from notefeed.recall.synthetic import synthetic_log

    torch.set_num_threads(2)
    console = Console(stderr=True)
    want = {p.strip() for p in parts.split(",") if p.strip()}
    unknown = want - {"taobao", "synthetic", "ann", "stage"}
    if unknown:
        raise typer.BadParameter(f"--parts: unknown {sorted(unknown)}")
    out: dict = {"bench": "recall", "machine": machine_info(), "results": {}}

    def save() -> None:
        text = write_json(json_path, out)
        if json_path is None:
            typer.echo(text)

    if "taobao" in want:
        from notefeed.data.loaders import load_dataset

        console.print("[bold]i2i build: taobao[/bold]")
        ds = load_dataset("taobao")
        ev = ds.select_events()
        out["results"]["i2i_taobao"] = b.bench_i2i_build(
            ev["user"].to_numpy(), ev["item"].to_numpy(), ev["ts"].to_numpy(), ds.n_users, ds.n_items, "taobao",
            item_cap, user_cap, n_jobs=n_jobs, progress=True)
        console.print(out["results"]["i2i_taobao"])
        save()
    if "synthetic" in want:
        console.print(f"[bold]i2i build: synthetic {events:,} events[/bold]")
        u, i, t, nu, ni = synthetic_log(events)
        out["results"]["i2i_synthetic"] = b.bench_i2i_build(u, i, t, nu, ni, f"synthetic-{events}", item_cap,
                                                           user_cap, n_jobs=n_jobs, progress=True)
        out["results"]["i2i_synthetic"]["target_swing_under_60s"] = bool(
            out["results"]["i2i_synthetic"]["swing_total_s"] < 60.0)
        console.print(out["results"]["i2i_synthetic"])
        del u, i, t
        save()
    if "ann" in want:
        out["results"]["ann"] = []
        for n in (int(x) for x in ann_sizes.split(",")):
            console.print(f"[bold]ANN: {n:,} notes, d=64[/bold]")
            r = b.bench_ann(n)
            console.print({k: v for k, v in r.items() if k != "grid"})
            out["results"]["ann"].append(r)
            save()
    if "stage" in want:
        console.print(f"[bold]all channels + merge: {stage_notes:,} notes[/bold]")
        r = b.bench_stage(stage_notes, stage_events, progress=True)
        console.print({k: v for k, v in r.items() if k != "per_channel"})
        out["results"]["stage"] = r
    save()


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""
    bench.command("recall")(bench_recall)
