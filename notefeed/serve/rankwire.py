"""Wiring of the rank stage's fine ranker (``rank/cgc``, ``rank/ple``, ``rank/mmoe``,
``rank/single``) into serving.

The ``SCORERS`` entries of the rank stage take a trained :class:`FineRanker` and its
:class:`FeatureBuilder`, so the server builds them here: trained on the workspace dataset at
start-up (``fine.scorer: rank/cgc``), or loaded from a checkpoint directory
(``fine.model_dir``, or ``POST /v1/admin/models/reload``) with a builder over the served
dataset. The wrapper states ``n_items`` so notes published after start-up get the neutral
cold-start score instead of an out-of-range error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.recall.base import UserContext
from notefeed.serve.models import ModelVersion

__all__ = ["RANK_FINE", "BoundedScorer", "engine_installer", "fit_rank_scorer", "load_rank_checkpoint"]

RANK_FINE = ("rank/cgc", "rank/ple", "rank/mmoe", "rank/single")


class BoundedScorer:
    """A scorer plus the catalogue size it was built for (``n_items``)."""

    def __init__(self, inner: Any, n_items: int) -> None:
        self.inner, self.n_items = inner, int(n_items)
        self.name = str(getattr(inner, "name", type(inner).__name__))

    def score(self, ctx: UserContext, items: np.ndarray) -> dict[str, np.ndarray]:
        return self.inner.score(ctx, items)


def engine_installer(engine: Any) -> Callable[[str, Any, int, float], None]:
    """The ``install`` hook of :class:`~notefeed.online.trainer.OnlineTrainer` for a running engine:
    each published version's scorer, bounded to the ``n_items`` it was built for, is swapped into
    ``engine.models`` (source ``online``)."""
    def install(version: str, scorer: Any, n_items: int, at: float) -> None:
        engine.models.set(ModelVersion(version, BoundedScorer(scorer, n_items), at, "online"))

    return install


def _feature_config(d: dict[str, Any]) -> Any:
    from notefeed.rank.features import FeatureConfig

    names = {f.name for f in dataclasses.fields(FeatureConfig)}
    return FeatureConfig(**{k: v for k, v in d.items() if k in names})


def fit_rank_scorer(name: str, params: dict[str, Any], ds: Dataset) -> BoundedScorer:
    """Train ``rank/<arch>`` on ``ds`` (``params``: FineConfig fields, plus ``features`` and
    ``max_samples``, which keeps only that many of the most recent training samples)."""
    from notefeed.rank.features import FeatureBuilder
    from notefeed.rank.finenet import FineConfig
    from notefeed.rank.multitask import FineRanker
    from notefeed.rank.samples import build_samples
    from notefeed.rank.scorer import FineRankerScorer

    arch = name.split("/", 1)[1]
    p = dict(params)
    # the most recent samples only: start-up training time is bounded whatever the log size
    max_samples = p.pop("max_samples", None)
    builder = FeatureBuilder(ds, _feature_config(p.pop("features", {})))
    samples = build_samples(ds)
    if max_samples is not None:
        if not isinstance(max_samples, int) or max_samples <= 0:
            raise ValueError(f"fine.params.max_samples must be a positive integer, got {max_samples!r}")
        if len(samples) > max_samples:
            samples = samples.split_time(max_samples / len(samples))[1]
    ranker = FineRanker(FineConfig(arch=arch, **p)).fit(ds, samples=samples, builder=builder)
    return BoundedScorer(FineRankerScorer(ranker, builder), builder.n_items)


def load_rank_checkpoint(path: str | Path, ds: Dataset) -> BoundedScorer:
    """A saved :class:`FineRanker` with a feature builder over ``ds``; the checkpoint's
    vocabulary must match the served catalogue."""
    from notefeed.rank.features import FeatureBuilder
    from notefeed.rank.multitask import FineRanker
    from notefeed.rank.scorer import FineRankerScorer

    ranker = FineRanker.load(path)
    want = int(ranker.cfg.vocab.get("n_items", -1)) - 1
    if want != ds.n_items:
        raise ValueError(f"{path}: trained on {want} notes, the server has {ds.n_items} (field 'vocab.n_items')")
    builder = FeatureBuilder(ds, _feature_config(dict(ranker.cfg.features or {})))
    return BoundedScorer(FineRankerScorer(ranker, builder), builder.n_items)
