"""Ads in ``GET /v1/feed`` and ``GET /v1/search`` pages, and the ad event endpoint.

Off, at no cost, while the workspace has no running campaign (``<workspace>/ads/ads.json``):
the page carries no ``ads`` key. Otherwise, per page:

1. **recall**: search ads by the query (``keyword/match`` on bid keywords by match type,
   ``keyword/rewrite`` on the search pipeline's own rewrites, ``semantic/text`` by the query's
   text vector); feed ads by the user (``category/interest``: ads of the categories of the user's
   history, scored by their share of it; ``semantic/text`` by the mean text vector of the
   history), merged with per-channel quotas (:func:`~notefeed.ads.recall.merge_quotas`);
2. **eligibility**: campaign running and active, targeting (age from the user's ``age``
   attribute, interests = the user's history categories, category = the query's predicted
   category), frequency cap per user and campaign per day, the pacing throttle
   (:class:`~notefeed.ads.pacing.PidPacer`, refuses a spent budget), a note ad not already on
   the page, one ad per campaign;
3. **auction**: pCTR = the ad's smoothed CTR on this server x ``(0.5 + relevance)``, pCVR its
   smoothed CVR; eCPM = bid x pCTR (x pCVR for oCPC); GSP with reserve and relevance floor
   (:func:`~notefeed.ads.auction.gsp_auction`) for as many slots as the page allows;
4. **slots**: :func:`~notefeed.ads.auction.place_ads` (first position, spacing from organic
   notes, load cap).

The page's ``items`` stay the organic notes; ``ads`` lists the winners, each a page item
(the promoted note's fields, or the creative's ``title``/``text``) plus ``position`` (its index
in the merged page: insert the ads in list order, ``items.insert(ad["position"], ad)``) and
``ad``: ``{"ad_id", "campaign_id", "advertiser_id", "impression_id", "price", "bidding",
"channel", "label": "sponsored"}``; ``price`` is the GSP cost of a click.

Charging: ``POST /v1/ads/events`` ``{"events": [{"impression_id", "type": "click" |
"conversion", "ts"?}]}`` (write token). The first click on an impression charges its price to
the campaign's daily budget through the pacing controller; a repeated click is accepted but
not charged again; a conversion counts towards the ad's CVR (oCPC) after a click. An
impression lives ``impression_ttl_s`` on the serving process that served it. A click on a note
ad may also be sent to ``POST /v1/events`` as organic engagement; that charges nothing.

Settings: :class:`AdSlotsConfig`, from ``<workspace>/ads/serving.json`` when present.
Known limits: spend and impressions live in the serving process (a restart forgets the day's
spend; with several workers each paces its own share of the budget).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from notefeed.ads.auction import FrequencyCap, click_bids, gsp_auction, place_ads
from notefeed.ads.base import AdCandidates
from notefeed.ads.keywords import KeywordIndex
from notefeed.ads.pacing import PidGains, PidPacer
from notefeed.ads.recall import merge_quotas
from notefeed.ads.schema import Ad, Campaign
from notefeed.recall.ann import AnnIndex

__all__ = ["AdSlotsConfig", "AdServer", "page_ads", "ad_server", "add_ad_event_routes", "AdEvent", "AdEventBatch"]


class AdSlotsConfig(BaseModel):
    """Ad serving settings (``<workspace>/ads/serving.json``; keys left out: these defaults)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    first: int = Field(2, ge=0, le=100, description="earliest 0-based position of an ad in the page")
    spacing: int = Field(4, ge=1, le=100, description="organic notes at least between two ads")
    load_cap: float = Field(0.2, ge=0.0, le=1.0, description="ads at most this share of the page")
    reserve: float = Field(0.05, ge=0.0, description="least cost per click")
    relevance_floor: float = Field(0.05, ge=0.0, le=1.0)
    freq_cap_per_day: int = Field(3, ge=1, description="impressions of one campaign per user per day")
    recall_k: int = Field(100, ge=1, le=10_000)
    quotas: dict[str, int] = Field(default_factory=lambda: {
        "keyword/match": 60, "keyword/rewrite": 30, "semantic/text": 40, "category/interest": 60})
    prior_ctr: float = Field(0.02, gt=0.0, lt=1.0)
    prior_cvr: float = Field(0.05, gt=0.0, lt=1.0)
    prior_weight: float = Field(50.0, gt=0.0, description="pseudo-impressions behind the priors")
    pacing_p_start: float = Field(1.0, gt=0.0, le=1.0, description="pass rate of a campaign at the start of a day")
    pacing_update_s: float = Field(60.0, gt=0.0)
    history_len: int = Field(30, ge=1, le=1000, description="recent history notes behind the user vector")
    encoder_notes: int = Field(2000, ge=0, le=100_000, description="catalogue notes the ad text encoder is fitted with")
    impression_ttl_s: float = Field(86_400.0, gt=0.0)
    max_impressions: int = Field(200_000, ge=1)


class AdEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    impression_id: str = Field(min_length=1, max_length=64)
    type: Literal["click", "conversion"]
    ts: float | None = Field(default=None, ge=0, le=2**53, allow_inf_nan=False,
                             description="unix seconds (default: the server clock)")


class AdEventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[AdEvent] = Field(min_length=1, max_length=1000)


def _note_texts(engine: Any, items: list[int]) -> list[str]:
    """Title, text, tags and category of catalogue notes (the category keeps a text non-empty)."""
    cat, ds = engine.catalog, engine.ds
    notes = ds.notes
    out = []
    for i in items:
        if i < ds.n_items:
            tags = notes["tags"].iat[i]
            parts = [str(notes["title"].iat[i]), str(notes["text"].iat[i]),
                     " ".join(map(str, tags)) if isinstance(tags, list | tuple | np.ndarray) else ""]
        elif i in cat.published:
            n = cat.published[i]
            parts = [n.title, n.text, " ".join(n.tags)]
        else:
            parts = []
        parts.append(cat.category_name(i))
        out.append(" ".join(p for p in parts if p))
    return out


class _AdIndex:
    """What the auction needs about the current ads, rebuilt when the store changes."""

    def __init__(self, engine: Any, store: Any, cfg: AdSlotsConfig) -> None:
        self.ads: list[Ad] = list(store.ads.values())
        self.campaigns: dict[str, Campaign] = dict(store.campaigns)
        self.camp = [self.campaigns[a.campaign_id] for a in self.ads]
        self.note_item = [engine.catalog.index.get(a.note_id) if a.note_id else None for a in self.ads]
        # keyword rows: one per (ad, keyword), so a keyword's own bid applies when it matched
        self.kw_ad, self.kw_bid, rows = [], [], []
        for j, a in enumerate(self.ads):
            for k in a.keywords:
                rows.append((len(self.kw_ad), k.text, k.match))
                self.kw_ad.append(j)
                self.kw_bid.append(k.bid if k.bid is not None else self.camp[j].bid)
        self.kw = KeywordIndex(rows)
        self.by_category: dict[str, list[int]] = {}
        for j, a in enumerate(self.ads):
            c = a.category or (engine.catalog.category_name(self.note_item[j]) if self.note_item[j] is not None else None)
            if c:
                self.by_category.setdefault(c, []).append(j)
        texts = []
        for j, a in enumerate(self.ads):
            note = _note_texts(engine, [self.note_item[j]])[0] if self.note_item[j] is not None else ""
            texts.append(" ".join(p for p in (a.title, a.text, a.category or "", note,
                                              " ".join(k.text for k in a.keywords)) if p) or a.id)
        from notefeed.content.text import TextEncoder

        n_items = engine.catalog.n_items
        sample = np.random.default_rng(0).choice(n_items, min(cfg.encoder_notes, n_items), replace=False)
        self.encoder = TextEncoder(dim=64).fit(texts + _note_texts(engine, sorted(sample.tolist())))
        vecs = self.encoder.transform(texts)
        self.ann = AnnIndex(vecs.shape[1], kind="auto", expected=len(vecs))
        self.ann.add(vecs, np.arange(len(vecs), dtype=np.int64))
        self.bid = np.array([c.bid for c in self.camp], np.float64)
        self.ocpc = np.array([c.bidding == "ocpc" for c in self.camp], bool)
        self.note_vecs: OrderedDict[int, np.ndarray] = OrderedDict()  # catalogue item -> vector (LRU)

    def running(self, now: float) -> bool:
        return any(c.running(now) for c in self.campaigns.values())

    def vectors(self, engine: Any, items: list[int]) -> np.ndarray:
        miss = [i for i in items if i not in self.note_vecs]
        if miss:
            for i, v in zip(miss, self.encoder.transform(_note_texts(engine, miss)), strict=True):
                self.note_vecs[i] = v
            while len(self.note_vecs) > 50_000:
                self.note_vecs.popitem(last=False)
        return np.stack([self.note_vecs[i] for i in items])

    # -- channels (each: AdCandidates of ad rows, best first) ----------------------------------
    def keyword(self, texts: list[str], discount: float, name: str) -> tuple[AdCandidates, dict[int, float]]:
        best: dict[int, tuple[float, float]] = {}  # ad row -> (score, bid of the matched keyword)
        for t in texts:
            rows, sc = self.kw.match(t)
            for r, s in zip(rows.tolist(), sc.tolist(), strict=True):
                j, s = self.kw_ad[r], s * discount
                old = best.get(j, (0.0, 0.0))
                if s > old[0] or (s == old[0] and self.kw_bid[r] > old[1]):
                    best[j] = (s, self.kw_bid[r])
        if not best:
            return AdCandidates.empty(), {}
        ids = np.fromiter(best, np.int64, len(best))
        sc = np.array([best[j][0] for j in best], np.float32)
        o = np.lexsort((ids, -sc))
        return AdCandidates(ids[o], sc[o], [name] * len(o)), {j: b for j, (_, b) in best.items()}

    def semantic(self, v: np.ndarray | None, k: int) -> AdCandidates:
        if v is None or not np.any(v) or not len(self.ads):
            return AdCandidates.empty()
        sc, ids = self.ann.search(v[None, :].astype(np.float32), min(k, len(self.ads)))
        keep = (ids[0] >= 0) & (sc[0] > 0)
        return AdCandidates(ids[0][keep], sc[0][keep].astype(np.float32), ["semantic/text"] * int(keep.sum()))

    def category(self, shares: dict[str, float]) -> AdCandidates:
        pairs = [(j, s) for c, s in shares.items() for j in self.by_category.get(c, ())]
        if not pairs:
            return AdCandidates.empty()
        pairs.sort(key=lambda p: (-p[1], p[0]))
        return AdCandidates(np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.float32),
                            ["category/interest"] * len(pairs))


