"""Ads in ``GET /v1/feed`` and ``GET /v1/search`` pages, and the ad event endpoint.

Off, at no cost, while the workspace has no running campaign (``<workspace>/ads/ads.json``):
the page carries no ``ads`` key. Otherwise, per page:

1. **recall**: search ads by the query (``keyword/match`` on bid keywords by match type,
   ``keyword/rewrite`` on the search pipeline's own rewrites, and ``semantic/twotower``, the
   query/ad towers trained on this workspace's search-ad clicks by ``notefeed ads
   train-towers`` (:mod:`notefeed.ads.twotower`), when ``<workspace>/ads/twotower/`` exists,
   else ``semantic/text`` by the query's text vector); feed ads by the user (``category/interest``: ads of the categories of the user's
   history, scored by their share of it; ``semantic/text`` by the mean text vector of the
   history), merged with per-channel quotas (:func:`~notefeed.ads.recall.merge_quotas`);
2. **eligibility**: campaign running and active, targeting (age from the user's ``age``
   attribute, interests = the user's history categories, category = the query's predicted
   category), frequency cap per user and campaign per day, the pacing throttle
   (:class:`~notefeed.ads.pacing.PidPacer`, refuses a spent budget), a note ad not already on
   the page, one ad per campaign;
3. **auction**: pCTR = the ad's smoothed CTR on this server x ``(0.5 + relevance)``, or with
   ``pctr: model`` the efficiency model trained on this workspace's logged impressions
   (``<workspace>/ads/pctr/``, ``notefeed ads train-pctr``, :mod:`notefeed.ads.efficiency`) when
   there is one; pCVR its
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

The first click on a search ad is appended, with its query, to ``<workspace>/ads/clicks.jsonl``
(``log_clicks``): the towers' training data. Every ad shown is appended, with the efficiency
model's features and the pCTR that priced it, to ``<workspace>/ads/impressions.jsonl``, and so
are its first click and conversion (``log_impressions``): the efficiency model's training data. Settings: :class:`AdSlotsConfig`, from
``<workspace>/ads/serving.json`` when present.
The day's spend is saved to ``<workspace>/ads/spend.json`` after every charge and read back
at start. With ``online.backend: redis`` (``--workers N``) the spend lives in Redis instead,
one figure for all workers (:class:`~notefeed.ads.spend.RedisSpendLedger`): a click is charged
by an atomic check-and-add (only while the day's spend is below the budget, so together the
workers overspend by less than one click), and each worker's pacer reads every campaign's
shared spend at most every ``spend_sync_s``. The impressions live there too
(:class:`~notefeed.ads.spend.RedisImpressions`): a click or conversion sent to any worker, or
after a restart, finds its impression, and claim + charge are one atomic step, so a click is
charged once however many workers receive it. With one process, a restart reads the
impressions of the last ``impression_ttl_s`` back from the tail of ``ads/impressions.jsonl``
(with ``log_impressions`` off, a click after a restart is rejected as unknown).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from notefeed.ads.auction import FrequencyCap, click_bids, gsp_auction, place_ads
from notefeed.ads.base import AdCandidates, AdRequest
from notefeed.ads.efficiency import (
    IMPRESSION_LOG,
    PCTR_DIR,
    ROTATED_IMPRESSION_LOG,
    EfficiencyModel,
    load_workspace_pctr,
    serving_features,
)
from notefeed.ads.keywords import KeywordIndex
from notefeed.ads.pacing import PidGains, PidPacer
from notefeed.ads.recall import (
    SERVING_DEFAULTS,
    at_least,
    best_scores,
    category_candidates,
    interest_shares,
    merge_quotas,
)
from notefeed.ads.schema import Ad, Campaign, Targeting
from notefeed.ads.spend import RedisImpressions, RedisSpendLedger
from notefeed.ads.twotower import (
    CLICK_LOG,
    TOWER_DIR,
    TwoTowerAdChannel,
    load_workspace_towers,
    workspace_channel,
)
from notefeed.recall.ann import AnnIndex

log = logging.getLogger(__name__)

__all__ = ["AdSlotsConfig", "AdServer", "page_ads", "ad_server", "add_ad_event_routes", "AdEvent", "AdEventBatch",
           "anonymise_ad_logs"]

#: the ads folder's lock file: appends to its logs hold it shared, :func:`anonymise_ad_logs` exclusive
LOGS_LOCK = ".logs.lock"


@contextmanager
def _logs_lock(folder: Path, exclusive: bool = False) -> Iterator[None]:
    """Hold the ads logs' advisory ``flock`` (released when the process dies): shared by the
    workers' appends, exclusive while a log is rewritten, so that no line lands in a file
    being replaced."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOGS_LOCK, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def anonymise_ad_logs(folder: str | Path, user_id: str, until: float) -> tuple[int, set[str]]:
    """Blank ``user_id`` in the ads logs' lines up to time ``until`` (an erased user): the
    impression log, its rotated file and the click log, each rewritten atomically under the
    logs' exclusive lock. The lines stay (what advertisers were charged for, what the pCTR and
    the ad towers learn from), without the user. Returns (lines changed, their impression ids)."""
    import os

    folder = Path(folder)
    changed, ids = 0, set()
    with _logs_lock(folder, exclusive=True):
        for name in (IMPRESSION_LOG, ROTATED_IMPRESSION_LOG, CLICK_LOG):
            path = folder / name
            if not path.exists():
                continue
            n = 0
            tmp = path.with_name(f".{name}.tmp")
            with path.open("rb") as src, tmp.open("wb") as out:
                for raw in src:
                    try:
                        e = json.loads(raw)
                        mine = e.get("user_id") == user_id and float(e.get("ts", 0.0)) <= until
                    except (ValueError, TypeError, AttributeError):
                        mine = False  # a torn line stays as it is
                    if mine:
                        e["user_id"] = ""
                        if "id" in e:
                            ids.add(str(e["id"]))
                        raw = (json.dumps(e, separators=(",", ":")) + "\n").encode()
                        n += 1
                    out.write(raw)
                out.flush()
                os.fsync(out.fileno())
            if n:
                os.replace(tmp, path)
            else:
                tmp.unlink()
            changed += n
    return changed, ids


