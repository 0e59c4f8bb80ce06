"""Serving a trained version from the model store, and swapping versions while serving.

What one request uses is one :class:`Served`: the pipelines built for a store version (or
the fallback), and the fine-model holder they score with. The engine keeps it in a single
attribute, a request reads it once at its start, and a reload builds a complete new
:class:`Served` on a background thread and replaces that one reference: in-flight requests
finish on the old version, new ones see the new one.

A version is served only when it fits the running server: each stored component sits at the
config place it was trained for (same registry name), the notes and users it was trained on
sit at the indices the server gives them, and the fine model's task names meet the fusion
weights. Its data may be a prefix of the served dataset, or extend it: ``notefeed train``
copies in what the server logged (the notes published since it started, which its catalogue
already holds in publication order; users who signed up since, whom it then serves with the
version's user index, :attr:`Served.extra_users`), so a version trained on that is hot-swapped
too. Otherwise start-up serves the fallback and says
why, and a reload is refused with the reason (kept in ``/healthz`` as ``reload_error``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from notefeed.models.artifacts import ModelError
from notefeed.models.store import ModelStore, ids_fingerprint
from notefeed.recall.base import UserContext
from notefeed.serve.components import ServeContext
from notefeed.serve.config import ServeConfig
from notefeed.serve.models import LinearModel, ModelHolder
from notefeed.serve.pipeline import Pipeline
from notefeed.threads import gc_paused, trim_heap

if TYPE_CHECKING:
    from notefeed.data.dataset import Dataset
    from notefeed.serve.engine import Engine

log = logging.getLogger(__name__)

__all__ = [
    "Served",
    "VersionedContext",
    "VersionReloader",
    "added_users",
    "build_served",
    "check_fitted",
    "check_tasks",
    "engine_from_store",
    "model_tasks",
    "NO_VERSION",
]

#: the fallback reason when the workspace has no promoted version
NO_VERSION = "no trained model version (run `notefeed train`, then `notefeed models promote`)"


@dataclass(frozen=True)
class Served:
    """What requests are served with, swapped as one reference."""

    pipelines: dict[str, Pipeline]
    models: ModelHolder
    #: the store version (``None``: not from the store)
    version: str | None = None
    #: why this is not (entirely) a trained version; empty when it is
    fallback: tuple[str, ...] = ()
    loaded_at: float = field(default_factory=time.time)
    #: an experiment arm's own fine-model holder, by pipeline name (arms whose fine section differs)
    arm_models: dict[str, ModelHolder] = field(default_factory=dict)
    #: users this version was trained on that the engine's dataset lacks (they signed up after
    #: the server started; a sync copied them in), by id -> the version's user index (from
    #: ``engine.ds.n_users`` on): :meth:`Engine.context` gives them that index, so the
    #: version's user-indexed parts (ranker user features, two-tower user ids) serve them
    extra_users: Mapping[str, int] = field(default_factory=dict)

    def close(self) -> None:
        """Close the model holders (once these pipelines are no longer served, or never were)."""
        self.models.close()
        for h in self.arm_models.values():
            h.close()


@dataclass
class VersionedContext(ServeContext):
    """A request context that also says which store version served it."""

    served_version: str | None = None
    fallback: bool = False
    #: the experiment arm that served the request (None: no experiment)
    arm: str | None = None


# ---------------------------------------------------------------------- checks
def model_tasks(model: Any) -> set[str] | None:
    """The task names a fine model answers, or ``None`` when they cannot be told without
    its features (a feature-matrix model such as ``rank/ltr``)."""
    for _ in range(4):  # wrappers: BoundedScorer(FineRankerScorer(...))
        if isinstance(model, LinearModel):
            return set(model.tasks)
        tasks = getattr(model, "tasks", None)
        if isinstance(tasks, list | tuple) and tasks and all(isinstance(t, str) for t in tasks):
            return set(tasks)
        cfg = getattr(getattr(model, "ranker", None), "cfg", None)
        if cfg is not None and isinstance(getattr(cfg, "tasks", None), list | tuple):
            return set(cfg.tasks)
        inner = getattr(model, "inner", None)
        if inner is None:
            break
        model = inner
    if callable(getattr(model, "score", None)):
        try:  # one unknown user, one item: the answer's keys are the tasks
            return set(model.score(UserContext("__task_probe__", None), np.zeros(1, np.int64)))
        except Exception as e:  # the request path reports real failures; here only the names matter
            log.warning("cannot probe %s for its task names: %s", type(model).__name__, e)
    return None


def check_tasks(model: Any, weights: dict[str, float], where: str) -> None:
    """:class:`ModelError` when ``model``'s tasks meet none of the fusion ``weights`` (its
    scores would be ignored and the feed silently ranked by the coarse score)."""
    tasks = model_tasks(model)
    if tasks is not None and not tasks & set(weights):
        raise ModelError(f"{where}: model tasks {sorted(tasks)} match none of the fusion weights "
                         f"{sorted(weights)} (fusion.weights); refusing it")


def check_fitted(config: ServeConfig, ds: Dataset, fitted: dict[str, Any], manifest: dict[str, Any],
                 version: str, catalog: Sequence[str] | None = None,
                 user_ids: Callable[[], Sequence[str] | None] | None = None) -> None:
    """Refuse a version that does not fit this server (see the module docstring).

    A version trained on more notes or users than ``ds`` (after ``notefeed train`` copied in
    what this server logged) fits when its notes are the first ones of ``catalog`` (the running
    server's note ids: ``ds``'s, then those published since) and the ids ``user_ids()`` returns
    (the version's users, :meth:`ModelStore.user_ids`) start with ``ds``'s users."""
    chans = config.recall.channels
    for key, comp in fitted.items():
        name = getattr(comp, "name", None)
        if key.startswith("recall.channels."):
            i = key.rsplit(".", 1)[1]
            if not i.isdigit() or int(i) >= len(chans):
                raise ModelError(f"version {version}: component {key!r} has no place in this config "
                                 f"(recall.channels has {len(chans)} entries)")
            want = chans[int(i)].name
        elif key in ("coarse", "fine"):
            want = config.coarse.scorer if key == "coarse" else config.fine.scorer
        else:
            continue  # other components (content vectors...) are not pipeline steps
        if name is not None and name != want:
            raise ModelError(f"version {version}: {key} was trained as {name!r} but the config "
                             f"names {want!r} there; serve with the config it was trained with or retrain")
    data = manifest.get("data") or {}
    for what, n_have, ids_col in (("items", ds.n_items, "note_id"), ("users", ds.n_users, "user_id")):
        n = data.get(f"n_{what}")
        if n is None:
            continue
        n = int(n)
        sha = data.get(f"{what}_sha")
        frame = ds.notes if what == "items" else ds.users
        if n > n_have:
            if not _extends(what, n, sha, frame[ids_col], catalog, user_ids):
                raise ModelError(f"version {version}: trained on {n} {what}, this server loaded {n_have} and "
                                 f"they are not the first {n} it knows: trained on data this server has not "
                                 "loaded (restart `notefeed serve` to load it) or on another workspace")
        elif sha is not None and ids_fingerprint(frame[ids_col], n) != sha:
            raise ModelError(f"version {version}: the workspace's {what} differ from the ones it was "
                             "trained on (ids or order); retrain on this workspace")
    if "fine" in fitted:
        check_tasks(fitted["fine"], config.fusion.weights, f"version {version}: fine")


def _extends(what: str, n: int, sha: str | None, loaded: Any, catalog: Sequence[str] | None,
             user_ids: Callable[[], Sequence[str] | None] | None) -> bool:
    """Whether a version trained on ``n`` > ``len(loaded)`` notes (``what`` "items") or users
    fits this server: its notes are the first ``n`` of the server's catalogue (the published
    notes a sync copied in, in the order they were published), or its users start with the
    loaded ones (those it adds are new to this server, served from their online state)."""
    if what == "items":
        return catalog is not None and len(catalog) >= n and sha is not None and ids_fingerprint(catalog, n) == sha
    ids = user_ids() if user_ids is not None else None
    if ids is None or len(ids) != n or (sha is not None and ids_fingerprint(ids, n) != sha):
        return False
    have = len(loaded)
    return list(ids[:have]) == loaded.astype(str).tolist()


def added_users(ds: Dataset, manifest: dict[str, Any],
                user_ids: Callable[[], Sequence[str] | None]) -> dict[str, int]:
    """The users a version that :func:`check_fitted` accepted was trained on beyond ``ds``'s,
    by id -> the version's index (empty when it has no more users than ``ds``)."""
    n = (manifest.get("data") or {}).get("n_users")
    if n is None or int(n) <= ds.n_users:
        return {}
    ids = user_ids()
    assert ids is not None  # check_fitted refuses a version with more users and no ids
    return {u: j for j, u in enumerate(ids[ds.n_users:], start=ds.n_users)}


