"""The trained efficiency model in serving, measured through serving's own ad path.

``notefeed eval --stage ads --param ads.load=serving-pctr`` runs, per seed, the real
:class:`~notefeed.serve.adslots.AdServer` (recall, eligibility, pacing, frequency caps, GSP,
charging, impression log) on the ad simulator's world (:func:`~notefeed.ads.simulate.make_world`:
one campaign per ad, its bid, bidding type and daily budget; the ads are creatives with the
world's texts and bid keywords) inside a serving engine:

1. **Day 1, logging**: search-ad requests from the training half of the users, spread over the
   day, priced by the heuristic pCTR (smoothed CTR x (0.5 + relevance), what serving runs without
   a model). Simulated users click by the world's true CTR and convert by its true CVR; each
   click and conversion goes through ``AdServer.event`` as ``POST /v1/ads/events`` does. Serving
   logs every impression with its features (``ads/impressions.jsonl``).
2. **Training**: :func:`~notefeed.ads.efficiency.train_workspace_pctr` on that log, as
   ``notefeed ads train-pctr`` does (its own held-out gate included).
3. **Day 2, two arms**: the same fresh requests from the other half of the users, the same
   click and conversion draws per (request, ad) (common random numbers), each arm a fresh
   server that starts from day 1's per-ad counts: ``heuristic`` (``pctr: heuristic``) and
   ``model`` (the trained model, ``pctr: model``). The model is also scored offline on the
   heuristic arm's day-2 impressions (held out in time and in users) against the heuristic.

Rewrites: the query's aliases mapped to their words by a table covering 80% of them (the
search pipeline's role in serving). Semantic recall is ``semantic/text`` (no towers are trained
here). Each row is one arm's mean over seeds with the per-seed paired difference model -
heuristic and a Student-t 95% interval.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from notefeed.ads.evaluate import CLOSED_LOOP, _ci95

__all__ = ["serving_pctr_seed", "serving_pctr_study"]

DAY = 86_400.0
T0 = 1_700_006_400.0  # a midnight (UTC), so a simulated day is one pacing day


def _store(world: Any) -> Any:
    from notefeed.ads.schema import Ad, Advertiser, Campaign, Keyword
    from notefeed.ads.store import AdStore

    store = AdStore(None)
    store.put_advertiser(Advertiser(id="adv", name="sim"))
    for a in range(world.n_ads):
        store.put_campaign(Campaign(id=f"c{a}", advertiser_id="adv", daily_budget=float(world.budget[a]),
                                    bidding="ocpc" if world.ocpc[a] else "cpc", bid=float(world.bid[a])))
        store.ads[f"a{a}"] = Ad(id=f"a{a}", campaign_id=f"c{a}", title=world.ad_texts[a][:60], text=world.ad_texts[a],
                                keywords=[Keyword(text=t, match=m) for t, m in world.ad_keywords[a]])  # type: ignore[arg-type]
    store.version += 1
    return store


def _day(engine: Any, srv: Any, world: Any, queries: list[Any], rewrites: dict[str, str], page: list[str],
         t_start: float, seed: int, day: int) -> dict[str, float]:
    """Serve ``queries`` over one day through ``srv``; clicks and conversions by the world's
    truth with draws fixed per (seed, day, request, ad). Returns the day's totals."""
    from notefeed.serve.adslots import AdEvent

    imps = clicks = convs = 0
    revenue = 0.0
    max_price: dict[str, float] = {}
    for i, q in enumerate(queries):
        now = t_start + DAY * (i + 0.5) / len(queries)
        engine.clock = lambda now=now: now
        rw = " ".join(rewrites.get(w, w) for w in q.text.split())
        ads = srv.search_ads(q.text, [rw] if rw != q.text else [], None, f"sim{q.user}", page) or []
        imps += len(ads)
        for a in ads:
            j = int(a["ad"]["ad_id"][1:])
            u_click, u_conv = np.random.default_rng([seed, day, i, j]).random(2)
            ctr = min(0.9, world.base_ctr * world.quality[j] * world.ad_share[j, q.topic] * float(world.factor(q.user)[j]))
            if u_click < ctr:
                charged, why = srv.event(AdEvent(impression_id=a["ad"]["impression_id"], type="click"))
                assert why is None, why
                clicks += 1
                revenue += charged
                c = a["ad"]["campaign_id"]
                max_price[c] = max(max_price.get(c, 0.0), a["ad"]["price"])
                if u_conv < float(world.true_cvr(q.user)[j]):
                    srv.event(AdEvent(impression_id=a["ad"]["impression_id"], type="conversion"))
                    convs += 1
    spend = srv.spend()
    over = max([(s["spent"] - s["daily_budget"]) / max_price[c] for c, s in spend.items() if c in max_price] or [0.0])
    n = len(queries)
    return {"requests": n, "impressions": imps, "fill": imps / (2 * n), "clicks": clicks, "ctr": clicks / max(imps, 1),
            "conversions": convs, "revenue": round(revenue, 4), "cpm": 1000 * revenue / max(imps, 1),
            "rpm": 1000 * revenue / n, "largest_overspend_clicks": round(float(over), 4)}


