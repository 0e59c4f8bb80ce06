"""Business rules and creator fairness, applied *inside* the greedy loop.

Every greedy re-ranker (SSD, DPP, MMR, top-k) asks a :class:`PageConstraints` at each step
which candidates may fill the next slot (a boolean mask over all N candidates) and adds a
small-creator boost to its step gain. Rules are therefore never a post-filter: the method
picks the best *allowed* item, so quality/diversity trade-offs are made with the rules in view.

Rules (all optional):

- **author window**: at most ``author_max`` notes of one author in any ``author_window``
  consecutive slots (the new slot plus the ``author_window - 1`` before it);
- **category caps**: at most ``category_cap`` notes of one category per page
  (``category_caps`` overrides per category id);
- **fairness reservation** (``FairnessConfig.mode == "hard"``): every prefix of the page of
  length ``t`` holds at least ``floor(target * t)`` small-creator notes, as long as small-creator
  candidates remain; so the page share is >= target whenever enough exist, and small creators
  are spread down the page rather than parked at the bottom.

**Relaxation order** when the masks leave no candidate for a slot (the page is never shorter
than ``min(k, N)``): drop the category caps first, then the fairness reservation for this slot
(the deficit carries over, so the next slot asks again), and the author window last. Each
relaxation is recorded in :attr:`PageConstraints.relaxed` as ``(slot, rule)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["RuleConfig", "FairnessConfig", "PageConstraints"]


@dataclass
class RuleConfig:
    """Business rules. ``author_window = 0`` and ``category_cap = None`` disable them."""

    author_max: int = 1  # notes per author ...
    author_window: int = 0  # ... in any this many consecutive slots (0: off)
    category_cap: int | None = None  # notes per category per page (None: off)
    category_caps: dict[int, int] = field(default_factory=dict)  # per-category overrides

    def __post_init__(self) -> None:
        if self.author_max < 1:
            raise ValueError(f"RuleConfig: 'author_max' must be >= 1, got {self.author_max}")
        if self.author_window < 0:
            raise ValueError(f"RuleConfig: 'author_window' must be >= 0, got {self.author_window}")
        if self.category_cap is not None and self.category_cap < 1:
            raise ValueError(f"RuleConfig: 'category_cap' must be >= 1, got {self.category_cap}")
        if any(v < 0 for v in self.category_caps.values()):
            raise ValueError("RuleConfig: 'category_caps' values must be >= 0")

    @property
    def active(self) -> bool:
        return self.author_window > 0 or self.category_cap is not None or bool(self.category_caps)


@dataclass
class FairnessConfig:
    """Small-creator exposure. ``hard``: prefix reservation plus ``boost``; ``soft``: boost only."""

    target: float = 0.5  # share of the page for creators under 1,000 followers
    mode: Literal["off", "soft", "hard"] = "off"
    boost: float = 0.0  # added to a small creator's step gain (in the method's gain units)

    def __post_init__(self) -> None:
        if not 0.0 <= self.target <= 1.0:
            raise ValueError(f"FairnessConfig: 'target' must be in [0, 1], got {self.target}")
        if self.mode not in ("off", "soft", "hard"):
            raise ValueError(f"FairnessConfig: 'mode' must be off/soft/hard, got {self.mode!r}")


class PageConstraints:
    """Rule state for one page. Call :meth:`pick` once per slot, in display order.

    ``authors``, ``categories`` (N,) int, ``small`` (N,) bool; any may be ``None`` (that rule
    is then off). Returns positions; keeps ``relaxed`` and the running counts.
    """

    def __init__(
        self,
        k: int,
        rules: RuleConfig,
        fairness: FairnessConfig,
        authors: np.ndarray | None,
        categories: np.ndarray | None,
        small: np.ndarray | None,
    ) -> None:
        self.k = k
        self.rules = rules
        self.fairness = fairness
        self.relaxed: list[tuple[int, str]] = []
        self.slot = 0
        self._history: list[int] = []
        self._author = None
        if rules.author_window > 0 and authors is not None:
            # Compact ids so counts live in a small array indexed by candidate.
            _, self._author = np.unique(authors, return_inverse=True)
            self._author_count = np.zeros(int(self._author.max()) + 1 if len(authors) else 0, np.int64)
        self._cat = None
        if (rules.category_cap is not None or rules.category_caps) and categories is not None:
            uniq, self._cat = np.unique(categories, return_inverse=True)
            default = rules.category_cap if rules.category_cap is not None else k
            self._cat_cap = np.array([rules.category_caps.get(int(c), default) for c in uniq], np.int64)
            self._cat_count = np.zeros(len(uniq), np.int64)
        self._small = small if (fairness.mode != "off" and small is not None) else None
        self._n_small = 0
        self._boost = None
        if self._small is not None and fairness.boost != 0.0:
            self._boost = fairness.boost * self._small.astype(np.float64)

    @property
    def active(self) -> bool:
        return self._author is not None or self._cat is not None or self._small is not None

    def _layers(self, avail: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Masks in priority order (the last one is relaxed first)."""
        layers: list[tuple[str, np.ndarray]] = []
        if self._author is not None:
            layers.append(("author", self._author_count[self._author] < self.rules.author_max))
        if self._small is not None and self.fairness.mode == "hard":
            need = math.floor(self.fairness.target * (self.slot + 1) + 1e-9)
            # Only a rule while small creators remain: no supply is not a reason to relax others.
            if self._n_small < need and (avail & self._small).any():
                layers.append(("fairness", self._small))
        if self._cat is not None:
            layers.append(("category", self._cat_count[self._cat] < self._cat_cap[self._cat]))
        return layers

    def allowed(self, avail: np.ndarray) -> np.ndarray:
        """(N,) bool: candidates that may fill the current slot (``avail``: not yet shown)."""
        layers = self._layers(avail)
        for n_keep in range(len(layers), -1, -1):
            mask = avail.copy()
            for _, m in layers[:n_keep]:
                mask &= m
            if mask.any() or n_keep == 0:
                for name, _ in reversed(layers[n_keep:]):  # in relaxation order
                    self.relaxed.append((self.slot, name))
                return mask
        raise AssertionError("unreachable")

    def pick(self, gain: np.ndarray, taken: np.ndarray) -> int:
        """Best allowed candidate under ``gain`` (N,) (modified in place); commits it."""
        if self._boost is not None:
            gain += self._boost
        gain[~self.allowed(~taken)] = -np.inf
        j = int(np.argmax(gain))
        self.commit(j)
        return j

    def commit(self, j: int) -> None:
        """Record that candidate ``j`` fills the current slot."""
        if self._author is not None:
            self._author_count[self._author[j]] += 1
            self._history.append(j)
            w = self.rules.author_window
            if len(self._history) >= w:  # the oldest leaves the (w-1)-slot look-back
                self._author_count[self._author[self._history[-w]]] -= 1
        if self._cat is not None:
            self._cat_count[self._cat[j]] += 1
        if self._small is not None and self._small[j]:
            self._n_small += 1
        self.slot += 1
