"""The organic cost of feed ads in the closed-loop feed simulator (:mod:`notefeed.sim`).

Advertisers promote catalogue notes (note ads: one campaign per promoted note, CPC bid
lognormal). Each request gets the organic page of a recommender policy (``popular`` by default,
which learns from the organic clicks it caused), then up to ``slots`` ads chosen by a GSP
auction are placed into it the way the serving side does (:func:`~notefeed.ads.auction.place_ads`:
first ad at position 2, 4 organic notes between ads, at most 20% of the page). The simulated
users react to the merged page: the ads push organic notes down (position bias), add to the
topic fatigue of the notes after them and take "seen" budget, so organic clicks can fall.

The auction sees what a server could: each ad's smoothed CTR from its own impressions so far
and, for targeted ads (``interest``), the share of the user's clicks so far in the promoted
note's topic (pCTR = smoothed CTR x (0.5 + share)); ``random`` ads ignore the user (pCTR = the
smoothed CTR). A note already on the page or already seen by the user is not an ad candidate.

Arms run on the same world and seed (paired): ``none`` (no ads) and each (targeting, slots).
The cost is the organic clicks per request relative to ``none`` (and the organic CTR per
organic impression), with per-seed paired differences and a Student-t 95% interval.
``notefeed eval --stage ads --param ads.load=feed`` runs it.

The recall study (:func:`feed_recall_study`, ``ads.load=feed-recall``) recalls feed ads the way
serving does (``notefeed/serve/adslots.py``) and compares the recall settings at equal ad load:
``category`` (``category/interest`` alone: ads of the top-5 categories of the user's last 30
clicked notes, scored by the category's share; the feed's counterpart of keyword-only recall, as
feed requests have no query) and ``category+semantic`` (plus ``semantic/text``: ads by cosine
to the mean text vector of those notes), merged with serving's quotas (60 / 40 of 100); pCTR =
smoothed CTR x (0.5 + the best channel score), relevance floor 0.05, GSP. Equal load: the
``category+semantic`` arm gets, on the i-th request of each step, as many slots as the
``category`` arm filled on its i-th request (the request streams are drawn alike but the
users' responses differ, so this is equal load request index by request index).
"""

from __future__ import annotations

import time

import numpy as np

from notefeed.ads.auction import gsp_auction, place_ads
from notefeed.ads.evaluate import CLOSED_LOOP, _ci95, paired_columns
from notefeed.ads.recall import SERVING_DEFAULTS
from notefeed.sim.community import generate
from notefeed.sim.env import SimEnvironment
from notefeed.sim.policies import make_policy

__all__ = ["ARMS", "RECALL_ARMS", "run_feed_ads", "feed_ads_study", "feed_recall_study"]

#: (name, targeting, ad slots per page)
ARMS: tuple[tuple[str, str, int], ...] = (("none", "none", 0), ("interest-1", "interest", 1),
                                          ("interest-2", "interest", 2), ("random-2", "random", 2))
#: the recall study: (name, recall, ad slots per page); the last arm runs at the load of the one before
RECALL_ARMS: tuple[tuple[str, str, int], ...] = (("none", "none", 0), ("category", "category", 2),
                                                 ("category+semantic", "category+semantic", 2))
_RECALL = ("category", "category+semantic")
# serving's feed-ad recall settings (AdSlotsConfig's defaults come from the same place)
HISTORY_LEN, RECALL_K, FLOOR = (SERVING_DEFAULTS[k] for k in ("history_len", "recall_k", "relevance_floor"))
QUOTAS = tuple(SERVING_DEFAULTS["quotas"][c] for c in ("category/interest", "semantic/text"))


