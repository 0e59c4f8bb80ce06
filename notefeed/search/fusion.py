"""Fusing retrievers' lists: reciprocal-rank fusion (baseline) and a learned linear fusion.

Kernels are pure array functions. :func:`candidate_features` lays the candidates of one query
out as a feature matrix (columns :data:`FEATURES`); :class:`LearnedFusion` is a logistic model
over those columns fitted on labelled queries (graded relevance scaled to [0, 1] as soft
labels), or gradient-boosted trees over them, saved as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from notefeed.search.base import Hits, SearchError
from notefeed.search.trees import Forest, fit_forest

__all__ = ["rrf", "union_ranks", "candidate_features", "fit_logistic", "LearnedFusion", "FEATURES", "PERSONAL",
           "without_personal"]

#: columns of :func:`candidate_features`; personal features are 0 without a user profile.
#: ``topic_match`` / ``user_topic``: the note's topic mixture (:mod:`notefeed.search.topics`)
#: dotted with the query's category posterior / the user's mean mixture.
FEATURES = ("lex_score", "lex_rrf", "dense_score", "dense_rrf", "both", "category_match",
            "user_category", "user_tag", "user_vector", "topic_match", "user_topic")
#: the columns that come from the user (zeroed for a model or row "without personalisation")
PERSONAL = ("user_category", "user_tag", "user_vector", "user_topic")
_PERSONAL_COLS = np.array([FEATURES.index(f) for f in PERSONAL])


#: the trees fusion's defaults (gradient-boosting defaults much like scikit-learn's
#: HistGradientBoosting: 100 trees, learning rate 0.1, >= 20 rows a leaf; depth 4 = 16 leaves).
#: ``ndcg_at``: the cut of the NDCG whose changes weigh LambdaRank's pairs (objective
#: ``lambdarank``; unused by ``squared``). 30 ranked best of 10, 20, 30, 50 on the dev seeds
#: 1-3 of the simulator's queries and tied on MovieLens' seeds 1-2 (docs/search.md, session 37).
TREE_PARAMS: dict[str, float] = {"n_trees": 100, "depth": 4, "lr": 0.1, "min_leaf": 20, "l2": 1.0, "bins": 63,
                                 "ndcg_at": 30}


def without_personal(x: np.ndarray) -> np.ndarray:
    """A copy of candidate features ``x`` (u, len(FEATURES)) with the :data:`PERSONAL` columns 0."""
    out = np.array(x, copy=True)
    out[:, _PERSONAL_COLS] = 0
    return out


def union_ranks(lists: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Union of the item lists and each item's 0-based rank per list (-1 when absent).

    ``lists`` m arrays of item ids (each best first, no repeats) -> (items (u,) int64,
    ranks (u, m) int64), items in first-seen order.
    """
    allit = np.concatenate([np.asarray(x, np.int64) for x in lists]) if lists else np.zeros(0, np.int64)
    items, first = np.unique(allit, return_index=True)
    items = items[np.argsort(first, kind="stable")]
    ranks = np.full((len(items), len(lists)), -1, np.int64)
    if len(items):
        order = np.argsort(items)
        for j, lst in enumerate(lists):
            lst = np.asarray(lst, np.int64)
            pos = order[np.searchsorted(items[order], lst)]
            ranks[pos, j] = np.arange(len(lst))
    return items, ranks


def rrf(ranks: np.ndarray, k: float = 60.0, weights: np.ndarray | None = None) -> np.ndarray:
    """Reciprocal-rank fusion: (u, m) 0-based ranks (-1 absent) -> (u,) ``sum_j w_j / (k + rank + 1)``."""
    w = np.ones(ranks.shape[1]) if weights is None else np.asarray(weights, np.float64)
    contrib = np.where(ranks >= 0, 1.0 / (k + ranks + 1.0), 0.0)
    return (contrib * w[None, :]).sum(axis=1)


def _scaled(scores: np.ndarray) -> np.ndarray:
    m = float(scores.max()) if len(scores) else 0.0
    return scores / m if m > 0 else scores


