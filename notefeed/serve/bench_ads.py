"""``notefeed bench ads``: the ad slots of one page (recall + eligibility + auction + placement,
:func:`~notefeed.serve.adslots.page_ads`, exactly what the feed and search routes add), timed per
request at 10k and 100k ads, beside the organic feed of the same engine.

The ads come from the ad simulator (:func:`~notefeed.ads.simulate.make_world`: made-up topic words,
3 bid keywords each, exact / phrase / broad), 10 ads per campaign, each ad in a random catalogue
category; the engine serves a synthetic community. Search requests are simulator queries (1-3
words, 15% typed as aliases no keyword contains); feed requests are random users with their
history. Frequency caps and pacing are on (budgets large enough not to run out).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_bench_ads"]


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": len(xs)}


def _store(engine: Any, n_ads: int, seed: int) -> tuple[Any, Any]:
    from notefeed.ads.schema import Ad, Advertiser, Campaign, Keyword
    from notefeed.ads.simulate import make_world
    from notefeed.ads.store import AdStore

    w = make_world(n_ads=n_ads, n_users=50, seed=seed)
    rng = np.random.default_rng(seed)
    cats = sorted({engine.catalog.category_name(i) for i in range(engine.catalog.n_items)})
    store = AdStore(None)
    store.put_advertiser(Advertiser(id="adv", name="bench"))
    for c in range(0, n_ads, 10):
        store.put_campaign(Campaign(id=f"c{c // 10}", advertiser_id="adv", daily_budget=1e6,
                                    bidding="ocpc" if w.ocpc[c] else "cpc", bid=float(w.bid[c])))
    for a in range(n_ads):
        store.ads[f"a{a}"] = Ad(id=f"a{a}", campaign_id=f"c{a // 10}", title=w.ad_texts[a][:60], text=w.ad_texts[a],
                                category=cats[int(rng.integers(len(cats)))],
                                keywords=[Keyword(text=t, match=m) for t, m in w.ad_keywords[a]])  # type: ignore[arg-type]
    store.version += 1
    return store, w


def _click_log(workspace: Path, world: Any, n_queries: int, seed: int) -> int:
    """A search-ad click log like serving writes (``ads/clicks.jsonl``), from the simulator:
    per query, 3 random ads of the query's topic or any topic shown, clicked by the simulator's
    true CTR. Returns the number of clicks."""
    import json

    from notefeed.ads.simulate import sample_queries

    rng = np.random.default_rng(seed + 5)
    qs = sample_queries(world, n_queries, np.arange(len(world.interest)), rng)
    by_topic = [np.flatnonzero(world.ad_topics[:, 0] == t) for t in range(world.words.shape[0])]
    n = 0
    (workspace / "ads").mkdir(parents=True, exist_ok=True)
    with (workspace / "ads" / "clicks.jsonl").open("w", encoding="utf-8") as f:
        for q in qs:
            pool = by_topic[q.topic]
            shown = np.concatenate([rng.choice(pool, min(2, len(pool)), replace=False),
                                    rng.integers(0, world.n_ads, 1)])
            k = world.interest.shape[1]  # world.true_ctr of the shown ads only (it scores every ad)
            ctr = np.minimum(0.9, world.base_ctr * world.quality[shown] * world.ad_share[shown, q.topic]
                             * (0.5 + k * world.interest[q.user, world.ad_topics[shown, 0]] / 2.0))
            for a in shown[rng.random(len(shown)) < ctr].tolist():
                f.write(json.dumps({"query": q.text, "ad_id": f"a{a}"}) + "\n")
                n += 1
    return n


def run_bench_ads(sizes: list[int], requests: int = 300, seed: int = 0, page: int = 20,
                  towers: bool = False) -> dict[str, Any]:
    from notefeed.ads.simulate import sample_queries
    from notefeed.eval.timing import machine_info
    from notefeed.serve.adslots import ad_server, page_ads
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import Engine
    from notefeed.serve.synth import synthetic_community

    ds = synthetic_community(2000, n_users=500, n_events=20_000, seed=seed)
    out: dict[str, Any] = {"bench": "ads", "machine": machine_info(), "requests": requests, "page": page,
                           "notes": 2000, "results": []}
    rng = np.random.default_rng(seed)
    users = [str(u) for u in ds.users["user_id"].tolist()]
    for n_ads in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            eng = Engine(ds, builtin_config(), Path(tmp) / "ws")
            now = 1_700_000_000.0
            eng.clock = lambda now=now: now
            try:
                t0 = time.perf_counter()
                eng.ads_store, world = _store(eng, n_ads, seed)
                tower_info: dict[str, Any] = {}
                if towers:  # search ads by semantic/twotower: train it on a simulated click log first
                    from notefeed.ads.twotower import train_workspace_towers

                    eng.ads_store.path = Path(tmp) / "ws" / "ads" / "ads.json"
                    eng.ads_store.save()
                    n_clicks = _click_log(Path(tmp) / "ws", world, 20_000, seed)
                    tt = time.perf_counter()
                    tower_info = {**train_workspace_towers(Path(tmp) / "ws", min_clicks=100),
                                  "train_s": round(time.perf_counter() - tt, 1), "logged_clicks": n_clicks}
                    tower_info.pop("path", None)
                t1 = time.perf_counter()
                srv = ad_server(eng)
                srv.wait_ready()  # builds the keyword index, text encoder and ANN index
                t2 = time.perf_counter()
                queries = sample_queries(world, requests, np.arange(len(world.interest)), rng)
                search_ms, search_n, feed_ms, feed_n, organic_ms = [], [], [], [], []
                for r in range(requests + 20):  # the first 20 warm up
                    uid = users[int(rng.integers(len(users)))]
                    t = time.perf_counter()
                    ctx, res = eng.feed(uid, page)
                    t_org = (time.perf_counter() - t) * 1e3
                    notes = [eng.catalog.note_ids[i] for i in res.items.tolist()]
                    ads, ms = page_ads(eng, notes, user_id=uid, ctx=ctx)
                    q = queries[r % len(queries)]
                    sads, sms = page_ads(eng, notes[:10], user_id=None, query=q.text)
                    if r >= 20:
                        organic_ms.append(t_org)
                        feed_ms.append(ms)
                        feed_n.append(len(ads or []))
                        search_ms.append(sms)
                        search_n.append(len(sads or []))
                out["results"].append({
                    "ads": n_ads, "campaigns": len(eng.ads_store.campaigns), "store_s": round(t1 - t0, 1),
                    "index_build_s": round(t2 - t1, 1),
                    "search_ads": {**_pct(search_ms), "ads_per_page": round(float(np.mean(search_n)), 2)},
                    "feed_ads": {**_pct(feed_ms), "ads_per_page": round(float(np.mean(feed_n)), 2)},
                    "organic_feed": _pct(organic_ms),
                    "target_p99_ms": 10.0,
                    "search_semantic": "semantic/twotower" if srv._index is not None and srv._index.tt is not None
                    else "semantic/text",
                    **({"towers": tower_info} if towers else {}),
                })
            finally:
                eng.close()
    return out


def register(bench: Any) -> None:
    """``notefeed bench ads``."""
    import json

    import typer

    @bench.command("ads")
    def bench_ads(
        sizes: str = typer.Option("10000,100000", "--sizes", help="ad counts, comma-separated"),
        requests: int = typer.Option(300, "--requests", min=10, max=100_000, help="timed requests per size"),
        seed: int = typer.Option(0, "--seed"),
        json_out: Path | None = typer.Option(None, "--json", help="write the result here"),
        towers: bool = typer.Option(False, "--towers", help="search ads by semantic/twotower, trained first on a "
                                    "simulated click log (20,000 queries)"),
    ) -> None:
        """Ad slots of one page (recall + auction + placement) at 10k / 100k ads: p50 / p99 ms."""
        try:
            ns = [int(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise typer.BadParameter(f"expected comma-separated integers, got {sizes!r}", param_hint="--sizes") from None
        if not ns or min(ns) < 10:
            raise typer.BadParameter("need ad counts >= 10", param_hint="--sizes")
        t0 = time.perf_counter()
        res = run_bench_ads(ns, requests, seed, towers=towers)
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        text = json.dumps(res, indent=1)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(text + "\n", encoding="utf-8")
        for r in res["results"]:
            typer.echo(f"{r['ads']:>7} ads: search p50 {r['search_ads']['p50_ms']} p99 {r['search_ads']['p99_ms']} ms, "
                       f"feed p50 {r['feed_ads']['p50_ms']} p99 {r['feed_ads']['p99_ms']} ms "
                       f"(organic feed p50 {r['organic_feed']['p50_ms']} ms)")