class _FeedAdRecall:
    """Serving's feed-ad recall over the promoted notes: ``category/interest`` and, with
    ``semantic``, ``semantic/text`` by the user's history vector, merged by quotas."""

    def __init__(self, env: object, ad_note: np.ndarray, bid: np.ndarray, semantic: bool, seed: int) -> None:
        from notefeed.content.text import TextEncoder

        self.topic = env.item_topic  # type: ignore[attr-defined]
        ad_topic = self.topic[ad_note]
        self.by_topic = {int(t): np.array(sorted(np.flatnonzero(ad_topic == t), key=lambda j: (-bid[j], j)), np.int64)
                         for t in np.unique(ad_topic)}
        self.semantic = semantic
        if semantic:
            notes = env.notes_frame()  # type: ignore[attr-defined]
            texts = (notes["title"].astype(str) + " " + notes["text"].astype(str) + " "
                     + notes["category"].astype(str)).tolist()
            self.item_vecs = TextEncoder(dim=64, seed=seed).fit(texts).transform(texts)
            self.ad_vecs = self.item_vecs[ad_note]

    def retrieve(self, hist: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ad rows (n,), relevance (n,): the best channel score of each) for a user's history,
        through serving's recall kernels (:mod:`notefeed.ads.recall`)."""
        from notefeed.ads.base import AdCandidates
        from notefeed.ads.recall import best_scores, category_candidates, interest_shares, merge_quotas

        if not hist:
            return np.zeros(0, np.int64), np.zeros(0)
        shares = interest_shares([int(t) for t in self.topic[hist]])
        results = [category_candidates(self.by_topic, shares, RECALL_K)]
        if self.semantic:
            v = self.item_vecs[hist].mean(axis=0)
            v = v / max(float(np.linalg.norm(v)), 1e-12)
            sc = self.ad_vecs @ v
            o = np.argsort(-sc, kind="stable")[:RECALL_K]
            o = o[sc[o] > 0]
            results.append(AdCandidates(o.astype(np.int64), sc[o].astype(np.float32), ["semantic/text"] * len(o)))
        merged = merge_quotas(results, list(QUOTAS[: len(results)]), RECALL_K)
        return merged.ids, best_scores(results, merged.ids)


