"""The fine-ranking network: embeddings, side-info note encoder, DIN attention, multi-task towers.

A note's representation is ``side_encoder(category, author, tags) + id_embedding``: the id
embedding is a residual on top of side info (initialised near zero), so a long-tail note with a
cold id is still ranked by what it is about. Big id tables (users, notes, authors, hashed
tags/attributes) use ``sparse=True`` gradients when ``sparse`` is set (fast path); the naive
baseline is the same network with dense embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from notefeed.rank.layers import CGC, PLE, MMoE, SingleTask, TargetAttention, attach_id_tables, make_towers
from notefeed.rank.taskgrad import TaskGrad
from notefeed.schema import EVENT_TYPES, SURFACES

__all__ = ["FineConfig", "FineNet", "ARCHS", "BATCH_KEYS"]

ARCHS = {"cgc": CGC, "ple": PLE, "mmoe": MMoE, "single": SingleTask}
#: Tensor fields of a batch (see :meth:`notefeed.rank.features.FeatureBuilder.features`).
BATCH_KEYS = ("user", "item", "attrs", "fbucket", "surface", "dense",
              "seq_items", "seq_types", "long_items", "long_types")


@dataclass
class FineConfig:
    """Architecture and training settings; ``vocab`` is filled from the features at fit time."""

    tasks: tuple[str, ...] = ("click", "like", "collect", "comment", "share", "dwell")
    arch: str = "cgc"  # cgc | ple | mmoe | single
    dim: int = 16
    expert_dim: int = 64
    tower_hidden: int = 32
    n_shared: int = 2
    n_specific: int = 1
    n_experts: int = 4  # MMoE
    n_layers: int = 2  # PLE
    sparse: bool = True
    lr: float = 3e-3
    sparse_lr: float = 3e-2
    batch_size: int = 4096
    epochs: int = 3
    seed: int = 0
    task_weights: dict[str, float] = field(default_factory=dict)
    #: the task the others must not hurt; "" = the first of ``tasks``
    main_task: str = ""
    #: factor on every other task's gradient into the shared layers (embeddings, encoder, shared
    #: experts); their own experts, gates and towers learn at full strength (rank/taskgrad.py).
    #: "auto": each task's count of positive (non-zero) labels over the main task's, capped at 1,
    #: so a task with 1% of the main task's evidence gets 1% of its say in the shared layers
    aux_grad: float | str = "auto"
    #: PCGrad against the main task: drop the part of another task's gradient that opposes it
    aux_project: bool = False
    vocab: dict[str, int] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        if self.arch not in ARCHS:
            raise ValueError(f"FineConfig.arch: unknown '{self.arch}'; known: {sorted(ARCHS)}")
        if not self.tasks:
            raise ValueError("FineConfig.tasks: need at least one task")
        if self.main_task and self.main_task not in self.tasks:
            raise ValueError(f"FineConfig.main_task: '{self.main_task}' is not one of tasks {list(self.tasks)}")
        if self.aux_grad != "auto" and not (isinstance(self.aux_grad, int | float) and 0.0 <= self.aux_grad <= 1.0):
            raise ValueError(f"FineConfig.aux_grad: 'auto' or a number in [0, 1], got {self.aux_grad!r}")

    @property
    def main(self) -> str:
        return self.main_task or self.tasks[0]

    def task_grad(self, positives: Mapping[str, float] | None = None) -> TaskGrad:
        """The gradient rule of the multi-task block (see :mod:`notefeed.rank.taskgrad`);
        ``positives`` (task -> count of non-zero labels) resolves ``aux_grad="auto"``; without
        it "auto" is plain (1) until the labels are known."""
        m = self.tasks.index(self.main)
        if self.aux_grad == "auto":
            pos = positives or {}
            base = float(pos.get(self.main, 0.0))
            scales = tuple(min(1.0, float(pos[t]) / base) if base > 0 and t in pos else 1.0 for t in self.tasks)
        else:
            scales = (float(self.aux_grad),) * len(self.tasks)
        return TaskGrad(tuple(1.0 if k == m else a for k, a in enumerate(scales)), m, self.aux_project)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d


class FineNet(nn.Module):
    """Batch of tensors -> (B, T) raw outputs (logits for binary tasks, log1p value for dwell)."""

    def __init__(self, cfg: FineConfig, item_cat: torch.Tensor, item_author: torch.Tensor,
                 item_tags: torch.Tensor) -> None:
        super().__init__()
        v, d, sp = cfg.vocab, cfg.dim, cfg.sparse
        attach_id_tables(self, v, d, sp)
        self.type_emb = nn.Embedding(len(EVENT_TYPES) + 1, d, padding_idx=0)
        self.fb_emb = nn.Embedding(9, d)
        self.surface_emb = nn.Embedding(len(SURFACES), d)
        for e, std in ((self.user_emb, 0.01), (self.item_emb, 0.01), (self.author_emb, 0.05),
                       (self.cat_emb, 0.1), (self.tag_emb, 0.05), (self.attr_emb, 0.05)):
            nn.init.normal_(e.weight, 0.0, std)
            with torch.no_grad():
                e.weight[0].zero_()
        self.side = nn.Sequential(nn.Linear(3 * d, d), nn.ReLU(), nn.Linear(d, d))
        self.att_short = TargetAttention(d)
        self.att_long = TargetAttention(d)
        self.dense_proj = nn.Sequential(nn.Linear(v["n_dense"], d), nn.ReLU())
        d_in = 8 * d
        self.mt = ARCHS[cfg.arch](len(cfg.tasks), d_in, cfg.expert_dim, n_shared=cfg.n_shared,
                                  n_specific=cfg.n_specific, n_experts=cfg.n_experts, n_layers=cfg.n_layers,
                                  task_grad=cfg.task_grad())
        self.towers = make_towers(len(cfg.tasks), cfg.expert_dim, cfg.tower_hidden)
        self.register_buffer("item_cat", item_cat.long())
        self.register_buffer("item_author", item_author.long())
        self.register_buffer("item_tags", item_tags.long())

    def item_repr(self, items: torch.Tensor) -> torch.Tensor:
        """(B,) item ids (+1 shifted) -> (B, d): side-info encoding + id residual."""
        side = self.side(torch.cat([self.cat_emb(self.item_cat[items]), self.author_emb(self.item_author[items]),
                                    self.tag_emb(self.item_tags[items])], dim=-1))
        return side + self.item_emb(items)

    def encode(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """The (B, 8d) input of the multi-task block.

        One lookup per table for target + behaviour ids (a single sparse gradient per table).
        Behaviours are ``id + category (+ action type)`` embeddings; the full side-info encoder
        runs on the B targets only, which keeps the per-behaviour cost at two lookups.
        """
        item = b["item"]
        n, s_len, l_len = item.shape[0], b["seq_items"].shape[1], b["long_items"].shape[1]
        ids = torch.cat([item, b["seq_items"].reshape(-1), b["long_items"].reshape(-1)])
        id_e = self.item_emb(ids)
        cat_e = self.cat_emb(self.item_cat[ids])
        beh = id_e + cat_e
        q = beh[:n]
        seq = beh[n:n + n * s_len].view(n, s_len, -1) + self.type_emb(b["seq_types"])
        lng = beh[n + n * s_len:].view(n, l_len, -1) + self.type_emb(b["long_types"])
        short = self.att_short(q, seq, b["seq_items"] > 0)
        long_ = self.att_long(q, lng, b["long_items"] > 0)
        target = self.side(torch.cat([cat_e[:n], self.author_emb(self.item_author[item]),
                                      self.tag_emb(self.item_tags[item])], dim=-1)) + id_e[:n]
        return torch.cat([self.user_emb(b["user"]), self.attr_emb(b["attrs"]), target, short, long_,
                          self.dense_proj(b["dense"]), self.fb_emb(b["fbucket"]),
                          self.surface_emb(b["surface"])], dim=1)

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        hs = self.mt(self.encode(b))
        return torch.cat([tower(h) for tower, h in zip(self.towers, hs, strict=True)], dim=1)
