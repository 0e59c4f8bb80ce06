"""Learned ranking in the pipeline: one feature assembly for training and serving.

:func:`candidate_features` turns a request's candidate set into named feature columns; the
training orchestration (``notefeed/models/train.py``) calls the very same function on
candidate sets captured from the same pipeline, so offline and online features cannot drift.

- ``base.*``: the built-in request features (log popularity, recency, real-time category
  counter, category match with the short sequence, small creator, number of channels, best
  recall score),
- ``user.log_hist``: how much history the user has,
- ``stage.coarse`` (+ ``.rank``): the coarse ranker's score, once it has run,
- ``recall.<channel>``: each channel's rank-normalised score (1 for its first item, 0 where
  it did not recall the item),
- ``x.<channel>`` and ``x.<channel>.rank``: scores of every candidate from each channel that
  can score arbitrary items (``score_items``: Swing/ItemCF similarity to the history, the
  sequence model's logit), written by the :class:`ChannelFeatures` step, raw and as the
  within-request rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from notefeed.recall.base import UserContext
from notefeed.serve.catalog import Catalog
from notefeed.serve.components import features
from notefeed.serve.models import FEATURES
from notefeed.serve.pipeline import CandidateSet

__all__ = ["candidate_features", "feature_matrix", "request_matrix", "predict", "ChannelFeatures", "LearnedScorer", "uses_features"]


def _rank01(v: np.ndarray) -> np.ndarray:
    """1 for the best value, falling linearly to 0 for the worst (ties share the better rank)."""
    n = len(v)
    if n <= 1:
        return np.ones(n, np.float32)
    r = np.empty(n, np.float32)
    r[np.argsort(-v, kind="stable")] = np.arange(n, dtype=np.float32)
    return 1.0 - r / (n - 1)


def candidate_features(catalog: Catalog, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
    """Named (n,) float32 feature columns of the candidates (see the module docstring)."""
    n = len(cs)
    x = features(catalog, ctx, cs)
    out = {f"base.{name}": x[:, j] for j, name in enumerate(FEATURES) if name != "bias"}
    out["user.log_hist"] = np.full(n, np.log1p(len(ctx.history)), np.float32)
    coarse = cs.columns.get("coarse")
    if coarse is not None:  # the coarse ranker's score: the fine ranker refines it
        out["stage.coarse"] = np.nan_to_num(coarse, nan=0.0).astype(np.float32)
        out["stage.coarse.rank"] = _rank01(out["stage.coarse"])
    for k, v in cs.columns.items():
        if k.startswith("recall."):
            out[k] = np.nan_to_num(v, nan=0.0).astype(np.float32)
        elif k.startswith("x."):
            v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
            out[k] = v
            out[f"{k}.rank"] = _rank01(v)
    return out


def feature_matrix(cols: dict[str, np.ndarray], names: Sequence[str], n: int) -> np.ndarray:
    """(n, len(names)) float32 in ``names`` order; a feature the request lacks is 0 (a channel
    that failed or is configured off contributes nothing, as in training when it was absent)."""
    out = np.zeros((n, len(names)), np.float32)
    for j, name in enumerate(names):
        v = cols.get(name)
        if v is not None:
            out[:, j] = v
    return out


def uses_features(model: Any) -> bool:
    """A model that scores a named feature matrix (``rank/ltr``) rather than (ctx, items)."""
    return isinstance(getattr(model, "feature_names", None), list) and callable(getattr(model, "predict", None))


class ChannelFeatures:
    """``features/channels``: writes ``x.<channel>`` for every candidate, from each source
    component that has ``score_items(ctx, items)``. A channel that fails leaves its column
    out (the ranker reads 0) and the step records the error."""

    name = "features/channels"

    def __init__(self, sources: Sequence[Any]) -> None:
        self.sources = [s for s in sources if callable(getattr(s, "score_items", None))]

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        errors = []
        for s in self.sources:
            try:
                out[f"x.{s.name}"] = np.asarray(s.score_items(ctx, cs.items), np.float32)
            except Exception as e:  # fail open per channel
                errors.append(f"{s.name}: {type(e).__name__}: {e}")
        if errors and not out:
            raise RuntimeError("; ".join(errors))
        return out


def request_matrix(model: Any, catalog: Catalog, ctx: UserContext, cs: CandidateSet) -> np.ndarray:
    """(n, f) the feature matrix a feature-matrix model (``rank/ltr``) scores for the request."""
    return feature_matrix(candidate_features(catalog, ctx, cs), model.feature_names, len(cs))


def predict(model: Any, catalog: Catalog, ctx: UserContext, cs: CandidateSet) -> np.ndarray:
    """(n,) scores of a feature-matrix model (``rank/ltr``) for the request's candidates."""
    return model.predict(request_matrix(model, catalog, ctx, cs))


class LearnedScorer:
    """A feature-matrix model (``rank/ltr``) as a pipeline scorer writing ``column``."""

    def __init__(self, model: Any, catalog: Catalog, column: str, name: str) -> None:
        self.model, self.catalog, self.column, self.name = model, catalog, column, name

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        return {self.column: predict(self.model, self.catalog, ctx, cs)}