class AdServer:
    """Per serving process: the ad index, counters, impressions, frequency caps and pacing."""

    def __init__(self, engine: Any, config: AdSlotsConfig | None = None) -> None:
        from notefeed.serve.ads import ads_store

        self.engine = engine
        self.store = ads_store(engine)
        self.cfg = config or self._load_config(Path(engine.workspace) / "ads" / "serving.json")
        self._lock = threading.RLock()
        self._index: _AdIndex | None = None
        self._version = -1
        self._checked = 0.0
        self.cap = FrequencyCap(self.cfg.freq_cap_per_day)
        self.pacer = PidPacer({}, PidGains(p_start=self.cfg.pacing_p_start), update_s=self.cfg.pacing_update_s)
        self.rng = np.random.default_rng()
        self.shown: Counter[str] = Counter()
        self.clicks: Counter[str] = Counter()
        self.convs: Counter[str] = Counter()
        self.impressions: OrderedDict[str, dict[str, Any]] = OrderedDict()

    @staticmethod
    def _load_config(path: Path) -> AdSlotsConfig:
        if not path.exists():
            return AdSlotsConfig()
        try:
            return AdSlotsConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValidationError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None

    def index(self, now: float) -> _AdIndex | None:
        """The current index, or None when no campaign runs (ads off)."""
        if not self.cfg.enabled:
            return None
        wall = time.monotonic()
        if wall - self._checked > 2.0:  # another worker's admin write: at most one stat per 2 s
            self._checked = wall
            self.store.refresh()
        if self.store.version != self._version:
            with self._lock:
                if self.store.version != self._version:
                    version = self.store.version
                    # built while there are ads at all; whether a campaign runs is asked per request
                    self._index = _AdIndex(self.engine, self.store, self.cfg) if self.store.ads else None
                    self.pacer.sync_budgets({c.id: c.daily_budget for c in self.store.campaigns.values()})
                    self._version = version
        idx = self._index
        return idx if idx is not None and idx.running(now) else None

    # -- the page --------------------------------------------------------------------------------
    def n_slots(self, n_organic: int) -> int:
        c = self.cfg
        return sum(k == "ad" for k, _ in place_ads(n_organic, n_organic, c.first, c.spacing, c.load_cap))

    def feed_ads(self, user_id: str, ctx: Any, page_notes: list[str]) -> list[dict[str, Any]] | None:
        now = float(self.engine.clock())
        idx = self.index(now)
        if idx is None:
            return None
        slots = self.n_slots(len(page_notes))
        if slots == 0:
            return []
        hist = [int(i) for i in np.asarray(ctx.history)[-self.cfg.history_len:]]
        cats = Counter(self.engine.catalog.category_name(i) for i in hist)
        shares = {c: n / len(hist) for c, n in cats.most_common(5)} if hist else {}
        uvec = None
        if hist:
            v = idx.vectors(self.engine, hist).mean(axis=0)
            uvec = v / max(float(np.linalg.norm(v)), 1e-12)
        results = {"category/interest": idx.category(shares), "semantic/text": idx.semantic(uvec, self.cfg.recall_k)}
        return self._auction(idx, results, {}, user_id, page_notes, slots, now, tuple(shares), None)

    def search_ads(self, query: str, rewrites: list[str], category: str | None, user_id: str | None,
                   page_notes: list[str]) -> list[dict[str, Any]] | None:
        now = float(self.engine.clock())
        idx = self.index(now)
        if idx is None:
            return None
        slots = self.n_slots(len(page_notes))
        if slots == 0 or not query.strip():
            return []
        kw, kw_bid = idx.keyword([query], 1.0, "keyword/match")
        rw, rw_bid = idx.keyword(rewrites, 0.9, "keyword/rewrite")
        qv = idx.encoder.transform([query])[0]
        results = {"keyword/match": kw, "keyword/rewrite": rw, "semantic/text": idx.semantic(qv, self.cfg.recall_k)}
        bids = {**rw_bid, **kw_bid}
        interests: tuple[str, ...] = ()
        if user_id is not None:
            hist = self.engine.context(user_id).history[-self.cfg.history_len:]
            interests = tuple(c for c, _ in Counter(self.engine.catalog.category_name(int(i)) for i in hist).most_common(5))
        return self._auction(idx, results, bids, user_id or "", page_notes, slots, now, interests, category)

    def _auction(self, idx: _AdIndex, results: dict[str, AdCandidates], kw_bids: dict[int, float], user_id: str,
                 page_notes: list[str], slots: int, now: float, interests: tuple[str, ...],
                 category: str | None) -> list[dict[str, Any]]:
        cfg = self.cfg
        names = [n for n in results if len(results[n])]
        if not names:
            return []
        cand = merge_quotas([results[n] for n in names], [cfg.quotas.get(n, cfg.recall_k) for n in names], cfg.recall_k)
        rel = np.zeros(len(idx.ads), np.float32)  # best relevance any channel gave each ad
        for r in results.values():
            np.maximum.at(rel, r.ids, r.scores)
        on_page = set(page_notes)
        age = self._age(user_id)
        best_of: dict[str, int] = {}  # campaign -> candidate position (one ad per campaign)
        keep: list[int] = []
        with self._lock:
            for p, j in enumerate(cand.ids.tolist()):
                ad, camp = idx.ads[j], idx.camp[j]
                if not camp.running(now) or camp.id in best_of or (ad.note_id and ad.note_id in on_page):
                    continue
                if not camp.targeting.matches(age, interests, category):
                    continue
                if not self.cap.allowed(user_id, camp.id, now) or not self.pacer.allow(camp.id, now, self.rng):
                    continue
                best_of[camp.id] = p
                keep.append(p)
            if not keep:
                return []
            ids = cand.ids[keep]
            rels = rel[ids].astype(np.float64)
            ad_ids = [idx.ads[j].id for j in ids.tolist()]
            pctr = np.clip(np.array([self._rate(self.clicks[a], self.shown[a], cfg.prior_ctr) for a in ad_ids])
                           * (0.5 + np.clip(rels, 0.0, 1.0)), 1e-6, 0.99)
            pcvr = np.array([self._rate(self.convs[a], self.clicks[a], cfg.prior_cvr) for a in ad_ids])
            base = np.array([kw_bids.get(j, idx.bid[j]) for j in ids.tolist()])
            bids = click_bids(base, idx.ocpc[ids], pcvr)
            res = gsp_auction(bids, pctr, slots, cfg.reserve, relevance=rels, relevance_floor=cfg.relevance_floor)
            layout = place_ads(len(page_notes), len(res.winners), cfg.first, cfg.spacing, cfg.load_cap)
            positions = [pos for pos, (kind, _) in enumerate(layout) if kind == "ad"]
            out = []
            for pos, w, price in zip(positions, res.winners.tolist(), res.prices.tolist(), strict=False):
                j = int(ids[w])
                ad, camp = idx.ads[j], idx.camp[j]
                imp = uuid.uuid4().hex
                self.impressions[imp] = {"ad_id": ad.id, "campaign_id": camp.id, "price": float(price),
                                         "user_id": user_id, "ts": now, "clicked": False}
                self.shown[ad.id] += 1
                self.cap.record(user_id, camp.id, now)
                item: dict[str, Any] = ({**self.engine.catalog.note_json(idx.note_item[j])}
                                        if idx.note_item[j] is not None else {"note_id": ad.note_id})
                if ad.title:
                    item["title"] = ad.title
                if ad.text:
                    item["text"] = ad.text
                item["position"] = pos
                item["ad"] = {"ad_id": ad.id, "campaign_id": camp.id, "advertiser_id": camp.advertiser_id,
                              "impression_id": imp, "price": round(float(price), 6), "bidding": camp.bidding,
                              "channel": cand.channels[keep[w]], "label": "sponsored"}
                out.append(item)
            self._expire(now)
        return out

    def _rate(self, hits: float, trials: float, prior: float) -> float:
        m = self.cfg.prior_weight
        return (hits + prior * m) / (trials + m)

    def _age(self, user_id: str) -> int | None:
        users = getattr(self.engine.ds, "users", None)
        u = self.engine.ds.user_index.get(user_id) if user_id else None
        if users is None or u is None or "age" not in users.columns:
            return None
        try:
            return int(users["age"].iat[u])
        except (TypeError, ValueError):
            return None

    def _expire(self, now: float) -> None:
        imps = self.impressions
        while imps and (len(imps) > self.cfg.max_impressions
                        or next(iter(imps.values()))["ts"] < now - self.cfg.impression_ttl_s):
            imps.popitem(last=False)

    # -- events ----------------------------------------------------------------------------------
    def event(self, ev: AdEvent) -> tuple[float, str | None]:
        """(charged, rejection reason or None)."""
        now = float(self.engine.clock()) if ev.ts is None else float(ev.ts)
        with self._lock:
            imp = self.impressions.get(ev.impression_id)
            if imp is None:
                return 0.0, "unknown or expired impression_id"
            if ev.type == "conversion":
                if not imp["clicked"]:
                    return 0.0, "conversion before any click on this impression"
                if not imp.get("converted"):
                    imp["converted"] = True
                    self.convs[imp["ad_id"]] += 1
                return 0.0, None
            if imp["clicked"]:  # a repeated click: counted once, charged once
                return 0.0, None
            imp["clicked"] = True
            self.clicks[imp["ad_id"]] += 1
            if imp["campaign_id"] not in self.pacer.state:  # the campaign was deleted since
                return 0.0, None
            self.pacer.record(imp["campaign_id"], imp["price"], now)
            return imp["price"], None

    def spend(self) -> dict[str, Any]:
        now = float(self.engine.clock())
        self.index(now)  # budgets follow the store
        with self._lock:
            return {c: {"daily_budget": s.budget, "spent": round(self.pacer.spent(c, now), 6), "pass_rate": s.p}
                    for c, s in self.pacer.state.items()}