# ---------------------------------------------------------------------- building
def build_served(engine: Engine, fitted: dict[str, Any] | None, version: str | None,
                 fallback: tuple[str, ...] = (), config: ServeConfig | None = None,
                 extra_users: Mapping[str, int] | None = None) -> Served:
    """Pipelines and model holder for ``config`` (default ``engine``'s) with ``fitted``
    components (trained on ``extra_users`` beyond ``engine.ds``'s, see :attr:`Served.extra_users`);
    ``engine`` itself is not changed."""
    from notefeed.serve.engine import popular_config
    from notefeed.serve.factory import build_pipeline

    cfg = engine.config if config is None else config
    weights = cfg.fusion.weights
    models = ModelHolder.from_dir_or_default(
        cfg.fine.model_dir, engine.ds, validate=lambda m: check_tasks(m, weights, "reloaded model"))
    try:
        pipelines = {
            "default": build_pipeline(cfg, engine.catalog, engine.ds, models, coldstart=engine.coldstart,
                                      fitted=fitted, fit_offline=getattr(engine, "fit_offline", False)),
            # the baseline every benchmark compares against, and a fallback clients may ask for
            "popular": build_pipeline(popular_config(cfg), engine.catalog, engine.ds, models, "popular"),
        }
        arm_models: dict[str, ModelHolder] = {}
        if cfg.experiments.arms:  # A/B arms: the same trained components under each arm's overlay
            from notefeed.serve.experiments import arm_pipelines

            arms, arm_models = arm_pipelines(engine, fitted, pipelines["default"], models, cfg)
            pipelines.update(arms)
    except BaseException:
        models.close()
        raise
    reasons = list(fallback)
    if version is None and not fitted:
        reasons.append(NO_VERSION)
    reasons += [str(r) for r in getattr(pipelines["default"], "fallbacks", None) or []]
    return Served(pipelines, models, version, tuple(reasons), arm_models=arm_models,
                  extra_users=dict(extra_users or {}))