def run_feed_ads(seed: int, targeting: str, slots: int, steps: int = 30, requests_per_step: int = 200,
                 page_size: int = 10, n_ads: int = 300, preset: str = "demo", policy: str = "popular",
                 reserve: float = 0.05, community: object = None,
                 slot_plan: list[list[int]] | None = None, history: dict[int, list[int]] | None = None) -> dict:
    """One closed-loop run; the world, the ads and the request stream depend on ``seed`` only
    (``community``: the generated world of ``preset`` and ``seed``, to reuse across arms).
    ``targeting``: ``none``, ``interest``, ``random`` (every ad a candidate) or a recall setting,
    ``category`` / ``category+semantic`` (:class:`_FeedAdRecall`). ``slot_plan[step][i]``
    overrides ``slots`` on the i-th request of each step (equal load); the result's ``placed``
    is the plan this run filled. ``history``: each user's clicked notes before the run, oldest
    first (the recall reads the last 30 of these and of the run's clicks)."""
    if targeting not in ("none", "interest", "random", *_RECALL):
        raise ValueError(f"run_feed_ads: targeting must be none, interest, random, {', '.join(_RECALL)}; "
                         f"got {targeting!r}")
    if community is None:
        community = generate(preset, seed=seed)
    env = SimEnvironment(community, seed=seed)  # a live copy: the community is not changed
    pol = make_policy(policy, seed=seed)
    arng = np.random.default_rng(seed + 31)  # the advertisers: the same in every arm
    ad_note = arng.choice(env.n_items, size=min(n_ads, env.n_items), replace=False).astype(np.int64)
    bid = arng.lognormal(0.0, 0.4, len(ad_note))
    ad_topic = env.item_topic[ad_note]
    k_topics = int(env.item_topic.max()) + 1
    shown, clicked = np.zeros(len(ad_note)), np.zeros(len(ad_note))
    prior_ctr, prior_w = 0.05, 20.0
    user_topic = np.zeros((env.n_users, k_topics))  # the user's clicks so far, by topic (observable)
    recall = _FeedAdRecall(env, ad_note, bid, targeting == "category+semantic", seed) if targeting in _RECALL else None
    hist = {u: list(v) for u, v in (history or {}).items()}  # clicked notes so far (observable), for the recall
    placed: list[list[int]] = []
    tot = {"requests": 0, "organic_imp": 0, "organic_click": 0, "ad_imp": 0, "ad_click": 0, "revenue": 0.0,
           "organic_like": 0}
    t0 = time.perf_counter()
    for step in range(steps):
        users = env.sample_requests(requests_per_step)
        pages, is_ad, prices = [], [], []
        placed.append([])
        for i_req, u in enumerate(users.tolist()):
            organic = np.asarray(pol.recommend(env, u, page_size), np.int64)[:page_size]
            winners: list[int] = []
            price: list[float] = []
            n_slots = slots if slot_plan is None else slot_plan[step][i_req]
            if recall is not None and n_slots > 0:
                cand, rel = recall.retrieve(hist.get(u, [])[-HISTORY_LEN:])
                seen = env.seen_items(u)
                ok = ~np.isin(ad_note[cand], organic) & ~np.isin(ad_note[cand], seen) & (rel >= FLOOR)
                cand, rel = cand[ok], rel[ok]
                if len(cand):
                    pctr = (clicked[cand] + prior_ctr * prior_w) / (shown[cand] + prior_w) * (0.5 + rel)
                    res = gsp_auction(bid[cand], pctr, n_slots, reserve)
                    winners = cand[res.winners].tolist()
                    price = res.prices.tolist()
            elif recall is None and slots > 0:
                seen = env.seen_items(u)
                ok = ~np.isin(ad_note, organic) & ~np.isin(ad_note, seen)
                cand = np.flatnonzero(ok)
                if len(cand):
                    ctr = (clicked[cand] + prior_ctr * prior_w) / (shown[cand] + prior_w)
                    if targeting == "interest":
                        tot_u = user_topic[u].sum()
                        share = user_topic[u, ad_topic[cand]] / tot_u if tot_u > 0 else np.zeros(len(cand))
                        ctr = ctr * (0.5 + share)
                    res = gsp_auction(bid[cand], ctr, slots, reserve)
                    winners = cand[res.winners].tolist()
                    price = res.prices.tolist()
            layout = place_ads(len(organic), len(winners), 2, 4, 0.2)
            placed[-1].append(sum(kind == "ad" for kind, _ in layout))
            page = [int(organic[j]) if kind == "note" else int(ad_note[winners[j]]) for kind, j in layout]
            flags = [kind == "ad" for kind, _ in layout]
            pr = [price[j] if kind == "ad" else 0.0 for kind, j in layout]
            pages.append(np.array(page, np.int64))
            is_ad.append(np.array(flags, bool))
            prices.append(np.array(pr))
            for kind, j in layout:
                if kind == "ad":
                    shown[winners[j]] += 1
        ev = env.respond_batch(users, pages)
        req = ev["request_id"].str.slice(6).astype(int).to_numpy()
        req = req - req.min() if len(req) else req
        pos = ev["position"].to_numpy()
        ad_flag = np.array([is_ad[r][p] for r, p in zip(req.tolist(), pos.tolist(), strict=True)], bool)
        typ = ev["type"].to_numpy()
        items = ev["item"].to_numpy()
        clicks = typ == "click"
        tot["requests"] += len(users)
        tot["organic_imp"] += int(((typ == "impression") & ~ad_flag).sum())
        tot["organic_click"] += int((clicks & ~ad_flag).sum())
        tot["organic_like"] += int(((typ == "like") & ~ad_flag).sum())
        tot["ad_imp"] += int(((typ == "impression") & ad_flag).sum())
        tot["ad_click"] += int((clicks & ad_flag).sum())
        row_of = {int(n): k for k, n in enumerate(ad_note.tolist())}
        for r, p, i in zip(req[clicks & ad_flag].tolist(), pos[clicks & ad_flag].tolist(),
                           items[clicks & ad_flag].tolist(), strict=True):
            clicked[row_of[int(i)]] += 1
            tot["revenue"] += float(prices[r][p])
        cu = ev["user"].to_numpy()[clicks]
        np.add.at(user_topic, (cu, env.item_topic[items[clicks]]), 1.0)
        if recall is not None:
            for cu_i, it in zip(cu.tolist(), items[clicks].tolist(), strict=True):
                hist.setdefault(int(cu_i), []).append(int(it))
        pol.observe(ev[~ad_flag])  # the recommender learns from its own (organic) results only
        env.advance(600)
    n = max(tot["requests"], 1)
    return {"seed": seed, "arm_targeting": targeting, "slots": slots, "requests": float(tot["requests"]),
            "organic_clicks_per_request": tot["organic_click"] / n,
            "organic_ctr": tot["organic_click"] / max(tot["organic_imp"], 1),
            "organic_likes_per_request": tot["organic_like"] / n,
            "ads_per_request": tot["ad_imp"] / n, "ad_ctr": tot["ad_click"] / max(tot["ad_imp"], 1),
            "revenue_per_1k_requests": 1000 * tot["revenue"] / n,
            "cpm": 1000 * tot["revenue"] / max(tot["ad_imp"], 1), "wall_s": time.perf_counter() - t0,
            "placed": placed}


