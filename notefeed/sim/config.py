"""Configuration of the community simulator: sizes, seeds and behaviour parameters.

Presets cover the sizes the project needs: ``tiny`` (tests), ``demo`` (the embedded dataset of
``notefeed demo``), ``100k`` and ``1m`` (benchmarks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = ["SimConfig", "BehaviourParams", "PRESETS", "preset", "SimConfigError"]


class SimConfigError(ValueError):
    """A bad simulator configuration; the message names the field."""


@dataclass(frozen=True)
class BehaviourParams:
    """How users react to an impression (see :mod:`notefeed.sim.behaviour`).

    P(click) = position_bias(p) * fatigue * sigmoid(click_a * affinity + click_b * (quality - 0.5) + click_c).
    """

    click_a: float = 6.0
    click_b: float = 1.5
    click_c: float = -4.0
    #: position bias (1 + p) ** -position_eta
    position_eta: float = 0.35
    #: multiplier per earlier exposure of the same note to the same user
    repeat_decay: float = 0.35
    #: multiplier per recent same-topic impression beyond ``topic_free``
    topic_decay: float = 0.85
    topic_free: float = 2.0
    #: hours over which recent same-topic impressions are forgotten (e-folding time)
    topic_memory_h: float = 2.0
    #: intercepts of P(action | click): like > collect > comment > share > follow
    like_c: float = -1.0
    collect_c: float = -1.9
    comment_c: float = -3.0
    share_c: float = -3.6
    follow_c: float = -4.2
    action_a: float = 3.0
    action_b: float = 2.0
    #: P(hide | impression, no click) = hide_max * sigmoid(-hide_a * affinity - 2)
    hide_max: float = 0.08
    hide_a: float = 6.0
    #: dwell seconds ~ lognormal(log(dwell_base) + dwell_a * affinity + dwell_b * quality, dwell_sigma)
    dwell_base: float = 12.0
    dwell_a: float = 1.2
    dwell_b: float = 0.5
    dwell_sigma: float = 0.6
    #: weight of the short-term interest in a user's effective taste
    short_weight: float = 0.3
    #: short-term interest switches this many times a day on average
    drift_per_day: float = 2.0


@dataclass(frozen=True)
class SimConfig:
    """Sizes and seeds of a simulated community. ``validate()`` names any bad field."""

    n_users: int = 3_000
    n_creators: int = 300
    n_notes: int = 10_000
    n_topics: int = 20
    n_tags: int = 400
    dim: int = 32
    history_days: int = 14
    seed: int = 0
    name: str = "sim"
    #: words per topic vocabulary (plus a shared pool of common words)
    words_per_topic: int = 60
    #: share of notes written in Chinese (exercises the jieba paths)
    chinese_share: float = 0.15
    #: Pareto tail exponent and minimum of platform-wide follower counts
    follower_alpha: float = 0.55
    follower_min: int = 50
    follower_max: int = 5_000_000
    #: mean number of creators a simulated user follows
    follows_per_user: float = 6.0
    #: mean number of long-term interests per user (at least one)
    interests_per_user: float = 3.0
    #: how far a user's long-term interests go together. The topics fall into ``topic_groups``
    #: groups (a fixed random partition per seed); a user is *cohesive* with probability
    #: ``interest_cohesion``, and a cohesive user's further interests come from the group of their
    #: first (by the usual popularity-weighted draw inside the group, then outside it when the
    #: group has too few topics). 0 (the default) draws every interest independently of the
    #: others, as before: the same world, draw for draw. Above 0 only the interests change (the
    #: cohesion draws use their own random stream), so the notes, creators and users stay equal.
    interest_cohesion: float = 0.0
    topic_groups: int = 5
    #: feed requests per user per day (scaled by each user's activity) and page size of the logger
    requests_per_user_day: float = 1.5
    page_size: int = 10
    #: share of notes that exist before the history starts
    backlog_share: float = 0.3
    #: unix seconds of the first day of history
    start_ts: int = 1_700_000_000
    behaviour: BehaviourParams = field(default_factory=BehaviourParams)

    def validate(self) -> SimConfig:
        """Raise :class:`SimConfigError` naming the first bad field; return self."""
        positive = ("n_users", "n_creators", "n_notes", "n_topics", "n_tags", "dim", "history_days",
                    "words_per_topic", "follower_min", "follower_max", "page_size")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise SimConfigError(f"SimConfig.{name} must be a positive integer, got {v!r}")
        if self.n_creators > self.n_notes:
            raise SimConfigError(f"SimConfig.n_creators ({self.n_creators}) must not exceed n_notes ({self.n_notes})")
        if self.n_tags < self.n_topics:
            raise SimConfigError(f"SimConfig.n_tags ({self.n_tags}) must be >= n_topics ({self.n_topics})")
        if self.n_topics < 2:
            raise SimConfigError(f"SimConfig.n_topics must be at least 2, got {self.n_topics}")
        if not isinstance(self.topic_groups, int) or isinstance(self.topic_groups, bool) or not (
                1 <= self.topic_groups <= self.n_topics):
            raise SimConfigError(f"SimConfig.topic_groups must be an integer in [1, n_topics={self.n_topics}], "
                                 f"got {self.topic_groups!r}")
        for name in ("chinese_share", "backlog_share", "interest_cohesion"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise SimConfigError(f"SimConfig.{name} must be in [0, 1], got {v!r}")
        for name in ("follower_alpha", "follows_per_user", "interests_per_user", "requests_per_user_day"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v > 0):
                raise SimConfigError(f"SimConfig.{name} must be > 0, got {v!r}")
        if self.follower_max < self.follower_min:
            raise SimConfigError("SimConfig.follower_max must be >= follower_min")
        if self.start_ts < 0:
            raise SimConfigError(f"SimConfig.start_ts must be >= 0, got {self.start_ts}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SimConfigError(f"SimConfig.seed must be a non-negative integer, got {self.seed!r}")
        return self

    def with_(self, **changes: Any) -> SimConfig:
        """A copy with ``changes`` applied (unknown field names raise)."""
        known = {f.name for f in fields(self)}
        bad = set(changes) - known
        if bad:
            raise SimConfigError(f"SimConfig has no field(s) {sorted(bad)}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, SimConfig] = {
    "tiny": SimConfig(n_users=300, n_creators=50, n_notes=1_000, n_topics=8, n_tags=80, dim=16,
                      history_days=7, name="sim-tiny", words_per_topic=30),
    "demo": SimConfig(name="sim-demo"),
    "100k": SimConfig(n_users=20_000, n_creators=2_000, n_notes=100_000, n_topics=40, n_tags=1_200,
                      history_days=14, name="sim-100k", requests_per_user_day=1.0),
    "1m": SimConfig(n_users=100_000, n_creators=10_000, n_notes=1_000_000, n_topics=60, n_tags=3_000,
                    history_days=14, name="sim-1m", requests_per_user_day=0.5),
}
# the same communities with interests that go together (``interest_cohesion``): most users'
# interests lie in one of 5 topic groups, as real interests cluster (makeup with skincare, hiking
# with camping); the one thing an inferred "latent" interest can be right about
PRESETS["tiny-cohesive"] = replace(PRESETS["tiny"], name="sim-tiny-cohesive", interest_cohesion=0.8, topic_groups=2)
PRESETS["demo-cohesive"] = replace(PRESETS["demo"], name="sim-demo-cohesive", interest_cohesion=0.8)


def preset(name: str, **overrides: Any) -> SimConfig:
    """The named preset (``tiny``, ``demo``, ``100k``, ``1m``) with ``overrides`` applied."""
    try:
        cfg = PRESETS[name]
    except KeyError:
        raise SimConfigError(f"unknown sim preset {name!r}; known: {', '.join(PRESETS)}") from None
    return cfg.with_(**overrides).validate() if overrides else cfg.validate()
