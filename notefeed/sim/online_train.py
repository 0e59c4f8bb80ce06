"""The simulator study of the online trainer (:class:`~notefeed.online.trainer.OnlineTrainer`): frozen vs
periodic retraining vs online updates (``notefeed sim online-train``)."""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from notefeed.data.dataset import EVENT_COLUMNS, Dataset
from notefeed.online.trainer import OnlineTrainConfig, OnlineTrainer
from notefeed.rank.features import FeatureBuilder, FeatureConfig
from notefeed.rank.multitask import FineRanker
from notefeed.sim.community import generate
from notefeed.sim.config import preset as sim_preset
from notefeed.sim.env import SimEnvironment
from notefeed.sim.loop import run_closed_loop

__all__ = ["compare_update_modes"]


class _RerankPolicy:
    """Sim policy: popular + random unseen candidates re-ranked by a fine ranker's P(click).

    Features are rebuilt from base log + everything observed at every step for every mode, so
    the modes differ only in the model weights. ``mode``: ``frozen`` (the start-up model),
    ``periodic`` (retrained from scratch every ``retrain_every`` steps on all data),
    ``online`` (:class:`OnlineTrainer` updates after every step), ``popular`` (no model).
    """

    def __init__(self, mode: str, ds: Dataset, ranker: FineRanker, seed: int, step_seconds: int,
                 retrain_every: int, pool: int = 200, n_random: int = 100) -> None:
        self.name = mode
        self.mode, self.base, self.ranker = mode, ds, ranker
        self.rng = np.random.default_rng(seed)
        self.pool, self.n_random, self.retrain_every, self.step_seconds = pool, n_random, retrain_every, step_seconds
        self.log: list[pd.DataFrame] = []
        self.pop = np.bincount(ds.select_events(["click"])["item"].to_numpy(), minlength=ds.n_items).astype(float)
        self.steps, self.train_s, self.lags, self.e2p = 0, 0.0, [], []
        self.trainer = None
        if mode == "online":
            # events of a step spread over a few minutes: half a step of wait and interval means
            # every step's impressions are trained on, and published, at the next step
            half = max(step_seconds // 2, 1)
            cfg = OnlineTrainConfig(wait_s=half, interval_s=half, min_samples=1 << 30, seed=seed)
            self.trainer = OnlineTrainer(ds, copy.deepcopy(ranker), cfg, on_publish=self._swap)
        self._refresh()

    def _swap(self, ranker: FineRanker, meta: dict[str, Any]) -> None:
        self.ranker = ranker

    def _refresh(self) -> None:
        ev = pd.concat([self.base.events[list(EVENT_COLUMNS)], *self.log], ignore_index=True) if self.log \
            else self.base.events
        self.ds = self.base.with_events(ev)
        self.builder = FeatureBuilder(self.ds, FeatureConfig(**_fcfg(self.ranker)))
        top = np.argsort(-self.pop, kind="stable")[: self.pool]
        self.top = top

    def recommend(self, env: Any, user: int, k: int) -> np.ndarray:
        seen = env.seen_items(user)
        cand = self.top[~np.isin(self.top, seen)]
        if self.mode == "popular":
            return cand[:k].astype(np.int64)
        rnd = self.rng.integers(0, env.n_items, self.n_random)
        cand = np.unique(np.concatenate([cand, rnd[~np.isin(rnd, seen)]]))
        if not len(cand):  # this user has seen every candidate: a short (empty) page
            return cand.astype(np.int64)
        f = self.builder.features(np.full(len(cand), user), cand, np.full(len(cand), env.now))
        p = self.ranker.predict(f)["click"]
        return cand[np.argsort(-p, kind="stable")[:k]].astype(np.int64)

    def observe(self, events: pd.DataFrame) -> None:
        self.steps += 1
        self.log.append(events[list(EVENT_COLUMNS)])
        clicks = events["item"].to_numpy()[(events["type"] == "click").to_numpy()]
        self.pop *= 0.9  # recent popularity: the candidate pool follows the drift for every mode
        np.add.at(self.pop, clicks, 1.0)
        t0 = time.perf_counter()
        if self.trainer is not None:
            for meta in self.trainer.ingest(events):
                self.lags.append(meta["update_latency_s"])
                self.e2p.append(meta["event_to_publish_s"])
        elif self.mode == "periodic" and self.steps % self.retrain_every == 0:
            from notefeed.rank.samples import build_samples

            ds = self.base.with_events(pd.concat([self.base.events[list(EVENT_COLUMNS)], *self.log],
                                                 ignore_index=True))
            fresh = FineRanker(dataclasses.replace(self.ranker.cfg, vocab={}))
            fresh.fit(ds, build_samples(ds, window=self.step_seconds))
            self.ranker = fresh
            self.lags.append(time.perf_counter() - t0)
        self.train_s += time.perf_counter() - t0
        self._refresh()


def _fcfg(ranker: FineRanker) -> dict[str, Any]:
    d = dict(ranker.cfg.features or {})
    if "windows" in d:
        d["windows"] = tuple(d["windows"])
    return d


def compare_update_modes(preset: str = "tiny", steps: int = 48, seed: int = 0, requests_per_step: int = 100,
                         step_seconds: int = 1800, retrain_every: int = 16, epochs: int = 2,
                         modes: tuple[str, ...] = ("popular", "frozen", "periodic", "online"),
                         drift_per_day: float | None = None) -> list[dict[str, Any]]:
    """Closed-loop CTR of the fine ranker kept frozen / retrained every ``retrain_every`` steps /
    updated online after every step, side by side on the same seeded community (short-term
    interests drift). One row per mode: ``ctr`` overall and per half, ``updates``,
    ``median_update_latency_s`` (online: event arrival -> publish, wall seconds; periodic: the
    retrain's wall time, plus on average ``retrain_every * step_seconds / 2`` stream seconds of
    staleness, reported as ``mean_staleness_stream_s``), ``median_event_to_publish_s`` (online:
    wall seconds from an impression's ingest to the first version trained on it; the simulator
    compresses the label wait into one step) and ``train_s``."""
    torch.manual_seed(seed)
    cfg = sim_preset(preset, seed=seed)
    if drift_per_day is not None:
        cfg = cfg.with_(behaviour=dataclasses.replace(cfg.behaviour, drift_per_day=drift_per_day))
    community = generate(cfg)
    hist = community.history(seed=seed + 7)
    from notefeed.rank.finenet import FineConfig
    from notefeed.rank.samples import build_samples

    base = FineRanker(FineConfig(arch="cgc", epochs=epochs, batch_size=1024, seed=seed))
    base.fit(hist, build_samples(hist, window=step_seconds))
    rows = []
    for mode in modes:
        env = SimEnvironment(community, seed=seed, dataset=hist)
        pol = _RerankPolicy(mode, hist, copy.deepcopy(base), seed, step_seconds, retrain_every)
        t0 = time.perf_counter()
        res = run_closed_loop(env, pol, steps, requests_per_step=requests_per_step, step_seconds=step_seconds)
        ctr = [s["ctr"] for s in res["series"]]
        h = len(ctr) // 2
        stale = {"frozen": None, "popular": None, "online": step_seconds,
                 "periodic": retrain_every * step_seconds / 2 + step_seconds // 2}[mode]
        rows.append({
            "preset": preset, "mode": mode, "seed": seed, "steps": steps, "impressions": res["impressions"],
            "ctr": res["ctr"], "ctr_first_half": float(np.mean(ctr[:h])), "ctr_second_half": float(np.mean(ctr[h:])),
            "like_rate": res["like_rate"], "updates": len(pol.lags),
            "median_update_latency_s": float(np.median(pol.lags)) if pol.lags else None,
            "median_event_to_publish_s": float(np.median(pol.e2p)) if pol.e2p else None,
            "mean_staleness_stream_s": stale, "train_s": pol.train_s, "wall_s": time.perf_counter() - t0,
        })
    return rows