def engine_from_store(ds: Dataset, config: ServeConfig, workspace: str | Path, **kwargs: Any) -> Engine:
    """An :class:`Engine` serving the workspace's promoted version (nothing trained at
    start-up when there is one). No version, or one that cannot be served here: the
    fallback, with the reason in ``/healthz`` and ``fallback`` in every response."""
    from notefeed.serve.engine import Engine

    store = ModelStore(workspace)
    version: str | None = None
    fitted: dict[str, Any] | None = None
    why: tuple[str, ...] = ()
    try:
        version = store.promoted()
        if version is not None:
            with gc_paused():
                fitted = store.load(version)
            check_fitted(config, ds, fitted, store.manifest(version), version)
    except ModelError as e:
        log.error("not serving the promoted model version: %s", e)
        why = (f"promoted version not served: {e}",)
        version, fitted = None, None
    with gc_paused():  # millions of small objects, none in a cycle (notefeed.threads.gc_paused)
        engine = Engine(ds, config, workspace, fitted=fitted, model_version=version, **kwargs)
    if why:
        engine.served = dataclasses.replace(engine.served, fallback=why + engine.served.fallback)
    if config.online.follow_promoted_s > 0:  # a promote / rollback from any process reaches this one
        engine.reloader.follow_promoted(config.online.follow_promoted_s)
    from notefeed.serve.hotconfig import LiveConfig

    engine.live_config = LiveConfig(engine)  # a live config change made by any serving process
    why = engine.live_config.catch_up()  # (a restarted worker rejoins its peers' config)
    if why:
        engine.startup_warnings.append(why)
    if config.online.follow_promoted_s > 0:
        engine.live_config.follow(config.online.follow_promoted_s)
    return engine


