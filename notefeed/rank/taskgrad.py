"""How each task's gradient reaches what the tasks share (the multi-task "seesaw" guard).

A multi-task block hands every task its own copy of each shared tensor (the block's input, i.e.
the shared embeddings and encoder output, and the shared experts' output): ``TaskGrad.split(x)``
returns one copy per task; forward they are all ``x``, backward their gradients are combined here
before they flow into the shared layers. Each task's own gate, experts and tower are untouched.

Two well-known rules, both relative to the *main* task (the one the others must not hurt):

- ``scale``: every auxiliary task's gradient is multiplied by ``aux`` (0 = the auxiliary task reads
  the shared representation without shaping it, 1 = plain summed losses).
- ``project`` (PCGrad, Yu et al. 2020, applied to the gradient w.r.t. the shared representation
  as MGDA-UB does, Sener & Koltun 2018): where an auxiliary gradient points against the main
  task's (negative dot product), its component along the main gradient is removed, so the
  combined step never undoes the main task's descent direction at first order. The dot product
  is taken per sample (per row of the shared tensor): conflicts differ from one exposure to the
  next (a clicked-but-not-bought note), and a whole-batch projection would average them away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["TaskGrad", "combine"]


def combine(grads: Sequence[torch.Tensor], main: int, scales: Sequence[float], project: bool,
            eps: float = 1e-12) -> torch.Tensor:
    """Per-task gradients (T tensors of one shape (B, ...)) -> the gradient for the shared tensor.

    The main task's gradient passes unchanged; task ``t``'s is scaled by ``scales[t]`` and, with
    ``project``, rows whose dot product with the main row is negative lose that component."""
    gm = grads[main]
    total = gm.clone()
    if project:
        gm2 = gm.reshape(len(gm), -1)
        norm2 = (gm2 * gm2).sum(1).clamp_min(eps)
    for t, g in enumerate(grads):
        if t == main or scales[t] == 0.0:
            continue
        g = g * scales[t]
        if project:
            dot = (g.reshape(len(g), -1) * gm2).sum(1)
            coef = (dot.clamp(max=0.0) / norm2).view(-1, *([1] * (g.dim() - 1)))
            g = g - coef * gm
        total = total + g
    return total


class _Split(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, rule: TaskGrad) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        ctx.rule = rule
        return tuple(x.clone() for _ in rule.scales)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        r: TaskGrad = ctx.rule
        return combine(grads, r.main, r.scales, r.project), None


@dataclass(frozen=True)
class TaskGrad:
    """``scales`` (one per task, the main task's ignored), ``main`` (its index), ``project``."""

    scales: tuple[float, ...]
    main: int = 0
    project: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.main < len(self.scales):
            raise ValueError(f"TaskGrad.main: {self.main} is not a task index (0..{len(self.scales) - 1})")
        if any(not 0.0 <= a <= 1.0 for a in self.scales):
            raise ValueError(f"TaskGrad.scales: factors must be in [0, 1], got {self.scales}")

    @classmethod
    def plain(cls, n_tasks: int) -> TaskGrad:
        return cls((1.0,) * n_tasks)

    @property
    def is_plain(self) -> bool:
        return not self.project and all(a == 1.0 for a in self.scales)

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One copy of ``x`` per task (all equal to ``x``); gradients combined by :func:`combine`."""
        if self.is_plain or not x.requires_grad:
            return [x] * len(self.scales)
        return list(_Split.apply(x, self))
