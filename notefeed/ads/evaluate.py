"""``notefeed eval --stage ads``: water-level metrics of ad recall and a closed-loop auction on
the ad simulator (:mod:`notefeed.ads.simulate`), keyword-only vs +semantic vs +rewrite.

Per seed: a world is generated; queries of half the users train the efficiency model (pCTR,
logistic regression on logged impressions of random recalled ads) and feed a query log whose
frequencies define the tiers (head / torso / tail by cumulative traffic thirds); the other half's
queries are evaluated. Recall metrics (micro-averaged over queries): click coverage (share of the
ads the user would click, per the ground truth, that recall returns), conversion coverage, noise
ratio (share of returned ads with no share of the query's topic). The auction: 2 ad slots per
request for every method (equal ad load), GSP with reserve, pacing and frequency caps; revenue,
CPM (per 1,000 ad impressions), RPM (per 1,000 requests), advertiser ROI and the largest
overspend in clicks. The rewrite table stands in for a mined one: it maps each alias to its word
for ``rewrite_coverage`` of the aliases (the simulator knows them; nothing is learned).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from notefeed.ads.auction import FrequencyCap, click_bids, gsp_auction
from notefeed.ads.base import AdCandidates, AdRequest
from notefeed.ads.keywords import KeywordIndex
from notefeed.ads.pacing import PidPacer
from notefeed.ads.recall import (
    AdRecall,
    KeywordChannel,
    LogisticPCTR,
    RewriteChannel,
    SemanticChannel,
    pctr_features,
)
from notefeed.ads.simulate import AdWorld, Query, make_world, sample_queries, tiers
from notefeed.content.text import TextEncoder
from notefeed.eval.stages import EVAL_STAGES
from notefeed.search.rewrite import MinedRewrites

__all__ = ["evaluate_ads", "run_seed", "METHODS"]

METHODS = ("keyword", "keyword+semantic", "keyword+semantic+rewrite")
K_RECALL = 100


class _World:
    """What the engine is allowed to see, built once per seed."""

    def __init__(self, w: AdWorld, seed: int, rewrite_coverage: float = 0.8) -> None:
        rng = np.random.default_rng(seed + 7)
        self.w = w
        self.kw = KeywordIndex((a, t, m) for a, kws in enumerate(w.ad_keywords) for t, m in kws)
        self.enc = TextEncoder(dim=64, seed=seed).fit(w.ad_texts)
        self.vecs = self.enc.transform(w.ad_texts)
        table = {str(w.aliases.flat[i]): [(str(w.words.flat[i]), 1.0)]
                 for i in range(w.aliases.size) if rng.random() < rewrite_coverage}
        self.rewriter = MinedRewrites(table)
        self.channels = {
            "keyword/match": KeywordChannel(self.kw),
            "semantic/text": SemanticChannel(self.enc.transform, self.vecs, kind="hnsw", min_score=0.05),
            "keyword/rewrite": RewriteChannel(self.kw, self.rewriter),
        }
        self.ad_ctr = np.full(w.n_ads, 0.05)
        self.ad_cvr = np.full(w.n_ads, 0.05)
        self.model: LogisticPCTR | None = None

    def recall(self, method: str) -> AdRecall:
        names = {"keyword": ["keyword/match"], "keyword+semantic": ["keyword/match", "semantic/text"],
                 "keyword+semantic+rewrite": ["keyword/match", "keyword/rewrite", "semantic/text"]}[method]
        quotas = {"keyword/match": 60, "keyword/rewrite": 30, "semantic/text": 40}
        return AdRecall([self.channels[n] for n in names], [quotas[n] for n in names], k=K_RECALL,
                        fused=None)

    def features(self, q: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features (n, 4), relevance (n,)) of ads ``ids`` for query ``q``."""
        qv = self.enc.transform([q])[0]
        cos = self.vecs[ids] @ qv
        kids, ksc = self.kw.match(q)
        kmap = dict(zip(kids.tolist(), ksc.tolist(), strict=True))
        kw = np.array([kmap.get(int(a), 0.0) for a in ids])
        return pctr_features(cos, kw, self.ad_ctr[ids]), np.maximum(cos, kw)


