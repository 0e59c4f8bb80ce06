"""The organic cost of search ads: organic search results and ads in one closed loop.

The world is the feed simulator's community (:func:`notefeed.sim.community.generate`); queries
and their graded relevance come from the search simulator (:func:`notefeed.sim.search_data.sim_queries`:
a user types 1-2 words of a topic of their interests, some as aliases; a note's grade is 2 when
the topic is its dominant one, 1 when it is only in its mixture, +1 when the user's true
affinity to it is in the top quarter of the topic). The organic page is the first 10 results of
the search pipeline (:class:`notefeed.search.pipeline.SearchPipeline`, built on the community's
notes with the rewrites mined from the simulator's query log, personalised by the query's user
history, as ``GET /v1/search`` does).

**Ads** are promoted notes (one campaign each, CPC bid lognormal). Each advertiser bids on 3
keywords of 1-2 words from the 8 most frequent words of the note's dominant topic, in the
note's language, with a random match type (exact / phrase / broad), as the ad simulator's
advertisers do (:mod:`notefeed.ads.simulate`). An ad's text, for ``semantic/text``, is the
note's title, text and category plus its keywords, as serving builds it.

**Per page** the ads go through serving's search-ad path (``notefeed/serve/adslots.py``, from
its shared kernels and :data:`~notefeed.ads.recall.SERVING_DEFAULTS`): recall by the arm's
channels (``keyword/match``; ``keyword/rewrite`` on the search pipeline's own rewrites of the
query; ``semantic/text`` by the query's vector from a text encoder fitted on the ad texts and
2,000 notes; only ads at a cosine of at least ``search_semantic_floor``), quota merge,
relevance = the best channel score, relevance floor, a note ad never
on a page that already shows its note, pCTR = the ad's smoothed CTR so far x (0.5 +
relevance), GSP with reserve, then placement (first ad at position 2, 4 results between ads,
ads at most 20% of the page: 2 ads on a 10-result page). Not simulated: budgets and pacing,
frequency caps and targeting (a session has at most 5 queries of different topics).

**The user** (:class:`SearchUser`) scans the merged page top down, a cascade with the feed
simulator's position bias: position ``p`` is examined with probability ``trust x (1 + p) **
-eta`` (``eta``: :class:`notefeed.sim.config.BehaviourParams`' ``position_eta``), an examined
result is clicked with probability ``R(g) = (2^g - 1) / 2^3`` (``g``: its grade for this query
and user; the gains are the search evaluation's NDCG gains; an ad's is multiplied by
``ad_attract``), and a click satisfies the user, who then stops scanning, with probability
``R(g)`` (the ERR cascade). An ad the user examines lowers their ``trust`` for the rest of the
session by the factor ``1 - annoy x (1 - R(g))`` (an irrelevant ad the most, a perfect one
hardly), and trust scales the examination of every later result. After a page the user types
their next query with probability ``continue_sat`` if the page satisfied them (through an
organic result or an ad), else ``continue_unsat``. A session is up to ``session_len`` of one
user's simulator queries, in order. So what a page shows changes the rest of the session:
that is the closed loop. The ads' smoothed CTRs, which pCTR reads, are learned per arm from
that arm's own impressions and clicks.

**Arms** (:data:`ARMS`), on the same world, queries, organic pages and random numbers
(common random numbers: organic rank ``r`` of query ``i`` uses the same uniforms in every arm,
so do ad slot ``k`` and the continuation draw): ``none`` (no ads), ``keyword`` (keyword-only
recall, serving's 2 slots), ``keyword+semantic`` and ``keyword+rewrite+semantic`` at equal load
(on every query, as many ads as keyword-only fills on it: that number depends on the query and
its organic page only, so the load is equal query by query), ``keyword+semantic`` at its
natural load, and ``keyword+semantic-unfloored`` (at equal load, without serving's
``search_semantic_floor``: what the floor changes). :func:`search_recall_study` reports per-seed paired differences with a Student-t
95% interval; ``notefeed eval --stage ads --param ads.load=search-recall`` runs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from notefeed.ads.auction import gsp_auction, place_ads
from notefeed.ads.base import AdCandidates, AdRequest
from notefeed.ads.evaluate import CLOSED_LOOP, _append_resume, _ci95, _read_resume, paired_columns
from notefeed.ads.keywords import KeywordIndex
from notefeed.ads.recall import (
    SERVING_DEFAULTS,
    KeywordChannel,
    RewriteChannel,
    SemanticChannel,
    at_least,
    best_scores,
    merge_quotas,
)
from notefeed.sim.behaviour import position_bias
from notefeed.sim.community import generate
from notefeed.sim.config import BehaviourParams

__all__ = ["SearchUser", "ARMS", "RECALL", "attraction", "examination", "scan_page", "SearchAdWorld", "run_search_ads",
           "search_recall_study"]

#: recall setting -> serving's channels, in quota order
RECALL: dict[str, tuple[str, ...]] = {
    "keyword": ("keyword/match",),
    "keyword+semantic": ("keyword/match", "semantic/text"),
    "keyword+rewrite+semantic": ("keyword/match", "keyword/rewrite", "semantic/text"),
    "keyword+semantic-unfloored": ("keyword/match", "semantic/text"),  # without search_semantic_floor
    "random": ("random",),  # every ad, relevance 1: a planted baseline for tests, not an arm of the study
}
#: (name, recall or None, load): ``natural`` = serving's slots; ``keyword`` = what keyword-only filled
ARMS: tuple[tuple[str, str | None, str], ...] = (
    ("none", None, "natural"),
    ("keyword", "keyword", "natural"),
    ("keyword+semantic", "keyword+semantic", "keyword"),
    ("keyword+rewrite+semantic", "keyword+rewrite+semantic", "keyword"),
    ("keyword+semantic@natural", "keyword+semantic", "natural"),
    ("keyword+semantic-unfloored", "keyword+semantic-unfloored", "keyword"),
)
#: recall settings whose ``semantic/text`` candidates skip serving's ``search_semantic_floor``
UNFLOORED = frozenset({"keyword+semantic-unfloored"})
PAGE = 10  # organic results per page (the first page)
G_MAX = 3  # the simulator's highest grade
METRICS = ("organic_ctr", "organic_clicks_per_query", "organic_clicks_per_session", "queries_per_session",
           "satisfied_share", "ads_per_query", "ad_ctr", "ad_grade", "ad_irrelevant_share", "cpm",
           "revenue_per_1k_queries")


@dataclass(frozen=True)
class SearchUser:
    """How a simulated user reads a search page (see the module docstring). ``eta`` None: the
    feed simulator's ``BehaviourParams.position_eta``."""

    eta: float | None = None
    ad_attract: float = 0.5
    annoy: float = 0.2
    continue_sat: float = 0.8
    continue_unsat: float = 0.5
    session_len: int = 5

    def resolved(self) -> SearchUser:
        if self.eta is not None:
            return self
        return replace(self, eta=float(BehaviourParams().position_eta))


