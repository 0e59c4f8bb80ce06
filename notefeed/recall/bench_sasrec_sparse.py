"""``sequence/sasrec`` sampled-loss training step, dense AdamW vs sparse item table + RowwiseAdam.

``python3 -m notefeed.recall.bench_sasrec_sparse steps --workspace /tmp/ws1m`` times optimiser
steps (the channel's own ``_step``) at each catalogue size, dense then sparse, in one process, on
the same batches of the workspace's training sequences (notes folded ``item % n`` for a
catalogue smaller than the workspace's). Peak memory is the process's peak RSS while one run
trains (``VmHWM`` reset through ``/proc/self/clear_refs`` before it).

``... quality`` fits the sampled loss dense and sparse on a planted next-note log and reports
the held-out HR@10 of both.

Set ``OMP_NUM_THREADS=1`` on a shared machine; the channel trains with one torch thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from notefeed.recall._sasrec_net import SASRecNet
from notefeed.recall.base import UserContext
from notefeed.recall.sequential import SASRecChannel, _batches, _pack, _use_bf16, training_sequences

OUT = Path("docs/results/recall")


def _rss_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _state_mb(opts: list[torch.optim.Optimizer]) -> float:
    return sum(t.nbytes for o in opts for st in o.state.values() for t in st.values()
               if isinstance(t, torch.Tensor)) / 2**20


def time_steps(seqs: list[np.ndarray], n_items: int, sparse: bool, steps: int, warmup: int,
               batch_size: int, seed: int) -> dict:
    """Seconds per step (CPU and wall) over ``steps`` after ``warmup`` untimed ones."""
    ch = SASRecChannel(loss="sampled", sparse_items=sparse, batch_size=batch_size, seed=seed, progress=False)
    inp, tgt, lens = _pack(seqs, ch.max_len)
    rows = _batches(lens, ch.batch_size, np.random.default_rng(seed))[: warmup + steps]
    dev = torch.device("cpu")
    amp = _use_bf16(dev) if ch.bf16 is None else ch.bf16  # as training would
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(ch.threads)
    rss0 = _rss_mb("VmRSS")
    peak_ok = _reset_peak()
    try:
        torch.manual_seed(seed)
        net = SASRecNet(n_items, ch.dim, ch.layers, ch.heads, ch.max_len, ch.dropout).train()
        opts = ch._optimisers(net, sparse)
        losses = []
        for i, r in enumerate(rows):
            if i == warmup:
                w0, c0 = time.perf_counter(), time.process_time()
            losses.append(ch._step(net, opts, inp, tgt, lens, r, dev, False, amp, gen).item())
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    finally:
        torch.set_num_threads(threads)
    n = len(rows) - warmup
    out = {
        "n_items": n_items, "sparse": sparse, "bf16": amp, "steps": n, "warmup_steps": warmup,
        "wall_s_per_step": wall / n, "cpu_s_per_step": cpu / n, "wall_s": wall, "cpu_s": cpu,
        "tokens_per_step": float(np.mean([lens[r].sum() for r in rows[warmup:]])),
        "loss_first_10": float(np.mean(losses[:10])), "loss_last_10": float(np.mean(losses[-10:])),
        "optimiser_state_mb": _state_mb(opts),
        "item_table_mb": net.item.weight.nbytes / 2**20,
        "rss_before_mb": rss0,
        "peak_rss_mb": _rss_mb("VmHWM") if peak_ok else None,
    }
    del net, opts
    return out


def cmd_steps(a: argparse.Namespace) -> None:
    from notefeed.data.store import Workspace

    t0, c0 = time.perf_counter(), time.process_time()
    with Workspace.open(Path(a.workspace), create=False) as w:  # (recall/ does not import serve/)
        ds = w.load_dataset()
    seqs = training_sequences(ds)
    load = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "n_users": ds.n_users, "n_items": ds.n_items, "n_events": int(len(ds.events))}
    print("loaded", load, flush=True)
    del ds
    runs = []
    for n in a.items:
        folded = seqs if n >= load["n_items"] else [s % n for s in seqs]
        for sparse in (False, True):
            steps = a.steps_1m if n >= 1_000_000 else a.steps
            r = time_steps(folded, n, sparse, steps, a.warmup, a.batch_size, a.seed)
            print(json.dumps(r), flush=True)
            runs.append(r)
    speed = {str(n): {k: next(r[k] for r in runs if r["n_items"] == n and not r["sparse"])
                      / next(r[k] for r in runs if r["n_items"] == n and r["sparse"])
                      for k in ("wall_s_per_step", "cpu_s_per_step")} for n in a.items}
    _write(a.out, {"bench": "sasrec_sparse_step", "workspace": str(a.workspace), "load": load,
                   "batch_size": a.batch_size, "runs": runs, "dense_over_sparse": speed})


def planted_log(n_items: int, n_users: int, length: int, noise: float, seed: int) -> list[np.ndarray]:
    """Users walk ``i -> perm[i]`` (a fixed random permutation) from a random note; ``noise``
    of the steps jump to a uniform random note."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_items)
    seqs = []
    for _ in range(n_users):
        s = np.empty(length, np.int64)
        s[0] = rng.integers(n_items)
        for t in range(1, length):
            s[t] = rng.integers(n_items) if rng.random() < noise else perm[s[t - 1]]
        seqs.append(s)
    return seqs


