"""A/B experiments in serving: users hashed to arms, one pipeline per arm, per-arm metrics.

The experiment is the config's ``experiments`` section. A user's arm is a pure function of
``sha256(salt:user_id)`` and the arms' weights, so it is the same on every server and after a
restart. Each arm serves the base config with its overlay merged over it
(:func:`~notefeed.serve.config.arm_config`), built with the same trained components as the
default pipeline (:func:`arm_pipelines`, called by ``build_served``: a model swap rebuilds
the arms too). A request for the ``default`` pipeline is served by the user's arm.

Measurement (:class:`ExperimentStats`): every served page is recorded (impressions, small-
creator items, latency) in WORKSPACE/experiments.sqlite, and accepted feed events are
attributed to the arm of their user, counted from the user's first page in the experiment.
The same tallies are filled live (``GET /v1/admin/experiments``) and from the two logs
(``notefeed experiments report``): one implementation. With several serving processes on one
workspace (``serve --workers N``), each page row names the process that logged it, and every
process folds in the others' pages before it counts events (its own, and the others' from the
engine's follower), so every worker's live report counts every worker's pages and events. The statistics are in
:mod:`notefeed.serve.abstats`.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from notefeed.serve.abstats import mean_interval, ratio_difference, sample_ratio, welch, wilson
from notefeed.serve.config import ArmConfig, ConfigError, ExperimentsConfig, ServeConfig, arm_config

if TYPE_CHECKING:
    from notefeed.online.events import EventRecord
    from notefeed.serve.engine import Engine
    from notefeed.serve.models import ModelHolder
    from notefeed.serve.pipeline import Pipeline

__all__ = ["assign", "arm_pipeline", "arm_fitted", "arm_pipelines", "Experiment", "ExperimentStats",
           "PageLog", "PAGE_LOG", "RATES", "MEANS", "report_workspace"]

#: the page log in the workspace
PAGE_LOG = "experiments.sqlite"
#: rate metrics: (name, numerator tally, denominator tally)
RATES = (("ctr", "click", "impressions"), ("like_rate", "like", "impressions"),
         ("collect_rate", "collect", "impressions"), ("small_creator_share", "small", "impressions"))
#: mean metrics, over events (dwell) or pages (latency)
MEANS = ("dwell_s", "latency_ms")
_USER_COLS = ("pages", "impressions", "small", "click", "like", "collect")
#: per arm, samples kept for the mean metrics (a uniform reservoir beyond it)
_MAX_SAMPLES = 200_000


def assign(user_id: str, salt: str, weights: Sequence[float]) -> int:
    """The arm index of ``user_id``: ``sha256(salt:user_id)`` as a uniform number in [0, 1),
    placed on the arms' cumulative weights."""
    h = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2.0**64
    total = float(sum(weights))
    cum = np.cumsum(np.asarray(weights, np.float64)) / total
    return min(bisect.bisect_right(cum.tolist(), u), len(weights) - 1)


def arm_pipeline(arm: str) -> str:
    """The name the arm's pipeline is served under (``engine.pipelines``, metrics labels)."""
    return f"exp:{arm}"


def arm_fitted(base: ServeConfig, arm: ServeConfig, fitted: dict[str, Any]) -> dict[str, Any]:
    """The trained components of ``base`` re-keyed for the arm's config: a channel keeps its
    component when the arm lists the same channel (name and params) at any place; coarse and
    fine when the arm's scorer section is the same."""
    out: dict[str, Any] = {}
    where = {(c.name, json.dumps(c.params, sort_keys=True, default=str)): i
             for i, c in enumerate(base.recall.channels)}
    for j, c in enumerate(arm.recall.channels):
        i = where.get((c.name, json.dumps(c.params, sort_keys=True, default=str)))
        if i is not None and f"recall.channels.{i}" in fitted:
            out[f"recall.channels.{j}"] = fitted[f"recall.channels.{i}"]
    for key in ("coarse", "fine"):
        if key in fitted and getattr(arm, key) == getattr(base, key):
            out[key] = fitted[key]
    for key, comp in fitted.items():  # non-pipeline components (content vectors...) as they are
        if not key.startswith("recall.channels.") and key not in ("coarse", "fine"):
            out[key] = comp
    return out