def attraction(grades: np.ndarray) -> np.ndarray:
    """(n,) ERR's ``(2^g - 1) / 2^g_max`` of grades ``g`` (0: irrelevant)."""
    g = np.clip(np.asarray(grades, np.float64), 0, G_MAX)
    return (2.0 ** g - 1.0) / 2.0 ** G_MAX


@dataclass
class PageOutcome:
    clicks: np.ndarray  # (n,) bool
    examined: np.ndarray  # (n,) bool
    satisfied: bool
    by_ad: bool  # satisfied by an ad
    trust: float  # after the page


def examination(user: SearchUser, n: int) -> np.ndarray:
    """(n,) the feed simulator's position bias (:func:`notefeed.sim.behaviour.position_bias`)
    with the user's ``eta``."""
    return position_bias(np.arange(n), replace(BehaviourParams(), position_eta=float(user.resolved().eta)))  # type: ignore[arg-type]


def scan_page(grades: np.ndarray, is_ad: np.ndarray, u: np.ndarray, trust: float, user: SearchUser,
              bias: np.ndarray | None = None) -> PageOutcome:
    """One user's pass over a merged page (grades (n,), is_ad (n,) bool, uniforms u (n, 3):
    examine, click, satisfied), starting with ``trust``; ``bias`` (>= n,): :func:`examination`."""
    n = len(grades)
    bias = examination(user, n) if bias is None else bias
    r = attraction(grades)
    clicks, examined = np.zeros(n, bool), np.zeros(n, bool)
    satisfied = by_ad = False
    for p in range(n):
        if u[p, 0] >= trust * float(bias[p]):
            continue
        examined[p] = True
        attract = r[p] * (user.ad_attract if is_ad[p] else 1.0)
        if is_ad[p]:
            trust *= 1.0 - user.annoy * (1.0 - r[p])
        if u[p, 1] < attract:
            clicks[p] = True
            if u[p, 2] < r[p]:
                satisfied, by_ad = True, bool(is_ad[p])
                break
    return PageOutcome(clicks, examined, satisfied, by_ad, trust)


