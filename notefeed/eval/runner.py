"""Full-ranking evaluation of registered models; the ``model`` stage of ``notefeed eval``.

Protocol: split (leave-last-out by default), fit every model on the training positives
(binary user x item CSR), rank *all* items for every test user with the training items
masked, and score the top ``max(k)`` lists. Beyond-accuracy metrics use the same lists:
coverage, novelty (training popularity), ILAD over one shared item embedding (a truncated
SVD of the training matrix, so models are judged on the same geometry), category diversity
when the catalogue has categories, small-creator share and creator-exposure Gini.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from notefeed.data.dataset import Dataset
from notefeed.eval import metrics as M
from notefeed.eval.baselines import MODELS
from notefeed.eval.splits import SPLITS, Split, make_split
from notefeed.eval.stages import EVAL_STAGES

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_KS",
    "QUICK_USERS",
    "check_ks",
    "check_models",
    "item_embedding",
    "evaluate_lists",
    "evaluate_model",
    "evaluate_dataset",
    "model_stage",
]

DEFAULT_MODELS = ("pop", "itemknn", "als", "bpr")
DEFAULT_KS = (10, 20, 50)
#: ``--quick`` keeps this many random active users per dataset.
QUICK_USERS = 300


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Validate cut-offs: a non-empty list of positive ints; returns them sorted and unique."""
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
            raise ValueError(f"k: every cut-off must be a positive integer, got {k!r}")
        out.append(int(k))
    if not out:
        raise ValueError("k: at least one cut-off is needed")
    return tuple(sorted(set(out)))