class AdSlotsConfig(BaseModel):
    """Ad serving settings (``<workspace>/ads/serving.json``; keys left out: these defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no NaN/infinite float
    enabled: bool = True
    first: int = Field(2, ge=0, le=100, description="earliest 0-based position of an ad in the page")
    spacing: int = Field(4, ge=1, le=100, description="organic notes at least between two ads")
    load_cap: float = Field(0.2, ge=0.0, le=1.0, description="ads at most this share of the page")
    reserve: float = Field(0.05, ge=0.0, description="least cost per click")
    relevance_floor: float = Field(SERVING_DEFAULTS["relevance_floor"], ge=0.0, le=1.0)
    search_semantic_floor: float = Field(
        SERVING_DEFAULTS["search_semantic_floor"], ge=0.0, le=1.0,
        description="least cosine of the query to an ad for `semantic/text` to recall it for a search page "
        "(the towers' scores and feed ads are on other scales: not applied to them)")
    freq_cap_per_day: int = Field(3, ge=1, description="impressions of one campaign per user per day")
    recall_k: int = Field(SERVING_DEFAULTS["recall_k"], ge=1, le=10_000)
    quotas: dict[str, int] = Field(default_factory=lambda: dict(SERVING_DEFAULTS["quotas"]))
    search_semantic: Literal["auto", "text", "twotower"] = Field(
        "auto", description="semantic recall of search ads: the trained query/ad towers "
        "(<workspace>/ads/twotower/, `notefeed ads train-towers`) when present (auto), or the text encoder")
    log_clicks: bool = Field(True, description="append each first click on a search ad, with its query, to "
                             "<workspace>/ads/clicks.jsonl (what `notefeed ads train-towers` learns from)")
    pctr: Literal["heuristic", "model"] = Field(
        "heuristic", description="pCTR of the auction: the ad's smoothed CTR x (0.5 + relevance) (heuristic), or "
        "the efficiency model trained on this workspace's impressions (<workspace>/ads/pctr/, `notefeed ads "
        "train-pctr`) when there is one (model). The default is the heuristic: on the simulator the trained "
        "model predicted clicks better offline but got 3% fewer clicks and 21% less revenue "
        "(docs/results/ads/serving_pctr.json)")
    explore: float = Field(0.0, ge=0.0, le=1.0, description="share of ad requests whose slots go to eligible "
                           "candidates in random order instead of by eCPM, each click charged the reserve price; "
                           "logged with explore=1: rows `notefeed ads train-pctr --explore-only` learns from "
                           "without the served pCTR's selection")
    log_impressions: bool = Field(True, description="append every ad shown, with its features and served pCTR, and "
                                  "its first click and conversion to <workspace>/ads/impressions.jsonl (what "
                                  "`notefeed ads train-pctr` learns from)")
    impression_log_mb: float = Field(256.0, gt=0.0, description="past this size the impression log is rotated to "
                                     "impressions.1.jsonl (one older file kept)")
    prior_ctr: float = Field(0.02, gt=0.0, lt=1.0)
    prior_cvr: float = Field(0.05, gt=0.0, lt=1.0)
    prior_weight: float = Field(50.0, gt=0.0, description="pseudo-impressions behind the priors")
    pacing_p_start: float = Field(1.0, gt=0.0, le=1.0, description="pass rate of a campaign at the start of a day")
    pacing_update_s: float = Field(60.0, gt=0.0)
    history_len: int = Field(SERVING_DEFAULTS["history_len"], ge=1, le=1000,
                             description="recent history notes behind the user vector")
    encoder_notes: int = Field(2000, ge=0, le=100_000, description="catalogue notes the ad text encoder is fitted with")
    encoder_ads: int = Field(20_000, ge=1, description="ad texts (at most) the ad text encoder is fitted with")
    sync_build_max_ads: int = Field(5000, ge=0, description="more ads than this: the index is rebuilt in the background")
    spend_sync_s: float = Field(1.0, ge=0.0, description="with online.backend redis: how often a worker reads "
                                "the shared spend of all campaigns (a charge always updates it)")
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


class _NoteText:
    """Title, text, tags and category of catalogue notes (the category keeps a text non-empty);
    the base dataset's columns are read once."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        notes = engine.ds.notes
        self.n_base = engine.ds.n_items
        tags = [" ".join(map(str, t)) if isinstance(t, list | tuple | np.ndarray) else "" for t in notes["tags"].tolist()]
        self.base = [" ".join(p for p in (str(a), str(b), c) if p)
                     for a, b, c in zip(notes["title"].tolist(), notes["text"].tolist(), tags, strict=True)]

    def __call__(self, items: list[int]) -> list[str]:
        cat = self.engine.catalog
        out = []
        for i in items:
            if i < self.n_base:
                t = self.base[i]
            elif i in cat.published:
                n = cat.published[i]
                t = " ".join(p for p in (n.title, n.text, " ".join(n.tags)) if p)
            else:
                t = ""
            out.append(f"{t} {cat.category_name(i)}".strip())
        return out


