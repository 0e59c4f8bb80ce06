"""Config -> :class:`~notefeed.serve.pipeline.Pipeline`: where step order becomes data.

Name resolution: the live built-ins ``fresh/recent`` and ``non-personalized/popular`` (they
see published notes and online engagement) come first; every other channel, scorer and
re-ranker name is looked up in the stage registries (``CHANNELS``, ``SCORERS``,
``RERANKERS``), created with the config's ``params`` and fitted on the workspace dataset
when it has ``fit``. An unknown name is an error naming the config field.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from notefeed.data.dataset import Dataset
from notefeed.rank.base import SCORERS
from notefeed.recall.base import CHANNELS
from notefeed.registry import nested_params
from notefeed.rerank.base import RERANKERS
from notefeed.serve.catalog import Catalog
from notefeed.serve.coldstart import ColdStartHub, ColdStartSource
from notefeed.serve.components import (
    AuthorCapReRanker,
    BlockedFilter,
    FreshSource,
    Fusion,
    ModelScorer,
    PopularityScorer,
    PopularSource,
    RankScorerAdapter,
    RemovedFilter,
    ReRankSelector,
    SeenFilter,
    TopK,
)
from notefeed.serve.config import ConfigError, ServeConfig
from notefeed.serve.exposure import make_exposure_step
from notefeed.serve.itemvectors import vector_source
from notefeed.serve.learned import ChannelFeatures, LearnedScorer
from notefeed.serve.models import ModelHolder, ModelVersion
from notefeed.serve.pipeline import Pipeline, Step
from notefeed.serve.rankwire import RANK_FINE, fit_rank_scorer
from notefeed.serve.slots import SideSlots, slot_parts

__all__ = ["build_pipeline", "load_stage_components", "create_component", "LEARNED"]

#: the learned listwise ranker (coarse and fine): trained by ``notefeed train`` only, never at
#: start-up; without a trained version the pipeline serves the built-in fallback and says so
LEARNED = "rank/ltr"


def load_stage_components() -> list[str]:
    """Import the stage packages so their components register; return the ones missing."""
    missing = []
    for mod in ("notefeed.recall", "notefeed.rank", "notefeed.rerank"):
        try:
            importlib.import_module(mod)
        except Exception as e:  # a broken stage must not stop the server from starting
            missing.append(f"{mod}: {type(e).__name__}: {e}")
    return missing


def create_component(factory: Any, params: dict[str, Any], where: str) -> Any:
    """``factory(**params)``; for a dataclass factory, a mapping given for a field whose
    default is itself a dataclass (``rules: {author_max: 1}``) builds that dataclass.
    Errors become :class:`ConfigError` naming ``where`` (the config field)."""
    try:
        kwargs = nested_params(factory, params)
    except ValueError as e:  # "<field>: <why>"
        raise ConfigError(f"{where}.{e}") from None
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _fit(obj: Any, ds: Dataset) -> Any:
    fit = getattr(obj, "fit", None)
    if fit is not None and ds.n_items:
        out = fit(ds)
        return obj if out is None else out
    return obj


def small_creator_reserve(config: ServeConfig) -> float:
    """The small-creator share the re-ranker's fairness guarantees (0 when off): the truncations
    before it (coarse keep, re-rank window) keep at least that share of small-creator notes."""
    fair = (config.rerank.params or {}).get("fairness") if config.rerank.name else None
    if not isinstance(fair, dict) or fair.get("mode", "off") == "off":
        return 0.0
    return float(fair.get("target", 0.5))


def build_pipeline(config: ServeConfig, catalog: Catalog, ds: Dataset, models: ModelHolder,
                   name: str = "default", coldstart: ColdStartHub | None = None,
                   fitted: dict[str, Any] | None = None, fit_offline: bool = False) -> Pipeline:
    """Steps from ``config``. With ``coldstart.enabled`` (and the engine's ``coldstart`` hub) a
    ``coldstart/bandit`` side source and the ``coldstart/slots`` selector after re-ranking;
    every side source with page slots (``coldstart/bandit``, ``llm/interest`` with ``slots >
    0``) gets its part in that one page mixer (:class:`~notefeed.serve.slots.SideSlots`,
    named by its parts: ``coldstart/slots+llm/interest/slots``), cold-start first.

    ``fitted`` holds components already fitted (trained by ``notefeed train`` and loaded from
    the model store, or fitted by the training orchestration itself), keyed by their config
    place: ``recall.channels.<i>``, ``coarse``, ``fine``. Those are used as they are; every
    other component is created from the config and fitted on ``ds``, except channels marked
    ``offline_only`` (minutes to train), which only ``fit_offline=True`` (the training
    orchestration) fits; otherwise they are left out and named in ``pipeline.fallbacks``."""
    load_stage_components()
    fitted = fitted or {}
    fallbacks: list[str] = []
    fit_s: dict[str, float] = {}  # seconds each channel fitted here took, by config place
    steps: list[Step] = []
    cs_on = config.coldstart.enabled and coldstart is not None and config.coldstart.slots > 0
    for i, ch in enumerate(config.recall.channels):
        if ch.name == "fresh/recent":
            comp: Any = FreshSource(catalog)
        elif ch.name == "non-personalized/popular":
            comp = PopularSource(catalog)
        elif f"recall.channels.{i}" in fitted:
            comp = fitted[f"recall.channels.{i}"]
        elif ch.name in CHANNELS and getattr(CHANNELS.get(ch.name), "offline_only", False) and not fit_offline:
            # a model that takes minutes to train (sequence/sasrec) is trained by `notefeed
            # train`, never at start-up: until a version has it, the feed goes on without it
            fallbacks.append(f"recall.channels.{i}: {ch.name} not trained (run `notefeed train`); left out")
            continue
        elif ch.name in CHANNELS:
            t_fit = time.perf_counter()
            comp = _fit(create_component(CHANNELS.get(ch.name), ch.params, f"recall.channels.{i}.params"), ds)
            fit_s[f"recall.channels.{i}:{ch.name}"] = round(time.perf_counter() - t_fit, 3)
        else:
            raise ConfigError(f"recall.channels.{i}.name: unknown channel {ch.name!r}; known: "
                              f"{sorted({'fresh/recent', 'non-personalized/popular', *CHANNELS.names()})}")
        steps.append(Step("source", comp, ch.quota))
    if cs_on:
        assert coldstart is not None
        # headroom over the slots: the seen filter and notes already on the page use some up
        steps.append(Step("source", ColdStartSource(coldstart, config.coldstart.slots), 2 * config.coldstart.slots + 2))
    # always, first: a takedown or a user's block is not a ranking choice
    steps.append(Step("filter", RemovedFilter(catalog)))
    steps.append(Step("filter", BlockedFilter(catalog)))
    for i, f in enumerate(config.filters):
        if f != "builtin/seen":
            raise ConfigError(f"filters.{i}: unknown filter {f!r}; known: ['builtin/seen']")
        steps.append(Step("filter", SeenFilter(catalog)))
    reserve = small_creator_reserve(config)
    co = config.coarse
    if co.scorer is not None:
        if co.scorer == "builtin/popularity":
            steps.append(Step("scorer", PopularityScorer(catalog)))
        elif co.scorer == LEARNED:
            if "coarse" in fitted:
                steps.append(Step("scorer", LearnedScorer(fitted["coarse"], catalog, "coarse", "coarse/ltr")))
            else:  # nothing trained yet: the built-in formula, and the pipeline says so
                fallbacks.append("coarse: rank/ltr not trained (run `notefeed train`); serving builtin/popularity")
                steps.append(Step("scorer", PopularityScorer(catalog)))
        elif "coarse" in fitted:
            steps.append(Step("scorer", RankScorerAdapter(fitted["coarse"], "coarse")))
        elif co.scorer in SCORERS:
            steps.append(Step("scorer", RankScorerAdapter(
                _fit(create_component(SCORERS.get(co.scorer), co.params, "coarse.params"), ds), "coarse")))
        else:
            raise ConfigError(f"coarse.scorer: unknown scorer {co.scorer!r}; known: "
                              f"{['builtin/popularity', *SCORERS.names()]}")
        steps.append(Step("selector", TopK("coarse", co.keep, "coarse/keep", reserve, catalog)))
    fi = config.fine
    if fi.scorer is not None:
        if fi.scorer == LEARNED:
            if "fine" not in fitted:
                fallbacks.append("fine: rank/ltr not trained (run `notefeed train`); serving builtin/linear priors")
            # every candidate scored by each channel that can (the ranker's x.* features)
            steps.append(Step("scorer", ChannelFeatures([s.component for s in steps if s.kind == "source"])))
        if "fine" in fitted:
            models.set(ModelVersion(str(getattr(fitted["fine"], "version", f"{fi.scorer}@fitted")),
                                    fitted["fine"], time.time()))
        elif fi.scorer not in ("builtin/linear", LEARNED) and fi.model_dir is None:
            # a scorer trained at start-up becomes the holder's first version
            if fi.scorer in RANK_FINE:
                try:
                    model: Any = fit_rank_scorer(fi.scorer, fi.params, ds)
                except (TypeError, ValueError) as e:
                    raise ConfigError(f"fine.params: {e}") from None
            elif fi.scorer in SCORERS:
                model = _fit(create_component(SCORERS.get(fi.scorer), fi.params, "fine.params"), ds)
            else:
                raise ConfigError(f"fine.scorer: unknown scorer {fi.scorer!r}; known: "
                                  f"{['builtin/linear', *SCORERS.names()]}")
            models.set(ModelVersion(f"{fi.scorer}@start", model, time.time()))
        steps.append(Step("scorer", ModelScorer(catalog)))
    steps.append(Step("scorer", Fusion(config.fusion.weights)))
    exposure = make_exposure_step(catalog, config.exposure)  # per-request knobs on the fused score
    if exposure is not None:
        steps.append(Step("scorer", exposure))
    rr = config.rerank
    steps.append(Step("selector", TopK("fused", rr.window, "rerank/window", reserve, catalog)))
    if rr.name is not None:
        if rr.name == "builtin/author-cap":
            reranker: Any = create_component(AuthorCapReRanker, rr.params, "rerank.params")
        elif rr.name in RERANKERS:
            reranker = create_component(RERANKERS.get(rr.name), rr.params, "rerank.params")
        else:
            raise ConfigError(f"rerank.name: unknown re-ranker {rr.name!r}; known: "
                              f"{['builtin/author-cap', *RERANKERS.names()]}")
        embedder = vector_source([s.component for s in steps if s.kind == "source"])
        steps.append(Step("selector", ReRankSelector(reranker, catalog, embedder)))
    side = [s.component for s in steps if s.side]
    parts = slot_parts([c for c in side if isinstance(c, ColdStartSource)]
                       + [c for c in side if not isinstance(c, ColdStartSource)])
    if parts:
        steps.append(Step("selector", SideSlots(parts)))
    pipeline = Pipeline(name, steps)
    pipeline.fallbacks = fallbacks
    pipeline.fit_seconds = fit_s
    return pipeline