class VersionReloader:
    """``POST /v1/admin/models/reload {"version": ...}``: load a store version on a
    background thread, build its pipelines, swap them in; one reload at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notefeed-version-load")
        self._lock = threading.Lock()
        #: ``idle`` | ``loading`` | ``swapped`` | ``failed``
        self.state = "idle"
        self.target: str | None = None
        self.last_error: str | None = None

    def reload(self, version: str) -> Future[Served]:
        with self._lock:
            self.state, self.target = "loading", version
        return self._pool.submit(self._load_and_swap, version)

    def _load_and_swap(self, version: str) -> Served:
        eng = self.engine
        try:
            store = ModelStore(eng.workspace)
            fitted = store.load(version)
            users: list[list[str] | None] = []  # read once, by the check and for the index below

            def user_ids() -> list[str] | None:
                if not users:
                    users.append(store.user_ids(version))
                return users[0]

            manifest = store.manifest(version)
            check_fitted(eng.config, eng.ds, fitted, manifest, version, catalog=eng.catalog.note_ids,
                         user_ids=user_ids)
            new = build_served(eng, fitted, version, extra_users=added_users(eng.ds, manifest, user_ids))
        except Exception as e:
            with self._lock:
                self.state, self.last_error = "failed", f"{version}: {type(e).__name__}: {e}"
            log.error("model reload %s failed: %s", version, e)
            raise
        old = eng.swap_served(new)
        eng.fitted = fitted
        old.close()
        del old
        eng.refreeze_heap()
        trim_heap()  # the old version's arrays are freed: hand the memory back (:func:`trim_heap`)
        with self._lock:
            self.state, self.last_error = "swapped", None
        eng.metrics.inc("model_swaps_total")
        return new

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "target": self.target, "error": self.last_error}

    def follow_promoted(self, every_s: float) -> None:
        """Watch the model store's promoted version (``notefeed train``, ``notefeed models
        promote`` or ``rollback``, from any process) every ``every_s`` seconds and load each
        newly promoted one. Only a change of the pointer acts: a version served by hand
        (``POST /v1/admin/models/reload``) stays until the next promotion, and a promoted
        version that cannot be served is tried once (``/healthz`` ``reload`` says why)."""
        self._stop_watch = threading.Event()
        store = ModelStore(self.engine.workspace)

        def pointer() -> str | None:
            try:
                return store.promoted()
            except ModelError:  # a pointer being rewritten, or torn: the next look decides
                return None

        seen = pointer()

        def watch() -> None:
            nonlocal seen
            while not self._stop_watch.wait(every_s):
                now = pointer()
                if now is None or now == seen:
                    continue
                seen = now
                if now != self.engine.model_version:
                    log.info("model store: %s was promoted; loading it", now)
                    self.reload(now)

        self._watch = threading.Thread(target=watch, name="notefeed-promoted-watch", daemon=True)
        self._watch.start()

    def close(self) -> None:
        stop = getattr(self, "_stop_watch", None)
        if stop is not None:
            stop.set()
            self._watch.join(timeout=5.0)
        self._pool.shutdown(wait=False)
