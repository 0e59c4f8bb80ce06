"""A synthetic interaction log for recall speed benchmarks (shapes like a content feed).

Users have 1-3 topics; notes belong to one topic; within a topic, note popularity is Zipf
(a few hits, a long tail); 20% of events are global-popularity noise. Users' activity is
heavy-tailed too. Only for timing: quality figures come from real datasets.
"""

from __future__ import annotations

import numpy as np

__all__ = ["synthetic_log"]


def synthetic_log(
    n_events: int,
    n_users: int | None = None,
    n_items: int | None = None,
    n_topics: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Return ``(users, items, ts, n_users, n_items)``: (n_events,) int64 arrays, time-ordered."""
    if n_events <= 0:
        raise ValueError("synthetic_log: 'n_events' must be positive")
    rng = np.random.default_rng(seed)
    n_users = n_users or max(100, n_events // 25)
    n_items = n_items or max(100, n_events // 25)
    n_topics = max(1, min(n_topics, n_items // 10))
    activity = rng.pareto(1.5, n_users) + 1.0
    users = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    # each user's topic: one of three seeded by the user id
    user_topics = rng.integers(0, n_topics, size=(n_users, 3))
    slot = np.minimum(rng.geometric(0.6, n_events) - 1, 2)
    topic = user_topics[users, slot]
    per_topic = n_items // n_topics
    rank = np.minimum(rng.zipf(1.2, n_events) - 1, per_topic - 1)
    items = topic * per_topic + rank
    noise = rng.random(n_events) < 0.2
    items[noise] = np.minimum(rng.zipf(1.1, int(noise.sum())) - 1, n_items - 1)
    ts = np.sort(rng.integers(0, 30 * 86400, n_events))
    return users.astype(np.int64), items.astype(np.int64), ts.astype(np.int64), n_users, n_items