class _PageRewrites:
    """The search pipeline's rewrites of each query, as a rewrite backend (serving passes the
    search page's rewrites to ``keyword/rewrite``)."""

    token_level = False

    def __init__(self) -> None:
        self.by_query: dict[str, list[str]] = {}

    def rewrite(self, query: str) -> list[str]:
        return self.by_query.get(query, [])


@dataclass
class SearchAdWorld:
    """One seed's world, queries, organic pages, ads and ad index, shared by every arm."""

    seed: int
    queries: object  # QuerySet
    pages: list[np.ndarray]  # per query: organic items, best first
    ad_note: np.ndarray  # (n_ads,) promoted note per ad row
    bid: np.ndarray  # (n_ads,)
    channels: dict[str, object]
    sessions: list[list[int]]  # query indices per session, in order
    uniforms: np.ndarray  # (n_queries, PAGE + slots, 3)
    cont: np.ndarray  # (n_queries,) continuation draws
    _recall: dict = field(default_factory=dict)

    @classmethod
    def build(cls, seed: int, preset: str = "demo", n_queries: int = 6000, n_ads: int = 1000,
              session_len: int = 5) -> SearchAdWorld:
        from notefeed.content.text import TextEncoder
        from notefeed.search.config import SearchConfig
        from notefeed.search.pipeline import SearchPipeline
        from notefeed.sim.search_data import sim_queries

        com = generate(preset, seed=seed)
        qs = sim_queries(com, com.history(), n_queries, seed)
        w = com.world
        pipe = SearchPipeline.build(qs.notes, SearchConfig(), query_log=qs.query_log, seed=seed)
        rewrites = _PageRewrites()
        pages = []
        for j, q in enumerate(qs.texts):
            res = pipe.search(q, n=PAGE, history=qs.history[j])
            pages.append(np.asarray(res.items, np.int64))
            rewrites.by_query[q] = list(res.query.rewrites)
        pipe.close()
        arng = np.random.default_rng(seed + 31)  # the advertisers
        ad_note = np.sort(arng.choice(w.n_notes, size=min(n_ads, w.n_notes), replace=False)).astype(np.int64)
        bid = arng.lognormal(0.0, 0.4, len(ad_note))
        rows, texts = [], []
        notes = qs.notes
        for a, i in enumerate(ad_note.tolist()):
            t = int(w.note_topics[i, 0])
            src = w.vocab.zh_words if bool(w.note_zh[i]) else w.vocab.words
            sep = "" if bool(w.note_zh[i]) else " "
            kws = []
            for _ in range(3):
                ranks = arng.choice(8, size=int(arng.integers(1, 3)), replace=False)
                kw = sep.join(str(src[t, r]) for r in ranks)
                rows.append((a, kw, str(arng.choice(["exact", "phrase", "broad"], p=[0.3, 0.3, 0.4]))))
                kws.append(kw)
            texts.append(" ".join([str(notes["title"].iat[i]), str(notes["text"].iat[i]),
                                   str(notes["category"].iat[i]), *kws]))
        kw_index = KeywordIndex(rows)
        sample = np.random.default_rng(0).choice(w.n_notes, min(2000, w.n_notes), replace=False)
        note_texts = (notes["title"].astype(str) + " " + notes["text"].astype(str)).to_numpy()[np.sort(sample)]
        enc = TextEncoder(dim=64, seed=seed).fit(texts + note_texts.tolist())
        channels = {"keyword/match": KeywordChannel(kw_index),
                    "keyword/rewrite": RewriteChannel(kw_index, rewrites),
                    "semantic/text": SemanticChannel(enc.transform, enc.transform(texts), kind="auto", min_score=1e-9)}
        by_user: dict[int, list[int]] = {}
        for j, u in enumerate(qs.users.tolist()):
            by_user.setdefault(int(u), []).append(j)
        sessions = [qi[s: s + session_len] for u in sorted(by_user) for qi in [by_user[u]]
                    for s in range(0, len(qi), session_len)]
        srng = np.random.default_rng(seed + 1000)  # the users' draws: the same in every arm
        slots = _serving_slots()
        return cls(seed, qs, pages, ad_note, bid, channels, sessions,
                   srng.random((len(qs), PAGE + slots, 3)), srng.random(len(qs)))

    def candidates(self, recall: str, qi: int) -> tuple[np.ndarray, np.ndarray]:
        """(ad rows, relevance) of ``recall`` for query ``qi``: serving's quota merge, the best
        channel score as relevance, the relevance floor, no ad whose note is on the page."""
        key = (recall, qi)
        hit = self._recall.get(key)
        if hit is not None:
            return hit
        k = int(SERVING_DEFAULTS["recall_k"])
        if recall == "random":
            ids, rel = np.arange(len(self.ad_note), dtype=np.int64), np.ones(len(self.ad_note))
        else:
            req = AdRequest(query=self.queries.texts[qi], user=int(self.queries.users[qi]))  # type: ignore[attr-defined]
            names = RECALL[recall]
            results = [self.channels[n].retrieve(req, k) for n in names]  # type: ignore[attr-defined]
            if recall not in UNFLOORED:  # serving's floor on the query's cosine to an ad
                results = [at_least(r, SERVING_DEFAULTS["search_semantic_floor"]) if n == "semantic/text" else r
                           for r, n in zip(results, names, strict=True)]
            kept = [(r, SERVING_DEFAULTS["quotas"][n]) for r, n in zip(results, names, strict=True) if len(r)]
            if kept:
                merged = merge_quotas([r for r, _ in kept], [q for _, q in kept], k)
                ids = merged.ids
                rel = np.clip(best_scores([r for r, _ in kept], ids), 0.0, 1.0)
            else:
                ids, rel = AdCandidates.empty().ids, np.zeros(0)
        ok = (rel >= SERVING_DEFAULTS["relevance_floor"]) & ~np.isin(self.ad_note[ids], self.pages[qi])
        out = (ids[ok], rel[ok])
        self._recall[key] = out
        return out

    def fill(self, recall: str, qi: int, slots: int) -> int:
        """Ads ``recall`` fills on query ``qi`` with ``slots`` (state-free: pCTR changes the
        order, never the count)."""
        ids, rel = self.candidates(recall, qi)
        res = gsp_auction(self.bid[ids], np.full(len(ids), 0.5), slots, SERVING_DEFAULTS["reserve"])
        return len(res.winners)