class _AdIndex:
    """What the auction needs about the current ads, as arrays, rebuilt when the store changes."""

    def __init__(self, engine: Any, campaigns: dict[str, Campaign], ads: dict[str, Ad], cfg: AdSlotsConfig,
                 note_text: _NoteText, towers: tuple[Any, Any] | None = None) -> None:
        self.ads: list[Ad] = list(ads.values())
        self.campaigns: list[Campaign] = list(campaigns.values())
        cpos = {c.id: k for k, c in enumerate(self.campaigns)}
        self.camp_of = np.array([cpos[a.campaign_id] for a in self.ads], np.int64)
        self.c_start = np.array([c.start for c in self.campaigns], np.float64)
        self.c_end = np.array([np.inf if c.end is None else c.end for c in self.campaigns], np.float64)
        self.c_active = np.array([c.active for c in self.campaigns], bool)
        self.c_targeted = np.array([c.targeting.model_dump() != Targeting().model_dump() for c in self.campaigns], bool)
        self.c_bid = np.array([c.bid for c in self.campaigns], np.float64)
        self.c_ocpc = np.array([c.bidding == "ocpc" for c in self.campaigns], bool)
        self.row_of = {a.id: j for j, a in enumerate(self.ads)}
        self.note_item = [engine.catalog.index.get(a.note_id) if a.note_id else None for a in self.ads]
        self.has_note = np.array([a.note_id is not None for a in self.ads], bool)
        #: an ad for a note the catalogue does not hold (stored before the API refused those):
        #: never served, its slot would point at nothing
        self.orphan = np.array([a.note_id is not None and i is None for a, i in zip(self.ads, self.note_item,
                                                                                    strict=True)], bool)
        # keyword rows: one per (ad, keyword), so a keyword's own bid applies when it matched
        kw_ad: list[int] = []
        kw_bid: list[float] = []
        rows = []
        for j, a in enumerate(self.ads):
            for k in a.keywords:
                rows.append((len(kw_ad), k.text, k.match))
                kw_ad.append(j)
                kw_bid.append(k.bid if k.bid is not None else float(self.c_bid[self.camp_of[j]]))
        self.kw = KeywordIndex(rows)
        self.kw_ad, self.kw_bid = np.asarray(kw_ad, np.int64), np.asarray(kw_bid, np.float64)
        #: each ad row's category: its own, else its note's
        self.ad_category = [a.category or (engine.catalog.category_name(self.note_item[j]) if self.note_item[j] is not None
                                        else None) for j, a in enumerate(self.ads)]
        by_cat: dict[str, list[int]] = {}
        for j, c in enumerate(self.ad_category):
            if c:
                by_cat.setdefault(c, []).append(j)
        bid = self.c_bid[self.camp_of] if len(self.ads) else np.zeros(0)
        # a category's ads, highest campaign bid first: a feed request takes the first k of each
        self.by_category = {c: np.array(sorted(js, key=lambda j: (-bid[j], j)), np.int64) for c, js in by_cat.items()}
        texts = []
        for j, a in enumerate(self.ads):
            note = note_text([self.note_item[j]])[0] if self.note_item[j] is not None else ""
            texts.append(" ".join(p for p in (a.title, a.text, a.category or "", note,
                                              " ".join(k.text for k in a.keywords)) if p) or a.id)
        from notefeed.content.text import TextEncoder

        n_items = engine.catalog.n_items
        sample = np.random.default_rng(0).choice(n_items, min(cfg.encoder_notes, n_items), replace=False)
        rng = np.random.default_rng(1)
        fit = texts if len(texts) <= cfg.encoder_ads else [texts[i] for i in rng.choice(len(texts), cfg.encoder_ads, replace=False)]
        self.encoder = TextEncoder(dim=64).fit(fit + note_text(sorted(sample.tolist())))
        vecs = self.encoder.transform(texts)
        self.vecs = np.ascontiguousarray(vecs, np.float32)  # (n_ads, d) unit text vectors: the text_cos feature
        self.ann = AnnIndex(vecs.shape[1], kind="auto", expected=len(vecs))
        self.ann.add(vecs, np.arange(len(vecs), dtype=np.int64))
        #: ``semantic/twotower`` for search ads when the workspace has trained towers
        self.tt: TwoTowerAdChannel | None = None
        if towers is not None and cfg.search_semantic != "text" and self.ads:
            enc = towers[1]
            fast = None if enc is None else enc.transform
            self.tt = workspace_channel(towers, self.ads, kind="auto", min_score=0.0, text_encode=fast)
        self.note_vecs: OrderedDict[int, np.ndarray] = OrderedDict()  # catalogue item -> vector (LRU)
        self._running: tuple[float, np.ndarray] = (-1.0, np.zeros(len(self.campaigns), bool))
        self.version = -1  # the store version it was built from
        # this server's impressions, clicks and conversions per ad row (the priors smooth them)
        self.shown, self.clicks, self.convs = (np.zeros(len(self.ads)) for _ in range(3))

    def running(self, now: float) -> np.ndarray:
        """(n_campaigns,) bool: active and inside the window (cached per second)."""
        t = float(int(now))
        if self._running[0] != t:
            self._running = (t, self.c_active & (self.c_start <= now) & (now < self.c_end))
        return self._running[1]

    def vectors(self, note_text: _NoteText, items: list[int]) -> np.ndarray:
        miss = list(dict.fromkeys(i for i in items if i not in self.note_vecs))
        if miss:
            for i, v in zip(miss, self.encoder.transform(note_text(miss)), strict=True):
                self.note_vecs[i] = v
            while len(self.note_vecs) > 50_000:
                self.note_vecs.popitem(last=False)
        return np.stack([self.note_vecs[i] for i in items])

    # -- channels (each: AdCandidates of ad rows, best first) ----------------------------------
    def keyword(self, texts: list[str], discount: float, name: str, k: int) -> tuple[AdCandidates, dict[int, float]]:
        """Ads whose keywords match any of ``texts``: the best match per ad (then its dearest
        matching keyword), the top ``k`` by match score and bid; and each one's keyword bid."""
        parts = [self.kw.match(t) for t in texts]
        rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        if not len(rows):
            return AdCandidates.empty(), {}
        sc = np.concatenate([p[1] for p in parts]) * discount
        ads, bid = self.kw_ad[rows], self.kw_bid[rows]
        o = np.lexsort((ads, -bid, -sc))  # score, then bid, best first
        _, first = np.unique(ads[o], return_index=True)
        top = o[np.sort(first)][:k]
        ids = ads[top]
        return (AdCandidates(ids, sc[top].astype(np.float32), [name] * len(top)),
                dict(zip(ids.tolist(), bid[top].tolist(), strict=True)))

    def semantic(self, v: np.ndarray | None, k: int) -> AdCandidates:
        if v is None or not np.any(v) or not len(self.ads):
            return AdCandidates.empty()
        sc, ids = self.ann.search(v[None, :].astype(np.float32), min(k, len(self.ads)))
        keep = (ids[0] >= 0) & (sc[0] > 0)
        return AdCandidates(ids[0][keep], sc[0][keep].astype(np.float32), ["semantic/text"] * int(keep.sum()))

    def category(self, shares: dict[str, float], k: int) -> AdCandidates:
        """Ads of the user's history categories, scored by the category's share of the history."""
        return category_candidates(self.by_category, shares, k)


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
        self._building = False
        self._build_lock = threading.Lock()
        self._checked = 0.0
        self._note_text: _NoteText | None = None
        self._tower_mtime: float | None = self._tower_stamp()
        self.click_log = Path(engine.workspace) / "ads" / CLICK_LOG
        self.imp_log = Path(engine.workspace) / "ads" / IMPRESSION_LOG
        self._imp_lines = 0  # written since the last size check
        #: the trained efficiency model (``<workspace>/ads/pctr/``), or None: the heuristic pCTR
        self.pctr_model: EfficiencyModel | None = None
        self._pctr_mtime: float | None = None
        self._load_pctr()
        self.cap = FrequencyCap(self.cfg.freq_cap_per_day)
        self.pacer = PidPacer({}, PidGains(p_start=self.cfg.pacing_p_start), update_s=self.cfg.pacing_update_s)
        self.rng = np.random.default_rng()
        # per ad id (kept across index rebuilds) and per ad row of the current index
        self.counts: dict[str, list[float]] = {}  # ad id -> [shown, clicks, conversions]
        self.impressions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.spend_path = Path(engine.workspace) / "ads" / "spend.json"
        self._saved_spend: dict[str, dict[str, float]] = {}
        #: with ``online.backend: redis`` the day's spend is shared by all workers in Redis
        self.ledger: RedisSpendLedger | None = None
        self._synced = -np.inf
        on = getattr(getattr(engine, "config", None), "online", None)
        #: with Redis the impressions are shared too: a click on any worker, or after a restart, finds its impression
        self.shared: RedisImpressions | None = None
        if on is not None and on.backend == "redis":
            self.ledger = RedisSpendLedger.from_url(str(on.redis_url), prefix=on.redis_prefix)
            self.shared = RedisImpressions(self.ledger, self.cfg.impression_ttl_s)
        if self.cfg.log_impressions:  # per-ad counts (and, one process, the impressions) of before a restart
            self._restore_impressions(keep=self.shared is None)
        if self.ledger is None and self.spend_path.exists():
            try:
                self._saved_spend = dict(json.loads(self.spend_path.read_text(encoding="utf-8")))
            except (ValueError, OSError):
                log.warning("ads: %s is unreadable; today's spend starts from 0", self.spend_path)
        # budgets (and the day's spend of before a restart) now, not at the first index build: a
        # click that reaches a restarted process before its first page is charged like any other
        _, campaigns, _, _ = self.store.snapshot()
        self.pacer.sync_budgets({c.id: c.daily_budget for c in campaigns.values()})
        if self._saved_spend:
            self.pacer.load_json(self._saved_spend)
            self._saved_spend = {}

    def _tower_stamp(self) -> float | None:
        return _stamp(Path(self.engine.workspace) / "ads" / TOWER_DIR / "model.safetensors")

    def _load_pctr(self) -> None:
        """(Re)load the trained efficiency model when its file changed; unreadable: the
        heuristic pCTR serves (fail open) and the error is logged once per change."""
        m = _stamp(Path(self.engine.workspace) / "ads" / PCTR_DIR / "model.safetensors")
        if m == self._pctr_mtime:
            return
        self._pctr_mtime = m
        model = None
        if m is not None and self.cfg.pctr == "model":
            try:
                model = load_workspace_pctr(self.engine.workspace)
            except ValueError:
                log.exception("ads: the trained pCTR model is unreadable; the auction uses the heuristic pCTR")
        self.pctr_model = model

    def _towers(self) -> tuple[Any, Any] | None:
        """The workspace's trained towers, or None (none, ``search_semantic: text``, or unreadable)."""
        if self.cfg.search_semantic == "text":
            return None
        try:
            return load_workspace_towers(self.engine.workspace)
        except ValueError:
            log.exception("ads: the trained ad towers are unreadable; search ads use semantic/text")
            return None

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
            m = self._tower_stamp()
            if m != self._tower_mtime:  # new towers trained: rebuild with them
                self._tower_mtime, self._version = m, -2
            self._load_pctr()
        if self.store.version != self._version and not self._building:
            if len(self.store.ads) <= self.cfg.sync_build_max_ads:
                self._rebuild()
            else:  # a large index builds beside serving; the previous one serves meanwhile
                self._building = True
                threading.Thread(target=self._rebuild, name="ads-index", daemon=True).start()
        idx = self._index
        return idx if idx is not None and idx.running(now).any() else None

    def _rebuild(self) -> None:
        try:
            with self._build_lock:
                _, campaigns, ads, version = self.store.snapshot()
                if version == self._version:
                    return
                if self._note_text is None:
                    self._note_text = _NoteText(self.engine)
                # built while there are ads at all; whether a campaign runs is asked per request
                idx = _AdIndex(self.engine, campaigns, ads, self.cfg, self._note_text, self._towers()) if ads else None
                with self._lock:
                    if idx is not None:
                        idx.version = version
                        c = np.array([self.counts.get(a.id, [0.0, 0.0, 0.0]) for a in idx.ads], np.float64)
                        if len(c):
                            idx.shown, idx.clicks, idx.convs = c[:, 0].copy(), c[:, 1].copy(), c[:, 2].copy()
                    self._index = idx
                    self.pacer.sync_budgets({c.id: c.daily_budget for c in campaigns.values()})
                    if self._saved_spend:  # the day's spend before a restart
                        self.pacer.load_json(self._saved_spend)
                        self._saved_spend = {}
                    self._version = version
        except Exception:  # fail open: keep serving the previous index
            log.exception("ads: building the ad index failed")
            self._version = self.store.version  # not again until the next write
        finally:
            self._building = False

    def wait_ready(self, timeout: float = 600.0) -> bool:
        """Wait for a background index build; True when the index is of the store's version."""
        t_end = time.monotonic() + timeout
        self.index(float(self.engine.clock()))
        while self._version != self.store.version and time.monotonic() < t_end:
            time.sleep(0.05)
        return self._version == self.store.version

    # -- the page --------------------------------------------------------------------------------
    def n_slots(self, n_organic: int) -> int:
        c = self.cfg
        return sum(k == "ad" for k, _ in place_ads(n_organic, n_organic, c.first, c.spacing, c.load_cap))

    def _interests(self, hist: list[int]) -> dict[str, float]:
        return interest_shares([self.engine.catalog.category_name(i) for i in hist])  # type: ignore[return-value]

    def feed_ads(self, user_id: str, ctx: Any, page_notes: list[str]) -> list[dict[str, Any]] | None:
        now = float(self.engine.clock())
        idx = self.index(now)
        if idx is None:
            return None
        slots = self.n_slots(len(page_notes))
        if slots == 0:
            return []
        hist = [int(i) for i in np.asarray(ctx.history)[-self.cfg.history_len:]]
        shares = self._interests(hist)
        uvec = None
        if hist:
            assert self._note_text is not None
            v = idx.vectors(self._note_text, hist).mean(axis=0)
            uvec = v / max(float(np.linalg.norm(v)), 1e-12)
        results = {"category/interest": idx.category(shares, self.cfg.recall_k),
                   "semantic/text": idx.semantic(uvec, self.cfg.recall_k)}
        return self._auction(idx, results, {}, user_id, page_notes, slots, now, tuple(shares), None,
                             text_vec=uvec, shares=shares)

    def search_ads(self, query: str, rewrites: list[str], category: str | None, user_id: str | None,
                   page_notes: list[str]) -> list[dict[str, Any]] | None:
        now = float(self.engine.clock())
        idx = self.index(now)
        if idx is None:
            return None
        slots = self.n_slots(len(page_notes))
        if slots == 0 or not query.strip():
            return []
        k = self.cfg.recall_k
        kw, kw_bid = idx.keyword([query], 1.0, "keyword/match", k)
        rw, rw_bid = idx.keyword(rewrites, 0.9, "keyword/rewrite", k)
        results = {"keyword/match": kw, "keyword/rewrite": rw}
        qvec = idx.encoder.transform([query])[0]  # also the text_cos feature with the towers
        if idx.tt is not None:
            results["semantic/twotower"] = idx.tt.retrieve(AdRequest(query=query), k)
        else:
            results["semantic/text"] = at_least(idx.semantic(qvec, k), self.cfg.search_semantic_floor)
        interests: tuple[str, ...] = ()
        if user_id is not None:
            hist = [int(i) for i in self.engine.context(user_id).history[-self.cfg.history_len:]]
            interests = tuple(self._interests(hist))
        return self._auction(idx, results, {**rw_bid, **kw_bid}, user_id or "", page_notes, slots, now, interests,
                             category, query, text_vec=qvec)

    def features(self, idx: _AdIndex, ids: np.ndarray, results: dict[str, AdCandidates], ad_ctr: np.ndarray,
                 text_vec: np.ndarray | None, query: str | None, shares: dict[str, float] | None) -> np.ndarray:
        """The efficiency model's features (:data:`~notefeed.ads.efficiency.FEATURES`) of ad rows
        ``ids`` for this request: each channel's own score for the pair (0 where it did not
        match), whichever channel recalled the ad."""
        n = len(ids)
        text_cos = idx.vecs[ids] @ text_vec.astype(np.float32) if text_vec is not None else np.zeros(n)
        tower = idx.tt.scores(query, ids) if idx.tt is not None and query else np.zeros(n)
        share = (np.array([shares.get(idx.ad_category[j], 0.0) if idx.ad_category[j] else 0.0 for j in ids.tolist()])
                 if shares else np.zeros(n))
        return serving_features(text_cos, _scores_of(results.get("keyword/match"), ids), ad_ctr, tower,
                                _scores_of(results.get("keyword/rewrite"), ids), share, feed=query is None)

    def _auction(self, idx: _AdIndex, results: dict[str, AdCandidates], kw_bids: dict[int, float], user_id: str,
                 page_notes: list[str], slots: int, now: float, interests: tuple[str, ...],
                 category: str | None, query: str | None = None, *, text_vec: np.ndarray | None = None,
                 shares: dict[str, float] | None = None) -> list[dict[str, Any]]:
        cfg = self.cfg
        names = [n for n in results if len(results[n])]
        if not names:
            return []
        cand = merge_quotas([results[n] for n in names], [cfg.quotas.get(n, cfg.recall_k) for n in names], cfg.recall_k)
        ids = cand.ids
        # the best relevance any channel gave each candidate
        rel = np.clip(best_scores([results[n] for n in names], ids), 0.0, 1.0)
        cidx = idx.camp_of[ids]
        ok = idx.running(now)[cidx] & (rel >= cfg.relevance_floor) & ~idx.orphan[ids]
        if page_notes and idx.has_note[ids].any():
            on_page = set(page_notes)
            ok &= np.array([not (idx.has_note[j] and idx.ads[j].note_id in on_page) for j in ids.tolist()], bool)
        for p in np.flatnonzero(ok & idx.c_targeted[cidx]).tolist():
            ok[p] = idx.campaigns[cidx[p]].targeting.matches(self._age(user_id), interests, category)
        pos = np.flatnonzero(ok)
        if not len(pos):
            return []
        ids, cidx, rel = ids[pos], cidx[pos], rel[pos]
        self._sync_spend(now)
        model = self.pctr_model
        with self._lock:
            ctr = (idx.clicks[ids] + cfg.prior_ctr * cfg.prior_weight) / (idx.shown[ids] + cfg.prior_weight)
            x = None
            if model is not None or cfg.log_impressions:
                x = self.features(idx, ids, results, ctr, text_vec, query, shares)
            pctr = model.pctr(x) if model is not None and x is not None else np.clip(ctr * (0.5 + rel), 1e-6, 0.99)
            pcvr = (idx.convs[ids] + cfg.prior_cvr * cfg.prior_weight) / (idx.clicks[ids] + cfg.prior_weight)
            base = idx.c_bid[cidx].copy()
            if kw_bids:
                for p, j in enumerate(ids.tolist()):
                    if j in kw_bids:
                        base[p] = kw_bids[j]
            bids = click_bids(base, idx.c_ocpc[cidx], pcvr)
            # one ad per campaign, its best by eCPM; then, best eCPM first, the campaign's frequency
            # cap and pacing until slots + 1 pass: GSP reads no further (winners and the runner-up)
            score = bids * pctr
            o = np.lexsort((-score, cidx))
            first = o[np.unique(cidx[o], return_index=True)[1]]
            exploring = cfg.explore > 0.0 and self.rng.random() < cfg.explore
            order = (self.rng.permutation(first) if exploring else first[np.argsort(-score[first], kind="stable")])
            passed = []
            for q in order.tolist():
                camp_id = idx.campaigns[int(cidx[q])].id
                if bids[q] >= cfg.reserve and self.cap.allowed(user_id, camp_id, now) \
                        and self.pacer.allow(camp_id, now, self.rng):
                    passed.append(q)
                    if len(passed) > slots:
                        break
            if not passed:
                return []
            keep = np.array(passed, np.int64)
            if exploring:  # random winners in the order drawn, each click at the reserve (or its bid, if lower)
                winners = np.arange(min(slots, len(keep)))
                prices = np.minimum(cfg.reserve, bids[keep[winners]])
            else:
                res = gsp_auction(bids[keep], pctr[keep], slots, cfg.reserve)
                winners, prices = res.winners, res.prices
            layout = place_ads(len(page_notes), len(winners), cfg.first, cfg.spacing, cfg.load_cap)
            positions = [p for p, (kind, _) in enumerate(layout) if kind == "ad"]
            out, logged, shared = [], [], {}
            for position, w, price in zip(positions, winners.tolist(), prices.tolist(), strict=False):
                q = int(keep[w])  # the candidate's row in ``ids`` / ``x``
                p = int(pos[q])  # the candidate's row in ``cand``
                j = int(cand.ids[p])
                ad, camp = idx.ads[j], idx.campaigns[int(idx.camp_of[j])]
                imp = uuid.uuid4().hex
                rec = {"ad_id": ad.id, "campaign_id": camp.id, "price": float(price), "user_id": user_id, "ts": now,
                       "query": query}
                self.impressions[imp] = {**rec, "clicked": False}
                shared[imp] = rec
                idx.shown[j] += 1
                self.counts.setdefault(ad.id, [0.0, 0.0, 0.0])[0] += 1
                self.cap.record(user_id, camp.id, now)
                item: dict[str, Any] = ({**self.engine.catalog.note_json(idx.note_item[j])}
                                        if idx.note_item[j] is not None else {"note_id": ad.note_id})
                if ad.title:
                    item["title"] = ad.title
                if ad.text:
                    item["text"] = ad.text
                item["position"] = position
                item["ad"] = {"ad_id": ad.id, "campaign_id": camp.id, "advertiser_id": camp.advertiser_id,
                              "impression_id": imp, "price": round(float(price), 6), "bidding": camp.bidding,
                              "channel": cand.channels[p], "label": "sponsored"}
                out.append(item)
                if x is not None and cfg.log_impressions:
                    logged.append({"t": "imp", "id": imp, **rec, "surface": "feed" if query is None else "search",
                                   "position": position, "x": [round(float(v), 6) for v in x[q]],
                                   "p": round(float(pctr[q]), 8), **({"explore": 1} if exploring else {})})
            self._expire(now)
        if shared and self.shared is not None:
            try:  # before the page leaves: a click may come to another worker at once
                self.shared.put(shared)
            except Exception:  # fail open: clicks on this page still reach this worker's own record
                log.exception("ads: storing the page's impressions in Redis failed")
        if logged:
            self._log_impressions(logged)
        return out

    def _age(self, user_id: str) -> int | None:
        users = getattr(self.engine.ds, "users", None)
        u = self.engine.ds.user_index.get(user_id) if user_id else None
        if u is not None and self.engine.erased_at(user_id) is not None:
            u = None  # an erased user's attributes are not used
        if users is None or u is None or "age" not in users.columns:
            return None
        try:
            return int(users["age"].iat[u])
        except (TypeError, ValueError):
            return None

    def forget(self, user_id: str, imp_ids: set[str] | None = None) -> None:
        """Forget erased ``user_id`` here: their frequency-cap counts, and their id on the
        impressions held for clicks (this process's, and with ``imp_ids`` the shared ones in
        Redis: the impressions :func:`anonymise_ad_logs` found)."""
        with self._lock:
            self.cap.forget(user_id)
            for rec in self.impressions.values():
                if rec.get("user_id") == user_id:
                    rec["user_id"] = ""
        if imp_ids and self.shared is not None:
            self.shared.blank_user(imp_ids)

    def _expire(self, now: float) -> None:
        imps = self.impressions
        while imps and (len(imps) > self.cfg.max_impressions
                        or next(iter(imps.values()))["ts"] < now - self.cfg.impression_ttl_s):
            imps.popitem(last=False)

    # -- events ----------------------------------------------------------------------------------
    def _count(self, ad_id: str, k: int) -> None:
        """One more click (k=1) or conversion (k=2) of ad ``ad_id`` (under ``self._lock``: a
        rebuild copies ``counts`` under it, so the count lands in the old index's copy or the new one)."""
        self.counts.setdefault(ad_id, [0.0, 0.0, 0.0])[k] += 1
        idx = self._index
        j = idx.row_of.get(ad_id) if idx is not None else None
        if j is not None:
            (idx.clicks if k == 1 else idx.convs)[j] += 1

    def _restore_impressions(self, keep: bool = True) -> None:
        """From the tail of ``ads/impressions.jsonl`` (at most its last 64 MB): each ad's
        impressions, clicks and conversions there (the smoothed CTR and CVR, and the efficiency
        model's CTR feature, do not start from the prior after a restart; with several workers,
        the count of all of them, which append to the same log), and with ``keep`` the
        impressions of the last ``impression_ttl_s`` with their click and conversion flags (at
        most ``max_impressions``): a click after a restart is charged once, not rejected; and
        today's impressions count towards the users' frequency caps again."""
        try:
            size = self.imp_log.stat().st_size
        except OSError:
            return
        now = float(self.engine.clock())
        t_min = now - self.cfg.impression_ttl_s
        imps = self.impressions
        ad_of: dict[str, str] = {}  # impression id -> ad id (counts)
        counted: set[tuple[str, str]] = set()  # (impression id, click | conv) counted once
        counts = self.counts
        try:
            with self.imp_log.open("rb") as f:
                if size > RESTORE_BYTES:
                    f.seek(size - RESTORE_BYTES)
                    f.readline()  # a partial line
                for raw in f:
                    try:
                        e = json.loads(raw)
                        t, i = e["t"], e["id"]
                        if t == "imp":
                            ad = ad_of[i] = str(e["ad_id"])
                            counts.setdefault(ad, [0.0, 0.0, 0.0])[0] += 1
                            if keep and "campaign_id" in e and float(e["ts"]) // 86400 == now // 86400:
                                self.cap.record(e.get("user_id") or "", str(e["campaign_id"]), float(e["ts"]))
                            if keep and "campaign_id" in e and float(e["ts"]) >= t_min:
                                imps[i] = {"ad_id": ad, "campaign_id": str(e["campaign_id"]),
                                           "price": float(e["price"]), "user_id": e.get("user_id") or "",
                                           "ts": float(e["ts"]), "query": e.get("query"), "clicked": False}
                        elif t in ("click", "conv") and i in ad_of and (i, t) not in counted:
                            counted.add((i, t))
                            counts[ad_of[i]][1 if t == "click" else 2] += 1
                            if i in imps:
                                imps[i]["clicked" if t == "click" else "converted"] = True
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn line
        except OSError:
            log.exception("ads: reading %s failed; clicks on earlier impressions are rejected", self.imp_log)
        while len(imps) > self.cfg.max_impressions:
            imps.popitem(last=False)

    def _shared_event(self, ev: AdEvent, imp: dict[str, Any] | None, now: float) -> tuple[float, str | None] | None:
        """A click or conversion through Redis (claimed and charged once for all workers), or
        None when Redis does not hold the impression (then this worker's own record decides)."""
        assert self.shared is not None
        rec = imp if imp is not None else self.shared.get(ev.impression_id)
        if rec is None:
            return None
        camp, flag = rec["campaign_id"], "clicked" if ev.type == "click" else "converted"
        self.index(now)  # another worker's admin write: the store and the budgets follow it
        c = self.store.campaigns.get(camp)  # the store, not the pacer: this worker may not have built its index yet
        budget = c.daily_budget if c is not None and flag == "clicked" else -1.0  # deleted since: not charged
        code, total = self.shared.event(ev.impression_id, flag, camp, rec["price"], budget, now)
        if code == -1:
            return None
        if code == -2:
            return 0.0, "conversion before any click on this impression"
        if code == 0:  # a repeated click or conversion: counted once, charged once
            return 0.0, None
        with self._lock:
            if imp is not None:
                imp[flag] = True
            self._first(ev.impression_id, rec, flag, now)
            if flag == "converted":
                return 0.0, None
            if code >= 2:
                self.pacer.observe_spent(camp, total, now)
            return (float(rec["price"]) if code == 3 else 0.0), None

    def _first(self, imp_id: str, rec: dict[str, Any], flag: str, now: float) -> None:
        """The bookkeeping of a first click (``flag`` ``clicked``) or first conversion on an
        impression, whichever path claimed it: the ad's counts, the impression log line and, for
        a search ad's click, the towers' click log (under ``self._lock``)."""
        click = flag == "clicked"
        self._count(rec["ad_id"], 1 if click else 2)
        if self.cfg.log_impressions:
            self._log_impressions([{"t": "click" if click else "conv", "id": imp_id, "ts": now}])
        if click and rec.get("query") and self.cfg.log_clicks:
            self._log_click(rec, now)

    def event(self, ev: AdEvent) -> tuple[float, str | None]:
        """(charged, rejection reason or None)."""
        now = float(self.engine.clock()) if ev.ts is None else float(ev.ts)
        if self.shared is not None:
            with self._lock:
                mine = self.impressions.get(ev.impression_id)
            done = self._shared_event(ev, mine, now)
            if done is not None:
                return done
        with self._lock:
            imp = self.impressions.get(ev.impression_id)
            if imp is None:
                return 0.0, "unknown or expired impression_id"
            if ev.type == "conversion":
                if not imp["clicked"]:
                    return 0.0, "conversion before any click on this impression"
                if not imp.get("converted"):
                    imp["converted"] = True
                    self._first(ev.impression_id, imp, "converted", now)
                return 0.0, None
            if imp["clicked"]:  # a repeated click: counted once, charged once
                return 0.0, None
            camp = imp["campaign_id"]
            cost = 0.0
            if camp in self.pacer.state and self.ledger is not None:
                # shared by all workers: one atomic check-and-add in Redis; a Redis error fails
                # the request before the click is marked, so the client's retry is charged
                charged, total = self.ledger.charge(camp, imp["price"], self.pacer.state[camp].budget, now)
                self.pacer.observe_spent(camp, total, now)
                cost = imp["price"] if charged else 0.0
            imp["clicked"] = True
            self._first(ev.impression_id, imp, "clicked", now)
            if camp not in self.pacer.state:  # the campaign was deleted since
                return 0.0, None
            if self.ledger is not None:
                return cost, None
            self.pacer.record(camp, imp["price"], now)
            self._save_spend()
            return imp["price"], None

    def _log_click(self, imp: dict[str, Any], now: float) -> None:
        """One JSON line per first click on a search ad (``O_APPEND``: workers append to the
        same file); never fails the click."""
        try:
            self.click_log.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps({"query": imp["query"], "ad_id": imp["ad_id"], "user_id": imp["user_id"], "ts": now})
            with _logs_lock(self.click_log.parent), self.click_log.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError:
            log.exception("ads: appending to %s failed", self.click_log)

    def _log_impressions(self, events: list[dict[str, Any]]) -> None:
        """Append impression / click / conversion lines to ``ads/impressions.jsonl`` in one write
        (``O_APPEND``: workers append to the same file); past ``impression_log_mb`` the file is
        rotated to ``impressions.1.jsonl`` (``os.replace``: a line written meanwhile lands in
        one of the two, both of which training reads). Never fails the page or the click."""
        import os

        try:
            with _logs_lock(self.imp_log.parent):
                with self.imp_log.open("a", encoding="utf-8") as f:
                    f.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
                self._imp_lines += len(events)
                if self._imp_lines >= 1000:
                    self._imp_lines = 0
                    if self.imp_log.stat().st_size > self.cfg.impression_log_mb * 1e6:
                        os.replace(self.imp_log, self.imp_log.with_name(ROTATED_IMPRESSION_LOG))
        except OSError:
            log.exception("ads: appending to %s failed", self.imp_log)

    def _sync_spend(self, now: float, force: bool = False) -> None:
        """With Redis: every campaign's shared spend of the day into the pacer, at most every
        ``spend_sync_s`` (one ``HGETALL``); a Redis error keeps the last figures (fail open:
        the charge itself still refuses a spent budget)."""
        if self.ledger is None or (not force and now - self._synced < self.cfg.spend_sync_s
                                   and now >= self._synced):
            return
        try:
            spent = self.ledger.spent(now)
        except Exception:
            log.exception("ads: reading the shared spend from Redis failed")
            return
        with self._lock:
            self._synced = now
            for c, v in spent.items():
                self.pacer.observe_spent(c, v, now)

    def _save_spend(self) -> None:
        """Spend to ``<workspace>/ads/spend.json`` after every charge (temporary file +
        ``os.replace``: a crash leaves the old or the new file), so a restart keeps the day's spend."""
        import os
        import tempfile

        self.spend_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.spend_path.parent, prefix=".spend-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.pacer.to_json(), f)
            os.replace(tmp, self.spend_path)
        except OSError:  # never fail the click: the charge is in memory
            Path(tmp).unlink(missing_ok=True)
            log.exception("ads: saving %s failed", self.spend_path)

    def pctr_status(self) -> dict[str, Any]:
        """Which pCTR prices the auction, and the trained model's own summary when it does."""
        m = self.pctr_model
        if m is None:
            return {"source": "heuristic", "setting": self.cfg.pctr}
        return {"source": "model", "setting": self.cfg.pctr,
                **{k: m.info[k] for k in ("impressions", "clicks", "holdout") if k in m.info}}

    def spend(self) -> dict[str, Any]:
        now = float(self.engine.clock())
        self.index(now)  # budgets follow the store
        self._sync_spend(now, force=True)
        with self._lock:
            return {c: {"daily_budget": s.budget, "spent": round(self.pacer.spent(c, now), 6), "pass_rate": s.p}
                    for c, s in self.pacer.state.items()}


