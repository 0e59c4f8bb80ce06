"""``notefeed eval --stage rerank``: quality-diversity frontiers of SSD, DPP and MMR, and the
engagement cost of the 50 % small-creator rule.

Protocol (per dataset): leave-last-out split (``notefeed.eval.splits``); a truncated SVD of the
training interactions (scipy ``svds``, 64 factors) scores every item for each test user; the
top-500 unseen items are the candidates, their SVD scores the quality and the item factors the
similarity vectors. Each method re-ranks 500 -> 80 at every value of its knob (SSD gamma, DPP
theta, MMR lambda). Metrics, means over test users:

- ``ndcg@20`` / ``hit@80``: the held-out item in the page (engagement proxy);
- ``ilad@20``: mean pairwise ``1 - cos`` of the first 20 (item factors -- the same space the
  methods diversify, so read it with ``catcov@20``, which is independent of it);
- ``catcov@20``: distinct categories in the first 20 / min(20, categories among candidates);
- ``authors@20``: distinct creators in the first 20 / 20 (only where the data has creators);
- ``small@80``: share of the page from the protected group. Creator data (the simulator): notes
  of creators under 1,000 followers. Datasets without creators (MovieLens, Beauty, Taobao): a
  stand-in group, the long-tail items whose training popularity is at most the median
  popularity of the items with any interaction (``protected`` column says which).

Fairness rows re-run top-k / SSD / DPP with the hard 50 % reservation and report the NDCG drop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse.linalg import svds

from notefeed.data.dataset import Dataset
from notefeed.eval.stages import EVAL_STAGES
from notefeed.rerank.base import ReRanker, RerankInput
from notefeed.rerank.constraints import FairnessConfig
from notefeed.rerank.dpp import DPPReRanker
from notefeed.rerank.mmr import MMRReRanker, TopKReRanker
from notefeed.rerank.ssd import SSDReRanker

__all__ = ["evaluate_rerank", "sweep", "frontier_gap", "DEFAULT_DATASETS"]

DEFAULT_DATASETS = ("movielens-small", "beauty", "taobao", "sim")
N_CAND, K_PAGE, K_TOP = 500, 80, 20


def sweep(quick: bool) -> list[tuple[str, str, float, ReRanker]]:
    """(method, knob, value, re-ranker) for every point of every frontier."""
    gammas = [0.05, 0.2, 0.8, 3.0] if quick else [0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.0]
    thetas = [0.95, 0.8, 0.5] if quick else [0.99, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3]
    lams = [0.9, 0.7, 0.4] if quick else [0.95, 0.9, 0.8, 0.7, 0.5, 0.3]
    out: list[tuple[str, str, float, ReRanker]] = [("topk", "-", 0.0, TopKReRanker())]
    out += [("ssd", "gamma", g, SSDReRanker(gamma=g, window=10)) for g in gammas]
    out += [("dpp", "theta", t, DPPReRanker(theta=t)) for t in thetas]
    out += [("dpp-window", "theta", t, DPPReRanker(theta=t, window=10)) for t in thetas[::2]]
    out += [("mmr", "lambda", lam, MMRReRanker(lam=lam)) for lam in lams]
    return out


def _candidates(ds: Dataset, n_users: int, seed: int, dim: int = 64) -> dict[str, Any]:
    from notefeed.eval.splits import leave_last_out

    split = leave_last_out(ds)
    X = split.train.interactions().astype(np.float64)
    rng = np.random.default_rng(seed)
    users = split.test_users
    rows = np.arange(len(users))
    if len(users) > n_users:
        rows = np.sort(rng.choice(len(users), n_users, replace=False))
    f = int(min(dim, min(X.shape) - 1))
    U, S, Vt = svds(X, k=f, random_state=seed)
    uvec, ivec = U * S, Vt.T.copy()
    pop = np.asarray(X.sum(0)).ravel()
    out: dict[str, Any] = {"cands": [], "scores": [], "truth": [], "ivec": ivec, "pop": pop}
    for r in rows:
        u = int(users[r])
        s = uvec[u] @ ivec.T
        s[X.indices[X.indptr[u] : X.indptr[u + 1]]] = -np.inf
        n_c = min(N_CAND, int(np.isfinite(s).sum()))
        c = np.argpartition(-s, n_c - 1)[:n_c]
        c = c[np.argsort(-s[c], kind="stable")]
        out["cands"].append(c)
        out["scores"].append(s[c])
        out["truth"].append(split.test_items.indices[split.test_items.indptr[r] : split.test_items.indptr[r + 1]])
    return out


def _protected(ds: Dataset, pop: np.ndarray) -> tuple[np.ndarray, str]:
    authors = ds.notes["author_id"].astype(str)
    if authors.nunique() > 1 and not (authors == "unknown").all():
        return ds.item_is_small_creator, "small-creators"
    seen = pop[pop > 0]
    cut = float(np.median(seen)) if seen.size else 0.0
    return pop <= cut, "tail-items"


def _metrics(page: np.ndarray, truth: np.ndarray, ivec_n: np.ndarray, cats: np.ndarray, n_cat: int,
             authors: np.ndarray | None, small: np.ndarray) -> list[float]:
    hit_pos = np.flatnonzero(np.isin(page, truth))
    ndcg = float(1.0 / np.log2(hit_pos[0] + 2)) if hit_pos.size and hit_pos[0] < K_TOP else 0.0
    top = page[:K_TOP]
    v = ivec_n[top]
    sim = v @ v.T
    m = len(top)
    ilad = float((m * m - sim.sum()) / (m * (m - 1))) if m > 1 else 0.0  # diag of sim is 1
    catcov = len(np.unique(cats[top])) / min(len(top), n_cat)
    auth = len(np.unique(authors[top])) / len(top) if authors is not None else float("nan")
    return [ndcg, float(hit_pos.size > 0), ilad, catcov, auth, float(small[page].mean())]


_COLS = ("ndcg@20", "hit@80", "ilad@20", "catcov@20", "authors@20", "small@80")


def _run(rr: ReRanker, data: dict[str, Any], ds: Dataset, small: np.ndarray) -> dict[str, float]:
    ivec = data["ivec"]
    ivec_n = ivec / np.maximum(np.linalg.norm(ivec, axis=1, keepdims=True), 1e-12)
    cats = ds.item_category[0]
    has_authors = ds.notes["author_id"].astype(str).nunique() > 1
    authors = ds.item_author if has_authors else None
    acc, t_tot = [], 0.0
    for c, s, truth in zip(data["cands"], data["scores"], data["truth"], strict=True):
        inp = RerankInput(s, ivec[c], authors=None if authors is None else authors[c].astype(np.int64),
                          categories=cats[c].astype(np.int64), small_creator=small[c])
        t0 = time.perf_counter()
        pos = rr.select(inp, K_PAGE)
        t_tot += time.perf_counter() - t0
        acc.append(_metrics(c[pos], truth, ivec_n, cats, len(np.unique(cats[c])), authors, small))
    arr = np.array(acc, dtype=np.float64).reshape(-1, len(_COLS))
    mean = arr.mean(axis=0) if len(arr) else np.full(len(_COLS), np.nan)  # NaN column: no creators
    row = dict(zip(_COLS, (float(x) for x in mean), strict=True))
    row["ms_per_request"] = 1e3 * t_tot / max(1, len(acc))
    return row


def frontier_gap(rows: list[dict[str, Any]], a: str, b: str, x: str = "ilad@20", y: str = "ndcg@20") -> float:
    """Mean over method ``b``'s points, within ``a``'s range of ``x``, of ``a``'s linearly
    interpolated ``y`` minus ``b``'s ``y`` (> 0: ``a``'s frontier lies above ``b``'s)."""
    pa = sorted((r[x], r[y]) for r in rows if r["method"] == a)
    pb = [(r[x], r[y]) for r in rows if r["method"] == b]
    if len(pa) < 2 or not pb:
        return float("nan")
    xs, ys = np.array([p[0] for p in pa]), np.array([p[1] for p in pa])
    gaps = [float(np.interp(px, xs, ys)) - py for px, py in pb if xs[0] <= px <= xs[-1]]
    return float(np.mean(gaps)) if gaps else float("nan")


