"""The ground truth of a simulated community: topics, creators, notes, users and follows.

:func:`generate` draws everything from one seed with vectorised numpy. Follower counts are
platform-wide (Pareto: most creators are small, the big ones hold most followers); the simulated
users are a sample of that platform, and their follow graph prefers popular creators and
creators of the topics they like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from notefeed.sim.config import SimConfig
from notefeed.sim.text import Vocabulary, make_vocabulary

__all__ = ["World", "generate_world", "AGE_BUCKETS", "CITIES"]

AGE_BUCKETS = ("<18", "18-24", "25-34", "35-44", "45+")
_AGE_P = (0.08, 0.38, 0.34, 0.13, 0.07)
CITIES = ("Shanghai", "Beijing", "Guangzhou", "Shenzhen", "Hangzhou", "Chengdu", "Wuhan", "Nanjing",
          "Xi'an", "Chongqing", "Suzhou", "Changsha", "Hong Kong", "Taipei", "Singapore", "other")
_CITY_P = np.array([14, 12, 9, 9, 7, 7, 5, 5, 4, 4, 4, 3, 3, 3, 2, 9], float)
_BACKLOG_DAYS = 30


@dataclass
class World:
    """Ground-truth arrays. Notes are indexed in ``created_at`` order.

    Shapes: K topics, D dims, C creators, N notes, U users, E follow edges.
    """

    config: SimConfig
    vocab: Vocabulary
    topic_vecs: np.ndarray  # (K, D) float32, unit rows
    topic_pop: np.ndarray  # (K,) float64, sums to 1
    creator_followers: np.ndarray  # (C,) int64
    creator_topic: np.ndarray  # (C,) int32 specialty
    creator_quality: np.ndarray  # (C,) float32 in [0, 1]
    creator_rate: np.ndarray  # (C,) float64 posting propensity, sums to 1
    note_creator: np.ndarray  # (N,) int32
    note_topics: np.ndarray  # (N, 3) int32, column 0 dominant
    note_topic_w: np.ndarray  # (N, 3) float32, rows sum to 1
    note_vec: np.ndarray  # (N, D) float32, unit rows
    note_quality: np.ndarray  # (N,) float32
    note_created_at: np.ndarray  # (N,) int64, ascending
    note_zh: np.ndarray  # (N,) bool: written in Chinese
    user_interest: np.ndarray  # (U, K) float32, rows sum to 1 (long-term interests)
    user_long: np.ndarray  # (U, D) float32 = interest @ topic_vecs
    user_short_topic: np.ndarray  # (U,) int32 short-term interest at the start
    user_activity: np.ndarray  # (U,) float32, mean 1
    user_age: np.ndarray  # (U,) int8 index into AGE_BUCKETS
    user_gender: np.ndarray  # (U,) int8: 0 f, 1 m
    user_city: np.ndarray  # (U,) int8 index into CITIES
    follow_indptr: np.ndarray  # (U + 1,) int64
    follow_creator: np.ndarray  # (E,) int32, CSR by user

    @property
    def n_notes(self) -> int:
        return len(self.note_creator)

    @property
    def n_users(self) -> int:
        return len(self.user_activity)

    @property
    def n_creators(self) -> int:
        return len(self.creator_followers)

    @property
    def note_topic(self) -> np.ndarray:
        """(N,) int32 dominant topic (the category)."""
        return self.note_topics[:, 0]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def _choice_rows(rng: np.random.Generator, cdf_rows: np.ndarray) -> np.ndarray:
    """One draw per row of a (n, K) row-wise CDF (last column is the row total)."""
    r = rng.random(len(cdf_rows)) * cdf_rows[:, -1]
    return np.minimum((cdf_rows < r[:, None]).sum(axis=1), cdf_rows.shape[1] - 1).astype(np.int32)


def draw_note_topics(rng: np.random.Generator, creator_topic: np.ndarray, topic_pop: np.ndarray,
                     note_creator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) topics and weights: a Dirichlet mixture whose main topic is mostly the creator's specialty."""
    n, k = len(note_creator), len(topic_pop)
    own = creator_topic[note_creator]
    cdf = np.cumsum(topic_pop)
    other = np.minimum(np.searchsorted(cdf, rng.random((n, 3)) * cdf[-1]), k - 1).astype(np.int32)
    t0 = np.where(rng.random(n) < 0.8, own, other[:, 0])
    t1 = (t0 + 1 + (other[:, 1] + rng.integers(0, k - 1, n)) % (k - 1)).astype(np.int32) % k
    t2 = other[:, 2]
    w = -np.sort(-rng.dirichlet([4.0, 1.5, 1.0], size=n), axis=1).astype(np.float32)
    # a repeated topic pools its weight so that column 0 stays the dominant topic
    same2 = (t2 == t0)[:, None]
    w[:, 0] += np.where(same2[:, 0], w[:, 2], 0)
    w[:, 1] += np.where(t2 == t1, w[:, 2], 0)
    w[:, 2] = np.where((t2 == t0) | (t2 == t1), 0, w[:, 2])
    swap = w[:, 1] > w[:, 0]
    topics = np.stack([np.where(swap, t1, t0), np.where(swap, t0, t1), t2], axis=1).astype(np.int32)
    w[swap, 0], w[swap, 1] = w[swap, 1], w[swap, 0].copy()
    return topics, w


