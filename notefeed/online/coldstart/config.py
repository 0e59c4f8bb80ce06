"""Cold-start pool settings, the observe report, a pool note's record and small helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from notefeed.online.bandit import check_prior

__all__ = ["ColdStartConfig", "ObserveReport", "STAGES"]

#: Stage of a note in the pool, by code.
STAGES: tuple[str, ...] = ("seed", "lookalike", "handed_over", "expired")
SEED, LOOKALIKE, HANDED_OVER, EXPIRED = range(4)
_STATE_VERSION = 1
_MIN_RESCALE = 2.0**-40
#: below this the pool folds its profile scale into the stored values (weights are divided
#: by the scale: at 2^-50 a new event weighs up to 2^80 and a profile cell stays far inside
#: float32's range; norms sum their squares in float64)
_MIN_PSCALE = 2.0**-50


@dataclass(frozen=True)
class ColdStartConfig:
    """Settings of the cold-start pool (``validate()`` names any bad field)."""

    seed_size: int = 300  #: users in a note's seed audience
    lookalike_size: int = 600  #: users added by look-alike expansion
    lookalike_after_clicks: int = 2  #: engagers needed before expanding
    handover_impressions: int = 100  #: impressions after which the normal channels take over
    max_age_h: float = 72.0  #: notes older than this leave the pool unboosted
    prior_a: float = 1.0  #: Beta prior pseudo-clicks
    prior_b: float = 9.0  #: Beta prior pseudo-non-clicks (prior CTR a / (a + b) = 10%)
    bandit: str = "thompson"  #: "thompson" or "uniform" (feedback-blind baseline)
    half_life_h: float = 72.0  #: decay of interest profiles
    content_weight: float = 0.5  #: weight of content-vector match vs tag/category match
    relevance_floor: float = 0.1  #: score = theta * (floor + relevance): theta dominates the boost

    def validate(self) -> ColdStartConfig:
        for name in ("seed_size", "lookalike_size", "lookalike_after_clicks", "handover_impressions"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"ColdStartConfig.{name} must be a positive integer, got {v!r}")
        for name in ("max_age_h", "half_life_h"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and np.isfinite(v) and v > 0):
                raise ValueError(f"ColdStartConfig.{name} must be > 0, got {v!r}")
        for name in ("content_weight", "relevance_floor"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.0 <= v <= 1.0):
                raise ValueError(f"ColdStartConfig.{name} must be in [0, 1], got {v!r}")
        check_prior(self.prior_a, self.prior_b)
        if self.bandit not in ("thompson", "uniform"):
            raise ValueError(f"ColdStartConfig.bandit must be 'thompson' or 'uniform', got {self.bandit!r}")
        return self


@dataclass
class ObserveReport:
    """What one :meth:`ColdStartPool.observe` call did."""

    new_note_events: int = 0  #: events on notes in the pool (any stage)
    profile_updates: int = 0  #: positive events that updated a user's interest profile
    ignored: int = 0  #: events on items the pool was never told about
    stage_changes: dict[str, int] = field(default_factory=dict)


@dataclass
class _Note:
    item: int
    published_ts: int
    feats: list[int]
    vector: list[float] | None = None
    stage: int = SEED
    impressions: int = 0
    clicks: int = 0
    engagers: list[int] = field(default_factory=list)
    seed_thr: float = 0.0
    look_thr: float = float("inf")
    centroid: dict[int, float] = field(default_factory=dict)  # sparse mean profile of the engagers
    stage_ts: int = 0  # when the note entered its current stage


def _kth_largest(x: np.ndarray, k: int) -> float:
    if len(x) <= k:
        return float(x.min()) if len(x) else 0.0
    return float(np.partition(x, len(x) - k)[len(x) - k])