def _serving_slots(n_organic: int = PAGE) -> int:
    """Ad slots serving gives a page of ``n_organic`` results (``AdServer.n_slots``)."""
    d = SERVING_DEFAULTS
    return sum(k == "ad" for k, _ in place_ads(n_organic, n_organic, d["first"], d["spacing"], d["load_cap"]))


def run_search_ads(world: SearchAdWorld, recall: str | None, load: str = "natural",
                   user: SearchUser | None = None) -> dict:
    """One arm over every session of ``world``; ``recall`` None: no ads. ``load``: ``natural``
    (serving's slots) or ``keyword`` (on each query, the ads keyword-only recall fills)."""
    if recall is not None and recall not in RECALL:
        raise ValueError(f"run_search_ads: recall must be None or one of {', '.join(RECALL)}; got {recall!r}")
    if load not in ("natural", "keyword"):
        raise ValueError(f"run_search_ads: load must be natural or keyword, got {load!r}")
    user = (user or SearchUser()).resolved()
    d = SERVING_DEFAULTS
    slots = _serving_slots()
    bias = examination(user, PAGE + slots)
    rel_of = world.queries.relevance  # type: ignore[attr-defined]
    n_ads = len(world.ad_note)
    shown, clicked = np.zeros(n_ads), np.zeros(n_ads)
    tot = dict.fromkeys(("queries", "sessions", "organic_imp", "organic_click", "ad_imp", "ad_click", "revenue",
                         "satisfied", "satisfied_by_ad", "ad_grade", "ad_irrelevant"), 0.0)
    t0 = time.perf_counter()
    for sess in world.sessions:
        trust = 1.0
        tot["sessions"] += 1
        for qi in sess:
            organic = world.pages[qi]
            rel = rel_of[qi]
            winners: list[int] = []
            prices: list[float] = []
            n_slots = slots if load == "natural" else world.fill("keyword", qi, slots)
            if recall is not None and n_slots > 0:
                ids, r = world.candidates(recall, qi)
                if len(ids):
                    pctr = np.clip((clicked[ids] + d["prior_ctr"] * d["prior_weight"]) / (shown[ids] + d["prior_weight"])
                                   * (0.5 + r), 1e-6, 0.99)
                    res = gsp_auction(world.bid[ids], pctr, n_slots, d["reserve"])
                    winners, prices = ids[res.winners].tolist(), res.prices.tolist()
            layout = place_ads(len(organic), len(winners), d["first"], d["spacing"], d["load_cap"])
            items = np.array([organic[k] if kind == "note" else world.ad_note[winners[k]] for kind, k in layout], np.int64)
            is_ad = np.array([kind == "ad" for kind, _ in layout], bool)
            grades = np.array([rel.get(int(i), 0) for i in items.tolist()], np.float64)
            # common random numbers: organic rank k and ad slot k draw the same uniforms in every arm
            u = np.array([world.uniforms[qi, k if kind == "note" else PAGE + k] for kind, k in layout]).reshape(-1, 3)
            out = scan_page(grades, is_ad, u, trust, user, bias)
            trust = out.trust
            tot["queries"] += 1
            tot["organic_imp"] += int((~is_ad).sum())
            tot["organic_click"] += int((out.clicks & ~is_ad).sum())
            tot["satisfied"] += out.satisfied
            tot["satisfied_by_ad"] += out.by_ad
            for p in np.flatnonzero(is_ad).tolist():
                a = winners[layout[p][1]]
                shown[a] += 1
                tot["ad_imp"] += 1
                tot["ad_grade"] += grades[p]
                tot["ad_irrelevant"] += grades[p] == 0
                if out.clicks[p]:
                    clicked[a] += 1
                    tot["ad_click"] += 1
                    tot["revenue"] += prices[layout[p][1]]
            go_on = user.continue_sat if out.satisfied else user.continue_unsat
            if world.cont[qi] >= go_on:
                break
    q, s, ai = max(tot["queries"], 1), max(tot["sessions"], 1), max(tot["ad_imp"], 1)
    return {"seed": world.seed, "recall": recall, "load": load, **{k: float(v) for k, v in tot.items()},
            "organic_ctr": tot["organic_click"] / max(tot["organic_imp"], 1),
            "organic_clicks_per_query": tot["organic_click"] / q,
            "organic_clicks_per_session": tot["organic_click"] / s,
            "queries_per_session": tot["queries"] / s, "satisfied_share": tot["satisfied"] / q,
            "ads_per_query": tot["ad_imp"] / q, "ad_ctr": tot["ad_click"] / ai, "ad_grade": tot["ad_grade"] / ai,
            "ad_irrelevant_share": tot["ad_irrelevant"] / ai, "cpm": 1000 * tot["revenue"] / ai,
            "revenue_per_1k_queries": 1000 * tot["revenue"] / q, "wall_s": time.perf_counter() - t0}


