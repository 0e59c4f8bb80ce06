"""The serving config: one typed, validated tree, loaded from YAML.

Every default lives here and is restated, with comments, in ``configs/default.yaml``
(a test checks the two agree). Unknown keys are errors, so a typo never silently falls
back to a default. Errors name the field: ``recall.channels.1.quota: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from notefeed.rank.base import TASKS
from notefeed.search.config import SearchConfig

__all__ = [
    "ConfigError",
    "ChannelConfig",
    "RecallConfig",
    "CoarseConfig",
    "FineConfig",
    "FusionConfig",
    "RerankConfig",
    "PageConfig",
    "ApiConfig",
    "OnlineConfig",
    "ColdStartServeConfig",
    "DataConfig",
    "ExposureConfig",
    "EXPOSURE_KNOBS",
    "EXPOSURE_KNOB_HIGH",
    "ArmConfig",
    "ExperimentsConfig",
    "ARM_SECTIONS",
    "ServeConfig",
    "arm_config",
    "load_config",
    "parse_config",
    "builtin_config",
]


class ConfigError(ValueError):
    """A bad config; the message names the file and the field."""


class _Cfg(BaseModel):
    # no NaN or infinity in any float field (a NaN fusion weight would score every note NaN)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ChannelConfig(_Cfg):
    name: str = Field(min_length=3, description="family/name of a recall channel")
    quota: int = Field(default=100, ge=1, le=10_000, description="max candidates from this channel")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _family_name(cls, v: str) -> str:
        if v.count("/") != 1 or not all(v.split("/")):
            raise ValueError("channel names are 'family/name'")
        return v


def _default_channels() -> list[ChannelConfig]:
    return [
        ChannelConfig(name="fresh/recent", quota=50),
        ChannelConfig(name="sequence/sasrec", quota=200, params={"min_steps": 3000, "min_steps_below": 2000, "ensemble": 2}),
        ChannelConfig(name="embedding/als", quota=200),
        ChannelConfig(name="item-to-item/swing", quota=200),
        ChannelConfig(name="item-to-item/itemcf", quota=200),
        ChannelConfig(name="user-to-user/default", quota=100),
        ChannelConfig(name="tag/interest", quota=100),
        ChannelConfig(name="social/follow", quota=50),
        ChannelConfig(name="non-personalized/popular", quota=100),
    ]


def _default_rerank_params() -> dict[str, Any]:
    return {
        "gamma": 0.25,
        "window": 10,
        "rules": {"author_max": 1, "author_window": 10},
        "fairness": {"mode": "hard", "target": 0.5},
    }


class RecallConfig(_Cfg):
    channels: list[ChannelConfig] = Field(default_factory=_default_channels, min_length=1)
    fresh_pool_size: int = Field(default=2000, ge=0, le=1_000_000, description="newest notes kept for fresh/recent")

    @field_validator("channels")
    @classmethod
    def _unique(cls, v: list[ChannelConfig]) -> list[ChannelConfig]:
        names = [c.name for c in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"channel listed twice: {sorted(dup)}")
        return v


class CoarseConfig(_Cfg):
    scorer: str | None = Field(default="rank/ltr", description="None: keep recall order")
    keep: int = Field(default=200, ge=1, le=10_000)
    params: dict[str, Any] = Field(default_factory=dict)


class FineConfig(_Cfg):
    scorer: str | None = Field(default="rank/ltr", description="None: no fine ranking")
    params: dict[str, Any] = Field(default_factory=dict)
    #: a safetensors+JSON model directory, hot-swappable through /v1/admin/models/reload
    model_dir: str | None = None


def _default_weights() -> dict[str, float]:
    return {"click": 1.0, "like": 0.6, "collect": 0.8, "comment": 0.4, "share": 0.4, "dwell": 0.2}


class FusionConfig(_Cfg):
    weights: dict[str, float] = Field(default_factory=_default_weights)

    @field_validator("weights")
    @classmethod
    def _known_tasks(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(TASKS) - {"score"}
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; known: {list(TASKS) + ['score']}")
        if not v:
            raise ValueError("at least one task weight")
        return v


class RerankConfig(_Cfg):
    name: str | None = Field(default="rerank/ssd", description="a RERANKERS name; None: fused order")
    #: left out: the defaults of the re-ranker named (see :meth:`_params_for_name`)
    params: dict[str, Any] = Field(default_factory=_default_rerank_params)
    #: how many fused-score leaders the re-ranker sees
    window: int = Field(default=100, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _params_for_name(cls, data: Any) -> Any:
        """``params`` left out: SSD's defaults for ``rerank/ssd``; for another registered
        re-ranker only their page rules and small-creator share (``rules``, ``fairness``, which
        every one takes; SSD's ``gamma`` would be refused); none for ``builtin/author-cap``."""
        if not isinstance(data, dict) or "params" in data or data.get("name", "rerank/ssd") == "rerank/ssd":
            return data
        name = data.get("name")
        if name is None or name == "builtin/author-cap":
            return {**data, "params": {}}
        d = _default_rerank_params()
        return {**data, "params": {"rules": d["rules"], "fairness": d["fairness"]}}


class PageConfig(_Cfg):
    default_size: int = Field(default=20, ge=1)
    max_size: int = Field(default=100, ge=1, le=1000)

    @model_validator(mode="after")
    def _order(self) -> PageConfig:
        if self.default_size > self.max_size:
            raise ValueError("default_size must be <= max_size")
        return self


class ApiConfig(_Cfg):
    #: bearer token for write endpoints; None: ``notefeed serve`` makes one and prints it
    token: str | None = Field(default=None, min_length=8)
    require_token_for_reads: bool = False
    max_batch: int = Field(default=1000, ge=1, description="events per POST /v1/events")
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    #: how far ahead of the server clock an event's ``ts`` or a note's ``created_at`` may be
    max_future_skew_s: int = Field(default=86_400, ge=0)
    #: feed pages built at once by one server process; the others wait their turn in arrival
    #: order (0: no limit). The pipeline is mostly Python under the GIL: two interleaved pages
    #: each take over twice as long and cost more CPU in all than one after the other
    #: (docs/results/serve/round22/). With ``serve --workers`` the runs do not separate 1 from 0
    #: (docs/results/online/round23/).
    feed_concurrency: int = Field(default=1, ge=0, le=1024)


class OnlineConfig(_Cfg):
    backend: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str | None = None
    redis_prefix: str = "nf"
    #: SQLite fsync level; FULL survives power loss, NORMAL (WAL) survives process kills
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    seq_len: int = Field(default=50, ge=1, le=10_000)
    max_seen: int = Field(default=5000, ge=1)
    #: copy accepted events and published notes into the DuckDB workspace in the background
    #: (a side effect: dropped under pressure, never blocks; the event log stays the record)
    mirror_to_workspace: bool = False
    #: the SQLite event log keeps its newest ``log_keep`` entries once the store holds them: the
    #: sync (``notefeed train``, the mirror) deletes older ones, which the store's dataset gives
    #: a restarting server instead (a start-up replays every kept entry:
    #: docs/results/serve/log_compaction/); 0 keeps every entry. Never fewer than the 200,000
    #: a server remembers client event ids of
    log_keep: int = Field(default=200_000, ge=0)
    #: look at the model store's promoted version this often (seconds) and load a newly
    #: promoted one (``notefeed train`` promotes); 0: only at start-up and by hand
    follow_promoted_s: float = Field(default=10.0, ge=0, le=86_400)
    #: train the rank/ltr fine ranker beside serving on the pages it served and the
    #: engagement that followed (notefeed.online.ltr), hot-swapping each update in
    train: bool = False
    #: OnlineLTRConfig fields, e.g. {min_groups: 32, max_wait_s: 20, passes: 2, lr: 0.001}
    train_params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _redis_url(self) -> OnlineConfig:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("redis_url is required when backend is 'redis'")
        return self

    @model_validator(mode="after")
    def _train_params(self) -> OnlineConfig:
        from notefeed.online.ltr import OnlineLTRConfig

        try:
            OnlineLTRConfig(**self.train_params)
        except TypeError as e:
            raise ValueError(f"train_params: {e}") from None
        return self


class ColdStartServeConfig(_Cfg):
    """The new-note cold-start flow (:class:`~notefeed.online.coldstart.ColdStartPool`): a
    ``coldstart/bandit`` candidate source and a page-slot selector after re-ranking."""

    enabled: bool = True
    #: pool notes placed per page at spread positions (0: recall them but never boost)
    slots: int = Field(default=2, ge=0, le=20)
    seed_size: int = Field(default=300, ge=1, description="users in a note's seed audience")
    lookalike_size: int = Field(default=600, ge=1, description="users added by look-alike expansion")
    lookalike_after_clicks: int = Field(default=2, ge=1)
    handover_impressions: int = Field(default=100, ge=1, description="impressions before hand-over")
    max_age_h: float = Field(default=72.0, gt=0, allow_inf_nan=False)
    prior_a: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    prior_b: float = Field(default=9.0, gt=0, allow_inf_nan=False)
    bandit: Literal["thompson", "uniform"] = "thompson"
    half_life_h: float = Field(default=72.0, gt=0, allow_inf_nan=False)
    content_weight: float = Field(default=0.5, ge=0, le=1)
    relevance_floor: float = Field(default=0.1, ge=0, le=1)
    #: also match on the catalogue's category/author item vectors (a cheap content vector)
    vectors: bool = False
    #: seed of the bandit's Thompson draws (fixed: reproducible runs)
    seed: int = Field(default=0, ge=0)
    #: save the pool state (WORKSPACE/coldstart.json) every this many seconds while events
    #: arrive (0: off); a kill -9 then replays at most that much of the event log into the pool
    snapshot_s: float = Field(default=60.0, ge=0, allow_inf_nan=False)
    #: ... or every this many accepted events, whichever comes first (0: off)
    snapshot_events: int = Field(default=50_000, ge=0)

    def pool_params(self) -> dict[str, Any]:
        """The :class:`~notefeed.online.coldstart.ColdStartConfig` fields."""
        return self.model_dump(exclude={"enabled", "slots", "vectors", "seed", "snapshot_s", "snapshot_events"})


#: the per-request exposure knobs of ``policy/fixed`` / ``policy/rl`` (notefeed.serve.exposure),
#: each a weight in [0, EXPOSURE_KNOB_HIGH] in units of the fused score's standard deviation
EXPOSURE_KNOBS: tuple[str, ...] = ("small_boost", "fresh_boost", "explore", "interest")
EXPOSURE_KNOB_HIGH = 2.0


class ExposureConfig(_Cfg):
    """The exposure step after fusion (:mod:`notefeed.serve.exposure`): ``policy/fixed`` sets
    ``knobs`` on every request, ``policy/rl`` asks the learned policy in ``model_dir`` per
    request (``knobs`` when it is absent or fails); None: no step."""

    name: Literal["policy/fixed", "policy/rl"] | None = None
    #: a ``notefeed rl train`` output directory (policy.safetensors + policy.json)
    model_dir: str | None = None
    knobs: dict[str, float] = Field(default_factory=lambda: {k: 0.0 for k in EXPOSURE_KNOBS})
    #: fused-score leaders whose composition the observation describes
    window: int = Field(default=20, ge=1, le=10_000)

    @field_validator("knobs")
    @classmethod
    def _known_knobs(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(EXPOSURE_KNOBS)
        if unknown:
            raise ValueError(f"unknown knobs {sorted(unknown)}; known: {list(EXPOSURE_KNOBS)}")
        bad = {k: x for k, x in v.items() if not 0.0 <= x <= EXPOSURE_KNOB_HIGH}
        if bad:
            raise ValueError(f"knobs must be in [0, {EXPOSURE_KNOB_HIGH}], got {bad}")
        return v


#: what an experiment arm's overlay may change: the pipeline (the engine's event bus, state,
#: API and cold-start pool are shared by every arm); ``coldstart`` only ``enabled`` / ``slots``
ARM_SECTIONS = ("recall", "filters", "coarse", "fine", "fusion", "exposure", "rerank", "coldstart")
_ARM_COLDSTART = ("enabled", "slots")


class ArmConfig(_Cfg):
    """One arm of an A/B experiment: a serving config overlay merged over the base config."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    #: share of users, relative to the other arms' weights
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    #: a partial config (sections of ARM_SECTIONS), merged key by key (lists replaced)
    overlay: dict[str, Any] = Field(default_factory=dict)

    @field_validator("overlay")
    @classmethod
    def _sections(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(v) - set(ARM_SECTIONS))
        if bad:
            raise ValueError(f"{bad} cannot differ between arms; an overlay may set {list(ARM_SECTIONS)}")
        cs = v.get("coldstart")
        if isinstance(cs, dict) and set(cs) - set(_ARM_COLDSTART):
            raise ValueError(f"coldstart: an arm may set only {list(_ARM_COLDSTART)} (the pool is shared)")
        return v


class ExperimentsConfig(_Cfg):
    """An A/B experiment on serving configs (:mod:`notefeed.serve.experiments`). Users are
    hashed to arms (salted sha256: stable across restarts and servers)."""

    #: the experiment's name; None: no experiment
    name: str | None = Field(default=None, min_length=1, max_length=64)
    #: hash salt (None: the name); a new salt reshuffles users
    salt: str | None = None
    #: the arms, the first one the control; empty: no experiment
    arms: list[ArmConfig] = Field(default_factory=list)
    #: the metric the verdict is on (ctr, like_rate, collect_rate, dwell_s, small_creator_share, latency_ms)
    primary: Literal["ctr", "like_rate", "collect_rate", "dwell_s", "small_creator_share", "latency_ms"] = "ctr"
    #: confidence level of the intervals and tests
    level: float = Field(default=0.95, gt=0.5, lt=1.0)

    @field_validator("arms")
    @classmethod
    def _two_distinct(cls, v: list[ArmConfig]) -> list[ArmConfig]:
        if v and len(v) < 2:
            raise ValueError("at least two arms (the first is the control)")
        names = [a.name for a in v]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ, got {names}")
        return v

    @model_validator(mode="after")
    def _name_and_arms(self) -> ExperimentsConfig:
        if (self.name is None) != (not self.arms):
            raise ValueError("an experiment needs both a name and at least two arms (or neither)")
        return self


class DataConfig(_Cfg):
    """What ``serve`` and ``notefeed train`` read of the workspace store's events (the store
    keeps every event): a data window (:func:`notefeed.data.dataset.window_mask`), so that what
    a server and a training run hold in memory stops growing with the community's age."""

    #: 0: every event; N: the events of the newest N days, counted back from the newest event
    window_days: float = Field(default=0.0, ge=0, le=36_500, allow_inf_nan=False)
    #: with a window: each user's newest this many positive events too, whatever their age
    keep_per_user: int = Field(default=200, ge=0, le=1_000_000)


class ServeConfig(_Cfg):
    recall: RecallConfig = Field(default_factory=RecallConfig)
    filters: list[str] = Field(default_factory=lambda: ["builtin/seen"])
    coarse: CoarseConfig = Field(default_factory=CoarseConfig)
    fine: FineConfig = Field(default_factory=FineConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    exposure: ExposureConfig = Field(default_factory=ExposureConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    page: PageConfig = Field(default_factory=PageConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    online: OnlineConfig = Field(default_factory=OnlineConfig)
    coldstart: ColdStartServeConfig = Field(default_factory=ColdStartServeConfig)
    experiments: ExperimentsConfig = Field(default_factory=ExperimentsConfig)
    #: the search stack (``GET /v1/search``): every field of :class:`notefeed.search.SearchConfig`
    search: SearchConfig = Field(default_factory=SearchConfig)
    #: what serving and training read of the store's events
    data: DataConfig = Field(default_factory=DataConfig)

    @model_validator(mode="after")
    def _arm_overlays(self) -> ServeConfig:
        for arm in self.experiments.arms:  # each arm's merged config must be valid on its own
            arm_config(self, arm)
        return self

    def with_overrides(self, **sections: dict[str, Any]) -> ServeConfig:
        """A copy with some sections' fields replaced (validated again)."""
        data = self.model_dump()
        for k, v in sections.items():
            if k not in data:
                raise ConfigError(f"unknown config section {k!r}")
            data[k] = {**data[k], **v} if isinstance(data[k], dict) else v
        return parse_config(data)

    def offline(self) -> ServeConfig:
        """This config for an engine on a private, temporary workspace (training's capture,
        evaluation, tuning, the simulator): its event log and online state its own (SQLite, in
        memory), nothing mirrored into a workspace. A serving config with ``online.backend:
        redis`` otherwise points such an engine at the live stream and state: it replayed the
        live events and wrote its own into the state users are served from."""
        return self.with_overrides(online={"backend": "sqlite", "mirror_to_workspace": False,
                                           "follow_promoted_s": 0.0})


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def arm_config(base: ServeConfig, arm: ArmConfig) -> ServeConfig:
    """``base`` with ``arm.overlay`` merged over it (mappings key by key, lists replaced) and
    no experiment; :class:`ConfigError` names the field as ``experiments.arms.<i>.overlay...``."""
    data = base.model_dump(exclude={"experiments"})
    rr = arm.overlay.get("rerank")
    if isinstance(rr, dict) and "params" not in rr and rr.get("name", data["rerank"]["name"]) != data["rerank"]["name"]:
        del data["rerank"]["params"]  # another re-ranker: its own defaults, not the base one's params
    where = f"experiments.arms.{base.experiments.arms.index(arm)}.overlay" if arm in base.experiments.arms \
        else f"arm {arm.name!r} overlay"
    try:
        return ServeConfig.model_validate(_deep_merge(data, arm.overlay))
    except ValidationError as e:
        raise ValueError(_fmt(e, where).replace(f"{where}: ", f"{where}.", 1).replace("; ", f"; {where}.")) from None


def _fmt(e: ValidationError, source: str) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        if not err["loc"] and err["msg"].startswith("Value error, experiments."):  # an arm's overlay
            parts.append(err["msg"].removeprefix("Value error, "))
            continue
        parts.append(f"{loc}: {err['msg']}")
    return f"{source}: " + "; ".join(parts)


def parse_config(data: dict[str, Any] | None, source: str = "config") -> ServeConfig:
    """Validate a config mapping; :class:`ConfigError` names the bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_fmt(e, source)) from None


def load_config(path: str | Path | None) -> ServeConfig:
    """Load a YAML config (``None``: all defaults)."""
    if path is None:
        return ServeConfig()
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    return parse_config(data, str(p))


def builtin_config() -> ServeConfig:
    """Defaults with built-in components only (no recall/rank/rerank registry entries):
    what ``configs/minimal.yaml`` states; used by tests and as a fallback."""
    return parse_config({
        "recall": {"channels": [{"name": "fresh/recent", "quota": 50},
                                {"name": "non-personalized/popular", "quota": 300}]},
        "coarse": {"scorer": "builtin/popularity"},
        "fine": {"scorer": "builtin/linear"},
        "rerank": {"name": "builtin/author-cap", "params": {"max_per_author": 1, "max_per_category": 4}},
    })
