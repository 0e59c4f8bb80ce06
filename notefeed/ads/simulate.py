"""A small ad world on a synthetic topic model, with ground truth for water-level metrics.

``K`` topics each own ``V`` made-up words with Zipf frequencies (and one made-up *alias* per
word that no ad contains: users who type it need a rewrite). An ad has a dominant topic (weight
0.7) and a second one (0.3); its creative is words drawn from that mixture; its advertiser bids
on 3 keywords taken from the *popular* words of the dominant topic (as advertisers do), with a
random match type. Users have Dirichlet topic interests. A query is 1-3 words of a topic the
user draws from their interests; ``alias_share`` of the words are typed as aliases.

Ground truth for (user u, query of topic t, ad a): the true click probability is
``base_ctr x quality_a x share_a(t) x (0.5 + K x interest_u(t_a) / 2)`` (capped at 0.9); an ad
users *would click* has it >= ``click_min``; one they *would convert on* in addition has a
true CVR (``cvr_a x`` the same interest factor) >= ``cvr_min``: 0.1, about the mean of the
ads' own CVRs (Beta(2, 20): 0.091), i.e. the ad converts this user at least as well as the
average ad converts the average user; about 70% of the would-click pairs (at 0.05, the value
until 2026-12, 88%: the conversion set was almost the click set). An ad with no share of the
query's topic is *irrelevant* (noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AdWorld", "make_world", "Query", "sample_queries", "tiers"]


@dataclass
class AdWorld:
    words: np.ndarray  # (K, V) object: topic words, most frequent first
    aliases: np.ndarray  # (K, V) object
    word_p: np.ndarray  # (V,) Zipf probabilities of a topic's words by rank
    ad_topics: np.ndarray  # (n_ads, 2) int: dominant, second
    ad_share: np.ndarray  # (n_ads, K) float: topic weights
    ad_texts: list[str]
    ad_keywords: list[list[tuple[str, str]]]  # per ad: (text, match)
    quality: np.ndarray  # (n_ads,)
    cvr: np.ndarray  # (n_ads,)
    bid: np.ndarray  # (n_ads,) CPC bid or target CPA
    ocpc: np.ndarray  # (n_ads,) bool
    budget: np.ndarray  # (n_ads,) daily budget (one campaign per ad)
    interest: np.ndarray  # (n_users, K)
    base_ctr: float = 0.08
    click_min: float = 0.04
    cvr_min: float = 0.1

    @property
    def n_ads(self) -> int:
        return len(self.ad_texts)

    def factor(self, user: int) -> np.ndarray:
        """(n_ads,) the user's interest factor for each ad's dominant topic."""
        k = self.interest.shape[1]
        return 0.5 + k * self.interest[user, self.ad_topics[:, 0]] / 2.0

    def true_ctr(self, user: int, topic: int) -> np.ndarray:
        return np.minimum(0.9, self.base_ctr * self.quality * self.ad_share[:, topic] * self.factor(user))

    def true_cvr(self, user: int) -> np.ndarray:
        return np.minimum(0.9, self.cvr * self.factor(user))


def _pseudo(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    letters = np.array(list("abcdefghijklmnoprstuvwyz"))
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(letters, int(rng.integers(4, 8))))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def make_world(n_topics: int = 30, n_words: int = 30, n_ads: int = 1500, n_users: int = 2000,
               seed: int = 0) -> AdWorld:
    rng = np.random.default_rng(seed)
    taken: set[str] = set()
    words = np.array(_pseudo(rng, n_topics * n_words, taken), dtype=object).reshape(n_topics, n_words)
    aliases = np.array(_pseudo(rng, n_topics * n_words, taken), dtype=object).reshape(n_topics, n_words)
    word_p = 1.0 / np.arange(1, n_words + 1) ** 1.1
    word_p /= word_p.sum()
    dom = rng.integers(0, n_topics, n_ads)
    sec = (dom + rng.integers(1, n_topics, n_ads)) % n_topics
    share = np.zeros((n_ads, n_topics))
    share[np.arange(n_ads), dom] = 0.7
    share[np.arange(n_ads), sec] += 0.3
    texts, kws = [], []
    match_types = np.array(["exact", "phrase", "broad"])
    for a in range(n_ads):
        n_w = int(rng.integers(6, 14))
        tops = np.where(rng.random(n_w) < 0.7, dom[a], sec[a])
        texts.append(" ".join(words[t, rng.choice(n_words, p=word_p)] for t in tops))
        kw = []
        for _ in range(3):
            n_k = int(rng.integers(1, 3))
            ranks = rng.choice(8, size=n_k, replace=False)
            kw.append((" ".join(words[dom[a], r] for r in ranks), str(rng.choice(match_types, p=[0.3, 0.3, 0.4]))))
        kws.append(kw)
    bid = rng.lognormal(0.0, 0.4, n_ads)
    ocpc = rng.random(n_ads) < 0.3
    cvr = rng.beta(2, 20, n_ads)
    bid = np.where(ocpc, bid / 0.1, bid)  # target CPA ~ CPC / typical CVR
    budget = rng.lognormal(np.log(4.0), 0.5, n_ads)
    interest = rng.dirichlet(np.full(n_topics, 0.3), n_users)
    return AdWorld(words, aliases, word_p, np.column_stack([dom, sec]), share, texts, kws,
                   rng.lognormal(0.0, 0.4, n_ads), cvr, bid, ocpc, budget, interest)


@dataclass
class Query:
    text: str
    user: int
    topic: int


def sample_queries(w: AdWorld, n: int, users: np.ndarray, rng: np.random.Generator,
                   alias_share: float = 0.15) -> list[Query]:
    k, v = w.words.shape
    out = []
    for _ in range(n):
        u = int(rng.choice(users))
        t = int(rng.choice(k, p=w.interest[u]))
        ranks = rng.choice(v, size=int(rng.integers(1, 4)), replace=False, p=w.word_p)
        toks = [w.aliases[t, r] if rng.random() < alias_share else w.words[t, r] for r in ranks]
        out.append(Query(" ".join(toks), u, t))
    return out


def tiers(log: list[Query]) -> dict[str, str]:
    """Query text -> ``head`` / ``torso`` / ``tail``: unique queries by frequency in ``log``,
    cut where the cumulative traffic passes 1/3 and 2/3."""
    texts, counts = np.unique([q.text for q in log], return_counts=True)
    o = np.argsort(-counts, kind="stable")
    cum = np.cumsum(counts[o]) / counts.sum()
    names = np.where(cum <= 1 / 3, "head", np.where(cum <= 2 / 3, "torso", "tail"))
    return {str(texts[i]): str(names[j]) for j, i in enumerate(o)}
