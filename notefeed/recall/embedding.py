"""``embedding/two-tower``: user vector -> FAISS inner-product search over exported note vectors."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from notefeed.data.dataset import Dataset
from notefeed.recall._common import edited_items, excluded_items, positive_log
from notefeed.recall.ann import AnnIndex
from notefeed.recall.base import CHANNELS, Candidates, UserContext
from notefeed.recall.features import note_side_tokens, user_attr_tokens
from notefeed.recall.two_tower import TwoTowerConfig, TwoTowerModel, load_model, save_model, train_two_tower

__all__ = ["TwoTowerChannel", "shared_two_tower"]

log = logging.getLogger(__name__)

_TT_FIELDS = {f.name for f in fields(TwoTowerConfig)} - {"n_users", "n_items"}


@CHANNELS.register("embedding/two-tower")
class TwoTowerChannel:
    """Trains :class:`TwoTowerModel`, exports every note vector into an :class:`AnnIndex`.

    Params: any :class:`TwoTowerConfig` field (``dim``, ``epochs``, ``temperature``...), plus
    ``ann`` ("auto"/"flat"/"hnsw"/"ivf"; "auto": exact below 50k notes, else ``approx``),
    ``approx`` ("hnsw"/"ivf"), ``hnsw_m``, ``ef_search``, ``nprobe`` (IVF lists searched),
    ``progress``.
    """

    name = "embedding/two-tower"

    def __init__(self, ann: str = "auto", hnsw_m: int = 32, ef_search: int = 128, progress: bool = False,
                 approx: str = "hnsw", nprobe: int = 32, **params: object) -> None:
        unknown = set(params) - _TT_FIELDS
        if unknown:
            raise ValueError(f"{self.name}: unknown params {sorted(unknown)}")
        self.params = params
        self.ann_kind, self.hnsw_m, self.ef_search, self.progress = ann, int(hnsw_m), int(ef_search), progress
        self.approx, self.nprobe = str(approx), int(nprobe)
        AnnIndex(1, kind=self.ann_kind, approx=self.approx, nprobe=self.nprobe)  # names a bad setting now
        self.model: TwoTowerModel | None = None
        self.index: AnnIndex | None = None
        self.fitted_on: int | None = None  # id() of the dataset, so explore channels can share this fit

    # ------------------------------------------------------------------ building
    def fit(self, ds: Dataset) -> TwoTowerChannel:
        cfg = TwoTowerConfig(n_users=ds.n_users, n_items=ds.n_items, **self.params)  # type: ignore[arg-type]
        self.item_side = note_side_tokens(ds.notes, cfg.buckets, cfg.side_width)
        self.user_attrs = user_attr_tokens(ds.users, cfg.buckets, cfg.attr_width)
        log = positive_log(ds).sort_values(["user", "ts"], kind="stable")
        self.model = train_two_tower(
            cfg, log["user"].to_numpy(), log["item"].to_numpy(), self.item_side, self.user_attrs, self.progress
        )
        self._export()
        self.fitted_on = id(ds)
        return self

    def _export(self) -> None:
        assert self.model is not None
        n = self.item_side.shape[0]
        self.item_vectors = self.encode_items(np.arange(1, n + 1), self.item_side)
        self.index = AnnIndex(self.model.cfg.dim, kind=self.ann_kind, m=self.hnsw_m, ef_search=self.ef_search,
                              expected=n, approx=self.approx, nprobe=self.nprobe)
        self.index.add(self.item_vectors, np.arange(n, dtype=np.int64))

    @torch.no_grad()
    def encode_items(self, ids: np.ndarray, side: np.ndarray, batch: int = 8192) -> np.ndarray:
        """(n,) id+1 (0 = side info only), (n, w) tokens -> (n, dim) float32 note vectors."""
        assert self.model is not None
        out = [
            self.model.item_vec(torch.as_tensor(ids[s : s + batch]), torch.as_tensor(side[s : s + batch])).numpy()
            for s in range(0, len(ids), batch)
        ]
        return np.concatenate(out).astype(np.float32) if out else np.empty((0, self.model.cfg.dim), np.float32)

    @property
    def n_indexed(self) -> int | None:
        """Notes in the index (items ``0 .. n_indexed - 1``); None before :meth:`fit`."""
        return None if self.index is None else int(self.item_side.shape[0])

    def add_items(self, notes: pd.DataFrame) -> np.ndarray:
        """Vectorise new notes from side info alone and add them to the index; return their item indices.

        New indices continue after the current catalogue (the order of ``notes``), matching a
        dataset that appends these notes.
        """
        if self.model is None or self.index is None:
            raise RuntimeError(f"{self.name}: add_items() before fit()")
        side = note_side_tokens(notes, self.model.cfg.buckets, self.model.cfg.side_width)
        vec = self.encode_items(np.zeros(len(notes), np.int64), side)
        start = self.item_side.shape[0]
        idx = np.arange(start, start + len(notes), dtype=np.int64)
        self.index.add(vec, idx)
        self.item_side = np.vstack([self.item_side, side])
        self.item_vectors = np.vstack([self.item_vectors, vec])
        return idx

    def replace_items(self, items: np.ndarray, notes: pd.DataFrame) -> None:
        """Encode edited notes ``items`` again from the side info of ``notes`` (their id
        embeddings stay): a history holding them reads the new side tokens, and the ANN index
        gets the new vectors where it can remove entries (exact and IVF; an HNSW index keeps
        the old vectors until the next fit, and this logs so)."""
        if self.model is None or self.index is None:
            raise RuntimeError(f"{self.name}: replace_items() before fit()")
        items = edited_items(self.name, items, notes, self.item_side.shape[0])
        side = note_side_tokens(notes, self.model.cfg.buckets, self.model.cfg.side_width)
        ids = np.where(items < self.model.cfg.n_items, items + 1, 0)  # notes added after training: side only
        vec = self.encode_items(ids, side)
        self.item_side[items] = side
        self.item_vectors[items] = vec
        try:
            self.index.replace(vec, items)
        except RuntimeError as e:
            log.info("%s: %s; the edited notes keep their old vectors in it until the next fit", self.name, e)

    # ------------------------------------------------------------------ serving
    @torch.no_grad()
    def user_vector(self, ctx: UserContext) -> np.ndarray:
        """(dim,) float32 user vector; an unknown user is encoded from history alone."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: recall() before fit()")
        cfg = self.model.cfg
        u = ctx.user if ctx.user is not None and 0 <= ctx.user < cfg.n_users else None
        h = np.asarray(ctx.history, np.int64)
        h = h[(h >= 0) & (h < self.item_side.shape[0])][-cfg.hist_len :]
        hist = np.full(cfg.hist_len, -1, np.int64)
        if h.size:
            hist[-h.size :] = h
        ht = torch.as_tensor(hist).unsqueeze(0)
        # notes added after training have no id embedding: side info only
        ids = torch.where((ht >= 0) & (ht < cfg.n_items), ht + 1, torch.zeros_like(ht))
        side = torch.as_tensor(self.item_side[np.maximum(hist, 0)]).unsqueeze(0) * (ht >= 0).unsqueeze(-1)
        attrs = self.user_attrs[u] if u is not None else np.zeros(cfg.attr_width, np.int64)
        v = self.model.user_vec(torch.tensor([0 if u is None else u + 1]), torch.as_tensor(attrs).unsqueeze(0),
                                ids, side)
        return v[0].numpy().astype(np.float32)

    def search(self, queries: np.ndarray, ctx: UserContext, k: int,
               nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ANN search for (q, dim) queries, dropping excluded items; (items, scores) per query,
        flattened. ``nprobe``: IVF lists searched for this call (None: the index's own)."""
        assert self.index is not None
        excl = excluded_items(ctx)
        d, i = self.index.search(queries, k + excl.size, nprobe=nprobe)
        keep = (i >= 0) & ~np.isin(i, excl)
        return i[keep], d[keep]

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if self.model is None or self.index is None:
            raise RuntimeError(f"{self.name}: recall() before fit()")
        if ctx.user is None and len(ctx.history) == 0:
            return Candidates.empty(self.name)  # nothing to personalise on: popular/fresh serve
        items, scores = self.search(self.user_vector(ctx)[None], ctx, k)
        return Candidates(self.name, items[:k], scores[:k])

    # ------------------------------------------------------------------ persistence
    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Model config and ``state_dict`` (as numpy), note side tokens (incl. notes added
        since fit) and user attributes; the ANN index is rebuilt on load."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        params = {"ann": self.ann_kind, "hnsw_m": self.hnsw_m, "ef_search": self.ef_search,
                  "approx": self.approx, "nprobe": self.nprobe, "model": asdict(self.model.cfg)}
        arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        return params, {**arrays, "item_side": self.item_side, "user_attrs": self.user_attrs}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> TwoTowerChannel:
        cfg = TwoTowerConfig(**params["model"])
        model = TwoTowerModel(cfg)
        model.load_state_dict({k[6:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("model.")})
        ch = cls(ann=params["ann"], hnsw_m=params["hnsw_m"], ef_search=params["ef_search"],
                 **{k: params[k] for k in ("approx", "nprobe") if k in params},
                 **{k: v for k, v in asdict(cfg).items() if k in _TT_FIELDS})
        ch.model = model.eval()
        ch.item_side, ch.user_attrs = arrays["item_side"], arrays["user_attrs"]
        ch._export()
        return ch

    def save(self, path: str | Path) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name}: save() before fit()")
        save_model(self.model, path, {"item_side": torch.as_tensor(self.item_side),
                                      "user_attrs": torch.as_tensor(self.user_attrs)})
        Path(path, "channel.json").write_text(json.dumps(
            {"name": self.name, "ann": self.ann_kind, "hnsw_m": self.hnsw_m, "ef_search": self.ef_search,
             "approx": self.approx, "nprobe": self.nprobe}))

    @classmethod
    def load(cls, path: str | Path) -> TwoTowerChannel:
        model, extra = load_model(path)
        try:
            meta = json.loads(Path(path, "channel.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"two-tower: cannot read {Path(path, 'channel.json')}: {e}") from e
        for key in ("item_side", "user_attrs"):
            if key not in extra:
                raise ValueError(f"two-tower: {path} lacks tensor '{key}'")
        params = {k: v for k, v in asdict(model.cfg).items() if k in _TT_FIELDS}
        ch = cls(ann=meta.get("ann", "auto"), hnsw_m=meta.get("hnsw_m", 32), ef_search=meta.get("ef_search", 128),
                 **{k: meta[k] for k in ("approx", "nprobe") if k in meta}, **params)
        ch.model = model
        ch.item_side = extra["item_side"].numpy()
        ch.user_attrs = extra["user_attrs"].numpy()
        ch._export()
        return ch


_CACHE: dict[tuple[int, str], tuple[Dataset, TwoTowerChannel]] = {}


def shared_two_tower(ds: Dataset, params: dict[str, object] | None = None) -> TwoTowerChannel:
    """One trained two-tower per (dataset object, params), shared by the embedding-based channels."""
    key = (id(ds), json.dumps(params or {}, sort_keys=True, default=str))
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not ds:  # holding ds keeps its id from being reused
        if len(_CACHE) >= 2:  # datasets come and go in evaluation loops: keep memory bounded
            _CACHE.pop(next(iter(_CACHE)))
        hit = (ds, TwoTowerChannel(**(params or {})).fit(ds))  # type: ignore[arg-type]
        _CACHE[key] = hit
    return hit[1]