def feed_ads_study(seeds: list[int], steps: int = 30, requests_per_step: int = 200, **kw: object) -> list[dict]:
    """Every arm on every seed; rows per arm with the mean, and the paired per-seed relative
    change to ``none`` of the organic metrics with a 95% interval."""
    runs = {}
    for s in seeds:
        community = generate(str(kw.get("preset", "demo")), seed=s)
        for name, targ, slots in ARMS:
            runs[(name, s)] = run_feed_ads(s, targ, slots, steps, requests_per_step,  # type: ignore[arg-type]
                                           community=community, **kw)
    out = []
    for name, targ, slots in ARMS:
        mine = [runs[(name, s)] for s in seeds]
        row: dict = {"dataset": "sim-feed", "method": name, "channel": "feed-ads-closed-loop", "tier": "all",
                     "targeting": targ, "slots": slots, "seeds": len(seeds), "steps": steps,
                     "requests_per_step": requests_per_step}
        for m in ("organic_clicks_per_request", "organic_ctr", "organic_likes_per_request", "ads_per_request",
                  "ad_ctr", "revenue_per_1k_requests", "cpm"):
            v = np.array([r[m] for r in mine])
            row[m] = round(float(v.mean()), 5)
            row[m + "_std"] = round(float(v.std()), 5)
            if name != "none" and m.startswith("organic"):
                d = np.array([r[m] / runs[("none", r["seed"])][m] - 1 for r in mine])
                row[m + "_vs_none"] = round(float(d.mean()), 4)
                row[m + "_vs_none_ci95"] = _ci95(d)
        row["wall_s"] = round(float(sum(r["wall_s"] for r in mine)), 1)
        out.append(row)
    return out


def logged_clicks(community: object) -> dict[int, list[int]]:
    """Each user's clicked notes in the community's logged history (the data a workspace would
    hold before the run), oldest first; users and notes as the simulator's indices."""
    ev = community.history().events  # type: ignore[attr-defined]
    ev = ev[ev["type"] == "click"].sort_values("ts", kind="stable")
    out: dict[int, list[int]] = {}
    for u, i in zip(ev["user"].tolist(), ev["item"].tolist(), strict=True):
        out.setdefault(int(u), []).append(int(i))
    return out


def feed_recall_study(seeds: list[int], steps: int = 30, requests_per_step: int = 200, **kw: object) -> list[dict]:
    """``none``, ``category`` and ``category+semantic`` (at the load ``category`` filled, request
    index by request index) on every seed; rows per arm with the mean, the paired per-seed
    relative change of the organic metrics to ``none`` and, for ``category+semantic``, of every
    metric to ``category`` (``*_vs_category``), each with a 95% interval."""
    runs = {}
    for s in seeds:
        community = generate(str(kw.get("preset", "demo")), seed=s)
        history = logged_clicks(community)
        plan = None
        for name, recall, slots in RECALL_ARMS:
            r = run_feed_ads(s, recall, slots, steps, requests_per_step, community=community,  # type: ignore[arg-type]
                             slot_plan=plan if name == "category+semantic" else None, history=history, **kw)
            if name == "category":
                plan = r["placed"]
            runs[(name, s)] = r
    metrics = ("organic_clicks_per_request", "organic_ctr", "organic_likes_per_request", "ads_per_request",
               "ad_ctr", "revenue_per_1k_requests", "cpm")
    out = []
    for name, recall, slots in RECALL_ARMS:
        mine = [runs[(name, s)] for s in seeds]
        row: dict = {"dataset": "sim-feed", "method": name, "channel": "feed-ad-recall-closed-loop", "tier": "all",
                     "recall": recall, "slots": slots, "load": "of category" if name == "category+semantic" else "natural",
                     "seeds": len(seeds), "steps": steps, "requests_per_step": requests_per_step}
        for m in metrics:
            refs = (["none"] if name != "none" and m.startswith("organic") else [])
            refs += ["category"] if name == "category+semantic" else []
            paired_columns(row, m, mine, runs, refs)
        if name == "category+semantic":
            row["load_vs_category"] = round(float(np.mean([r["ads_per_request"] / max(runs[("category", r["seed"])][
                "ads_per_request"], 1e-12) for r in mine])), 5)
        row["wall_s"] = round(float(sum(r["wall_s"] for r in mine)), 1)
        out.append(row)
    return out


@CLOSED_LOOP.register("feed")
def _feed_load(seeds: list[int], quick: bool, opts: dict) -> list[dict]:
    """``notefeed eval --stage ads --param ads.load=feed``."""
    return feed_ads_study(seeds, steps=10 if quick else 40)


@CLOSED_LOOP.register("feed-recall")
def _feed_recall_load(seeds: list[int], quick: bool, opts: dict) -> list[dict]:
    """``notefeed eval --stage ads --param ads.load=feed-recall``."""
    return feed_recall_study(seeds, steps=10 if quick else 40)