def check_models(models: Sequence[str]) -> list[str]:
    """Every name must be in :data:`~notefeed.eval.baselines.MODELS`."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise KeyError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS.names())}")
    if not models:
        raise ValueError("models: at least one model is needed")
    return list(models)


def item_embedding(user_items: sp.csr_matrix, dim: int = 32, seed: int = 0) -> np.ndarray:
    """(n_items, dim') item vectors from a randomized truncated SVD of the training matrix."""
    from sklearn.utils.extmath import randomized_svd

    dim = max(1, min(dim, min(user_items.shape) - 1))
    _, s, vt = randomized_svd(user_items.astype(np.float32), dim, random_state=seed)
    return (vt.T * s).astype(np.float32)


def evaluate_lists(
    recs: np.ndarray,
    truth: sp.csr_matrix,
    ks: Sequence[int],
    train: sp.csr_matrix,
    ds: Dataset,
    item_vectors: np.ndarray | None = None,
) -> dict[str, float]:
    """Accuracy at every k plus beyond-accuracy metrics at every k for one set of lists.

    ``recs`` (n_test, max(ks)); ``truth`` CSR (n_test, n_items); ``train`` the training CSR
    (for popularity); ``ds`` gives creators and categories.
    """
    out = M.ranking_metrics(recs, truth, ks)
    counts = np.bincount(train.indices, minlength=ds.n_items)
    codes, names = ds.item_category
    for k in ks:
        r = recs[:, :k]
        out[f"coverage@{k}"] = M.catalog_coverage(r, ds.n_items)
        out[f"novelty@{k}"] = M.novelty(r, counts)
        if item_vectors is not None:
            out[f"ilad@{k}"] = M.ilad(r, item_vectors)
        if len(names) > 1:
            out[f"catdiv@{k}"] = M.category_diversity(r, codes)
        out[f"small_creator@{k}"] = M.small_creator_share(r, ds.item_is_small_creator)
        out[f"creator_gini@{k}"] = M.creator_exposure_gini(r, ds.item_author, len(ds.creators))
    return out


def evaluate_model(
    name: str,
    split: Split,
    ks: Sequence[int],
    seed: int = 0,
    train: sp.csr_matrix | None = None,
    item_vectors: np.ndarray | None = None,
    params: dict[str, object] | None = None,
) -> dict[str, object]:
    """Fit ``MODELS[name]`` on the split's training positives and evaluate it; one row."""
    ks = check_ks(ks)
    train = split.train.interactions() if train is None else train
    try:
        model = MODELS.create(name, seed=seed, **(params or {}))
    except TypeError as e:  # an unknown keyword for this model's factory
        raise ValueError(f"model {name}: bad parameter(s) {sorted(params or {})}: {e}") from None
    t0 = time.perf_counter()
    if hasattr(model, "fit_dataset"):  # models that need order or side info get the training Dataset
        model.fit_dataset(split.train)
    else:
        model.fit(train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    recs, _ = model.recommend(split.test_users, max(ks), filter_seen=True)
    rec_s = time.perf_counter() - t0
    row: dict[str, object] = {"model": name}
    row.update(evaluate_lists(recs, split.test_items, ks, train, split.train, item_vectors))
    row["fit_s"] = fit_s
    row["recommend_s"] = rec_s
    row["users_per_s"] = len(split.test_users) / rec_s if rec_s > 0 else float("nan")
    return row


def evaluate_dataset(
    ds: Dataset,
    models: Sequence[str],
    split: str = "loo",
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 0,
    progress: bool = False,
    params: Mapping[str, Mapping[str, object]] | None = None,
) -> list[dict[str, object]]:
    """Split ``ds`` once and evaluate every model on it; one row per model.

    ``params`` maps a model name to keyword arguments for its factory.
    """
    ks = check_ks(ks)
    models = check_models(list(models))
    params = dict(params or {})
    stray = sorted(set(params) - set(models))
    if stray:
        raise ValueError(f"params given for model(s) {', '.join(stray)} that are not being evaluated")
    sp_ = make_split(ds, split, seed=seed) if split == "ratio" else make_split(ds, split)
    if len(sp_.test_users) == 0:
        raise ValueError(f"{ds.name}: the {split} split has no test users")
    train = sp_.train.interactions()
    vecs = item_embedding(train, seed=seed)
    base = {
        "dataset": ds.name,
        "split": split,
        "users": ds.n_users,
        "items": ds.n_items,
        "train_pairs": int(train.nnz),
        "test_users": int(len(sp_.test_users)),
    }
    rows = []
    for name in tqdm(models, desc=ds.name, disable=None if progress else True, leave=False):
        p = dict(params.get(name, {}))
        row = evaluate_model(name, sp_, ks, seed, train=train, item_vectors=vecs, params=p)
        rows.append({**base, **row, **({"params": p} if p else {})})
    return rows


@EVAL_STAGES.register("model")
def model_stage(
    datasets: list[str],
    models: list[str] | None,
    seed: int,
    quick: bool,
    report_dir: Path | None,
    split: str = "loo",
    k: Sequence[int] = DEFAULT_KS,
    params: Mapping[str, Mapping[str, object]] | None = None,
    path: str | None = None,
) -> list[dict]:
    """``notefeed eval --stage model``: full-ranking evaluation of ``models`` on ``datasets``.

    ``params``: ``{model: {keyword: value}}`` for the model factories (``--param bpr.learning_rate=0.005``);
    ``path``: where the (single) dataset is read from (``--path``).
    """
    from notefeed.eval.datasets import load_eval_dataset

    if split not in SPLITS:
        raise ValueError(f"split: unknown kind {split!r}; known: {', '.join(SPLITS)}")
    ks = check_ks(k)
    names = check_models(list(models) if models else list(DEFAULT_MODELS))
    stray = sorted(set(params or {}) - set(names))
    if stray:
        raise ValueError(f"params given for model(s) {', '.join(stray)} that are not being evaluated")
    rows: list[dict] = []
    for dname in datasets:
        ds = load_eval_dataset(dname, seed, path)
        if quick:
            ds = ds.subsample_users(QUICK_USERS, seed=seed)
            ds.name = dname  # rows keep the name the user asked for
        rows.extend(evaluate_dataset(ds, names, split, ks, seed, progress=True, params=params))
    if report_dir is not None:
        from notefeed.eval.report import model_figures, write_report
        from notefeed.eval.timing import machine_info

        meta = {"machine_info": machine_info(), "datasets": datasets, "models": names,
                "split": split, "k": list(ks), "seed": seed, "quick": quick, "params": params or {}}
        write_report(report_dir, "notefeed eval: model stage", rows, model_figures(rows, ks), meta)
    return rows