def _train_efficiency(env: _World, queries: list[Query], rng: np.random.Generator) -> None:
    """Log random impressions of recalled ads, smooth per-ad CTR/CVR, fit the pCTR model."""
    w, full = env.w, env.recall(METHODS[-1])
    shown, clicks, convs, rows = np.zeros(w.n_ads), np.zeros(w.n_ads), np.zeros(w.n_ads), []
    for q in queries:
        c = full.retrieve(AdRequest(query=q.text, user=q.user))
        if not len(c):
            continue
        pick = rng.choice(c.ids, size=min(3, len(c)), replace=False)
        y = rng.random(len(pick)) < w.true_ctr(q.user, q.topic)[pick]
        v = y & (rng.random(len(pick)) < w.true_cvr(q.user)[pick])
        np.add.at(shown, pick, 1)
        np.add.at(clicks, pick, y)
        np.add.at(convs, pick, v)
        rows.append((q.text, pick, y))
    env.ad_ctr = (clicks + 0.05 * 20) / (shown + 20)
    env.ad_cvr = (convs + 0.1 * 5) / (clicks + 5)
    x = np.vstack([env.features(t, p)[0] for t, p, _ in rows])
    y = np.concatenate([yy for _, _, yy in rows]).astype(int)
    env.model = LogisticPCTR().fit(x, y)


def _recall_metrics(env: _World, queries: list[Query], tier_of: dict[str, str]) -> list[dict]:
    w = env.w
    out = []
    groups = ["all", "head", "torso", "tail"]
    for method in METHODS:
        rec = env.recall(method)
        per_ch = {n: method != "keyword" or n == "keyword/match" for n in env.channels}
        acc = {(g, c): np.zeros(5) for g in groups for c in ["merged", *env.channels]}
        for q in queries:
            req = AdRequest(query=q.text, user=q.user)
            ctr = w.true_ctr(q.user, q.topic)
            click = ctr >= w.click_min
            conv = click & (w.true_cvr(q.user) >= w.cvr_min)
            noise = w.ad_share[:, q.topic] == 0
            res = {"merged": rec.retrieve(req)}
            for n, ch in env.channels.items():
                if per_ch[n] and n in rec.trace:
                    res[n] = ch.retrieve(req, K_RECALL)
            for name, r in res.items():
                got = np.zeros(w.n_ads, bool)
                got[r.ids] = True
                v = np.array([(got & click).sum(), click.sum(), (got & conv).sum(), conv.sum(), (got & noise).sum()])
                for g in ("all", tier_of.get(q.text, "tail")):
                    acc[(g, name)] += v
                acc.setdefault(("n", name), np.zeros(5))[0] += len(r)
                acc.setdefault(("n", name + tier_of.get(q.text, "tail")), np.zeros(5))[0] += len(r)
        for (g, name), v in acc.items():
            if g == "n" or v[1] == 0 and v[3] == 0:
                continue
            n_ret = acc.get(("n", name if g == "all" else name + g), np.zeros(5))[0]
            out.append({"dataset": "ad-sim", "method": method, "channel": name, "tier": g,
                        "click_coverage": float(v[0] / max(v[1], 1)), "conversion_coverage": float(v[2] / max(v[3], 1)),
                        "noise_ratio": float(v[4] / max(n_ret, 1)), "ads_returned": float(n_ret)})
    return out


