"""notefeed.sim: a seeded community simulator and a closed-loop environment.

``generate("demo")`` draws a community (topics, creators with power-law followers, notes with
text and tags, users with long- and short-term interests, a follow graph); ``.history()`` logs
a policy's impressions and the users' reactions as a :class:`~notefeed.data.Dataset`;
:class:`SimEnvironment` and :func:`run_closed_loop` measure policies online.
"""

from notefeed.sim import coldstart as _coldstart  # noqa: F401  (registers the +coldstart policies)
from notefeed.sim import datasets as _datasets  # noqa: F401  (registers the sim-* dataset loaders)
from notefeed.sim.community import Community, generate, sim_dataset
from notefeed.sim.config import PRESETS, BehaviourParams, SimConfig, SimConfigError, preset
from notefeed.sim.env import SimEnvironment
from notefeed.sim.loop import gini, intra_list_diversity, run_closed_loop
from notefeed.sim.policies import POLICIES, OraclePolicy, Policy, PopularPolicy, RandomPolicy, make_policy

__all__ = [
    "BehaviourParams",
    "Community",
    "OraclePolicy",
    "POLICIES",
    "PRESETS",
    "Policy",
    "PopularPolicy",
    "RandomPolicy",
    "SimConfig",
    "SimConfigError",
    "SimEnvironment",
    "generate",
    "gini",
    "intra_list_diversity",
    "make_policy",
    "preset",
    "run_closed_loop",
    "sim_dataset",
]