RESTORE_BYTES = 64 << 20  # the impression log's tail read back at start (one process)


def _stamp(p: Path) -> float | None:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return None


def _scores_of(cands: AdCandidates | None, ids: np.ndarray) -> np.ndarray:
    """(len(ids),) float64: each id's score in ``cands`` (one entry per ad), 0 where absent."""
    out = np.zeros(len(ids))
    if cands is None or not len(cands):
        return out
    o = np.argsort(cands.ids, kind="stable")
    s = cands.ids[o]
    at = np.minimum(np.searchsorted(s, ids), len(s) - 1)
    hit = s[at] == ids
    out[hit] = cands.scores[o][at[hit]]
    return out


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


def _file_stamp(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _usable_server(engine: Any, path: Path) -> AdServer | None:
    """The ad server for the pages, or None while it cannot start (an unreadable ad store or
    ``serving.json``): that serves no ads, is logged once per version of the two files, and
    is tried again only when one of them changes, not on every page."""
    srv = getattr(engine, "ad_server", None)
    if srv is not None:
        return srv  # type: ignore[no-any-return]
    stamp = (_file_stamp(path), _file_stamp(path.with_name("serving.json")))
    if getattr(engine, "ads_unusable_stamp", None) == stamp:
        return None
    try:
        return ad_server(engine)
    except Exception as e:  # fail open, as a page's ad error
        engine.ads_unusable_stamp = stamp
        log.error("ads: serving no ads until the ad files can be read: %s", e)
        engine.metrics.inc("stage_errors_total", stage="ads")
        return None


def server_or_503(engine: Any) -> AdServer:
    """:func:`ad_server` for an endpoint: an ad store or ``serving.json`` that cannot be read
    answers 503 naming it (nothing is written)."""
    from notefeed.serve.ads import store_or_503

    store_or_503(engine)
    try:
        return ad_server(engine)
    except ValueError as e:
        raise HTTPException(503, f"ads: the ad server cannot start ({e}); nothing was changed. Repair the "
                                 "file and retry") from None


def page_ads(engine: Any, page_notes: list[str], *, user_id: str | None, ctx: Any = None, query: str | None = None,
             rewrites: list[str] | None = None, category: str | None = None) -> tuple[list[dict[str, Any]] | None, float]:
    """The hook of the feed (``ctx`` given) and search (``query`` given) routes: (ads or None
    when ads are off, ms spent). Never fails the page: an error serves no ads (fail open)."""
    t0 = time.perf_counter()
    path = Path(engine.workspace) / "ads" / "ads.json"
    if getattr(engine, "ads_store", None) is None and not path.exists():  # no ads in this workspace
        return None, 0.0
    srv = _usable_server(engine, path)
    if srv is None:
        return None, (time.perf_counter() - t0) * 1e3
    try:
        if query is not None:
            out = srv.search_ads(query, rewrites or [], category, user_id, page_notes)
        else:
            out = srv.feed_ads(user_id or "", ctx, page_notes)
    except Exception:  # fail open: the organic page is served without ads
        log.exception("ads: serving the ad slots failed")
        engine.metrics.inc("stage_errors_total", stage="ads")
        out = None
    return out, (time.perf_counter() - t0) * 1e3


def add_ad_event_routes(app: FastAPI | APIRouter, engine: Any, write_deps: list[Any]) -> None:
    @app.post("/v1/ads/events", dependencies=write_deps, tags=["ads"])
    def ad_events(batch: AdEventBatch) -> dict[str, Any]:
        """Clicks and conversions on served ads (by ``impression_id``); a click charges the budget."""
        if getattr(engine, "ads_store", None) is None and not (Path(engine.workspace) / "ads" / "ads.json").exists():
            raise HTTPException(409, "events: this workspace has no ads")
        srv = server_or_503(engine)
        charged, rejected, accepted = 0.0, [], 0
        for i, ev in enumerate(batch.events):
            c, why = srv.event(ev)
            if why is None:
                accepted += 1
                charged += c
            else:
                rejected.append({"index": i, "impression_id": ev.impression_id, "reason": why})
        return {"accepted": accepted, "charged": round(charged, 6), "rejected": rejected}
