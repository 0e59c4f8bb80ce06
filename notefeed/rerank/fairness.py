"""Creator-fairness control across requests: a PID loop on the realised small-creator share.

Per page, :class:`~notefeed.rerank.constraints.PageConstraints` can reserve slots (hard) and
add a boost to small creators' gains (soft). Across requests, :class:`FairnessController`
watches the share of small-creator items actually shown and steers the boost: below target it
raises the boost, above target it lowers it (never below ``min_boost``). Its state is plain
JSON, so a serving process can persist it (``to_json`` / ``from_json``) and resume.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["FairnessController", "small_creator_share"]


def small_creator_share(small: np.ndarray, selected: np.ndarray) -> float:
    """Share of ``selected`` (k,) positions whose ``small`` (N,) flag is set (0 for k = 0)."""
    return float(np.asarray(small)[selected].mean()) if len(selected) else 0.0


@dataclass
class FairnessController:
    """PID on ``error = target - realised share`` (EMA-smoothed) -> boost.

    ``update(n_small, n_shown)`` after each page; read ``boost`` before the next one.
    Anti-windup: the integral is clamped so that ``ki * integral`` stays within the boost range.
    """

    target: float = 0.5
    kp: float = 0.5
    ki: float = 0.1
    kd: float = 0.0
    min_boost: float = 0.0
    max_boost: float = 2.0
    ema: float = 0.2  # weight of the newest page in the realised-share estimate
    # state
    share: float | None = None
    integral: float = 0.0
    last_error: float = 0.0
    boost: float = 0.0
    pages: int = 0
    history: list[float] = field(default_factory=list)  # recent boosts, for inspection

    def __post_init__(self) -> None:
        if not 0.0 <= self.target <= 1.0:
            raise ValueError(f"FairnessController: 'target' must be in [0, 1], got {self.target}")
        if self.min_boost > self.max_boost:
            raise ValueError("FairnessController: 'min_boost' must be <= 'max_boost'")
        if not 0.0 < self.ema <= 1.0:
            raise ValueError(f"FairnessController: 'ema' must be in (0, 1], got {self.ema}")

    def update(self, n_small: int, n_shown: int) -> float:
        """Feed back one page; returns the new boost."""
        if n_shown < 0 or n_small < 0 or n_small > n_shown:
            raise ValueError(f"FairnessController.update: need 0 <= n_small <= n_shown, got {n_small}, {n_shown}")
        if n_shown == 0:
            return self.boost
        page_share = n_small / n_shown
        self.share = page_share if self.share is None else (1 - self.ema) * self.share + self.ema * page_share
        err = self.target - self.share
        self.integral += err
        if self.ki > 0:
            lim = max(abs(self.max_boost), abs(self.min_boost)) / self.ki
            self.integral = float(np.clip(self.integral, -lim, lim))
        deriv = err - self.last_error if self.pages else 0.0
        self.last_error = err
        raw = self.kp * err + self.ki * self.integral + self.kd * deriv
        self.boost = float(np.clip(raw, self.min_boost, self.max_boost))
        self.pages += 1
        self.history = (self.history + [self.boost])[-100:]
        return self.boost

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FairnessController:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"FairnessController.from_json: not JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError("FairnessController.from_json: expected an object")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"FairnessController.from_json: unknown fields {sorted(unknown)}")
        return cls(**data)