def _auction(env: _World, method: str, queries: list[Query], seed: int, slots: int = 2,
             reserve: float = 0.05, floor: float = 0.1) -> dict:
    w, rec = env.w, env.recall(method)
    assert env.model is not None
    rng = np.random.default_rng(seed + 99)
    pacer = PidPacer({str(a): float(b) for a, b in enumerate(w.budget)}, day_s=86400.0, update_s=300.0)
    cap = FrequencyCap(per_day=3)
    times = np.sort(rng.uniform(0, 86400.0, len(queries)))
    revenue = imps = clicks = convs = 0.0
    value = 0.0
    top_price = np.zeros(w.n_ads)
    for q, t in zip(queries, times, strict=True):
        c: AdCandidates = rec.retrieve(AdRequest(query=q.text, user=q.user))
        if not len(c):
            continue
        ok = np.array([cap.allowed(q.user, str(a), t) and pacer.allow(str(a), t, rng) for a in c.ids.tolist()], bool)
        ids = c.ids[ok]
        if not len(ids):
            continue
        x, rel = env.features(q.text, ids)
        pctr = env.model.pctr(x)
        bids = click_bids(w.bid[ids], w.ocpc[ids], env.ad_cvr[ids])
        res = gsp_auction(bids, pctr, slots, reserve, relevance=rel, relevance_floor=floor)
        true_ctr, true_cvr = w.true_ctr(q.user, q.topic), w.true_cvr(q.user)
        for j, price in zip(res.winners.tolist(), res.prices.tolist(), strict=True):
            a = int(ids[j])
            imps += 1
            cap.record(q.user, str(a), t)
            if rng.random() < true_ctr[a]:
                clicks += 1
                revenue += price
                top_price[a] = max(top_price[a], price)
                pacer.record(str(a), price, t)
                if rng.random() < true_cvr[a]:
                    convs += 1
                    value += w.bid[a] if w.ocpc[a] else w.bid[a] / 0.1
    spent = np.array([s.spent for s in pacer.state.values()])
    # overspend in units of the campaign's own dearest click (the guarantee: < 1)
    over = np.where(top_price > 0, (spent - w.budget) / np.maximum(top_price, 1e-12), 0.0)
    return {"dataset": "ad-sim", "method": method, "channel": "auction", "tier": "all", "revenue": revenue,
            "impressions": imps, "clicks": clicks, "conversions": convs, "ctr": clicks / max(imps, 1),
            "cpm": 1000 * revenue / max(imps, 1), "rpm": 1000 * revenue / len(queries),
            "advertiser_roi": float(value / max(revenue, 1e-9)), "max_overspend_clicks": float(max(over.max(), 0.0)),
            "budget_exhausted_share": float((spent >= w.budget).mean())}


def run_seed(seed: int, quick: bool) -> list[dict]:
    w = make_world(n_ads=600 if quick else 1500, n_users=800 if quick else 2000, seed=seed)
    rng = np.random.default_rng(seed)
    users = rng.permutation(len(w.interest))
    train_u, test_u = users[: len(users) // 2], users[len(users) // 2:]
    log = sample_queries(w, 4000 if quick else 20000, train_u, rng)
    tier_of = tiers(log)
    env = _World(w, seed)
    _train_efficiency(env, log[: 300 if quick else 800], rng)
    test = sample_queries(w, 150 if quick else 400, test_u, rng)
    rows = _recall_metrics(env, test, tier_of)
    day = sample_queries(w, 600 if quick else 2000, test_u, rng)
    rows += [_auction(env, m, day, seed) for m in METHODS]
    for r in rows:
        r["seed"] = seed
    return rows


def evaluate_ads(datasets: list[str], models: list[str] | None, seed: int, quick: bool,
                 report_dir: Path | None, seeds: int | None = None) -> list[dict]:
    """Mean (and std over seeds) of every metric per (method, channel, tier); ``datasets`` ignored
    (the ad simulator is the only dataset)."""
    n = seeds or (2 if quick else 5)
    t0 = time.perf_counter()
    rows = [r for s in range(seed, seed + n) for r in run_seed(s, quick)]
    keys = sorted({(r["method"], r["channel"], r["tier"]) for r in rows}, key=str)
    out = []
    for key in keys:
        grp = [r for r in rows if (r["method"], r["channel"], r["tier"]) == key]
        agg: dict = {"dataset": "ad-sim", "method": key[0], "channel": key[1], "tier": key[2], "seeds": len(grp)}
        for m in grp[0]:
            if isinstance(grp[0][m], float) and m != "seed":
                vals = np.array([g[m] for g in grp])
                agg[m] = round(float(vals.mean()), 4)
                agg[m + "_std"] = round(float(vals.std()), 4)
        out.append(agg)
    base = next(r for r in out if r["method"] == "keyword" and r["channel"] == "auction")
    for r in out:
        if r["channel"] == "auction":
            r["cpm_vs_keyword"] = round(r["cpm"] / base["cpm"] - 1, 4) if base["cpm"] else 0.0
            r["rpm_vs_keyword"] = round(r["rpm"] / base["rpm"] - 1, 4) if base["rpm"] else 0.0
    out[0]["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


EVAL_STAGES.register("ads")(evaluate_ads)