_LOCK = threading.Lock()


def ad_server(engine: Any) -> AdServer:
    srv = getattr(engine, "ad_server", None)
    if srv is None:
        with _LOCK:
            srv = getattr(engine, "ad_server", None)
            if srv is None:
                srv = AdServer(engine)
                engine.ad_server = srv
    return srv


def page_ads(engine: Any, page_notes: list[str], *, user_id: str | None, ctx: Any = None, query: str | None = None,
             rewrites: list[str] | None = None, category: str | None = None) -> tuple[list[dict[str, Any]] | None, float]:
    """The hook of the feed (``ctx`` given) and search (``query`` given) routes: (ads or None
    when ads are off, ms spent). Never fails the page: an error serves no ads (fail open)."""
    t0 = time.perf_counter()
    if not (Path(engine.workspace) / "ads" / "ads.json").exists() and getattr(engine, "ads_store", None) is None:
        return None, 0.0
    try:
        srv = ad_server(engine)
        if query is not None:
            out = srv.search_ads(query, rewrites or [], category, user_id, page_notes)
        else:
            out = srv.feed_ads(user_id or "", ctx, page_notes)
    except Exception:  # fail open: the organic page is served without ads
        import logging

        logging.getLogger(__name__).exception("ads: serving the ad slots failed")
        engine.metrics.inc("stage_errors_total", stage="ads")
        out = None
    return out, (time.perf_counter() - t0) * 1e3


def add_ad_event_routes(app: FastAPI | APIRouter, engine: Any, write_deps: list[Any]) -> None:
    @app.post("/v1/ads/events", dependencies=write_deps, tags=["ads"])
    def ad_events(batch: AdEventBatch) -> dict[str, Any]:
        """Clicks and conversions on served ads (by ``impression_id``); a click charges the budget."""
        if getattr(engine, "ads_store", None) is None and not (Path(engine.workspace) / "ads" / "ads.json").exists():
            raise HTTPException(409, "events: this workspace has no ads")
        srv = ad_server(engine)
        charged, rejected, accepted = 0.0, [], 0
        for i, ev in enumerate(batch.events):
            c, why = srv.event(ev)
            if why is None:
                accepted += 1
                charged += c
            else:
                rejected.append({"index": i, "impression_id": ev.impression_id, "reason": why})
        return {"accepted": accepted, "charged": round(charged, 6), "rejected": rejected}