def candidate_features(lex: Hits, dense: Hits, category_match: np.ndarray | None = None,
                       personal: np.ndarray | None = None, k: float = 60.0,
                       topic_match: np.ndarray | None = None,
                       user_topic: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(items (u,), X (u, len(FEATURES)) float32) for the union of the two lists.

    Scores are scaled by the list's best (BM25 is unbounded); ``category_match`` (u,),
    ``personal`` (u, 3), ``topic_match`` (u,) and ``user_topic`` (u,) are aligned with the
    union's order (see :func:`union_ranks`).
    """
    items, ranks = union_ranks([lex.items, dense.items])
    x = np.zeros((len(items), len(FEATURES)), np.float32)
    for col, hits, r in ((0, lex, ranks[:, 0]), (2, dense, ranks[:, 1])):
        s = _scaled(np.asarray(hits.scores, np.float64))
        has = r >= 0
        x[has, col] = s[r[has]]
        x[:, col + 1] = np.where(has, k / (k + r + 1.0), 0.0)
    x[:, 4] = (ranks >= 0).all(axis=1)
    if category_match is not None:
        x[:, 5] = category_match
    if personal is not None:
        x[:, 6:9] = personal
    if topic_match is not None:
        x[:, 9] = topic_match
    if user_topic is not None:
        x[:, 10] = user_topic
    return items, x


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 500, lr: float = 0.5) -> np.ndarray:
    """Logistic regression with soft labels by full-batch gradient descent on standardised
    columns. (n, d) features, (n,) targets in [0, 1] -> (d + 1,) weights (bias last), in the
    original feature scale."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        g = z.T @ (p - y) / len(y) + l2 * np.r_[w[:-1], 0.0]
        w -= lr * g
    coef = w[:-1] / sd
    return np.r_[coef, w[-1] - float(coef @ mu)]


class LearnedFusion:
    """A model over ``features`` (names of :data:`FEATURES`, all by default), fitted to soft
    relevance labels: ``model="linear"`` a logistic model (``score`` is its logit; the weights
    are ``weights``, bias last), ``model="trees"`` gradient-boosted trees
    (:mod:`notefeed.search.trees`, squared loss; ``score`` is the predicted label). ``score(X)``
    takes ``X`` laid out as :data:`FEATURES`; a model saved with fewer or other columns picks
    its own by name."""

    name = "fusion/learned"
    MODELS = ("linear", "trees")

    def __init__(self, weights: np.ndarray | None = None, features: Sequence[str] = FEATURES,
                 model: str = "linear", forest: Forest | None = None,
                 tree_params: dict[str, float] | None = None, meta: dict | None = None) -> None:
        #: how it was trained (JSON-safe; e.g. the search-log training's counts and validation
        #: figures, :mod:`notefeed.search.clickfusion`); saved with it
        self.meta: dict = dict(meta or {})
        if model not in self.MODELS:
            raise SearchError(f"model: expected one of {list(self.MODELS)}, got {model!r}")
        self.features, self.model, self.forest = tuple(features), model, forest
        self.tree_params = dict(TREE_PARAMS if tree_params is None else tree_params)
        self.weights = np.zeros(len(self.features) + 1) if weights is None else np.asarray(weights, np.float64)
        if self.weights.shape != (len(self.features) + 1,):
            raise SearchError(f"weights: expected {len(self.features) + 1} values, got {self.weights.shape}")
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise SearchError(f"features: unknown {unknown}; known: {list(FEATURES)}")
        self._cols = np.array([FEATURES.index(f) for f in self.features], np.int64)

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
            **kw: float | str) -> LearnedFusion:
        """``x`` (n, len(FEATURES)) candidate features, ``y`` (n,) targets in [0, 1]; ``kw``
        overrides :func:`fit_logistic`'s or :func:`~notefeed.search.trees.fit_forest`'s
        parameters. The trees rank each query's candidates (``objective="lambdarank"``, which
        needs ``groups``: the rows of each query, consecutive; ``y`` are then graded labels,
        gain ``2**y - 1``) or regress ``y`` (``"squared"``, the default without ``groups``);
        the objective is kept in :attr:`tree_params`."""
        if len(x) == 0:
            raise SearchError("fusion training: no labelled candidates")
        xs = np.asarray(x)[:, self._cols]
        if self.model == "trees":
            self.tree_params.update(kw)
            self.tree_params.setdefault("objective", "lambdarank" if groups is not None else "squared")
            if self.tree_params["objective"] == "lambdarank" and groups is None:
                raise SearchError("fusion training: objective 'lambdarank' needs the rows of each query (groups)")
            self.forest = fit_forest(xs, y, groups=groups, **self.tree_params)  # type: ignore[arg-type]
        else:
            self.weights = fit_logistic(xs, y, **kw)  # type: ignore[arg-type]
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        """(u,) scores of candidate features ``x`` (u, len(FEATURES)), higher is better."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != len(FEATURES):
            raise SearchError(f"fusion: expected (n, {len(FEATURES)}) features, got {x.shape}")
        if self.model == "trees":
            if self.forest is None:
                raise SearchError("fusion: the trees model is not fitted")
            return self.forest.predict(x[:, self._cols])
        return x[:, self._cols] @ self.weights[:-1] + self.weights[-1]

    def save(self, path: str | Path) -> None:
        # the interleaving's count is read from the search log by whoever serves, never saved
        meta = {k: v for k, v in self.meta.items() if k != "interleaving"}
        raw: dict = {"kind": self.name, "model": self.model, "features": list(self.features), "meta": meta}
        if self.model == "trees":
            if self.forest is None:
                raise SearchError("fusion: the trees model is not fitted")
            raw["forest"], raw["tree_params"] = self.forest.to_json(), self.tree_params
        else:
            raw["weights"] = self.weights.tolist()
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(raw), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> LearnedFusion:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            model = raw.get("model", "linear")
            meta = raw.get("meta") or {}
            if not isinstance(meta, dict):
                raise ValueError("meta is not an object")
            if model == "trees":
                forest = Forest.from_json(raw["forest"])
                if forest.feature.size and int(forest.feature.max()) >= len(raw["features"]):
                    raise ValueError("forest splits on a feature it does not list")
                return cls(None, raw["features"], "trees", forest, raw.get("tree_params"), meta=meta)
            return cls(np.asarray(raw["weights"], np.float64), raw["features"], meta=meta)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SearchError(f"{path}: corrupt fusion weights ({e})") from None