def note_vectors(rng: np.random.Generator, topic_vecs: np.ndarray, topics: np.ndarray,
                 weights: np.ndarray, noise: float = 0.6) -> np.ndarray:
    """(N, D) unit latent vectors: the topic mixture plus personal noise."""
    n, d = len(topics), topic_vecs.shape[1]
    v = rng.standard_normal((n, d), dtype=np.float32) * np.float32(noise / np.sqrt(d))
    for j in range(topics.shape[1]):
        v += weights[:, j : j + 1] * topic_vecs[topics[:, j]]
    return _unit(v)


def cohesion_draws(cfg: SimConfig, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """(each topic's group (K,), which users are cohesive (U,)) for ``interest_cohesion``, from
    their own random stream (the world's other draws stay as they are)."""
    crng = np.random.default_rng([cfg.seed, 0xC0DE5])
    group = crng.permutation(np.arange(cfg.n_topics) % cfg.topic_groups)  # near-equal group sizes
    return group, crng.random(n_users) < cfg.interest_cohesion


def _cohere(keys: np.ndarray, cfg: SimConfig) -> np.ndarray:
    """Interest draw keys (U, K) with ``interest_cohesion``: for a cohesive user every topic of
    their first interest's group (the top key's) goes ahead of every other topic, each side
    keeping its popularity-weighted order."""
    group, cohesive = cohesion_draws(cfg, keys.shape[0])
    first = group[np.argmax(keys, axis=1)]
    same = (group[None, :] == first[:, None]) & cohesive[:, None]
    return keys + np.where(same, np.float64(1e6), 0.0)


def generate_world(config: SimConfig) -> World:
    """Draw the ground truth of ``config`` (validated) from ``config.seed``."""
    cfg = config.validate()
    rng = np.random.default_rng(cfg.seed)
    k, d, c, n, u = cfg.n_topics, cfg.dim, cfg.n_creators, cfg.n_notes, cfg.n_users
    vocab = make_vocabulary(rng, k, cfg.words_per_topic, cfg.n_tags)
    topic_vecs = _unit(rng.standard_normal((k, d)).astype(np.float32))
    topic_pop = 1.0 / np.arange(1, k + 1) ** 0.8
    topic_pop = topic_pop[rng.permutation(k)]
    topic_pop /= topic_pop.sum()

    # creators: Pareto followers, a specialty, a quality that grows a little with reach
    raw = cfg.follower_min * (1.0 - rng.random(c)) ** (-1.0 / cfg.follower_alpha)
    followers = np.minimum(raw, cfg.follower_max).astype(np.int64)
    creator_topic = np.minimum(np.searchsorted(np.cumsum(topic_pop), rng.random(c)), k - 1).astype(np.int32)
    reach = np.log10(followers) / np.log10(max(cfg.follower_max, 10))
    creator_quality = np.clip(0.7 * rng.beta(2.0, 2.0, c) + 0.3 * reach, 0, 1).astype(np.float32)
    rate = rng.lognormal(0.0, 1.0, c) * (1.0 + reach)
    rate /= rate.sum()

    # notes: every creator posts at least one; the rest by posting propensity; sorted by time
    note_creator = np.concatenate([np.arange(c), rng.choice(c, size=n - c, p=rate)]).astype(np.int32)
    start = cfg.start_ts
    backlog = rng.random(n) < cfg.backlog_share
    created = np.where(
        backlog,
        start - rng.integers(1, _BACKLOG_DAYS * 86400, n),
        start + rng.integers(0, cfg.history_days * 86400, n),
    ).astype(np.int64)
    order = np.argsort(created, kind="stable")
    note_creator, created = note_creator[order], created[order]
    topics, tw = draw_note_topics(rng, creator_topic, topic_pop, note_creator)
    note_vec = note_vectors(rng, topic_vecs, topics, tw)
    note_quality = np.clip(creator_quality[note_creator] + rng.normal(0, 0.15, n), 0, 1).astype(np.float32)
    note_zh = rng.random(n) < cfg.chinese_share

    # users: a few long-term interests (Dirichlet weights over popular topics)
    n_int = np.minimum(1 + rng.poisson(max(cfg.interests_per_user - 1.0, 0.0), u), min(k, 6))
    gumbel = np.log(topic_pop)[None, :] - np.log(-np.log(rng.random((u, k))))
    if cfg.interest_cohesion > 0:
        gumbel = _cohere(gumbel, cfg)
    ranked = np.argsort(-gumbel, axis=1)[:, : int(n_int.max())]
    g = rng.gamma(1.0, 1.0, ranked.shape) * (np.arange(ranked.shape[1])[None, :] < n_int[:, None])
    interest = np.zeros((u, k), np.float32)
    np.put_along_axis(interest, ranked, (g / g.sum(axis=1, keepdims=True)).astype(np.float32), axis=1)
    user_long = _unit(interest @ topic_vecs)
    short = _choice_rows(rng, np.cumsum(interest, axis=1))
    activity = rng.lognormal(0.0, 0.8, u)
    activity = (activity / activity.mean()).astype(np.float32)
    age = rng.choice(len(AGE_BUCKETS), size=u, p=_AGE_P).astype(np.int8)
    gender = (rng.random(u) < 0.3).astype(np.int8)
    city = rng.choice(len(CITIES), size=u, p=_CITY_P / _CITY_P.sum()).astype(np.int8)

    # follow graph: topic by interest, then creator within the topic by popularity
    n_follow = np.minimum(rng.poisson(cfg.follows_per_user * np.sqrt(activity)), c)
    fu = np.repeat(np.arange(u, dtype=np.int64), n_follow)
    has = np.bincount(creator_topic, minlength=k) > 0
    tcdf = np.cumsum((interest + 0.02 / k) * has[None, :], axis=1)
    ft = _choice_rows(rng, tcdf[fu]) if len(fu) else np.zeros(0, np.int32)
    by_topic = np.lexsort((np.arange(c), creator_topic))
    pop = followers[by_topic].astype(np.float64) ** 0.8
    pcum = np.cumsum(pop)
    tstart = np.searchsorted(creator_topic[by_topic], np.arange(k + 1))
    lo = np.where(tstart[ft] > 0, pcum[tstart[ft] - 1], 0.0)
    hi = pcum[tstart[ft + 1] - 1]
    pos = np.searchsorted(pcum, lo + rng.random(len(ft)) * (hi - lo), side="right")
    fc = by_topic[np.clip(pos, tstart[ft], tstart[ft + 1] - 1)]
    pairs = np.unique(fu * c + fc)
    fu, fc = pairs // c, (pairs % c).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(fu, minlength=u))]).astype(np.int64)

    return World(cfg, vocab, topic_vecs, topic_pop, followers, creator_topic, creator_quality, rate,
                 note_creator, topics, tw, note_vec, note_quality, created, note_zh, interest, user_long,
                 short, activity, age, gender, city, indptr, fc)
