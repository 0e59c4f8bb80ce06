"""``notefeed eval --stage content``: can content alone find a new note's collaborative neighbours?

Item-to-item protocol (MovieLens latest-small, the simulator, or the synthetic catalogue):

1. users are split at random into two halves, A (what the models see) and B (held out);
2. ground truth for an item = its ItemCF cosine top-50 neighbours computed on B alone, so
   content-only methods are judged on collaborative truth, not on content similarity;
3. evaluated items are the long tail, in two segments by their interaction count in A:
   ``cold`` (0: a brand-new note) and ``tail`` (1..5), each with at least 2 engagements in B;
4. methods: ``itemcf`` (cosine neighbours on A), ``content`` (raw text-encoder cosine),
   ``cb2cf`` (trained on A's co-engagement pairs, with every evaluated item's pairs removed, so
   evaluated items are unseen; scores cosine + a learned weight on the candidate's
   log-popularity in A), ``cb2cf-cos`` (the same vectors, cosine only), ``popular`` (most
   engaged items in A);
5. metric: Recall@K = |top-K & truth| / |truth|, averaged over the segment's items.

Tag protocol: 80/20 split of notes; tag centroids from the train notes' vectors; precision@k on
held-out notes against a popularity-of-tags baseline (MovieLens: genres from title + user
tags; simulator: tags from title + text; KuaiRec: categories from Chinese captions with the
``#hashtags`` removed, since they are the topic tags verbatim).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from notefeed.content.cb2cf import CB2CF, CB2CFConfig, cooccurrence_pairs, item_neighbours, topk_cosine
from notefeed.content.tags import TagPredictor, popular_tags, precision_at_k, tune_threshold
from notefeed.content.text import TextEncoder
from notefeed.data.dataset import Dataset
from notefeed.eval.stages import EVAL_STAGES

__all__ = ["evaluate_content", "longtail_eval", "tag_eval", "recall_at_k", "DEFAULT_DATASETS"]

DEFAULT_DATASETS = ("movielens-small", "sim", "kuairec")
METHODS = ("itemcf", "content", "cb2cf", "cb2cf-cos", "popular")
KS = (10, 50)
TRUTH_N = 50
TAIL_MAX = 5
MIN_TRUTH_EVENTS = 2
#: a truth neighbour needs at least two held-out users who engaged with both notes: with one,
#: cosine ranks arbitrary rarely-seen notes first and the truth is mostly noise
TRUTH_MIN_COMMON = 2
PRIOR_GRID = (0.0, 0.03, 0.1, 0.2, 0.3, 0.5)
_HASHTAG = re.compile(r"#\S+")


def recall_at_k(pred: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """Per-row |pred[:, :k] & truth| / |truth| (-1 entries are padding). (q, >=k), (q, t) -> (q,)."""
    out = np.zeros(len(pred), np.float64)
    for i in range(len(pred)):
        t = set(truth[i][truth[i] >= 0].tolist())
        if t:
            out[i] = len(t & set(pred[i, :k][pred[i, :k] >= 0].tolist())) / len(t)
    return out


def _texts(ds: Dataset, with_tags: bool) -> list[str]:
    n = ds.notes
    tags = [" ".join(t) for t in n["tags"]] if with_tags else [""] * len(n)
    return [f"{a} {b} {c}".strip() for a, b, c in zip(n["title"], n["text"], tags, strict=True)]


def _split_users(ds: Dataset, seed: int) -> tuple[object, object]:
    x = ds.interactions()
    rng = np.random.default_rng(seed)
    in_a = rng.random(ds.n_users) < 0.5
    xa, xb = x.copy(), x.copy()
    xa = xa.multiply(in_a[:, None]).tocsr()
    xb = xb.multiply(~in_a[:, None]).tocsr()
    xa.eliminate_zeros()
    xb.eliminate_zeros()
    return xa, xb


def _title(ds: Dataset, i: int) -> str:
    t = str(ds.notes["title"].iat[i]) or str(ds.notes["text"].iat[i])[:40]
    return t[:50]


def longtail_eval(
    ds: Dataset,
    seed: int = 0,
    quick: bool = False,
    progress: bool = False,
    methods: tuple[str, ...] = METHODS,
    ks: tuple[int, ...] = KS,
) -> tuple[list[dict], list[str]]:
    """Rows (one per method x segment) and a markdown section of example neighbours."""
    t0 = time.perf_counter()
    texts = _texts(ds, with_tags=True)
    enc = TextEncoder(dim=64 if not quick else 32, seed=seed).fit(texts)
    content = enc.transform(texts)
    xa, xb = _split_users(ds, seed)
    ca = np.asarray(xa.sum(axis=0)).ravel()
    cb = np.asarray(xb.sum(axis=0)).ravel()
    segments = {
        "cold": np.flatnonzero((ca == 0) & (cb >= MIN_TRUTH_EVENTS)),
        "tail": np.flatnonzero((ca >= 1) & (ca <= TAIL_MAX) & (cb >= MIN_TRUTH_EVENTS)),
    }
    rng = np.random.default_rng(seed)
    cap = 300 if quick else 2000
    for seg, v in segments.items():  # keep items whose held-out truth is not empty
        nb = item_neighbours(xb, k=1, min_common=TRUTH_MIN_COMMON, items=v)[0]
        segments[seg] = v[nb[:, 0] >= 0]
    segments = {s: np.sort(rng.choice(v, min(cap, len(v)), replace=False)) for s, v in segments.items()}
    evaluated = np.concatenate(list(segments.values()))

    preds: dict[str, dict[str, np.ndarray]] = {m: {} for m in methods}
    train_s: dict[str, float] = {}
    model = None
    if "cb2cf" in methods or "cb2cf-cos" in methods:
        t1 = time.perf_counter()
        pairs, _ = cooccurrence_pairs(xa, k=10, min_common=2)
        held = np.zeros(ds.n_items, bool)
        held[evaluated] = True
        pairs = pairs[~held[pairs[:, 0]] & ~held[pairs[:, 1]]]
        cfg = CB2CFConfig(epochs=3 if quick else 8, hidden=128 if quick else 256, seed=seed)
        model = CB2CF(cfg).fit(content, pairs=pairs, item_counts=ca, progress=progress)
        train_s["cb2cf"] = time.perf_counter() - t1
    kmax = max(ks)
    for seg, items in segments.items():
        if len(items) == 0:
            continue
        if "itemcf" in methods:
            preds["itemcf"][seg] = item_neighbours(xa, k=kmax, min_common=1, items=items)[0]
        if "content" in methods:
            preds["content"][seg] = topk_cosine(content[items], content, kmax, exclude=items)[0]
        if model is not None:
            v = model.item_vectors_
            if "cb2cf" in methods:
                preds["cb2cf"][seg] = model.neighbours(v[items], kmax, exclude=items)[0]
            if "cb2cf-cos" in methods:
                preds["cb2cf-cos"][seg] = topk_cosine(v[items], v, kmax, exclude=items)[0]
        if "popular" in methods:
            order = np.argsort(-ca, kind="stable")[: kmax + 1]
            preds["popular"][seg] = np.stack([order[order != i][:kmax] for i in items])

    rows: list[dict] = []
    truth = {seg: item_neighbours(xb, k=TRUTH_N, min_common=TRUTH_MIN_COMMON, items=it)[0]
             for seg, it in segments.items() if len(it)}
    for m in methods:
        for seg, items in segments.items():
            if seg not in preds[m]:
                continue
            row: dict = {"dataset": ds.name, "task": "item2item-longtail", "method": m, "segment": seg,
                         "items": int(len(items))}
            for k in ks:
                row[f"recall@{k}"] = round(float(recall_at_k(preds[m][seg], truth[seg], k).mean()), 4)
            row["random_recall@10"] = round(10 / max(1, ds.n_items - 1), 4)
            if m.startswith("cb2cf") and model is not None and model.tower is not None:
                row["train_s"] = round(train_s["cb2cf"], 1)
                if m == "cb2cf":
                    row["pop_weight"] = round(float(model.tower.pop_weight.detach()), 3)
            rows.append(row)

    # qualitative: a few tail items and their top-5 by each method, with the held-out truth
    md = [f"### {ds.name}: example neighbours (segment 'tail', top-5)", ""]
    tail = segments.get("tail", np.empty(0, np.int64))
    for j in rng.choice(len(tail), size=min(3, len(tail)), replace=False) if len(tail) else []:
        i = int(tail[j])
        md.append(f"- **{_title(ds, i)}** (A-interactions {int(ca[i])})")
        md.append(f"  - truth (B): {'; '.join(_title(ds, x) for x in truth['tail'][j][:5] if x >= 0)}")
        for m in methods:
            if "tail" in preds[m]:
                md.append(f"  - {m}: {'; '.join(_title(ds, x) for x in preds[m]['tail'][j][:5] if x >= 0)}")
    md.append("")
    for r in rows:
        r["eval_s"] = round(time.perf_counter() - t0, 1)
    return rows, md


def tag_eval(
    ds: Dataset,
    texts: list[str],
    true_tags: list[list[str]],
    seed: int = 0,
    quick: bool = False,
    extra_vectors: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """Precision@1/3 of nearest-centroid tags vs the popular-tags baseline on held-out notes."""
    has = np.array([len(t) > 0 for t in true_tags])
    idx = np.flatnonzero(has)
    rng = np.random.default_rng(seed)
    if quick:
        idx = np.sort(rng.choice(idx, min(len(idx), 2000), replace=False))
    perm = rng.permutation(idx)
    n_test = max(1, len(perm) // 5)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    enc = TextEncoder(dim=128 if not quick else 32, seed=seed).fit([texts[i] for i in train])
    vecs = {"content": enc.transform(texts)}
    vecs.update(extra_vectors or {})
    tr_tags = [true_tags[i] for i in train]
    te_tags = [true_tags[i] for i in test]
    rows: list[dict] = []
    base = {"dataset": ds.name, "task": "tags", "train_notes": int(len(train)), "test_notes": int(len(test))}
    for name, v in vecs.items():
        tp = TagPredictor(k=3, threshold=-1.0, min_count=2).fit(v[train], tr_tags)
        pred = tp.predict_tags(v[test])
        rows.append({**base, "method": f"tags/centroid-{name}", "tags": len(tp.names_), "threshold": -1.0,
                     "p@1": round(precision_at_k(pred, te_tags, 1), 4), "p@3": round(precision_at_k(pred, te_tags, 3), 4)})
        # threshold and prior weight chosen on a validation split of the train notes only;
        # free slots get popular tags
        th, pw = tune_threshold(v[train], tr_tags, prior_grid=PRIOR_GRID, seed=seed, fill_popular=True)
        tp = TagPredictor(k=3, threshold=th, min_count=2, fill_popular=True, prior_weight=pw).fit(v[train], tr_tags)
        pred = tp.predict_tags(v[test])
        rows.append({**base, "method": f"tags/centroid-{name}+prior", "tags": len(tp.names_), "threshold": th,
                     "prior_weight": pw, "p@1": round(precision_at_k(pred, te_tags, 1), 4),
                     "p@3": round(precision_at_k(pred, te_tags, 3), 4)})
    pop = [popular_tags(tr_tags, 3)] * len(test)
    rows.append({**base, "method": "tags/popular", "p@1": round(precision_at_k(pop, te_tags, 1), 4),
                 "p@3": round(precision_at_k(pop, te_tags, 3), 4)})
    return rows


def _load(name: str, seed: int, quick: bool, path: str | None = None) -> Dataset:
    if name == "synthetic":
        from notefeed.content.synthetic import synthetic_catalogue

        return synthetic_catalogue(n_items=1000 if not quick else 400, n_users=800 if not quick else 300,
                                   seed=seed)[0]
    from notefeed.eval.datasets import load_eval_dataset

    ds = load_eval_dataset(name, seed, path, quick=quick)
    if name == "sim":
        return ds
    if quick and len(ds.events):
        ds = ds.subsample_users(300, seed=seed)
    return ds


@EVAL_STAGES.register("content")
def evaluate_content(
    datasets: list[str],
    models: list[str] | None,
    seed: int = 0,
    quick: bool = False,
    report_dir: Path | None = None,
    k: list[int] | None = None,
    path: str | None = None,
) -> list[dict]:
    """Long-tail item-to-item recall and tag prediction on each dataset (see module doc).

    ``datasets``: loader names, ``sim`` (the simulator, ``tiny`` preset when quick) or
    ``synthetic``; ``models``: a subset of ``itemcf, content, cb2cf, popular``.
    """
    unknown = sorted(set(models or ()) - set(METHODS))
    if unknown:
        raise ValueError(f"models: unknown content method(s) {unknown}; known: {', '.join(METHODS)}")
    methods = tuple(m for m in METHODS if not models or m in models)
    ks = tuple(sorted(set(k))) if k else KS
    rows: list[dict] = []
    md: list[str] = ["## Content stage: example neighbours", ""]
    for name in datasets or DEFAULT_DATASETS:
        ds = _load(name, seed, quick, path)
        if name == "kuairec":
            texts = [_HASHTAG.sub(" ", f"{a} {b}") for a, b in zip(ds.notes["title"], ds.notes["text"], strict=True)]
            cats = ds.notes[["category", "category2"]] if "category2" in ds.notes else ds.notes[["category"]]
            truth = [[c for c in r if c and c != "其他"] for r in cats.itertuples(index=False)]
            rows += tag_eval(ds, texts, truth, seed, quick)
            continue
        if len(ds.events) == 0:
            raise ValueError(f"datasets: {name} has no interactions; the content stage needs them")
        r, m = longtail_eval(ds, seed, quick, progress=False, methods=methods, ks=ks)
        rows += r
        md += m
        if name.startswith("movielens"):
            genres = ds.notes["genres"] if "genres" in ds.notes else ds.notes["tags"]
            gset = [set(g) for g in genres]
            texts = [f"{t} " + " ".join(x for x in tg if x not in g)
                     for t, tg, g in zip(ds.notes["title"], ds.notes["tags"], gset, strict=True)]
            rows += tag_eval(ds, texts, [list(g) for g in genres], seed, quick)
        else:
            rows += tag_eval(ds, _texts(ds, with_tags=False), [list(t) for t in ds.notes["tags"]], seed, quick)
    if report_dir is not None:
        report_dir = Path(report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "content_neighbours.md").write_text("\n".join(md), encoding="utf-8")
    return rows
