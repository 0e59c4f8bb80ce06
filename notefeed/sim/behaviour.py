"""The behaviour model: how a simulated user reacts to one impression. Pure array functions.

For an impression at position ``p`` (0-based):

    P(click) = (1 + p) ** -eta * fatigue * sigmoid(a * affinity + b * (quality - 0.5) + c)
    fatigue  = repeat_decay ** n_seen * topic_decay ** max(0, n_same_topic - topic_free)

Given a click, like / collect / comment / share / follow each happen with
``sigmoid(action_a * affinity + action_b * (quality - 0.5) + intercept)`` (intercepts ordered so
like > collect > comment > share > follow); dwell seconds are lognormal with a log-mean that
grows with affinity and quality. Without a click, a low-affinity impression is sometimes hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from notefeed.sim.config import BehaviourParams

__all__ = [
    "ACTIONS",
    "sigmoid",
    "position_bias",
    "fatigue",
    "click_probability",
    "action_probabilities",
    "expected_engagement",
    "Reactions",
    "sample_reactions",
]

#: Post-click actions, in the order of :func:`action_probabilities`' columns.
ACTIONS = ("like", "collect", "comment", "share", "follow")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def position_bias(position: np.ndarray, params: BehaviourParams) -> np.ndarray:
    """(n,) examination probability of 0-based ``position`` (1 at the top)."""
    return (1.0 + np.asarray(position, dtype=np.float32)) ** np.float32(-params.position_eta)


def fatigue(n_seen: np.ndarray, n_same_topic: np.ndarray, params: BehaviourParams) -> np.ndarray:
    """(n,) multiplier in (0, 1]: earlier exposures of the note and recent same-topic impressions."""
    over = np.maximum(0.0, np.asarray(n_same_topic, np.float32) - params.topic_free)
    return (params.repeat_decay ** np.asarray(n_seen, np.float32)) * (params.topic_decay ** over)


def click_probability(affinity: np.ndarray, quality: np.ndarray, position: np.ndarray,
                      n_seen: np.ndarray | float, n_same_topic: np.ndarray | float,
                      params: BehaviourParams) -> np.ndarray:
    """(n,) P(click) of impressions with the given (n,) affinity, quality, position and history."""
    base = sigmoid(params.click_a * affinity + params.click_b * (quality - 0.5) + params.click_c)
    return (position_bias(position, params) * fatigue(n_seen, n_same_topic, params) * base).astype(np.float32)


def action_probabilities(affinity: np.ndarray, quality: np.ndarray, params: BehaviourParams) -> np.ndarray:
    """(n, 5) P(action | click) for :data:`ACTIONS`."""
    z = params.action_a * affinity + params.action_b * (quality - 0.5)
    c = np.array([params.like_c, params.collect_c, params.comment_c, params.share_c, params.follow_c], np.float32)
    return sigmoid(z[:, None] + c[None, :]).astype(np.float32)


def expected_engagement(affinity: np.ndarray, quality: np.ndarray, params: BehaviourParams,
                        n_seen: np.ndarray | float = 0.0, n_same_topic: np.ndarray | float = 0.0) -> np.ndarray:
    """(n,) expected positive actions of an impression at the top position:
    P(click) * (1 + sum of P(action | click)), follows excluded."""
    pc = click_probability(affinity, quality, np.zeros(len(affinity), np.int32), n_seen, n_same_topic, params)
    return pc * (1.0 + action_probabilities(affinity, quality, params)[:, :4].sum(axis=1))


@dataclass
class Reactions:
    """Sampled outcome of n impressions: (n,) bool per event, (n,) dwell (NaN without a click)."""

    click: np.ndarray
    actions: np.ndarray  # (n, 5) bool, columns as ACTIONS
    hide: np.ndarray
    dwell_s: np.ndarray


def sample_reactions(rng: np.random.Generator, affinity: np.ndarray, quality: np.ndarray,
                     position: np.ndarray, n_seen: np.ndarray | float, n_same_topic: np.ndarray | float,
                     params: BehaviourParams) -> Reactions:
    """Draw clicks, post-click actions, hides and dwell for (n,) impressions."""
    n = len(affinity)
    pc = click_probability(affinity, quality, position, n_seen, n_same_topic, params)
    click = rng.random(n, dtype=np.float32) < pc
    acts = np.zeros((n, len(ACTIONS)), bool)
    dwell = np.full(n, np.nan, np.float32)
    ci = np.flatnonzero(click)
    if len(ci):
        pa = action_probabilities(affinity[ci], quality[ci], params)
        acts[ci] = rng.random(pa.shape, dtype=np.float32) < pa
        mu = np.log(params.dwell_base) + params.dwell_a * affinity[ci] + params.dwell_b * quality[ci]
        dwell[ci] = np.minimum(rng.lognormal(mu, params.dwell_sigma).astype(np.float32), 3600.0)
    ph = params.hide_max * sigmoid(-params.hide_a * affinity - 2.0)
    hide = (~click) & (rng.random(n, dtype=np.float32) < ph)
    return Reactions(click, acts, hide, dwell)