def hit_rate(ch: SASRecChannel, held: list[np.ndarray], k: int = 10) -> float:
    hits = 0
    for s in held:
        c = ch.recall(UserContext("u", None, history=s[:-1]), k)
        hits += int(s[-1] in set(c.items.tolist()))
    return hits / len(held)


def opts_lr(ch: SASRecChannel) -> float:
    """The item table's learning rate as the channel's optimisers set it."""
    net = SASRecNet(4, ch.dim, ch.layers, ch.heads, ch.max_len, ch.dropout)
    sparse = ch.sparse_used
    lr = ch._optimisers(net, sparse)[-1].defaults["lr"]
    ch.sparse_used = sparse
    return float(lr)


def cmd_quality(a: argparse.Namespace) -> None:
    seqs = planted_log(a.n_items, a.n_users, a.length, a.noise, a.seed)
    rng = np.random.default_rng(a.seed + 1)
    test_users = rng.choice(len(seqs), a.n_test, replace=False)
    train = [s[:-1] if i in set(test_users.tolist()) else s for i, s in enumerate(seqs)]
    held = [seqs[i] for i in test_users]
    runs = []
    for sparse, slr in [(False, None), (True, None)] + [(True, x) for x in a.sparse_lr]:
        ch = SASRecChannel(loss="sampled", sparse_items=sparse, sparse_lr=slr, epochs=a.epochs, seed=a.seed,
                           progress=False)
        w0, c0 = time.perf_counter(), time.process_time()
        ch.fit_sequences(train, a.n_items)
        r = {"sparse": sparse, "sparse_used": ch.sparse_used, "lr": ch.lr, "sparse_lr": slr,
             "item_table_lr": opts_lr(ch), "epochs": ch.epochs_run,
             "fit_wall_s": time.perf_counter() - w0, "fit_cpu_s": time.process_time() - c0,
             "hr@10_heldout_last": hit_rate(ch, held)}
        print(json.dumps(r), flush=True)
        runs.append(r)
    _write(a.out, {"bench": "sasrec_sparse_quality", "log": {
        "kind": "planted i -> perm[i] walks", "n_items": a.n_items, "n_users": a.n_users, "length": a.length,
        "noise": a.noise, "n_test": a.n_test, "seed": a.seed,
        "chance_hr@10": 10 / a.n_items, "rule_hr@10_upper": 1 - a.noise}, "runs": runs})


def _write(path: Path, obj: dict) -> None:
    obj = {**obj, "machine": {"platform": platform.platform(), "torch": torch.__version__,
                              "torch_threads": 1, "cpus": __import__("os").cpu_count()},
           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    print("wrote", path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python3 -m notefeed.recall.bench_sasrec_sparse", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("steps", help="seconds per optimiser step and peak RSS, dense vs sparse")
    s.add_argument("--workspace", type=Path, required=True)
    s.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    s.add_argument("--steps", type=int, default=300)
    s.add_argument("--steps-1m", type=int, default=200)
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=OUT / "sasrec_sparse_step.json")
    s.set_defaults(fn=cmd_steps)
    q = sub.add_parser("quality", help="held-out HR@10 of a sampled-loss fit, dense vs sparse")
    q.add_argument("--n-items", type=int, default=20_000)
    q.add_argument("--n-users", type=int, default=10_000)
    q.add_argument("--length", type=int, default=30)
    q.add_argument("--noise", type=float, default=0.2)
    q.add_argument("--n-test", type=int, default=1_000)
    q.add_argument("--epochs", type=int, default=3)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--sparse-lr", type=float, nargs="*", default=[], help="more sparse runs at these item-table rates")
    q.add_argument("--out", type=Path, default=OUT / "sasrec_sparse_quality.json")
    q.set_defaults(fn=cmd_quality)
    a = p.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    main()