def serving_pctr_seed(seed: int, quick: bool = False, sizes: tuple[int, int, int] | None = None,
                      explore: float = 0.0) -> dict[str, Any]:
    """One seed: day-1 log, training, day-2 arms (see the module doc); ``sizes``: (ads, day-1
    requests, day-2 requests), by default (1500, 10000, 8000), quick (500, 2500, 2000).
    ``explore`` > 0: that share of day 1's requests are exploration requests (random slot order,
    ``AdSlotsConfig.explore``) and the model trains on their impressions only."""
    from notefeed.ads.efficiency import (
        IMPRESSION_LOG,
        load_workspace_pctr,
        read_impressions,
        train_workspace_pctr,
    )
    from notefeed.ads.simulate import make_world, sample_queries
    from notefeed.serve.adslots import AdServer, AdSlotsConfig
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import Engine
    from notefeed.serve.synth import synthetic_community

    t_seed = time.perf_counter()
    n_ads, n1, n2 = sizes or ((500, 2500, 2000) if quick else (1500, 10_000, 8000))
    world = make_world(n_ads=n_ads, n_users=2000, seed=seed)
    rng = np.random.default_rng(seed + 11)
    users = rng.permutation(len(world.interest))
    train_users, test_users = users[: len(users) // 2], users[len(users) // 2:]
    day1 = sample_queries(world, n1, train_users, rng)
    day2 = sample_queries(world, n2, test_users, rng)
    rewrites = {str(world.aliases.flat[i]): str(world.words.flat[i])
                for i in range(world.aliases.size) if rng.random() < 0.8}
    ds = synthetic_community(300, n_users=20, n_events=1000, seed=seed)
    out: dict[str, Any] = {"seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        eng = Engine(ds, builtin_config(), ws)
        try:
            eng.ads_store = _store(world)
            page = [eng.catalog.note_ids[i] for i in range(10)]
            base = AdSlotsConfig(pctr="heuristic", encoder_notes=0)
            srv1 = AdServer(eng, base.model_copy(update={"explore": explore}))
            srv1.rng = np.random.default_rng([seed, 1])  # the pacing throttle's draws: reproducible
            srv1.wait_ready()
            out["day1"] = _day(eng, srv1, world, day1, rewrites, page, T0, seed, 1)
            t = time.perf_counter()
            trained = train_workspace_pctr(ws, min_clicks=50, explore_only=explore > 0)
            out["train"] = {k: trained[k] for k in ("impressions", "clicks", "holdout", "beats_served", "written")}
            out["train"]["coef"] = trained.get("coef")
            out["train_s"] = round(time.perf_counter() - t, 2)
            if not trained["written"]:  # the gate refused it: the model arm would serve the heuristic
                out["model_written"] = False
            model = load_workspace_pctr(ws)
            (ws / "ads" / IMPRESSION_LOG).rename(ws / "ads" / "day1.jsonl")
            arms: dict[str, dict[str, float]] = {}
            for arm, cfg in (("heuristic", base), ("model", base.model_copy(update={"pctr": "model",
                                                                                  "log_impressions": False}))):
                srv = AdServer(eng, cfg)
                srv.rng = np.random.default_rng([seed, 2])  # the same pacing draws in both arms
                srv.counts = copy.deepcopy(srv1.counts)  # day 1's impressions and clicks per ad
                srv.wait_ready()
                assert (srv.pctr_model is not None) == (arm == "model" and model is not None)
                arms[arm] = _day(eng, srv, world, day2, rewrites, page, T0 + DAY, seed, 2)
            out["arms"] = arms
            if model is not None:  # offline: the model on the heuristic arm's day-2 impressions
                from notefeed.ads.efficiency import _auc, _logloss

                x, y, p, _, _ = read_impressions(ws / "ads")
                q = model.pctr(x)
                out["offline_day2"] = {"impressions": int(len(y)), "clicks": int(y.sum()),
                                       "logloss_model": _logloss(y, q), "logloss_heuristic": _logloss(y, p),
                                       "auc_model": _auc(y, q), "auc_heuristic": _auc(y, p)}
        finally:
            eng.close()
    out["seed_s"] = round(time.perf_counter() - t_seed, 1)
    return out


def serving_pctr_study(seeds: list[int], quick: bool = False, explore: float = 0.0) -> list[dict]:
    """Rows: one per arm (``heuristic``, ``model``) with means over seeds and, on the model row,
    per-seed paired differences model - heuristic (relative for CPM, revenue, CTR, clicks,
    conversions) with Student-t 95% intervals; one ``offline`` row of day-2 log-loss and AUC."""
    runs = [serving_pctr_seed(s, quick, explore=explore) for s in seeds]
    rows: list[dict] = []
    mets = ("fill", "ctr", "clicks", "conversions", "cpm", "rpm", "revenue", "largest_overspend_clicks")
    for arm in ("heuristic", "model"):
        row: dict[str, Any] = {"dataset": "ad-sim", "method": "serving", "channel": f"auction/pctr={arm}",
                               "tier": "all", "seeds": len(runs)}
        for m in mets:
            row[m] = round(float(np.mean([r["arms"][arm][m] for r in runs])), 5)
        if arm == "model":
            for m in ("ctr", "clicks", "conversions", "cpm", "rpm"):
                d = np.array([r["arms"]["model"][m] / r["arms"]["heuristic"][m] - 1 for r in runs
                              if r["arms"]["heuristic"][m]])
                row[f"{m}_vs_heuristic"] = round(float(d.mean()), 5)
                row[f"{m}_vs_heuristic_ci95"] = _ci95(d)
            row["gate_passed"] = sum(bool(r["train"]["written"]) for r in runs)
        rows.append(row)
    off = [r["offline_day2"] for r in runs if "offline_day2" in r]
    if off:
        row = {"dataset": "ad-sim", "method": "serving", "channel": "offline/day2", "tier": "all", "seeds": len(off)}
        for m in ("logloss_model", "logloss_heuristic", "auc_model", "auc_heuristic", "impressions", "clicks"):
            row[m] = round(float(np.mean([o[m] for o in off])), 5)
        for m in ("logloss", "auc"):
            d = np.array([o[f"{m}_model"] - o[f"{m}_heuristic"] for o in off])
            row[f"{m}_model_minus_heuristic"] = round(float(d.mean()), 5)
            row[f"{m}_model_minus_heuristic_ci95"] = _ci95(d, digits=5)
        rows.append(row)
    rows[0]["training"] = [{"seed": r["seed"], **r["train"], "day1_clicks": r["day1"]["clicks"],
                            "day1_impressions": r["day1"]["impressions"], "day1_cpm": round(r["day1"]["cpm"], 4),
                            "day1_ctr": round(r["day1"]["ctr"], 5), "day1_revenue": r["day1"]["revenue"]}
                           for r in runs]
    rows[0]["seed_s"] = [r["seed_s"] for r in runs]
    rows[0]["day1_explore"] = explore
    rows[0]["per_seed"] = [{"seed": r["seed"], **{f"{a}_{m}": round(float(r["arms"][a][m]), 5)
                                                  for a in ("heuristic", "model") for m in ("cpm", "ctr", "rpm")}}
                           for r in runs]
    return rows


@CLOSED_LOOP.register("serving-pctr")
def _serving_pctr_load(seeds: list[int], quick: bool, opts: dict) -> list[dict]:
    """``notefeed eval --stage ads --param ads.load=serving-pctr``."""
    return serving_pctr_study(seeds, quick, float(opts.get("explore", 0.0)))
