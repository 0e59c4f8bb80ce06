"""The :class:`OnlineTrainer`: label join, incremental updates, published versions."""

from __future__ import annotations

import copy
import dataclasses
import heapq
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch

from notefeed.data.dataset import EVENT_COLUMNS, Dataset
from notefeed.online.dyn_embedding import grow_fine_net
from notefeed.online.trainer.stream import _LABEL_TYPES, OnlineTrainConfig, _Ids, normalise_events
from notefeed.rank.features import ENGAGE_TYPES, FeatureBuilder, FeatureConfig
from notefeed.rank.multitask import FineRanker, masked_loss, to_tensors
from notefeed.schema import EVENT_TYPES, SURFACES

__all__ = ["OnlineTrainer"]


class OnlineTrainer:
    """Streams events into label-joined samples and incremental fine-ranker updates."""

    name = "online/fine-trainer"

    def __init__(self, ds: Dataset, ranker: FineRanker, config: OnlineTrainConfig | None = None,
                 on_publish: Callable[[FineRanker, dict[str, Any]], None] | None = None,
                 install: Callable[[str, Any, int, float], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if ranker.net is None:
            raise ValueError("OnlineTrainer: field 'ranker' is not fitted or built")
        self.cfg = config or OnlineTrainConfig()
        self.base, self.ranker, self.on_publish, self.install, self.clock = ds, ranker, on_publish, install, clock
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

    def consume(self, bus: Any, start: Any = 0, batch: int = 1000) -> list[dict[str, Any]]:
        """Read the bus's entries past position ``start`` (a cursor: pass back
        ``self.bus_cursor``; a position, so an erased or compacted entry does not shift it)."""
        out, chunk, last = [], [], start
        for pos, rec in bus.entries(start or None):
            chunk.append(rec)
            last = pos
            if len(chunk) >= batch:
                out += self.ingest(chunk)
                chunk = []
        if chunk:
            out += self.ingest(chunk)
        self.bus_cursor = last
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
        if self.install is not None:  # serving's hook (notefeed.serve.rankwire.engine_installer)
            from notefeed.rank.scorer import FineRankerScorer

            self.install(f"online-{self.version}", FineRankerScorer(snap, builder), builder.n_items, at)
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
