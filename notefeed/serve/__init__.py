"""notefeed.serve: the feed pipeline (product-mixer style), the engine and the HTTP API.

``Engine(ds, config, workspace)`` wires catalogue, pipelines, online state, event bus and the
hot-swappable model; ``create_app(engine)`` is the FastAPI app; ``notefeed serve`` runs it.
"""

from notefeed.serve.config import ConfigError, ServeConfig, builtin_config, load_config, parse_config
from notefeed.serve.pipeline import (
    CandidateSet,
    FeedResult,
    Filter,
    FilterResult,
    Pipeline,
    PipelineScorer,
    Selector,
    SideCandidates,
    Step,
)

__all__ = [
    "ConfigError",
    "ServeConfig",
    "builtin_config",
    "load_config",
    "parse_config",
    "CandidateSet",
    "FeedResult",
    "Filter",
    "FilterResult",
    "Pipeline",
    "PipelineScorer",
    "Selector",
    "SideCandidates",
    "Step",
]
