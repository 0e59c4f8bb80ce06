"""The serving pipeline as a closed-loop simulator policy.

``EnginePolicy`` asks a live :class:`~notefeed.serve.engine.Engine` for each page and feeds the
users' reactions back through ``Engine.ingest``, exactly as the HTTP API would, so the
simulator measures the real funnel (recall, ranking, re-ranking, online state) rather than a
model of it. Registered as the ``pipeline``, ``pipeline-nocoldstart`` (the default config with
the new-note cold-start flow off: its baseline) and ``pipeline-popular`` sim policies: the
engine is built lazily on the environment's logged history, with the default serving config,
whose components the first two train there first (``train_components``, as ``notefeed train``).
:func:`config_policy` serves any serving config, trained first on the logged history as
``notefeed train`` would (``notefeed sim run --config A.yaml,B.yaml``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.schema import Event
from notefeed.serve.config import ServeConfig
from notefeed.serve.engine import Engine
from notefeed.serve.pipeline import FeedResult
from notefeed.sim.env import SimEnvironment
from notefeed.sim.policies import POLICIES

__all__ = ["EnginePolicy", "config_policy"]


class EnginePolicy:
    """Pages from ``engine.feed(user_id, k, pipeline)``; reactions go to ``engine.ingest``.

    Item indices are mapped through note ids, so notes the environment publishes later are
    published to the engine too (a new note reaches the fresh pool and the ANN index at once).
    """

    def __init__(self, engine: Engine | None = None, pipeline: str = "default",
                 config: ServeConfig | None = None, workspace: str | Path | None = None,
                 seed: int = 0, name: str | None = None, fitted: dict[str, Any] | None = None,
                 model_version: str | None = None, train: bool = False) -> None:
        """Without ``engine``, one is built on the environment's logged history at the first
        page, from ``config`` (default: the default config) and ``fitted`` components (e.g. a
        model store version ``model_version``, or :func:`~notefeed.models.train.train_components`
        output); components not in ``fitted`` are fitted there as ``serve`` would. ``train``
        (and no ``fitted``): first train the config's components on that history with
        ``train_components``, as ``notefeed train`` would (learned rankers, offline-only
        channels), instead of serving their fallbacks."""
        self.engine = engine
        self.pipeline = pipeline
        self.config = config
        self.fitted = fitted
        self.model_version = model_version
        self.train = train
        self.workspace = workspace
        self.seed = seed
        self.name = name or ("pipeline" if pipeline == "default" else f"pipeline-{pipeline}")
        self._env_item_of: dict[str, int] = {}
        self._user_ids: np.ndarray | None = None
        self._note_ids: list[str] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # ------------------------------------------------------------------ wiring
    def _attach(self, env: SimEnvironment) -> Engine:
        if self.engine is None:
            if env.dataset is None:
                raise ValueError("EnginePolicy: the environment has no logged dataset to build an engine on")
            if self.workspace is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="notefeed-sim-")
                self.workspace = self._tmp.name
            cfg = self.config or ServeConfig()
            cfg = cfg.with_overrides(coldstart={"seed": self.seed})  # reproducible bandit draws
            ds = env.dataset.windowed(cfg.data.window_days, cfg.data.keep_per_user)  # as serve reads the store
            if self.train and self.fitted is None:
                from notefeed.models.train import train_components

                self.fitted, _ = train_components(cfg, ds, progress=False, seed=self.seed)
                self.model_version = self.model_version or f"{self.name}@sim-seed-{self.seed}"
            self.engine = Engine(ds, cfg.offline(), self.workspace, fitted=self.fitted,
                                 model_version=self.model_version)
            # reproducible, and in simulated time: no wall-clock cache, the environment's clock
            self.engine.catalog.top_max_age_s = 0.0
            self.engine.clock = lambda: float(env.now)
        if self._user_ids is None:
            users = env.community.users if env.dataset is None else env.dataset.users
            self._user_ids = users["user_id"].astype(str).to_numpy()
            # only the notes the engine already has: ones the environment published before the
            # first page (e.g. in the loop's first step) must still be published to it
            ids = env.notes_frame()["note_id"].astype(str).tolist()
            known = self.engine.catalog.index
            n_known = next((j for j, nid in enumerate(ids) if nid not in known), len(ids))
            self._note_ids = ids[:n_known]
            self._env_item_of = {nid: i for i, nid in enumerate(self._note_ids)}
        self._sync_published(env)
        return self.engine

    def _sync_published(self, env: SimEnvironment) -> None:
        """Publish to the engine the notes the environment added since the last call."""
        if env.n_items == len(self._note_ids):
            return
        from notefeed.schema import Note

        assert self.engine is not None
        new_items = np.arange(len(self._note_ids), env.n_items)
        fresh = env.notes_frame(new_items)
        followers = env.creator_followers[env.item_author[new_items]]
        for row, n_followers in zip(fresh.itertuples(index=False), followers.tolist(), strict=True):
            note = Note(note_id=str(row.note_id), author_id=str(row.author_id), title=str(row.title),
                        text=str(row.text), tags=[str(t) for t in row.tags], category=str(row.category),
                        created_at=int(row.created_at))
            if self.engine.catalog.item_of(note.note_id) is None:  # a reused workspace may have it
                self.engine.publish(note, int(n_followers))
            self._env_item_of[note.note_id] = len(self._note_ids)
            self._note_ids.append(note.note_id)

    # ------------------------------------------------------------------ Policy protocol
    def recommend(self, env_view: SimEnvironment, user: int, k: int) -> np.ndarray:
        engine = self._attach(env_view)
        assert self._user_ids is not None
        # the engine may hold notes the environment does not (published through its API): ask
        # for enough to fill the page once those are dropped
        foreign = min(max(engine.catalog.n_items - len(self._note_ids), 0), k)
        _, res = engine.feed(str(self._user_ids[user]), k + foreign, self.pipeline)
        ids = engine.catalog.note_ids
        out: list[int] = []
        rows: list[int] = []
        for j, i in enumerate(res.items.tolist()):
            item = self._env_item_of.get(ids[i], -1)
            if item >= 0 and len(out) < k:
                out.append(item)
                rows.append(j)
        self.served(res, rows)
        return np.asarray(out, np.int64)

    def served(self, result: FeedResult, rows: list[int]) -> None:
        """Hook for subclasses: the feed ``result`` and which of its rows reached the page."""

    def observe(self, events: pd.DataFrame) -> None:
        if self.engine is None or self._user_ids is None or not len(events):
            return
        ev = []
        for r in events.itertuples(index=False):
            dwell = None if pd.isna(r.dwell_s) else float(r.dwell_s)
            ev.append(Event(user_id=str(self._user_ids[r.user]), note_id=self._note_ids[r.item], ts=int(r.ts),
                            type=str(r.type), dwell_s=dwell, position=int(r.position) if r.position >= 0 else None,
                            surface="feed"))  # type: ignore[arg-type]
        self.engine.ingest(ev)

    def metrics(self) -> dict[str, float]:
        """The cold-start pool's notes per stage (for the closed loop's result)."""
        hub = self.engine.coldstart if self.engine is not None else None
        return {} if hub is None else {f"pool_{k}": v for k, v in hub.summary().items()}

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        if self._tmp is not None:
            self._tmp.cleanup()


@POLICIES.register("pipeline")
def _pipeline_policy(seed: int = 0) -> EnginePolicy:
    """The serving engine's default pipeline (configs/default.yaml), cold-start pool included,
    trained first on the logged history as `notefeed train` would."""
    return EnginePolicy(pipeline="default", seed=seed, train=True)


@POLICIES.register("pipeline-nocoldstart")
def _pipeline_nocoldstart_policy(seed: int = 0) -> EnginePolicy:
    """The default pipeline with the cold-start pool switched off."""
    return EnginePolicy(pipeline="default", seed=seed, name="pipeline-nocoldstart", train=True,
                        config=ServeConfig().with_overrides(coldstart={"enabled": False}))


@POLICIES.register("pipeline-popular")
def _pipeline_popular_policy(seed: int = 0) -> EnginePolicy:
    """The serving engine's popularity-only pipeline (one channel, no ranking, no re-ranking)."""
    return EnginePolicy(pipeline="popular", seed=seed)


def config_policy(config: ServeConfig, name: str, progress: bool = False,
                  log: Callable[[str], None] | None = None) -> Callable[[int, Dataset], EnginePolicy]:
    """A closed-loop policy factory ``(seed, logged history) -> EnginePolicy`` serving
    ``config``: its components are trained on the simulated community's logged history with
    :func:`~notefeed.models.train.train_components` (what ``notefeed train`` runs: learned
    rankers, offline-only channels and the quick ones alike), then served as ``notefeed
    serve`` serves a trained version."""
    from notefeed.models.train import train_components

    def build(seed: int, history: Dataset) -> EnginePolicy:
        fitted, _ = train_components(config, history, progress=progress, seed=seed, log=log)
        return EnginePolicy(config=config, fitted=fitted, model_version=f"{name}@sim-seed-{seed}",
                            seed=seed, name=name)

    return build
