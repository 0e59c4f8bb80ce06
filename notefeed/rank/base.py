"""The ranking contract: a scorer returns scores for a batch, in input order."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from notefeed.recall.base import UserContext
from notefeed.registry import Registry

__all__ = ["Scorer", "SCORERS", "TASKS"]

#: Fine-ranking tasks, Xiaohongshu's engagement signals. ``dwell`` is a regression task.
TASKS: tuple[str, ...] = ("click", "like", "collect", "comment", "share", "dwell")


@runtime_checkable
class Scorer(Protocol):
    """Scores candidates for one user. Returns ``{task: (n,) float32}`` in input order;
    a single-score model returns ``{"score": ...}``."""

    name: str

    def score(self, ctx: UserContext, items: np.ndarray) -> dict[str, np.ndarray]: ...


SCORERS: Registry[Scorer] = Registry("scorer")
# the modules that register scorers, imported at the first lookup (the fine rankers import torch)
SCORERS.defer("notefeed.rank.coarse", "notefeed.rank.ltr", "notefeed.rank.scorer")
