"""The streaming online trainer of the fine ranker.

:class:`OnlineTrainer` reads new events (a DataFrame, a list of dicts / :class:`EventRecord`, or an
:class:`~notefeed.online.bus.EventBus` through :meth:`OnlineTrainer.consume`) and

1. **joins impressions with labels that arrive later.** The stream clock (watermark) is the
   largest event ``ts`` seen. An impression of (user, note) at ``t`` waits until the watermark
   reaches ``t + wait_s``; it then becomes one training sample, labelled 1 for each task
   (click/like/collect/comment/share) the same user did on the same note with
   ``t <= ts < t + wait_s`` (dwell: ``log1p`` of the first click's ``dwell_s``), 0 otherwise, so an
   impression without a label is a negative once the wait is over. A label that arrives after
   its impression's window closed is dropped and counted (``labels_late``); a label with no
   impression of the pair at all (e.g. one that arrives before its impression: labels are
   joined on arrival) is counted as ``labels_orphan``. ``follow``/``hide`` only feed the features.
2. **updates the ranker** every ``interval_s`` of stream time or once ``min_samples`` samples
   are ready: ``passes`` passes of minibatches over the new samples (plus up to
   ``replay_ratio`` x as many recent older ones, against forgetting), sparse id rows with the
   ranker's :class:`RowwiseAdam`, dense weights with Adam; optimiser state persists across updates.
   Features are the rank stage's request-time features over base log + stream, rebuilt once per update.
3. **publishes** a copy of the ranker as a new version (``on_publish(ranker, meta)``; with an
   engine, a ``BoundedScorer(FineRankerScorer(...))`` is swapped in through ``engine.models.set``).

Unseen ids never crash: users/notes unknown to the base dataset (new string ids, or integer
indices past the catalogue) get the next index, placeholder side info (author ``"unknown"``,
the note's own category when the caller passes ``notes``), and the embedding tables grow
(:mod:`notefeed.online.dyn_embedding`): no fixed table size, no hash collisions for ids.

Version metadata: ``version``, ``samples_seen``, ``samples``, ``last_event_ts``,
``published_at``, ``update_latency_s`` (median over the update's new samples of wall time from
the arrival of the event that made the sample ready to the publish), ``event_to_publish_s``
(from the impression's arrival: includes the label wait when the stream runs in real time) and
``stream_lag_s`` (watermark - impression ts, in stream seconds).
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from notefeed.data.dataset import EVENT_COLUMNS, Dataset
from notefeed.online.dyn_embedding import grow_fine_net
from notefeed.rank.features import ENGAGE_TYPES, FeatureBuilder, FeatureConfig
from notefeed.rank.multitask import FineRanker, masked_loss, to_tensors
from notefeed.schema import EVENT_TYPES, SURFACES

__all__ = ["OnlineTrainConfig", "OnlineTrainer", "normalise_events"]

_LABEL_TYPES = frozenset(ENGAGE_TYPES)


@dataclass
class OnlineTrainConfig:
    """Join window and update cadence (seconds are stream seconds, i.e. event ``ts``)."""

    wait_s: int = 1800  # label wait window after an impression
    interval_s: int = 600  # update at least this often (stream time) when samples are ready
    min_samples: int = 4096  # ... or as soon as this many are ready
    passes: int = 2  # passes over each update's samples
    replay_ratio: float = 1.0  # older samples mixed in per new sample
    replay_size: int = 50_000  # recent samples kept for replay
    batch_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        for k in ("wait_s", "interval_s", "min_samples", "passes", "batch_size"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"OnlineTrainConfig.{k} must be a positive integer, got {v!r}")
        if not (0.0 <= self.replay_ratio <= 100.0):
            raise ValueError(f"OnlineTrainConfig.replay_ratio must be in [0, 100], got {self.replay_ratio!r}")


def _field(rows: pd.DataFrame, *names: str) -> str | None:
    return next((n for n in names if n in rows.columns), None)


def normalise_events(events: pd.DataFrame | Iterable[Any]) -> pd.DataFrame:
    """Events -> frame with ``user``/``item`` (int or str ids), ``ts`` int64, ``type`` str, ``dwell_s``,
    ``position``, ``surface``, ``received_at`` (NaN = now). Raises ``ValueError`` naming the field."""
    if not isinstance(events, pd.DataFrame):
        rows = [e.to_dict() if hasattr(e, "to_dict") else e for e in events]
        for k, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise ValueError(f"events: row {k} is a {type(r).__name__}, not a mapping/EventRecord")
        events = pd.DataFrame(rows)
    n = len(events)
    uc, ic = _field(events, "user", "user_id"), _field(events, "item", "note_id")
    for name, col in (("user (or user_id)", uc), ("item (or note_id)", ic)):
        if col is None and n:
            raise ValueError(f"events: missing field '{name}'")
    for col in ("ts", "type"):
        if col not in events.columns and n:
            raise ValueError(f"events: missing field '{col}'")
    if not n:
        return pd.DataFrame({c: [] for c in ("user", "item", "ts", "type", "dwell_s", "position", "surface",
                                              "received_at")})
    out = pd.DataFrame({"user": events[uc].to_numpy(), "item": events[ic].to_numpy()})
    for f in ("user", "item"):
        bad = out[f].isna().to_numpy()
        if bad.any():
            raise ValueError(f"events: row {int(np.flatnonzero(bad)[0])}: field '{f}' is missing")
    ts = pd.to_numeric(events["ts"], errors="coerce")
    bad = (ts.isna() | (ts < 0) | (ts != np.floor(ts))).to_numpy()
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"events: row {k}: field 'ts' must be a non-negative integer, got {events['ts'].iloc[k]!r}")
    out["ts"] = ts.to_numpy(np.int64)
    types = events["type"].astype(str).to_numpy()
    bad = ~np.isin(types, EVENT_TYPES)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"events: row {k}: field 'type' is {types[k]!r}; known: {', '.join(EVENT_TYPES)}")
    out["type"] = types
    for f, default in (("dwell_s", np.nan), ("position", -1), ("received_at", np.nan)):
        col = pd.to_numeric(events[f], errors="coerce") if f in events.columns else pd.Series(np.full(n, default))
        out[f] = col.fillna(default).to_numpy(np.float64)
    out["surface"] = events["surface"].astype(str).to_numpy() if "surface" in events.columns else "feed"
    return out


class _Ids:
    """External id / index -> dense index, growing for unseen ids."""

    def __init__(self, known: list[str]) -> None:
        self.ids = list(known)
        self.index = {s: k for k, s in enumerate(self.ids)}
        self.n_base = len(self.ids)

    def map(self, values: np.ndarray, prefix: str) -> np.ndarray:
        out = np.empty(len(values), np.int64)
        for k, v in enumerate(values.tolist()):
            if isinstance(v, int | np.integer) and not isinstance(v, bool):
                if v < 0:
                    raise ValueError(f"events: row {k}: field '{prefix}' index must be >= 0, got {v}")
                while len(self.ids) <= v:  # an index past the catalogue: grow up to it
                    self.add(f"__{prefix}{len(self.ids)}")
                out[k] = v
            else:
                s = str(v)
                j = self.index.get(s)
                out[k] = self.add(s) if j is None else j
        return out

    def add(self, s: str) -> int:
        self.index[s] = len(self.ids)
        self.ids.append(s)
        return len(self.ids) - 1


class OnlineTrainer:
    """Streams events into label-joined samples and incremental fine-ranker updates."""

    name = "online/fine-trainer"

    def __init__(self, ds: Dataset, ranker: FineRanker, config: OnlineTrainConfig | None = None,
                 on_publish: Callable[[FineRanker, dict[str, Any]], None] | None = None,
                 engine: Any = None, clock: Callable[[], float] = time.time) -> None:
        if ranker.net is None:
            raise ValueError("OnlineTrainer: field 'ranker' is not fitted or built")
        self.cfg = config or OnlineTrainConfig()
        self.base, self.ranker, self.on_publish, self.engine, self.clock = ds, ranker, on_publish, engine, clock
        self.users = _Ids(ds.users["user_id"].astype(str).tolist())
        self.items = _Ids(ds.notes["note_id"].astype(str).tolist())
        self.cat_names = list(ds.item_category[1])
        self._new_note_rows: dict[int, dict[str, Any]] = {}
        self._log: list[pd.DataFrame] = []
        self._pending: dict[tuple[int, int], list[list[Any]]] = {}
        self._heap: list[tuple[int, int, tuple[int, int]]] = []
        self._closed: dict[tuple[int, int], int] = {}  # pair -> end of its latest closed window
        self._ready: list[list[Any]] = []
        self._replay: list[list[Any]] = []
        self._seq = 0
        self.watermark = int(ds.events["ts"].max()) if len(ds.events) else 0
        self._last_update_ts = self.watermark
        self.version = 0
        self.samples_seen = 0
        self.counters = {"events": 0, "impressions": 0, "labels_joined": 0, "labels_late": 0,
                         "labels_orphan": 0, "updates": 0, "grown_tables": 0}
        self.versions: list[dict[str, Any]] = []
        self.builder: FeatureBuilder | None = None
        self._opts = ranker.optimizers()
        self._gen = np.random.default_rng(self.cfg.seed)

    # ------------------------------------------------------------------ ingest / join
    def ingest(self, events: pd.DataFrame | Iterable[Any], notes: pd.DataFrame | None = None) -> list[dict[str, Any]]:
        """Add events; join labels; update and publish when due. ``notes`` (optional, Dataset note
        columns) gives side info of notes new to the catalogue. Returns the versions published."""
        ev = normalise_events(events)
        if notes is not None and len(notes):
            for row in notes.to_dict("records"):
                self._new_note_rows[self.items.map(np.array([str(row["note_id"])], object), "item")[0]] = row
        if not len(ev):
            return []
        now = self.clock()
        u = self.users.map(ev["user"].to_numpy(), "user")
        i = self.items.map(ev["item"].to_numpy(), "item")
        ts, types = ev["ts"].to_numpy(np.int64), ev["type"].to_numpy()
        arrival = np.where(np.isnan(ev["received_at"].to_numpy()), now, ev["received_at"].to_numpy())
        pos, dwell = ev["position"].to_numpy(np.int64), ev["dwell_s"].to_numpy(np.float64)
        surf = np.array([SURFACES.index(s) if s in SURFACES else 0 for s in ev["surface"].tolist()], np.int64)
        self._log.append(pd.DataFrame({"user": u.astype(np.int32), "item": i.astype(np.int32), "ts": ts,
                                       "type": pd.Categorical(types, categories=list(EVENT_TYPES)),
                                       "dwell_s": dwell.astype(np.float32), "position": pos.astype(np.int32),
                                       "surface": pd.Categorical(np.array(SURFACES)[surf], categories=list(SURFACES))}))
        self.counters["events"] += len(ev)
        # impressions first, then labels: a label at the impression's own ts still joins
        order = np.lexsort((types != "impression", ts))
        for k in order.tolist():
            key, t, ty = (int(u[k]), int(i[k])), int(ts[k]), types[k]
            if ty == "impression":
                # sample: [ts, user, item, position, surface, labels{}, dwell, arrival, ready_at]
                s = [t, key[0], key[1], int(pos[k]), int(surf[k]), {}, np.nan, float(arrival[k]), 0.0]
                self._pending.setdefault(key, []).append(s)
                heapq.heappush(self._heap, (t + self.cfg.wait_s, self._seq, key))
                self._seq += 1
                self.counters["impressions"] += 1
            elif ty in _LABEL_TYPES:
                self._join(key, t, ty, float(dwell[k]))
        self.watermark = max(self.watermark, int(ts.max()))
        self._mature(now)
        return self._maybe_update()

    def _join(self, key: tuple[int, int], t: int, ty: str, dwell: float) -> None:
        hit = False
        for s in self._pending.get(key, ()):
            if s[0] <= t < s[0] + self.cfg.wait_s:
                if ty == "click" and ty not in s[5]:
                    s[6] = dwell
                s[5][ty] = 1.0
                hit = True
        if hit:
            self.counters["labels_joined"] += 1
        elif key in self._closed and t >= self._closed[key] - self.cfg.wait_s:
            self.counters["labels_late"] += 1
        else:
            self.counters["labels_orphan"] += 1

    def _mature(self, now: float) -> None:
        """Impressions whose wait is over (``ts + wait_s <= watermark``) become samples."""
        while self._heap and self._heap[0][0] <= self.watermark:
            end, _, key = heapq.heappop(self._heap)
            lst = self._pending[key]
            # the pair's earliest impression: out-of-order arrivals still leave in time order
            s = lst.pop(min(range(len(lst)), key=lambda j: lst[j][0]))
            if not lst:
                del self._pending[key]
            s[8] = now
            self._closed[key] = max(self._closed.get(key, 0), end)
            self._ready.append(s)
        if len(self._closed) > 4 * (len(self._pending) + 1_000):  # forget long-closed pairs
            horizon = self.watermark - 4 * self.cfg.wait_s
            self._closed = {k: v for k, v in self._closed.items() if v >= horizon}

    def consume(self, bus: Any, start: int = 0, batch: int = 1000) -> list[dict[str, Any]]:
        """Read ``bus.replay()`` from record ``start`` (a cursor: pass back ``self.bus_cursor``)."""
        out, chunk, seen = [], [], 0
        for seen, rec in enumerate(bus.replay(), start=1):
            if seen <= start:
                continue
            chunk.append(rec)
            if len(chunk) >= batch:
                out += self.ingest(chunk)
                chunk = []
        if chunk:
            out += self.ingest(chunk)
        self.bus_cursor = max(seen, start)
        return out

    # ------------------------------------------------------------------ update / publish
    def _maybe_update(self) -> list[dict[str, Any]]:
        if not self._ready:
            return []
        due = (len(self._ready) >= self.cfg.min_samples
               or self.watermark - self._last_update_ts >= self.cfg.interval_s)
        return [self.update()] if due else []

    def dataset(self) -> Dataset:
        """Base catalogue + ids met in the stream (placeholders) + base log + streamed log."""
        b = self.base
        notes, users, creators = b.notes, b.users, b.creators
        new_items = self.items.ids[self.items.n_base:]
        if new_items:
            rows = []
            for k, nid in enumerate(new_items, start=self.items.n_base):
                r = self._new_note_rows.get(k, {})
                rows.append({"note_id": nid, "author_id": str(r.get("author_id", "unknown")),
                             "title": str(r.get("title", "")), "text": str(r.get("text", "")),
                             "tags": list(r.get("tags", []) or []), "category": str(r.get("category", "")),
                             "created_at": int(r.get("created_at", 0) or 0)})
            notes = pd.concat([notes, pd.DataFrame(rows)], ignore_index=True)
            missing = sorted(set(notes["author_id"]) - set(creators["creator_id"].astype(str)))
            if missing:
                creators = pd.concat([creators, pd.DataFrame({"creator_id": missing, "followers": 0})],
                                     ignore_index=True)
        if len(self.users.ids) > self.users.n_base:
            users = pd.concat([users, pd.DataFrame({"user_id": self.users.ids[self.users.n_base:]})],
                              ignore_index=True)
        if len(self._log) > 1:
            self._log = [pd.concat(self._log, ignore_index=True)]
        ev = pd.concat([b.events[list(EVENT_COLUMNS)], *self._log], ignore_index=True) if self._log else b.events
        ds = Dataset(b.name + "+online", notes, users, creators, ev.reset_index(drop=True), b.social, dict(b.meta))
        # categories keep their codes as new ones appear (factorize would renumber them)
        cats = notes["category"].astype(str)
        for c in pd.unique(cats.iloc[b.n_items:]):
            if c not in self.cat_names:
                self.cat_names.append(c)
        codes = pd.Index(self.cat_names).get_indexer(cats).astype(np.int32)
        ds.__dict__["item_category"] = (codes, list(self.cat_names))
        return ds

    def _grow(self, builder: FeatureBuilder) -> None:
        net, vocab = self.ranker.net, builder.vocab()
        assert net is not None
        grown = grow_fine_net(net, vocab, torch.from_numpy(builder.item_cat), torch.from_numpy(builder.item_author),
                              torch.from_numpy(builder.item_tags), self._opts, seed=self.cfg.seed + self.version)
        if vocab["n_dense"] != self.ranker.cfg.vocab.get("n_dense"):
            raise ValueError(f"OnlineTrainer: dense feature width changed to {vocab['n_dense']} (field 'n_dense')")
        self.ranker.cfg.vocab = dict(vocab)
        self.counters["grown_tables"] += len(grown)

    def update(self) -> dict[str, Any]:
        """Train on the ready samples (plus replay) and publish a new version."""
        t0 = self.clock()
        new, self._ready = self._ready, []
        ds = self.dataset()
        fcfg = dict(self.ranker.cfg.features or {})
        if "windows" in fcfg:
            fcfg["windows"] = tuple(fcfg["windows"])
        self.builder = builder = FeatureBuilder(ds, FeatureConfig(**fcfg))
        self._grow(builder)
        n_rep = min(len(self._replay), int(self.cfg.replay_ratio * len(new)))
        rep = [self._replay[j] for j in self._gen.choice(len(self._replay), n_rep, replace=False)] if n_rep else []
        batch = new + rep
        x, y = self._tensors(builder, batch)
        self._train(x, y)
        self._replay = (self._replay + new)[-self.cfg.replay_size:]
        self.samples_seen += len(new)
        self._last_update_ts = self.watermark
        self.counters["updates"] += 1
        return self._publish(new, builder, t0)

    def _tensors(self, builder: FeatureBuilder, batch: list[list[Any]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        a = np.array([[s[0], s[1], s[2], s[3], s[4]] for s in batch], np.int64)
        feats = builder.features(a[:, 1], a[:, 2], a[:, 0], a[:, 3], a[:, 4])
        tasks = self.ranker.cfg.tasks
        y = np.full((len(batch), len(tasks)), np.nan, np.float32)
        for t, task in enumerate(tasks):
            if task in _LABEL_TYPES:
                y[:, t] = [s[5].get(task, 0.0) for s in batch]
            elif task == "dwell":
                # log1p(dwell) of clicks, 0 without a click; all NaN (masked) when the stream has no dwell
                d = np.array([np.log1p(s[6]) if "click" in s[5] else 0.0 for s in batch], np.float32)
                if np.isfinite(np.array([s[6] for s in batch])).any():
                    y[:, t] = d
        return to_tensors(feats, self.ranker.device), torch.from_numpy(y).to(self.ranker.device)

    def _train(self, x: dict[str, torch.Tensor], y: torch.Tensor) -> None:
        net, cfg = self.ranker.net, self.ranker.cfg
        assert net is not None
        gen = torch.Generator().manual_seed(self.cfg.seed + self.version)
        bs, n = self.cfg.batch_size, len(y)
        net.train()
        for _ in range(self.cfg.passes):
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, bs):
                idx = perm[s:s + bs]
                loss, _ = masked_loss(net({k: v[idx] for k, v in x.items()}), y[idx], cfg.tasks, cfg.task_weights)
                for o in self._opts:
                    o.zero_grad(set_to_none=True)
                if loss.requires_grad:
                    loss.backward()
                    for o in self._opts:
                        o.step()
        net.eval()

    def _publish(self, new: list[list[Any]], builder: FeatureBuilder, t0: float) -> dict[str, Any]:
        snap = FineRanker(dataclasses.replace(self.ranker.cfg), self.ranker.device.type)
        snap.net = copy.deepcopy(self.ranker.net)  # serving reads a frozen copy while training goes on
        self.version += 1
        at = self.clock()
        ready = np.array([s[8] for s in new])
        arrived = np.array([s[7] for s in new])
        meta = {
            "version": self.version, "samples": len(new), "samples_seen": self.samples_seen,
            "last_event_ts": self.watermark, "published_at": at, "train_s": at - t0,
            "update_latency_s": float(np.median(at - ready)),
            "event_to_publish_s": float(np.median(at - arrived)),
            "stream_lag_s": float(np.median(self.watermark - np.array([s[0] for s in new]))),
            "n_users": builder.n_users, "n_items": builder.n_items, **self.counters,
        }
        self.versions.append(meta)
        if self.engine is not None:
            from notefeed.rank.scorer import FineRankerScorer
            from notefeed.serve.models import ModelVersion
            from notefeed.serve.rankwire import BoundedScorer

            scorer = BoundedScorer(FineRankerScorer(snap, builder), builder.n_items)
            self.engine.models.set(ModelVersion(f"online-{self.version}", scorer, at, "online"))
        if self.on_publish is not None:
            self.on_publish(snap, meta)
        return meta

    def ready_samples(self) -> pd.DataFrame:
        """Joined samples waiting for the next update: user, item, ts and one column per label type."""
        r = self._ready
        out = pd.DataFrame({"user": [s[1] for s in r], "item": [s[2] for s in r], "ts": [s[0] for s in r]})
        for t in ENGAGE_TYPES:
            out[t] = [s[5].get(t, 0.0) for s in r]
        return out

    @property
    def n_pending(self) -> int:
        """Impressions still inside their label wait."""
        return sum(len(v) for v in self._pending.values())

    def flush(self) -> list[dict[str, Any]]:
        """Update now on whatever samples are ready (none: nothing published)."""
        return [self.update()] if self._ready else []


# ---------------------------------------------------------------------- measurement
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
    from notefeed.sim import SimEnvironment, generate
    from notefeed.sim.config import preset as sim_preset
    from notefeed.sim.loop import run_closed_loop

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