def search_recall_study(seeds: list[int], preset: str = "demo", n_queries: int = 6000, n_ads: int = 1000,
                        user: SearchUser | None = None,
                        arms: tuple[tuple[str, str | None, str], ...] = ARMS, resume: Path | None = None) -> list[dict]:
    """Every arm on every seed; rows per arm: the mean (and std over seeds) of :data:`METRICS`,
    the paired per-seed change to ``none`` of the organic metrics and, for the other arms, of
    every metric to ``keyword`` (relative: ``*_vs_keyword``; organic CTR also in points:
    ``organic_ctr_minus_keyword``), each with a Student-t 95% interval (``*_ci95``).
    ``resume``: a JSON-lines file that each finished seed's arm results are appended to and
    seeds already there are read from (the settings must match)."""
    user = (user or SearchUser()).resolved()
    names = [a[0] for a in arms]
    model = {k: getattr(user, k) for k in ("eta", "ad_attract", "annoy", "continue_sat", "continue_unsat",
                                           "session_len")}
    key = {"load": "search-recall", "preset": preset, "n_queries": n_queries, "n_ads": n_ads, "user": model,
           "arms": names}
    done = _read_resume(resume, key) if resume is not None else {}
    runs: dict[tuple[str, int], dict] = {}
    build_s = 0.0
    for s in seeds:
        if s not in done:
            t0 = time.perf_counter()
            world = SearchAdWorld.build(s, preset, n_queries, n_ads, user.session_len)
            build_s += time.perf_counter() - t0
            done[s] = [run_search_ads(world, recall, load, user) for _, recall, load in arms]
            if resume is not None:
                _append_resume(resume, key, s, done[s])
        for name, r in zip(names, done[s], strict=True):
            runs[(name, s)] = r
    out = []
    for name, recall, load in arms:
        mine = [runs[(name, s)] for s in seeds]
        row: dict = {"dataset": f"sim-{preset}", "method": name, "channel": "search-ad-recall-closed-loop",
                     "tier": "all", "recall": recall or "none",
                     "load": "of keyword" if load == "keyword" else "natural", "seeds": len(seeds),
                     "queries_per_seed": n_queries, "ads": n_ads}
        for m in METRICS:
            refs = ["none"] if name != "none" and m.startswith(("organic", "queries", "satisfied")) else []
            refs += ["keyword"] if name not in ("none", "keyword") and "keyword" in names else []
            paired_columns(row, m, mine, runs, refs)
            for ref in refs:
                if m == "organic_ctr":  # also in points: the clause is about the loss itself
                    base = [runs[(ref, r["seed"])][m] for r in mine]
                    diff = np.array([r[m] - b for r, b in zip(mine, base, strict=True)])
                    row[f"organic_ctr_minus_{ref}"] = round(float(diff.mean()), 5)
                    row[f"organic_ctr_minus_{ref}_ci95"] = _ci95(diff, digits=5)
        if load == "keyword" and "keyword" in names:
            row["load_vs_keyword"] = round(float(np.mean([r["ads_per_query"] / max(runs[("keyword", r["seed"])][
                "ads_per_query"], 1e-12) for r in mine])), 5)
        row["arm_s"] = round(float(sum(r["wall_s"] for r in mine)), 1)
        out.append(row)
    out[0]["build_s"] = round(build_s, 1)
    out[0]["user_model"] = model
    return out


@CLOSED_LOOP.register("search-recall")
def _search_recall_load(seeds: list[int], quick: bool, opts: dict) -> list[dict]:
    """``notefeed eval --stage ads --param ads.load=search-recall`` (``ads.user``: :class:`SearchUser`
    fields, ``ads.resume``: a JSON-lines file)."""
    user = opts.get("user", {})
    fields = set(SearchUser.__dataclass_fields__)
    if not isinstance(user, dict) or not set(user) <= fields:
        raise ValueError(f"--param: ads.user must be a JSON object with keys among {', '.join(sorted(fields))}, "
                         f"got {user!r}")
    return search_recall_study(seeds, preset="tiny" if quick else "demo", n_queries=1500 if quick else 6000,
                               n_ads=300 if quick else 1000, user=SearchUser(**user),
                               resume=Path(str(opts["resume"])) if opts.get("resume") else None)
