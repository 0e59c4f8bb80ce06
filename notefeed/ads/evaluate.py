"""``notefeed eval --stage ads``: water-level metrics of ad recall and a closed-loop auction on
the ad simulator (:mod:`notefeed.ads.simulate`), keyword-only vs +semantic vs +rewrite, with
the semantic channel either the text encoder (``semantic/text``) or the query/ad towers
(``semantic/twotower``, :mod:`notefeed.ads.twotower`) trained per seed on the clicks of a logged
day of the training users (impressions from the text recall, clicks by the simulator); the
two-tower rows carry paired differences to the same method with ``semantic/text``
(``*_vs_text_ci95``).

Per seed: a world is generated; queries of half the users train the efficiency model (pCTR,
logistic regression on logged impressions of random recalled ads) and feed a query log whose
frequencies define the tiers (head / torso / tail by cumulative traffic thirds); the other half's
queries are evaluated. Recall metrics (micro-averaged over queries): click coverage (share of the
ads the user would click, per the ground truth, that recall returns), conversion coverage, noise
ratio (share of returned ads with no share of the query's topic). The auction: 2 ad slots per
request for every method, GSP with reserve, pacing and frequency caps; revenue, CPM (per 1,000
ad impressions), RPM (per 1,000 requests), advertiser ROI, the share of slots filled and the
largest overspend in clicks. Slots are the same but the *load* is not: a method that recalls
more eligible ads fills more of them. ``--param ads.load=equal`` compares at equal load (on each
request every method gets the slots keyword-only filled on it), with paired per-seed
differences and 95% intervals; ``ads.load=reserve`` sets an eCPM reserve per method instead. The rewrite table stands in for a mined one: it maps each alias to its word
for ``rewrite_coverage`` of the aliases (the simulator knows them; nothing is learned).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from notefeed.ads.auction import FrequencyCap, click_bids, gsp_auction
from notefeed.ads.base import AdCandidates, AdRequest, QueryMemo
from notefeed.ads.keywords import KeywordIndex
from notefeed.ads.pacing import PidPacer
from notefeed.ads.recall import (
    AdRecall,
    KeywordChannel,
    LogisticPCTR,
    RewriteChannel,
    SemanticChannel,
    evidence_features,
    pctr_features,
)
from notefeed.ads.simulate import AdWorld, Query, make_world, sample_queries, tiers
from notefeed.content.text import TextEncoder
from notefeed.eval.metrics import t_half_width
from notefeed.eval.stages import EVAL_STAGES
from notefeed.registry import Registry
from notefeed.search.rewrite import MinedRewrites

__all__ = ["evaluate_ads", "run_seed", "METHODS", "PCTR_KINDS", "CLOSED_LOOP_LOADS", "CLOSED_LOOP"]

#: ``ads.load`` values that run in the closed-loop feed simulator rather than the ad simulator
CLOSED_LOOP_LOADS = ("feed", "feed-recall", "search-recall", "serving-pctr")
#: load -> ``fn(seeds, quick, opts) -> rows`` (``opts``: the ``ads`` params); the studies live in
#: the simulator (:mod:`notefeed.sim.ads_feed`, :mod:`notefeed.sim.ads_search`), which registers
#: them here when imported: the ads stage does not import the simulator
CLOSED_LOOP: Registry[list[dict]] = Registry("closed-loop ads load")

METHODS = ("keyword", "keyword+semantic", "keyword+semantic+rewrite", "keyword+twotower", "keyword+twotower+rewrite")
#: the recall that served the logged impressions the models learn from (the text encoder's)
LOGGING = "keyword+semantic+rewrite"
_CHANNELS = {"keyword": ["keyword/match"], "keyword+semantic": ["keyword/match", "semantic/text"],
             "keyword+semantic+rewrite": ["keyword/match", "keyword/rewrite", "semantic/text"],
             "keyword+twotower": ["keyword/match", "semantic/twotower"],
             "keyword+twotower+rewrite": ["keyword/match", "keyword/rewrite", "semantic/twotower"]}
K_RECALL = 100
#: the efficiency model's feature sets: ``evidence`` (the default) is ``basic`` plus every recall
#: channel's own score for the pair (:func:`~notefeed.ads.recall.evidence_features`); ``basic``
#: is :func:`~notefeed.ads.recall.pctr_features` alone (text cosine, keyword score and hit, ad CTR)
PCTR_KINDS = ("evidence", "basic")
N_BASIC = 4  # the basic features are the first columns of the evidence ones
EVIDENCE_NAMES = ("text_cos", "kw_score", "kw_hit", "ad_ctr_logit", "tower_cos", "rewrite_score", "rewrite_hit")
SLOTS, RESERVE, FLOOR = 2, 0.05, 0.1


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
        self._qvecs: QueryMemo[np.ndarray] = QueryMemo()  # query text -> its text vector (read-only)
        self._kw: QueryMemo[dict[int, float]] = QueryMemo()  # query text -> keyword match scores
        self.channels = {
            "keyword/match": KeywordChannel(self.kw),
            "semantic/text": SemanticChannel(self.encode, self.vecs, kind="hnsw", min_score=0.05),
            "keyword/rewrite": RewriteChannel(self.kw, self.rewriter),
        }
        self.ad_ctr = np.full(w.n_ads, 0.05)
        self.ad_cvr = np.full(w.n_ads, 0.05)
        self.models: dict[str, LogisticPCTR] = {}  # pCTR per feature set (``PCTR_KINDS``)
        self.pctr = PCTR_KINDS[0]  # the feature set the auction's pCTR reads
        self._rewrite_cache: QueryMemo[dict[int, float]] = QueryMemo()
        self.pcvr_model: LogisticPCTR | None = None  # pCVR beside pCTR (``ads.pcvr=model``)
        self.towers: object | None = None  # the trained query/ad towers (``semantic/twotower``)

    def recall(self, method: str) -> AdRecall:
        names = _CHANNELS[method]
        quotas = {"keyword/match": 60, "keyword/rewrite": 30, "semantic/text": 40, "semantic/twotower": 40}
        return AdRecall([self.channels[n] for n in names], [quotas[n] for n in names], k=K_RECALL,
                        fused=None)

    def encode(self, texts: list[str]) -> np.ndarray:
        """The text encoder's vectors of ``texts``; one query's vector is kept (a simulated day's
        queries are scored by every auction: the same numbers, computed once)."""
        if len(texts) != 1:
            return self.enc.transform(texts)
        def vec() -> np.ndarray:
            v = self.enc.transform(texts)
            v.setflags(write=False)
            return v

        return self._qvecs.get(texts[0], vec)

    def _kw_scores(self, q: str) -> dict[int, float]:
        def scores() -> dict[int, float]:
            kids, ksc = self.kw.match(q)
            return dict(zip(kids.tolist(), ksc.tolist(), strict=True))

        return self._kw.get(q, scores)

    @property
    def model(self) -> LogisticPCTR | None:
        """The pCTR model of the feature set ``self.pctr`` (None before training)."""
        return self.models.get(self.pctr)

    def features(self, q: str, ids: np.ndarray, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(features (n, 4) ``basic`` or (n, 7) ``evidence``, relevance (n,)) of ads ``ids`` for
        query ``q``; ``kind`` defaults to ``self.pctr``. The relevance (for the floor) is the same
        for both."""
        kind = kind or self.pctr
        if kind not in PCTR_KINDS:
            raise ValueError(f"pCTR features must be one of {', '.join(PCTR_KINDS)}, got {kind!r}")
        qv = self.encode([q])[0]
        cos = self.vecs[ids] @ qv
        kmap = self._kw_scores(q)
        kw = np.array([kmap.get(int(a), 0.0) for a in ids])
        x = pctr_features(cos, kw, self.ad_ctr[ids])
        if kind == "evidence":
            tower = self.channels.get("semantic/twotower")
            if tower is None:
                raise ValueError("pCTR features 'evidence' read the two-tower cosine: train the towers first")
            x = evidence_features(x, tower.scores(q, ids), self._rewrite_scores(q, ids))  # type: ignore[attr-defined]
        return x, np.maximum(cos, kw)

    def _rewrite_scores(self, q: str, ids: np.ndarray) -> np.ndarray:
        """(n,) the ``keyword/rewrite`` channel's score of each ad for ``q`` (0: not matched)."""
        def scores() -> dict[int, float]:
            c = self.channels["keyword/rewrite"].retrieve(AdRequest(query=q), self.w.n_ads)
            return dict(zip(c.ids.tolist(), c.scores.tolist(), strict=True))

        m = self._rewrite_cache.get(q, scores)
        return np.array([m.get(int(a), 0.0) for a in ids.tolist()])

    def relevance(self, method: str, q: str, ids: np.ndarray, rel: np.ndarray) -> np.ndarray:
        """The relevance floor reads the best score the method's channels give: the text cosine
        and keyword score (``features``), and the two-tower cosine when the method has it."""
        if "semantic/twotower" in _CHANNELS[method]:
            return np.maximum(rel, self.channels["semantic/twotower"].scores(q, ids))
        return rel


