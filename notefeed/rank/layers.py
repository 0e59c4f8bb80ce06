"""Building blocks of the fine ranker: DIN target attention and the multi-task towers.

- :class:`TargetAttention` (DIN, Zhou et al. 2018): an MLP scores each behaviour against the
  target from ``[q, k, q - k, q * k]``; we normalise the scores with a masked softmax (DIN keeps
  them raw) because padded, variable-length sequences otherwise dominate the pooled scale.
- :class:`MMoE` (Ma et al. 2018): shared experts, one softmax gate per task.
- :class:`CGC` / PLE (Tang et al. 2020, Tencent): shared plus task-specific experts; each task's
  gate mixes its own experts and the shared ones. PLE stacks extraction layers whose shared
  branch also has a gate over every expert; the last layer is a CGC.
- :class:`SingleTask`: an independent MLP per task (the baseline without expert sharing).

Every multi-task block takes ``task_grad`` (:class:`~notefeed.rank.taskgrad.TaskGrad`, default
plain summed gradients): each task reads its own copy of the block input and of the shared
experts' output, so the rule decides how much of each task's gradient reaches what the tasks
share (the guard against the multi-task "seesaw").
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from notefeed.rank.taskgrad import TaskGrad

__all__ = ["ID_TABLES", "attach_id_tables", "mlp", "TargetAttention", "MMoE", "CGC", "PLE", "SingleTask", "make_towers"]


#: The id and side-info tables every ranker has, by attribute name (checkpoint keys depend on them).
ID_TABLES = ("user_emb", "item_emb", "author_emb", "cat_emb", "tag_emb", "attr_emb")


def attach_id_tables(module: nn.Module, vocab: Mapping[str, int], d: int, sparse: bool) -> None:
    """Add :data:`ID_TABLES` to ``module``: user, item and author ids, category, hashed tags and
    hashed user attributes (bags), row 0 the padding row. ``sparse`` gives sparse gradients for
    the large tables (the row-wise optimiser's input); categories are few and stay dense.
    Initialisation is the caller's: the coarse and fine rankers scale them differently."""
    module.user_emb = nn.Embedding(vocab["n_users"], d, padding_idx=0, sparse=sparse)
    module.item_emb = nn.Embedding(vocab["n_items"], d, padding_idx=0, sparse=sparse)
    module.author_emb = nn.Embedding(vocab["n_authors"], d, padding_idx=0, sparse=sparse)
    module.cat_emb = nn.Embedding(vocab["n_cats"], d, padding_idx=0)
    module.tag_emb = nn.EmbeddingBag(vocab["hash_buckets"], d, mode="sum", padding_idx=0, sparse=sparse)
    module.attr_emb = nn.EmbeddingBag(vocab["hash_buckets"], d, mode="sum", padding_idx=0, sparse=sparse)


def mlp(sizes: list[int], last_act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2 or last_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TargetAttention(nn.Module):
    """Pool keys (B, S, d) against query (B, d) with mask (B, S) bool -> (B, d).

    DIN's first layer ``W [q, k, q - k, q * k]`` is linear, so it is computed as
    ``Wq q + Wk k + Wp (q * k)`` (the ``q - k`` block folds into ``Wq`` and ``Wk``): the same
    function class without materialising the (B, S, 4d) concatenation.
    """

    def __init__(self, d: int, hidden: int = 16) -> None:
        super().__init__()
        self.wq = nn.Linear(d, hidden)
        self.wk = nn.Linear(d, hidden, bias=False)
        self.wp = nn.Linear(d, hidden, bias=False)
        self.out = nn.Linear(hidden, 1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.wq(q).unsqueeze(1) + self.wk(k) + self.wp(q.unsqueeze(1) * k))
        s = self.out(h).squeeze(-1).masked_fill(~mask, -1e9)
        w = torch.softmax(s, dim=1) * mask  # all-padding rows pool to zero
        return torch.bmm(w.unsqueeze(1), k).squeeze(1)


class _Experts(nn.Module):
    def __init__(self, n: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList([mlp([d_in, d_out]) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n, d_out)
        return torch.stack([e(x) for e in self.experts], dim=1)


def _mix(gate: nn.Module, x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    w = torch.softmax(gate(x), dim=-1).unsqueeze(-1)  # (B, n, 1)
    return (w * experts).sum(1)


class MMoE(nn.Module):
    """x (B, d_in) -> list of T tensors (B, d_out)."""

    def __init__(self, n_tasks: int, d_in: int, d_out: int, n_experts: int = 4,
                 task_grad: TaskGrad | None = None, **_: int) -> None:
        super().__init__()
        self.experts = _Experts(n_experts, d_in, d_out)
        self.gates = nn.ModuleList([nn.Linear(d_in, n_experts) for _ in range(n_tasks)])
        self.task_grad = task_grad or TaskGrad.plain(n_tasks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        xs, es = self.task_grad.split(x), self.task_grad.split(self.experts(x))
        return [_mix(g, xs[t], es[t]) for t, g in enumerate(self.gates)]


class _Extraction(nn.Module):
    """One PLE extraction layer; inputs one tensor per task plus the shared one."""

    def __init__(self, n_tasks: int, d_in: int, d_out: int, n_shared: int, n_specific: int,
                 shared_gate: bool) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.shared = _Experts(n_shared, d_in, d_out)
        self.specific = nn.ModuleList([_Experts(n_specific, d_in, d_out) for _ in range(n_tasks)])
        self.gates = nn.ModuleList([nn.Linear(d_in, n_specific + n_shared) for _ in range(n_tasks)])
        self.shared_gate = nn.Linear(d_in, n_tasks * n_specific + n_shared) if shared_gate else None

    def forward(self, xs: list[torch.Tensor], xshared: torch.Tensor,
                task_grad: TaskGrad) -> tuple[list[torch.Tensor], torch.Tensor]:
        es = self.shared(xshared)
        spec = [self.specific[t](xs[t]) for t in range(self.n_tasks)]
        per_task = task_grad.split(es)
        outs = [_mix(self.gates[t], xs[t], torch.cat([spec[t], per_task[t]], dim=1)) for t in range(self.n_tasks)]
        if self.shared_gate is None:
            return outs, xshared
        return outs, _mix(self.shared_gate, xshared, torch.cat([*spec, es], dim=1))


class PLE(nn.Module):
    """x (B, d_in) -> T tensors (B, d_out); ``n_layers=1`` is CGC."""

    def __init__(self, n_tasks: int, d_in: int, d_out: int, n_shared: int = 2, n_specific: int = 1,
                 n_layers: int = 2, task_grad: TaskGrad | None = None, **_: int) -> None:
        super().__init__()
        self.task_grad = task_grad or TaskGrad.plain(n_tasks)
        dims = [d_in] + [d_out] * n_layers
        self.layers = nn.ModuleList([
            _Extraction(n_tasks, dims[k], dims[k + 1], n_shared, n_specific, shared_gate=k < n_layers - 1)
            for k in range(n_layers)
        ])
        self.n_tasks = n_tasks

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        xs, sh = self.task_grad.split(x), x
        for layer in self.layers:
            xs, sh = layer(xs, sh, self.task_grad)
        return xs


class CGC(PLE):
    """Customized Gate Control: a single extraction layer."""

    def __init__(self, n_tasks: int, d_in: int, d_out: int, n_shared: int = 2, n_specific: int = 1,
                 task_grad: TaskGrad | None = None, **_: int) -> None:
        super().__init__(n_tasks, d_in, d_out, n_shared, n_specific, n_layers=1, task_grad=task_grad)


class SingleTask(nn.Module):
    """An independent MLP per task (no sharing above the embeddings)."""

    def __init__(self, n_tasks: int, d_in: int, d_out: int, task_grad: TaskGrad | None = None,
                 **_: int) -> None:
        super().__init__()
        self.nets = nn.ModuleList([mlp([d_in, d_out]) for _ in range(n_tasks)])
        self.task_grad = task_grad or TaskGrad.plain(n_tasks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [n(xt) for n, xt in zip(self.nets, self.task_grad.split(x), strict=True)]


def make_towers(n_tasks: int, d: int, hidden: int) -> nn.ModuleList:
    return nn.ModuleList([mlp([d, hidden, 1], last_act=False) for _ in range(n_tasks)])