def arm_pipelines(engine: Engine, fitted: dict[str, Any] | None, default: Pipeline, models: ModelHolder,
                  config: ServeConfig | None = None) -> tuple[dict[str, Pipeline], dict[str, ModelHolder]]:
    """One pipeline per arm of ``config``'s experiment (default ``engine.config``'s), and a
    model holder for each arm whose fine section differs from the base (the others score with
    ``models``). An arm whose config equals the base serves ``default`` itself. Errors name
    the arm's overlay field."""
    from notefeed.serve.factory import build_pipeline
    from notefeed.serve.models import ModelHolder

    base = engine.config if config is None else config
    pipes: dict[str, Pipeline] = {}
    holders: dict[str, ModelHolder] = {}
    try:
        for i, arm in enumerate(base.experiments.arms):
            name = arm_pipeline(arm.name)
            cfg = arm_config(base, arm)
            if cfg == base.model_copy(update={"experiments": ExperimentsConfig()}):
                pipes[name] = default
                continue
            own = models
            if cfg.fine != base.fine:
                own = holders[name] = ModelHolder.from_dir_or_default(cfg.fine.model_dir, engine.ds)
            try:
                pipes[name] = build_pipeline(cfg, engine.catalog, engine.ds, own, name, coldstart=engine.coldstart,
                                             fitted=arm_fitted(base, cfg, fitted or {}),
                                             fit_offline=getattr(engine, "fit_offline", False))
            except ConfigError as e:
                raise ConfigError(f"experiments.arms.{i}.overlay.{e}") from None
    except BaseException:
        for h in holders.values():
            h.close()
        raise
    return pipes, holders


class ExperimentStats:
    """Per-arm tallies of one experiment, filled from served pages and accepted events."""

    def __init__(self, spec: ExperimentsConfig) -> None:
        self.spec = spec
        self.arms = [a.name for a in spec.arms]
        self._lock = threading.Lock()
        #: per arm: user_id -> [first page ts, pages, impressions, small, click, like, collect]
        self.users: dict[str, dict[str, list[float]]] = {a: {} for a in self.arms}
        self.samples: dict[str, dict[str, list[float]]] = {a: {m: [] for m in MEANS} for a in self.arms}
        self._seen: dict[str, dict[str, int]] = {a: {m: 0 for m in MEANS} for a in self.arms}
        self._rng = np.random.default_rng(0)

    def arm_index(self, user_id: str) -> int:
        return assign(user_id, self.spec.salt or str(self.spec.name), [a.weight for a in self.spec.arms])

    def _sample(self, arm: str, metric: str, x: float) -> None:
        buf = self.samples[arm][metric]
        seen = self._seen[arm][metric] = self._seen[arm][metric] + 1
        if len(buf) < _MAX_SAMPLES:
            buf.append(x)
        else:
            j = int(self._rng.integers(seen))
            if j < _MAX_SAMPLES:
                buf[j] = x

    def page(self, arm: str, user_id: str, ts: float, n: int, small: int, latency_ms: float) -> None:
        with self._lock:
            row = self.users[arm].get(user_id)
            if row is None:
                row = self.users[arm][user_id] = [float(ts), 0, 0, 0, 0, 0, 0]
            row[1] += 1
            row[2] += n
            row[3] += small
            self._sample(arm, "latency_ms", float(latency_ms))

    def events(self, recs: Iterable[EventRecord]) -> None:
        """Count feed events of users already served by the experiment (from their first page)."""
        with self._lock:
            for r in recs:
                if r.surface != "feed":
                    continue
                arm = self.arms[self.arm_index(r.user_id)]
                row = self.users[arm].get(r.user_id)
                if row is None or r.received_at < row[0]:
                    continue
                if r.type in ("click", "like", "collect"):
                    row[_USER_COLS.index(r.type) + 1] += 1
                if r.dwell_s is not None:
                    self._sample(arm, "dwell_s", float(r.dwell_s))

    def report(self) -> dict[str, Any]:
        """Per arm: counts and metrics with intervals; per non-control arm: the difference to
        the control per metric; the sample-ratio check; the verdict on the primary metric."""
        level = self.spec.level
        with self._lock:
            tallies = {a: np.asarray([r[1:] for r in self.users[a].values()], np.float64).reshape(-1, 6)
                       for a in self.arms}
            samples = {a: {m: np.asarray(v, np.float64) for m, v in s.items()} for a, s in self.samples.items()}
        col = {c: j for j, c in enumerate(_USER_COLS)}
        arms = []
        for a, spec in zip(self.arms, self.spec.arms, strict=True):
            t = tallies[a]
            tot = t.sum(axis=0) if len(t) else np.zeros(6)
            metrics: dict[str, Any] = {m: wilson(tot[col[num]], tot[col[den]], level) for m, num, den in RATES}
            for m in MEANS:
                metrics[m] = mean_interval(samples[a][m], level)
            lat = samples[a]["latency_ms"]
            metrics["latency_ms"]["p50"] = float(np.percentile(lat, 50)) if len(lat) else None
            metrics["latency_ms"]["p99"] = float(np.percentile(lat, 99)) if len(lat) else None
            arms.append({"name": a, "weight": spec.weight, "overlay": spec.overlay, "pipeline": arm_pipeline(a),
                         "users": len(t), "pages": int(tot[col["pages"]]),
                         "impressions": int(tot[col["impressions"]]), "metrics": metrics})
        control = self.arms[0]
        diffs = []
        for a in self.arms[1:]:
            d: dict[str, Any] = {}
            ta, tb = tallies[control], tallies[a]
            for m, num, den in RATES:
                d[m] = ratio_difference(ta[:, col[num]], ta[:, col[den]], tb[:, col[num]], tb[:, col[den]], level)
            for m in MEANS:
                d[m] = welch(samples[control][m], samples[a][m], level)
            diffs.append({"control": control, "arm": a, "metrics": d})
        srm = sample_ratio([x["users"] for x in arms], [s.weight for s in self.spec.arms])
        primary = self.spec.primary
        return {
            "name": self.spec.name, "salt": self.spec.salt or self.spec.name, "level": level, "primary": primary,
            "arms": arms, "differences": diffs, "sample_ratio": srm,
            "significant": [x["arm"] for x in diffs if x["metrics"][primary]["significant"]],
        }