def _frontier_figure(rows: list[dict[str, Any]], dataset: str) -> Callable[[], Any]:
    def make() -> Any:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, x in zip(axes, ("ilad@20", "catcov@20"), strict=True):
            for method, marker in (("ssd", "o"), ("dpp", "s"), ("dpp-window", "^"), ("mmr", "D"), ("topk", "*")):
                pts = sorted((r[x], r["ndcg@20"]) for r in rows if r["method"] == method and r["setting"] == "")
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=method)
            ax.set_xlabel(x)
            ax.set_ylabel("NDCG@20")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.suptitle(f"quality-diversity frontier, {dataset} (500 -> 80)")
        fig.tight_layout()
        return fig

    return make


def evaluate_rerank(datasets: list[str], models: list[str] | None, seed: int, quick: bool,
                    report_dir: Path | None, path: str | None = None) -> list[dict]:
    """The ``rerank`` eval stage (see the module docstring). ``models`` filters methods;
    ``path`` is where the (single) dataset is read from."""
    from tqdm import tqdm

    from notefeed.eval.datasets import load_eval_dataset

    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    n_users = 30 if quick else 300
    points = [p for p in sweep(quick) if models is None or p[0] in models]
    fair = FairnessConfig(target=0.5, mode="hard")
    fair_methods: list[tuple[str, ReRanker]] = [("topk", TopKReRanker(fairness=fair)), ("ssd", SSDReRanker(gamma=0.2, fairness=fair)),
                    ("dpp", DPPReRanker(theta=0.8, fairness=fair))]
    for name in datasets or list(DEFAULT_DATASETS):
        ds = load_eval_dataset(name, seed, path, quick=quick)
        data = _candidates(ds, n_users, seed)
        small, protected = _protected(ds, data["pop"])
        base = {"dataset": name, "users": len(data["cands"]), "protected": protected}
        ds_rows = []
        for method, knob, value, rr in tqdm(points, desc=f"rerank {name}", leave=False):
            ds_rows.append({**base, "method": method, "knob": knob, "value": value, "setting": "",
                            **_run(rr, data, ds, small)})
        ref = {(r["method"], r["value"]): r for r in ds_rows}
        for method, rr in fair_methods:
            if models is not None and method not in models:
                continue
            value = {"topk": 0.0, "ssd": 0.2, "dpp": 0.8}[method]
            plain = ref.get((method, value))
            if plain is None:  # the unconstrained twin was filtered out of the sweep
                continue
            row = {**base, "method": method, "knob": plain["knob"], "value": value, "setting": "fair-0.5",
                   **_run(rr, data, ds, small)}
            row["ndcg_drop_vs_unfair"] = plain["ndcg@20"] - row["ndcg@20"]
            row["small_share_unfair"] = plain["small@80"]
            ds_rows.append(row)
        summary[name] = {
            "ssd_minus_dpp_ndcg_at_equal_ilad": frontier_gap(ds_rows, "ssd", "dpp"),
            "ssd_minus_dpp_ndcg_at_equal_catcov": frontier_gap(ds_rows, "ssd", "dpp", x="catcov@20"),
        }
        figures[f"frontier-{name}"] = _frontier_figure(ds_rows, name)
        rows.extend(ds_rows)
    if report_dir is not None:
        _write_report(Path(report_dir), rows, figures, summary)
    for r in rows:  # the frontier verdict travels with the rows (the CLI prints rows only)
        r.update({f"summary_{k}": v for k, v in summary[r["dataset"]].items()} if r["method"] == "ssd" else {})
    return rows


def _write_report(out: Path, rows: list[dict], figures: dict[str, Any], summary: dict[str, Any]) -> None:
    from notefeed.eval.report import write_report
    from notefeed.eval.timing import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "rerank_eval.json", {"rows": rows, "summary": summary})
    write_report(out, "Re-ranking: quality-diversity frontiers and creator fairness", rows, figures,
                 meta={"summary": summary})


EVAL_STAGES.register("rerank")(evaluate_rerank)
