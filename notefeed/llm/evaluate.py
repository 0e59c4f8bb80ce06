"""``notefeed eval --stage llm``: NoteLLM's related-note protocol.

1. Related-note pairs are mined from all positives (:func:`~notefeed.llm.pairs.mine_pairs`).
2. ``new`` notes: 10% of the notes with behaviour lose all of it (their events are dropped
   before training and before popularity counts); every pair touching one is a ``new`` test pair,
   queried from the new note.
3. ``warm``: 10% of the remaining pairs are held out and queried in both directions; the
   other pairs are the training pairs of every learned method.
4. Each query ranks **all notes** but itself; Recall@K = share of queries whose partner is
   in the top K (K = 100, 1000).
5. Methods: ``tfidf`` (TF-IDF + SVD text vectors, :class:`~notefeed.content.text.TextEncoder`),
   ``cb2cf`` (CB2CF on those vectors, trained on the training pairs, with its popularity
   term from the training log), ``notellm`` (the built-in model: contrastive on the training
   pairs + tag/category + LM, :mod:`.train`), each scored the way it serves.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.eval.stages import EVAL_STAGES
from notefeed.eval.timing import phase
from notefeed.llm.builtin import TRAIN_BUDGET_S, BuiltinConfig
from notefeed.llm.corpus import NoteCorpus
from notefeed.llm.pairs import mine_pairs
from notefeed.recall._common import positive_log

__all__ = ["related_note_eval", "evaluate_llm", "METHODS", "ranks_of"]

METHODS = ("tfidf", "cb2cf", "notellm")
KS = (100, 1000)
DEFAULT_DATASETS = ("sim-demo", "movielens-small")


def ranks_of(scores_fn, queries: np.ndarray, targets: np.ndarray, batch: int = 512, progress: bool = False,
             desc: str = "ranks") -> np.ndarray:
    """0-based rank of each target among all notes but the query (ties: the mean rank among them,
    so a method that scores everything alike gets chance). ``scores_fn(q) -> (len(q), n)``."""
    from tqdm.auto import tqdm

    out = np.empty(len(queries), np.float64)
    for lo in tqdm(range(0, len(queries), batch), desc=desc, disable=not progress, leave=False):
        q, t = queries[lo : lo + batch], targets[lo : lo + batch]
        s = np.asarray(scores_fn(q), np.float64)
        s[np.arange(len(q)), q] = -np.inf
        st = s[np.arange(len(q)), t]
        out[lo : lo + batch] = (s > st[:, None]).sum(1) + ((s == st[:, None]).sum(1) - 1) / 2
    return out


def _split(ds: Dataset, seed: int, n_queries: int) -> dict:
    log = positive_log(ds)
    rng = np.random.default_rng(seed)
    n = ds.n_items
    pairs, _ = mine_pairs(log["user"].to_numpy(), log["item"].to_numpy(), log["ts"].to_numpy(), n)
    active = np.unique(log["item"].to_numpy())
    new = np.zeros(n, bool)
    new[rng.choice(active, max(1, len(active) // 10), replace=False)] = True
    touch = new[pairs[:, 0]] | new[pairs[:, 1]]
    newp = pairs[touch]
    newp = np.where(new[newp[:, 0]][:, None], newp, newp[:, ::-1])  # query = the new note
    rest = pairs[~touch]
    held = rng.random(len(rest)) < 0.1
    warm = np.concatenate([rest[held], rest[held][:, ::-1]])
    train_log = log[~new[log["item"].to_numpy()]]
    # training pairs: mined again from the log without the new notes, minus the held-out pairs
    tr, _ = mine_pairs(train_log["user"].to_numpy(), train_log["item"].to_numpy(), train_log["ts"].to_numpy(), n)
    heldkey = set((np.minimum(rest[held][:, 0], rest[held][:, 1]) * n + np.maximum(rest[held][:, 0], rest[held][:, 1])).tolist())
    tr = tr[[int(a * n + b) not in heldkey for a, b in tr]]

    def sample(p: np.ndarray) -> np.ndarray:
        return p[np.sort(rng.choice(len(p), min(n_queries, len(p)), replace=False))] if len(p) else p

    counts = np.bincount(train_log.drop_duplicates(["user", "item"])["item"].to_numpy(), minlength=n)
    return {"train": tr, "warm": sample(warm), "new": sample(newp), "counts": counts, "new_notes": int(new.sum()),
            "all_pairs": int(len(pairs))}


def related_note_eval(ds: Dataset, seed: int = 0, quick: bool = False, methods: tuple[str, ...] = METHODS,
                      max_time_s: float | None = None, progress: bool = False,
                      config: BuiltinConfig | None = None) -> list[dict]:
    """Rows: one per method x segment (``warm``, ``new``), with Recall@100 and @1000. Each row
    carries ``phases``: wall and CPU seconds of every step of the run (shared ones included)."""
    from notefeed.content.cb2cf import CB2CF, CB2CFConfig
    from notefeed.content.text import TextEncoder

    t0 = time.perf_counter()
    phases: dict[str, dict] = {}
    with phase(phases, "corpus"):
        corpus = NoteCorpus.from_dataset(ds)
        texts = corpus.texts()
    with phase(phases, "split_and_pairs"):
        sp = _split(ds, seed, 300 if quick else 3000)
    train = sp["train"]
    vecs: dict[str, object] = {}
    info: dict[str, dict] = {}
    with phase(phases, "tfidf_fit"):
        tfidf = TextEncoder(dim=32 if quick else 128, seed=seed).fit(texts).transform(texts)
    if "tfidf" in methods:
        vecs["tfidf"] = lambda q, v=tfidf: v[q] @ v.T
    if "cb2cf" in methods:
        with phase(phases, "cb2cf_train"):
            t1 = time.perf_counter()
            cfg = CB2CFConfig(epochs=2 if quick else 8, hidden=64 if quick else 256, seed=seed)
            both = np.concatenate([train, train[:, ::-1]])
            model = CB2CF(cfg).fit(tfidf, pairs=both, item_counts=sp["counts"], progress=progress)
            w = float(model.tower.pop_weight.detach()) * cfg.temperature if model.tower is not None else 0.0
            v = model.item_vectors_
            lp = model.log_pop_
        vecs["cb2cf"] = lambda q, v=v, w=w, lp=lp: v[q] @ v.T + w * lp[None, :]
        info["cb2cf"] = {"train_s": round(time.perf_counter() - t1, 1)}
    if "notellm" in methods:
        from notefeed.llm.train import train_builtin

        with phase(phases, "notellm_train"):
            cfg = config or eval_config(quick, seed, max_time_s)
            lm = train_builtin(corpus, train, cfg, progress=progress)
        with phase(phases, "notellm_embed"):
            z = lm.embed(texts)
        vecs["notellm"] = lambda q, v=z: v[q] @ v.T
        info["notellm"] = {k: lm.info.get(k) for k in ("train_s", "train_cpu_s", "steps", "epochs_done", "capped",
                                                       "tokens_per_s", "temperature", "final_loss")}
    rows = []
    for seg in ("warm", "new"):
        p = sp[seg]
        if not len(p):
            continue
        for m, fn in vecs.items():
            with phase(phases, f"rank_{m}_{seg}"):
                r = ranks_of(fn, p[:, 0], p[:, 1], progress=progress, desc=f"{ds.name} {m}/{seg}")
            row = {"dataset": ds.name, "method": m, "segment": seg, "queries": int(len(p)), "notes": ds.n_items,
                   "train_pairs": int(len(train))}
            for k in KS:
                row[f"recall@{k}"] = round(float((r < k).mean()), 4)
            row.update(info.get(m, {}))
            rows.append(row)
        rows.append({"dataset": ds.name, "method": "random", "segment": seg, "queries": int(len(p)),
                     **{f"recall@{k}": round(min(1.0, k / max(1, ds.n_items - 1)), 4) for k in KS}})
    total = {"wall_s": round(time.perf_counter() - t0, 1),
             "cpu_s": round(sum(x["cpu_s"] for x in phases.values()), 1)}
    for r in rows:
        r["eval_s"] = total["wall_s"]
        r["eval_cpu_s"] = total["cpu_s"]
        r["phases"] = phases
    return rows


def eval_config(quick: bool, seed: int, max_time_s: float | None = None) -> BuiltinConfig:
    """The built-in model's settings in this eval: the defaults (as ``notefeed llm embed``
    trains), smaller and capped at 20 s with ``quick``."""
    if quick:
        return BuiltinConfig(epochs=1, max_len=48, seed=seed, dim=32, layers=1, out_dim=32,
                             max_time_s=20.0 if max_time_s is None else max_time_s)
    return BuiltinConfig(seed=seed, max_len=48, max_time_s=TRAIN_BUDGET_S if max_time_s is None else max_time_s)


@EVAL_STAGES.register("llm")
def evaluate_llm(datasets: list[str], models: list[str] | None, seed: int = 0, quick: bool = False,
                 report_dir: Path | None = None, path: str | None = None) -> list[dict]:
    """Related-note recall on each dataset (see the module docstring); ``models`` a subset of METHODS."""
    from notefeed.eval.datasets import load_eval_dataset

    unknown = sorted(set(models or ()) - set(METHODS))
    if unknown:
        raise ValueError(f"models: unknown llm method(s) {unknown}; known: {', '.join(METHODS)}")
    methods = tuple(m for m in METHODS if not models or m in models)
    rows: list[dict] = []
    for name in datasets or DEFAULT_DATASETS:
        ds = load_eval_dataset(name, seed, path, quick=quick)
        if quick and ds.n_users > 300:
            ds = ds.subsample_users(300, seed=seed)
        rows += related_note_eval(ds, seed, quick, methods, progress=True)
    return rows