class PageLog:
    """WORKSPACE/experiments.sqlite: the experiment definitions and every page served in one.
    Appends are buffered and written by the engine's side-effect thread (never blocking)."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        from notefeed.online.bus import open_wal

        self.path = Path(path)
        self._db = open_wal(self.path, synchronous, "experiment page log",
                            "CREATE TABLE IF NOT EXISTS pages (id INTEGER PRIMARY KEY AUTOINCREMENT, experiment TEXT, "
                            "arm TEXT, user_id TEXT, ts REAL, n INTEGER, small INTEGER, latency_ms REAL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS experiments (name TEXT PRIMARY KEY, definition TEXT, "
                         "started_at REAL)")
        # which serving process logged a page (its peers fold in the others' pages); a log
        # written before this column has NULL there
        if "writer" not in {r[1] for r in self._db.execute("PRAGMA table_info(pages)").fetchall()}:
            self._db.execute("ALTER TABLE pages ADD COLUMN writer TEXT")
        #: this process's mark on the pages it logs
        self.writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._buf: list[tuple[Any, ...]] = []
        self._closed = False

    def define(self, spec: ExperimentsConfig) -> None:
        with self._lock:
            self._db.execute("INSERT INTO experiments VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                             "definition = excluded.definition", (spec.name, spec.model_dump_json(), time.time()))

    def add(self, row: tuple[Any, ...]) -> bool:
        """Buffer one page row; True when the buffer was empty (the caller schedules a flush)."""
        with self._lock:
            self._buf.append(row)
            return len(self._buf) == 1

    def flush(self, _arg: Any = None) -> None:
        with self._lock:
            rows, self._buf = self._buf, []
            if rows and not self._closed:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO pages (experiment, arm, user_id, ts, n, small, latency_ms, writer) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(*r, self.writer) for r in rows])
                self._db.execute("COMMIT")

    def definitions(self) -> list[ExperimentsConfig]:
        with self._lock:
            rows = self._db.execute("SELECT definition FROM experiments ORDER BY started_at").fetchall()
        return [ExperimentsConfig.model_validate_json(r[0]) for r in rows]

    def pages(self, experiment: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute("SELECT arm, user_id, ts, n, small, latency_ms FROM pages WHERE experiment = ? "
                                    "ORDER BY id", (experiment,)).fetchall()

    def others_since(self, experiment: str, after: int) -> tuple[int, list[tuple[Any, ...]]]:
        """(the last page id, the pages of ``experiment`` other processes logged after page
        ``after``, in order)."""
        with self._lock:
            rows = self._db.execute("SELECT id, arm, user_id, ts, n, small, latency_ms, writer FROM pages "
                                    "WHERE id > ? AND experiment = ? ORDER BY id", (int(after), experiment)).fetchall()
        last = int(rows[-1][0]) if rows else int(after)
        return last, [r[1:7] for r in rows if r[7] != self.writer]

    def erase(self, user_id: str, until: float) -> int:
        """Delete ``user_id``'s pages up to ``until``, buffered ones included (an erased user);
        returns how many were logged."""
        self.flush()
        with self._lock:
            return int(self._db.execute("DELETE FROM pages WHERE user_id = ? AND ts <= ?",
                                        (user_id, float(until))).rowcount)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        with self._lock:
            self._closed = True
            self._db.close()


def _fill(stats: ExperimentStats, pages: Sequence[tuple[Any, ...]], events: Iterable[EventRecord]) -> None:
    known = set(stats.arms)
    for arm, user_id, ts, n, small, latency in pages:
        if arm in known:
            stats.page(arm, user_id, ts, n, small, latency)
    batch: list[EventRecord] = []
    for r in events:
        batch.append(r)
        if len(batch) == 10_000:
            stats.events(batch)
            batch = []
    stats.events(batch)


class Experiment:
    """The running experiment of an :class:`~notefeed.serve.engine.Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.spec = engine.config.experiments
        self.engine = engine
        self.stats = ExperimentStats(self.spec)
        self.log = PageLog(engine.workspace / PAGE_LOG)
        self.log.define(self.spec)
        # every page logged so far (none is this process's yet), and the mark past them
        self._page_mark, pages = self.log.others_since(str(self.spec.name), 0)
        if pages:  # a restart: the tallies again from the two logs
            _fill(self.stats, pages, engine.bus.replay())
        self._follow_lock = threading.Lock()
        engine.side_effects.subscribe(self.follow)  # this process's events (other workers' pages first)

    @classmethod
    def start(cls, engine: Engine) -> Experiment | None:
        return cls(engine) if engine.config.experiments.arms else None

    def arm_of(self, user_id: str) -> ArmConfig:
        return self.spec.arms[self.stats.arm_index(user_id)]

    def record(self, arm: str, user_id: str, items: np.ndarray, latency_ms: float) -> None:
        """A page served by ``arm``: tallied now, logged by the side-effect thread."""
        small = int(self.engine.catalog.small_creator(items).sum()) if len(items) else 0
        ts = float(self.engine.clock())
        self.stats.page(arm, user_id, ts, len(items), small, latency_ms)
        if self.log.add((self.spec.name, arm, user_id, ts, len(items), small, float(latency_ms))):
            self.engine.side_effects.submit(self.log.flush, None)

    def report(self) -> dict[str, Any]:
        return self.stats.report()

    def follow(self, recs: Sequence[EventRecord]) -> None:
        """Count events ``recs`` (this process's, or the other serving processes' from the
        engine's follower), after the pages the other processes logged since the last call: a
        click on a page another worker served counts here too."""
        with self._follow_lock:
            self._page_mark, pages = self.log.others_since(str(self.spec.name), self._page_mark)
            known = set(self.stats.arms)
            for arm, user_id, ts, n, small, latency in pages:
                if arm in known:
                    self.stats.page(arm, user_id, ts, n, small, latency)
            if recs:
                self.stats.events(recs)

    def close(self) -> None:
        self.log.close()


def report_workspace(workspace: str | Path, config: ServeConfig | None = None) -> list[dict[str, Any]]:
    """Reports of the experiments logged in ``workspace`` (all of them, or the one of
    ``config``), from its page log and its event log."""
    from notefeed.online.bus import open_bus

    ws = Path(workspace)
    if not (ws / PAGE_LOG).exists():
        return []
    log = PageLog(ws / PAGE_LOG)
    try:
        specs = log.definitions()
        if config is not None and config.experiments.arms:
            specs = [config.experiments]
        on = (config or ServeConfig()).online
        out = []
        for spec in specs:
            stats = ExperimentStats(spec)
            bus = open_bus(on.backend, ws, on.redis_url, "NORMAL", stream=f"{on.redis_prefix}:events")
            try:
                _fill(stats, log.pages(str(spec.name)), bus.replay())
            finally:
                bus.close()
            out.append(stats.report())
        return out
    finally:
        log.close()