def _impressions(env: _World, queries: list[Query], rng: np.random.Generator, method: str = LOGGING
                 ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Random impressions of ads recalled by ``method``, up to 3 per query: (query text, ads,
    clicked, converted) per query that recalled any."""
    w, full = env.w, env.recall(method)
    out = []
    for q in queries:
        c = full.retrieve(AdRequest(query=q.text, user=q.user))
        if not len(c):
            continue
        pick = rng.choice(c.ids, size=min(3, len(c)), replace=False)
        y = rng.random(len(pick)) < w.true_ctr(q.user, q.topic)[pick]
        v = y & (rng.random(len(pick)) < w.true_cvr(q.user)[pick])
        out.append((q.text, pick, y, v))
    return out


def _train_efficiency(env: _World, queries: list[Query], rng: np.random.Generator) -> dict:
    """Log random impressions of recalled ads, smooth per-ad CTR/CVR, fit a pCTR model per
    feature set (``PCTR_KINDS``) on the same impressions. The ``evidence`` set reads the two-tower
    cosine, so the towers are trained first (:func:`_train_towers`)."""
    n = env.w.n_ads
    shown, clicks, convs = np.zeros(n), np.zeros(n), np.zeros(n)
    rows = _impressions(env, queries, rng)
    for _, pick, y, v in rows:
        np.add.at(shown, pick, 1)
        np.add.at(clicks, pick, y)
        np.add.at(convs, pick, v)
    env.ad_ctr = (clicks + 0.05 * 20) / (shown + 20)
    env.ad_cvr = (convs + 0.1 * 5) / (clicks + 5)
    x = np.vstack([env.features(t, p, "evidence")[0] for t, p, _, _ in rows])
    y = np.concatenate([yy for _, _, yy, _ in rows]).astype(int)
    env.models = {k: LogisticPCTR().fit(_cols(x, k), y) for k in PCTR_KINDS}
    coef = env.models["evidence"].model.coef_[0]
    return {"pctr_train_impressions": float(len(y)), "pctr_train_clicks": float(y.sum()),
            **{f"pctr_coef_{n}": float(c) for n, c in zip(EVIDENCE_NAMES, coef, strict=True)}}


def _cols(x: np.ndarray, kind: str) -> np.ndarray:
    """The columns of ``evidence`` features ``x`` that the feature set ``kind`` reads."""
    return x if kind == "evidence" else x[:, :N_BASIC]


def _pctr_check(env: _World, held_out: list[Query], seed: int) -> dict:
    """Held-out log-loss and AUC of each pCTR model on random impressions for ``held_out``
    queries (test users; their own random stream): impressions of the logging recall (the
    training distribution) and, ``*_twotower``, of keyword + two-tower recall."""
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(seed + 4322)
    out: dict[str, float] = {}
    for tag, method in (("", LOGGING), ("_twotower", "keyword+twotower")):
        rows = _impressions(env, held_out, rng, method)
        x = np.vstack([env.features(t, p, "evidence")[0] for t, p, _, _ in rows])
        y = np.concatenate([r[2] for r in rows]).astype(int)
        out[f"pctr_held_out_impressions{tag}"] = float(len(y))
        out[f"pctr_held_out_clicks{tag}"] = float(y.sum())
        for k in PCTR_KINDS:
            p = env.models[k].pctr(_cols(x, k))
            out[f"pctr_logloss_{k}{tag}"] = float(log_loss(y, p, labels=[0, 1]))
            out[f"pctr_auc_{k}{tag}"] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return out


def _train_towers(env: _World, queries: list[Query], seed: int) -> dict:
    """Train the query/ad towers on the clicks of a logged day (``queries``: the training users'
    query log; impressions: up to 3 random ads of the logging recall per query, clicks by the
    simulator) and add the ``semantic/twotower`` channel. Its own random stream: the other
    methods' results do not change."""
    import torch

    from notefeed.ads.twotower import AdTowerConfig, TwoTowerAdChannel, train_ad_towers

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = _impressions(env, queries, np.random.default_rng(seed + 555))
    qs = [t for t, p, y, _ in rows for _ in range(int(y.sum()))]
    ads = np.concatenate([p[y] for _, p, y, _ in rows]) if rows else np.zeros(0, np.int64)
    w = env.w
    kw = [" ".join(t for t, _ in k) for k in w.ad_keywords]
    cfg = AdTowerConfig(text_dim=env.vecs.shape[1], epochs=15, seed=seed)
    model = train_ad_towers(qs, ads, w.ad_texts, kw, cfg, env.enc.transform(qs), env.vecs)
    env.channels["semantic/twotower"] = TwoTowerAdChannel(model, w.ad_texts, kw, kind="hnsw", min_score=0.05,
                                                          text_encode=env.enc.transform, ad_text_vecs=env.vecs)
    env.towers = model
    return {"tower_train_clicks": float(len(ads)), "tower_impressions": float(sum(len(p) for _, p, _, _ in rows)),
            "tower_valid_recall50": float(model.valid_recall), "tower_epochs": float(model.epochs_run),
            "tower_train_s": time.perf_counter() - t0}


def _cvr_features(env: _World, x: np.ndarray, ids: np.ndarray, cvr: np.ndarray | None = None) -> np.ndarray:
    """pCVR features (n, 5): the pCTR features and the logit of the ad's smoothed CVR (``cvr``
    overrides it: leave-one-out values for the training rows)."""
    c = np.clip(env.ad_cvr[ids] if cvr is None else cvr, 1e-4, 1 - 1e-4)
    return np.column_stack([x, np.log(c / (1 - c))])


def pcvr_of(env: _World, x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """pCVR (n,) of ads ``ids``: the pCVR model when there is one, else the ad's smoothed CVR."""
    if env.pcvr_model is None:
        return env.ad_cvr[ids]
    return env.pcvr_model.pctr(_cvr_features(env, x, ids))


def _click_log(env: _World, queries: list[Query], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Random impressions of recalled ads: (features (n, 4), ads (n,), clicked (n,), converted (n,))."""
    rows = _impressions(env, queries, rng)
    return (np.vstack([env.features(t, p)[0] for t, p, _, _ in rows]), np.concatenate([r[1] for r in rows]),
            np.concatenate([r[2] for r in rows]), np.concatenate([r[3] for r in rows]))


def _train_pcvr(env: _World, queries: list[Query], held_out: list[Query], seed: int) -> dict:
    """A logistic pCVR on the clicks of a larger random-impression log (the per-ad smoothed CVR
    is re-estimated from the same log, so both see the same clicks); log-loss of each on the
    clicks of a held-out log (test users)."""
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(seed + 1234)  # its own stream: the default run is unchanged
    x, ads, y, v = _click_log(env, queries, rng)
    w = env.w
    clicks, convs = np.zeros(w.n_ads), np.zeros(w.n_ads)
    np.add.at(clicks, ads, y)
    np.add.at(convs, ads, v)
    env.ad_cvr = (convs + 0.1 * 5) / (clicks + 5)
    # the CVR feature of a training click leaves that click out (else the model learns to trust
    # a feature that contains its own label, and is overconfident on new clicks)
    a, lab = ads[y], v[y].astype(float)
    loo = (convs[a] - lab + 0.1 * 5) / (clicks[a] - 1 + 5)
    m = LogisticPCTR().fit(_cvr_features(env, x[y], a, loo), lab.astype(int))
    hx, hads, hy, hv = _click_log(env, held_out, rng)
    per_ad = np.clip(env.ad_cvr[hads[hy]], 1e-4, 1 - 1e-4)
    model = m.pctr(_cvr_features(env, hx[hy], hads[hy]))
    lab = hv[hy].astype(int)
    env.pcvr_model = m
    out = {"train_clicks": float(y.sum()), "train_conversions": float(v.sum()), "held_out_clicks": float(hy.sum())}
    for name, p in (("per_ad", per_ad), ("model", model)):
        out[f"pcvr_logloss_{name}"] = float(log_loss(lab, p, labels=[0, 1]))
        out[f"pcvr_auc_{name}"] = float(roc_auc_score(lab, p)) if 0 < lab.sum() < len(lab) else float("nan")
    return out


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


def _auction(env: _World, method: str, queries: list[Query], seed: int, slots: int = SLOTS,
             reserve: float = RESERVE, floor: float = FLOOR, min_ecpm: float = 0.0,
             channel: str = "auction", slots_per_request: list[int] | None = None) -> dict:
    """One simulated day; ``slots_per_request`` (one per query) overrides ``slots``. The result's
    ``filled`` lists the ads shown per query."""
    w, rec = env.w, env.recall(method)
    assert env.model is not None
    rng = np.random.default_rng(seed + 99)
    pacer = PidPacer({str(a): float(b) for a, b in enumerate(w.budget)}, day_s=86400.0, update_s=300.0)
    cap = FrequencyCap(per_day=3)
    times = np.sort(rng.uniform(0, 86400.0, len(queries)))
    revenue = imps = clicks = convs = 0.0
    value = 0.0
    top_price = np.zeros(w.n_ads)
    filled = [0] * len(queries)
    for i, (q, t) in enumerate(zip(queries, times, strict=True)):
        n_slots = slots if slots_per_request is None else slots_per_request[i]
        if n_slots == 0:
            continue
        c: AdCandidates = rec.retrieve(AdRequest(query=q.text, user=q.user))
        if not len(c):
            continue
        ok = np.array([cap.allowed(q.user, str(a), t) and pacer.allow(str(a), t, rng) for a in c.ids.tolist()], bool)
        ids = c.ids[ok]
        if not len(ids):
            continue
        x, rel = env.features(q.text, ids)
        rel = env.relevance(method, q.text, ids, rel)
        pctr = env.model.pctr(x)
        bids = click_bids(w.bid[ids], w.ocpc[ids], pcvr_of(env, x, ids))
        res = gsp_auction(bids, pctr, n_slots, reserve, relevance=rel, relevance_floor=floor, reserve_ecpm=min_ecpm)
        filled[i] = len(res.winners)
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
    return {"dataset": "ad-sim", "method": method, "channel": channel, "tier": "all", "revenue": revenue,
            "min_ecpm": float(min_ecpm), "fill": imps / (slots * len(queries)), "filled": filled,
            "impressions": imps, "clicks": clicks, "conversions": convs, "ctr": clicks / max(imps, 1),
            "cpm": 1000 * revenue / max(imps, 1), "rpm": 1000 * revenue / len(queries),
            "advertiser_roi": float(value / max(revenue, 1e-9)), "max_overspend_clicks": float(max(over.max(), 0.0)),
            "budget_exhausted_share": float((spent >= w.budget).mean())}


def _top_ecpms(env: _World, method: str, queries: list[Query], slots: int = SLOTS, reserve: float = RESERVE,
               floor: float = FLOOR) -> list[np.ndarray]:
    """Per query, the eCPMs of the ``slots`` best eligible ads (bid >= reserve, relevance >= floor),
    without pacing or caps: what the load calibration reads."""
    w, rec = env.w, env.recall(method)
    assert env.model is not None
    out = []
    for q in queries:
        c = rec.retrieve(AdRequest(query=q.text, user=q.user))
        if not len(c):
            out.append(np.zeros(0))
            continue
        x, rel = env.features(q.text, c.ids)
        rel = env.relevance(method, q.text, c.ids, rel)
        bids = click_bids(w.bid[c.ids], w.ocpc[c.ids], pcvr_of(env, x, c.ids))
        e = 1000.0 * bids * env.model.pctr(x)
        out.append(-np.sort(-e[(bids >= reserve) & (rel >= floor)])[:slots])
    return out


def fill_at(tops: list[np.ndarray], min_ecpm: float, slots: int = SLOTS) -> float:
    """Share of the slots filled when ads need eCPM >= ``min_ecpm``."""
    return float(sum(int((t >= min_ecpm).sum()) for t in tops)) / (slots * max(len(tops), 1))


def calibrate_min_ecpm(tops: list[np.ndarray], target: float, slots: int = SLOTS) -> float:
    """The least eCPM reserve whose fill is at most ``target`` (fill falls as the reserve rises)."""
    vals = np.unique(np.concatenate([t for t in tops if len(t)] or [np.zeros(1)]))
    lo, hi = 0, len(vals) - 1  # candidate reserves: the observed eCPMs (fill changes only there)
    if fill_at(tops, 0.0, slots) <= target:
        return 0.0
    while lo < hi:
        mid = (lo + hi) // 2
        if fill_at(tops, float(vals[mid]), slots) <= target:
            hi = mid
        else:
            lo = mid + 1
    return float(vals[lo])


def _matched_load(env: _World, day: list[Query], seed: int, natural: dict[str, dict], suffix: str = "",
                  methods: tuple[str, ...] = METHODS) -> list[dict]:
    """Each method with the slots keyword-only filled on the same request of the same day: equal
    ad load request by request (``auction@equal-load`` + ``suffix``)."""
    slots = natural["keyword"]["filled"]
    ch = "auction@equal-load" + suffix
    rows = [{**natural["keyword"], "channel": ch}]
    for m in methods:
        if m != "keyword":
            rows.append(_auction(env, m, day, seed, channel=ch, slots_per_request=slots))
    for r in rows:
        r["load_vs_keyword"] = sum(r["filled"]) / max(sum(slots), 1)
    return rows


def _reserve_load(env: _World, calib: list[Query], day: list[Query], seed: int, levels: list[float]) -> list[dict]:
    """Each method with an eCPM reserve set on a calibration day (training users' queries) to fill
    ``level`` x the share of slots keyword-only fills there (``auction@reserve<level>``). Pacing
    and caps act after the reserve, so the day's realised fill can differ: read ``fill``."""
    tops = {m: _top_ecpms(env, m, calib) for m in METHODS}
    base = fill_at(tops["keyword"], 0.0)
    rows = []
    for level in levels:
        target = base * level
        for m in METHODS:
            thr = calibrate_min_ecpm(tops[m], target)
            r = _auction(env, m, day, seed, min_ecpm=thr, channel=f"auction@reserve{level:g}")
            r["calibrated_fill"] = fill_at(tops[m], thr)
            r["target_fill"] = target
            rows.append(r)
    return rows


def _suffix(kind: str) -> str:
    """Channel suffix of the auction rows of pCTR feature set ``kind`` (none for the default)."""
    return "" if kind == PCTR_KINDS[0] else f"/pctr={kind}"


def run_seed(seed: int, quick: bool, load: str = "natural", levels: tuple[float, ...] = (1.0,),
             pctr: str = PCTR_KINDS[0], methods: tuple[str, ...] = METHODS) -> list[dict]:
    """One seed's rows. ``pctr``: the feature set of the auction's pCTR, or ``both`` (natural
    and equal load only: every auction once per feature set, ``basic`` rows on channels ending
    ``/pctr=basic``). ``methods``: the recall settings whose auctions run (natural and equal
    load; keyword-only always, as the reference)."""
    methods = ("keyword", *[m for m in methods if m != "keyword"])
    kinds = PCTR_KINDS if pctr == "both" else (pctr,)
    if pctr == "both" and load not in ("natural", "equal"):
        raise ValueError("pctr=both runs with ads.load natural or equal")
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    w = make_world(n_ads=600 if quick else 1500, n_users=800 if quick else 2000, seed=seed)
    rng = np.random.default_rng(seed)
    users = rng.permutation(len(w.interest))
    train_u, test_u = users[: len(users) // 2], users[len(users) // 2:]
    log = sample_queries(w, 4000 if quick else 20000, train_u, rng)
    tier_of = tiers(log)
    env = _World(w, seed)
    # the towers first: the evidence pCTR reads their cosine (their own random stream, so the
    # main stream, and with it every query below, is what it was with the pCTR trained first)
    towers = _train_towers(env, log, seed)
    eff = _train_efficiency(env, log[: 300 if quick else 800], rng)
    test = sample_queries(w, 150 if quick else 400, test_u, rng)
    day = sample_queries(w, 600 if quick else 2000, test_u, rng)
    eff.update(_pctr_check(env, sample_queries(w, 600 if quick else 2000, test_u, np.random.default_rng(seed + 4321)),
                           seed))
    env.pctr = kinds[0]
    if load == "pcvr":  # pCVR study: per-ad CVR vs the pCVR model, same enlarged click log
        n = 1000 if quick else 6000
        fit = _train_pcvr(env, log[-n:], sample_queries(w, n // 2, test_u, np.random.default_rng(seed + 77)), seed)
        model, env.pcvr_model = env.pcvr_model, None
        rows = [{**_auction(env, m, day, seed), **fit} for m in METHODS]
        env.pcvr_model = model
        rows += [{**_auction(env, m, day, seed, channel="auction@pcvr-model"), **fit} for m in METHODS]
    elif load == "natural":
        rows = _recall_metrics(env, test, tier_of)
        for k in kinds:
            env.pctr = k
            rows += [_auction(env, m, day, seed, channel="auction" + _suffix(k)) for m in methods]
    elif load == "equal":  # the load study only: natural load and an equalised one, no recall metrics
        rows = []
        for k in kinds:
            env.pctr = k
            natural = {m: _auction(env, m, day, seed, channel="auction" + _suffix(k)) for m in methods}
            rows += list(natural.values())
            rows += _matched_load(env, day, seed, natural, _suffix(k), methods)
    else:
        rows = [_auction(env, m, day, seed) for m in METHODS]
        rows += _reserve_load(env, log[-(600 if quick else 2000):], day, seed, list(levels))
    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    for r in rows:
        r.pop("filled", None)
        if "twotower" in r["method"]:
            r.update(towers)
        if r["channel"].startswith("auction"):
            r.update(eff)
        r["seed"] = seed
        r["seed_wall_s"], r["seed_cpu_s"] = wall, cpu
    return rows


def _ci95(x: np.ndarray, digits: int = 4) -> list[float]:
    """Student-t 95% interval of the mean of ``x`` (over seeds), rounded to ``digits`` places."""
    if len(x) < 2:
        return [float(x.mean()), float(x.mean())]
    h = t_half_width(x)
    return [round(float(x.mean()) - h, digits), round(float(x.mean()) + h, digits)]


def paired_columns(row: dict, m: str, mine: list[dict], runs: dict, refs: list[str]) -> None:
    """Into ``row``: the mean and spread of metric ``m`` over this arm's runs ``mine`` (one per
    seed), and for each reference arm in ``refs`` the per-seed relative difference to that arm's
    run of the same seed (``runs[(ref, seed)]``): ``{m}_vs_{ref}`` and its 95% interval."""
    v = np.array([r[m] for r in mine])
    row[m] = round(float(v.mean()), 5)
    row[m + "_std"] = round(float(v.std()), 5)
    for ref in refs:
        base = [runs[(ref, r["seed"])][m] for r in mine]
        d = np.array([r[m] / b - 1 for r, b in zip(mine, base, strict=True) if b])
        if len(d):
            row[f"{m}_vs_{ref}"] = round(float(d.mean()), 4)
            row[f"{m}_vs_{ref}_ci95"] = _ci95(d)


def evaluate_ads(datasets: list[str], models: list[str] | None, seed: int, quick: bool,
                 report_dir: Path | None, seeds: int | list[int] | None = None,
                 params: dict[str, dict[str, object]] | None = None) -> list[dict]:
    """Mean (and std over seeds) of every metric per (method, channel, tier); ``datasets`` ignored
    (the ad simulator is the only dataset). ``seeds``: a count from ``seed`` or a list.

    ``--param ads.load=equal`` runs the load study instead of the recall metrics: every method
    at its natural load (``auction``) and at equal load (``auction@equal-load``: on each request
    as many slots as keyword-only filled on it). ``ads.load=reserve`` equalises with an eCPM
    reserve per method calibrated on a separate day instead (``ads.levels=[1, 0.75]``: shares of
    keyword-only's fill). ``ads.load=pcvr`` compares oCPC bids on the ad's smoothed CVR with a
    logistic pCVR model (``auction@pcvr-model``), both from the same larger click log, with
    their held-out log-loss and AUC. Auction rows carry per-seed paired differences to
    keyword-only with a 95% interval (``cpm_vs_keyword_ci95``). ``ads.load=feed`` measures the
    organic cost of feed ads in the closed-loop feed simulator instead
    (:mod:`notefeed.sim.ads_feed`); ``ads.load=feed-recall`` the organic cost of category vs
    category + semantic feed-ad recall at equal ad load there. ``ads.load=search-recall`` the
    organic cost of search ads, keyword-only vs + semantic recall at equal ad load, with organic
    search results and ads in one closed loop (:mod:`notefeed.sim.ads_search`; ``ads.user``: a JSON
    object of :class:`~notefeed.sim.ads_search.SearchUser` fields for the simulated user).
    ``ads.load=serving-pctr`` runs serving's own ad path (``AdServer``) on the ad simulator's
    world for a logging day, trains the efficiency model on the impressions it logged
    (``notefeed ads train-pctr``) and compares the heuristic and the trained pCTR on a second
    day (:mod:`notefeed.sim.ads_serving`; ``ads.explore``: the day-1 share of exploration requests,
    the model then trained on those only).

    ``ads.pctr``: the efficiency model's features, ``evidence`` (default: the basic ones and every
    recall channel's score for the pair), ``basic`` (text cosine, keyword match, ad CTR) or
    ``both`` (every auction once per feature set; rows with ``*_vs_basic_pctr_ci95``). Auction rows
    carry both models' held-out log-loss and AUC (``pctr_logloss_*``, ``pctr_auc_*``).
    ``ads.resume=PATH``: append each finished seed's rows to the JSON-lines file PATH and take
    the seeds already there from it (a long run can stop and go on; the settings must match).
    """
    opts = dict((params or {}).get("ads", {}))
    unknown = set(opts) - {"load", "levels", "pctr", "resume", "methods", "user", "explore"}
    if unknown:
        raise ValueError("--param: ads takes load, levels, pctr, resume, methods, user, explore; got "
                         f"{', '.join(sorted(unknown))}")
    methods = opts.get("methods", list(METHODS))
    if not isinstance(methods, list) or not methods or not set(methods) <= set(METHODS):
        raise ValueError(f"--param: ads.methods must be a list of {', '.join(METHODS)}, got {methods!r}")
    if methods != list(METHODS) and opts.get("load", "natural") not in ("natural", "equal"):
        raise ValueError("--param: ads.methods runs with ads.load natural or equal")
    pctr = str(opts.get("pctr", PCTR_KINDS[0]))
    if pctr not in (*PCTR_KINDS, "both"):
        raise ValueError(f"--param: ads.pctr must be {', '.join(PCTR_KINDS)} or both, got {pctr!r}")
    load = opts.get("load", "natural")
    if load not in ("natural", "equal", "reserve", "pcvr", *CLOSED_LOOP_LOADS):
        raise ValueError("--param: ads.load must be natural, equal, reserve, pcvr, feed, feed-recall, search-recall "
                         f"or serving-pctr, got {load!r}")
    if "user" in opts and load != "search-recall":
        raise ValueError("--param: ads.user runs with ads.load=search-recall")
    if "explore" in opts and (load != "serving-pctr" or not isinstance(opts["explore"], int | float)
                              or not 0 <= opts["explore"] <= 1):
        raise ValueError(f"--param: ads.explore must be a share in [0, 1] with ads.load=serving-pctr, got {opts['explore']!r}")
    if pctr == "both" and load not in ("natural", "equal"):
        raise ValueError("--param: ads.pctr=both runs with ads.load natural or equal")
    levels = opts.get("levels", [1.0])
    if not isinstance(levels, list) or not levels or not all(isinstance(v, int | float) and 0 < v <= 1 for v in levels):
        raise ValueError(f"--param: ads.levels must be a list of shares in (0, 1], got {levels!r}")
    equal = load != "natural"
    if isinstance(seeds, list):
        seed_list = [int(x) for x in seeds]
    else:
        seed_list = list(range(seed, seed + (seeds or (2 if quick else 5))))
    t0, c0 = time.perf_counter(), time.process_time()
    if load in CLOSED_LOOP_LOADS:  # the organic cost of feed / search ads in a closed loop (the simulator's)
        if load not in CLOSED_LOOP:
            raise ValueError(f"--param: ads.load={load} runs in the closed-loop simulator; import "
                             "notefeed.sim.ads_feed, ads_search and ads_serving first (notefeed eval does)")
        out = CLOSED_LOOP.get(load)(seed_list, quick, opts)
        out[0]["wall_s"] = round(time.perf_counter() - t0, 1)
        out[0]["cpu_s"] = round(time.process_time() - c0, 1)
        return out
    key = {"load": load, "levels": [float(v) for v in levels], "pctr": pctr, "quick": bool(quick)}
    if methods != list(METHODS):
        key["methods"] = list(methods)
    resume = Path(str(opts["resume"])) if opts.get("resume") else None
    done = _read_resume(resume, key) if resume is not None else {}
    rows = []
    for s in seed_list:
        seed_rows = done.get(s)
        if seed_rows is None:
            seed_rows = run_seed(s, quick, str(load), tuple(key["levels"]), pctr, tuple(methods))
            if resume is not None:
                _append_resume(resume, key, s, seed_rows)
        rows += seed_rows
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
    for r in out:
        if not r["channel"].startswith("auction"):
            continue
        base = next(b for b in out if b["method"] == "keyword" and b["channel"] == r["channel"])
        r["cpm_vs_keyword"] = round(r["cpm"] / base["cpm"] - 1, 4) if base["cpm"] else 0.0
        r["rpm_vs_keyword"] = round(r["rpm"] / base["rpm"] - 1, 4) if base["rpm"] else 0.0
        if equal or len(seed_list) > 1:
            by_seed = {g["seed"]: g for g in rows if g["method"] == "keyword" and g["channel"] == r["channel"]}
            mine = [g for g in rows if g["method"] == r["method"] and g["channel"] == r["channel"]]
            for met in ("cpm", "rpm", "ctr"):
                d = np.array([g[met] / by_seed[g["seed"]][met] - 1 for g in mine if by_seed[g["seed"]][met]])
                if len(d):
                    r[f"{met}_vs_keyword_paired"] = round(float(d.mean()), 4)
                    r[f"{met}_vs_keyword_ci95"] = _ci95(d)
            r["cpm_ci95"] = _ci95(np.array([g["cpm"] for g in mine]))
    _vs_text(rows, out)
    _vs_basic_pctr(rows, out)
    _pctr_check_ci(rows, out)
    out[0]["wall_s"] = round(time.perf_counter() - t0, 1)
    out[0]["cpu_s"] = round(time.process_time() - c0, 1)
    return out


def _read_resume(path: Path, key: dict) -> dict[int, list[dict]]:
    """Seed -> rows of the seeds in the JSON-lines file ``path`` (``ads.resume``); every line
    must have been written with the same settings ``key``."""
    import json

    done: dict[int, list[dict]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec["key"] != key:
                    raise ValueError(f"--param ads.resume: {path} holds a run with {rec['key']}, not {key}")
                done[int(rec["seed"])] = rec["rows"]
    return done


def _append_resume(path: Path, key: dict, seed: int, rows: list[dict]) -> None:
    """One line per seed, written by one ``write`` on an ``O_APPEND`` descriptor, so processes
    running other seeds into the same file do not interleave their lines."""
    import json
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps({"key": key, "seed": seed, "rows": rows}) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _vs_text(rows: list[dict], out: list[dict]) -> None:
    """Two-tower rows: per-seed paired differences to the same method with ``semantic/text``
    (``keyword+twotower`` to ``keyword+semantic``, ``+rewrite`` to ``+rewrite``), same channel
    and tier; coverage as a difference in points, money and CTR as a relative change."""
    by = {(g["method"], g["channel"], g["tier"], g["seed"]): g for g in rows}
    for r in out:
        if "twotower" not in r["method"]:
            continue
        ref = r["method"].replace("twotower", "semantic")
        ch = r["channel"].replace("semantic/twotower", "semantic/text")
        mine = [g for g in rows if (g["method"], g["channel"], g["tier"]) == (r["method"], r["channel"], r["tier"])]
        for met, rel in (("click_coverage", False), ("conversion_coverage", False), ("noise_ratio", False),
                         ("cpm", True), ("rpm", True), ("ctr", True)):
            pairs = [(g[met], by[(ref, ch, r["tier"], g["seed"])][met]) for g in mine
                     if met in g and (ref, ch, r["tier"], g["seed"]) in by]
            if not pairs:
                continue
            d = np.array([a / b - 1 if rel else a - b for a, b in pairs if not rel or b])
            if len(d):
                r[f"{met}_vs_text"] = round(float(d.mean()), 4)
                r[f"{met}_vs_text_ci95"] = _ci95(d)



def _vs_basic_pctr(rows: list[dict], out: list[dict]) -> None:
    """With ``ads.pctr=both``: rows of the default (evidence) pCTR get per-seed paired relative
    differences to the same method and channel with the basic pCTR (``*_vs_basic_pctr``)."""
    suffix = _suffix("basic")
    by = {(g["method"], g["channel"], g["seed"]): g for g in rows}
    for r in out:
        if not r["channel"].startswith("auction") or r["channel"].endswith(suffix):
            continue
        ref = r["channel"] + suffix
        mine = [g for g in rows if (g["method"], g["channel"]) == (r["method"], r["channel"])]
        for met in ("cpm", "rpm", "ctr"):
            d = np.array([g[met] / by[(r["method"], ref, g["seed"])][met] - 1 for g in mine
                          if (r["method"], ref, g["seed"]) in by and by[(r["method"], ref, g["seed"])][met]])
            if len(d):
                r[f"{met}_vs_basic_pctr"] = round(float(d.mean()), 4)
                r[f"{met}_vs_basic_pctr_ci95"] = _ci95(d)


def _pctr_check_ci(rows: list[dict], out: list[dict]) -> None:
    """Auction rows: the held-out check of the two pCTR models as per-seed paired differences,
    evidence - basic, of log-loss and AUC (``pctr_logloss_evidence_minus_basic_ci95``, ...)."""
    for r in out:
        mine = [g for g in rows if (g["method"], g["channel"], g["tier"]) == (r["method"], r["channel"], r["tier"])]
        for met in ("logloss", "auc"):
            for tag in ("", "_twotower"):
                a, b = f"pctr_{met}_evidence{tag}", f"pctr_{met}_basic{tag}"
                d = np.array([g[a] - g[b] for g in mine if a in g and b in g])
                d = d[np.isfinite(d)]
                if len(d):
                    r[f"pctr_{met}_evidence_minus_basic{tag}"] = round(float(d.mean()), 5)
                    r[f"pctr_{met}_evidence_minus_basic{tag}_ci95"] = _ci95(d)


EVAL_STAGES.register("ads")(evaluate_ads)
