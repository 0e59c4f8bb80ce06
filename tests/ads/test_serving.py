"""Ads in the feed and search pages (notefeed/serve/adslots.py) through FastAPI's TestClient."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from notefeed.ads.recall import SERVING_DEFAULTS
from notefeed.data.dataset import Dataset
from notefeed.serve.app import create_app
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine
from tests.ads.conftest import AUTH, NOW, TOKEN


def _campaigns(c: TestClient, engine: Engine, n: int = 6, budget: float = 100.0, **camp: object) -> list[str]:
    """``n`` campaigns, each with one note ad per catalogue category seen in users' history."""
    assert c.post("/v1/admin/ads/advertisers", headers=AUTH, json={"id": "adv", "name": "Shop"}).status_code == 201
    cats = sorted({engine.catalog.category_name(i) for i in range(engine.catalog.n_items)})
    ids = []
    for k in range(n):
        body = {"id": f"c{k}", "advertiser_id": "adv", "daily_budget": budget, "bid": 1.0 + k / 10, **camp}
        assert c.post("/v1/admin/ads/campaigns", headers=AUTH, json=body).status_code == 201
        for j, cat in enumerate(cats):
            r = c.post("/v1/admin/ads/ads", headers=AUTH, json={
                "id": f"a{k}_{j}", "campaign_id": f"c{k}", "title": f"Offer {cat}", "text": f"best {cat} deal",
                "category": cat, "keywords": [{"text": "shoes", "match": "broad"}, {"text": cat, "match": "exact"}]})
            assert r.status_code == 201, r.text
        ids.append(f"c{k}")
    return ids


def _check_page(body: dict, n: int) -> list[dict]:
    ads = body["ads"]
    page = list(body["items"])
    for a in ads:
        page.insert(a["position"], a)
    pos = [i for i, x in enumerate(page) if "ad" in x]
    assert pos == [a["position"] for a in ads]
    assert all(p >= 2 for p in pos)  # first slot
    assert all(b - a > 4 for a, b in zip(pos, pos[1:], strict=False))  # >= 4 organic notes between ads
    assert len(ads) <= 0.2 * len(page) + 1e-9  # load cap
    assert len(body["items"]) == n  # the organic page is untouched
    for a in ads:
        m = a["ad"]
        assert m["label"] == "sponsored" and m["price"] > 0 and m["impression_id"] and m["campaign_id"]
        assert a["note_id"] not in {x["note_id"] for x in body["items"]}
    assert len({a["ad"]["campaign_id"] for a in ads}) == len(ads)  # one ad per campaign
    return ads


def test_no_campaigns_no_ads(client: TestClient) -> None:
    body = client.get("/v1/feed", params={"user_id": "u1", "n": 20}).json()
    assert "ads" not in body
    r = client.get("/v1/feed", params={"user_id": "u1", "n": 20})
    assert "ads;dur=0.000" in r.headers["server-timing"]


def test_feed_ads_placed_marked_capped_and_charged(client: TestClient, engine: Engine) -> None:
    _campaigns(client, engine)
    body = client.get("/v1/feed", params={"user_id": "u1", "n": 20}).json()
    ads = _check_page(body, 20)
    assert [a["position"] for a in ads] == [2, 7, 12, 17, 22]  # 20 notes + 5 ads = 0.2 of 25
    assert {a["ad"]["channel"] for a in ads} <= {"category/interest", "semantic/text"}
    # a click charges the GSP price once, through the pacer
    imp, price, camp = ads[0]["ad"]["impression_id"], ads[0]["ad"]["price"], ads[0]["ad"]["campaign_id"]
    r = client.post("/v1/ads/events", headers=AUTH, json={"events": [{"impression_id": imp, "type": "click"}]})
    assert r.status_code == 200 and r.json()["charged"] == pytest.approx(price)
    r = client.post("/v1/ads/events", headers=AUTH, json={"events": [
        {"impression_id": imp, "type": "click"}, {"impression_id": imp, "type": "conversion"},
        {"impression_id": "nope", "type": "click"}]}).json()
    assert r["charged"] == 0 and r["accepted"] == 2 and r["rejected"][0]["index"] == 2
    spend = client.get("/v1/admin/ads/spend").json()["campaigns"]
    assert spend[camp]["spent"] == pytest.approx(price)
    # bad input names the field; the endpoint needs the write token
    r = client.post("/v1/ads/events", headers=AUTH, json={"events": [{"impression_id": imp, "type": "view"}]})
    assert r.status_code == 422 and "type" in r.json()["message"]
    assert client.post("/v1/ads/events", json={"events": [{"impression_id": imp, "type": "click"}]}).status_code == 401


def test_frequency_cap_per_user(client: TestClient, engine: Engine) -> None:
    from notefeed.serve.adslots import AdServer

    _campaigns(client, engine, n=2)
    seen: Counter[str] = Counter()
    for k in range(6):
        if k == 2:  # a restart: today's impressions are read back from the log and still cap
            engine.ad_server = AdServer(engine)
        body = client.get("/v1/feed", params={"user_id": "u2", "n": 20}).json()
        for a in _check_page(body, 20):
            seen[a["ad"]["campaign_id"]] += 1
    assert seen and max(seen.values()) == 3  # freq_cap_per_day
    assert client.get("/v1/feed", params={"user_id": "u3", "n": 20}).json()["ads"]  # another user still gets them


def test_budget_spent_stops_ads(client: TestClient, engine: Engine) -> None:
    _campaigns(client, engine, n=1, budget=0.12)  # alone in the auction: each click costs the reserve, 0.05
    prices = []
    for u in range(4, 30):
        ads = client.get("/v1/feed", params={"user_id": f"u{u}", "n": 20}).json()["ads"]
        if not ads:
            break
        for a in ads:
            prices.append(a["ad"]["price"])
            client.post("/v1/ads/events", headers=AUTH,
                        json={"events": [{"impression_id": a["ad"]["impression_id"], "type": "click"}]})
    spent = client.get("/v1/admin/ads/spend").json()["campaigns"]["c0"]["spent"]
    assert prices and 0.12 <= spent < 0.12 + max(prices)  # spent, and overspent by less than one click
    assert client.get("/v1/feed", params={"user_id": "u40", "n": 20}).json()["ads"] == []


def test_campaign_window_and_targeting(client: TestClient, engine: Engine) -> None:
    _campaigns(client, engine, n=1, start=NOW + 3600)
    assert client.get("/v1/feed", params={"user_id": "u1", "n": 20}).json().get("ads") is None


@pytest.fixture
def search_client(tmp_path: Path) -> Iterator[tuple[TestClient, Engine]]:
    import pandas as pd

    from notefeed.serve.engine import popular_config
    from tests.search.conftest import make_notes

    ev = pd.DataFrame({"user_id": ["traveller"] * 3, "note_id": ["n2", "n11", "n7"], "ts": range(3), "type": "like"})
    eng = Engine(Dataset.build("ads-search", ev, notes=make_notes()),
                 popular_config(builtin_config().with_overrides(api={"token": TOKEN})), tmp_path / "ws")
    eng.clock = lambda: NOW
    with TestClient(create_app(eng)) as c:
        yield c, eng
    eng.search.close()
    eng.close()


def test_search_ads_by_keyword(search_client: tuple[TestClient, Engine]) -> None:
    c, engine = search_client
    assert c.post("/v1/admin/ads/advertisers", headers=AUTH, json={"id": "adv", "name": "Shop"}).status_code == 201
    for k in range(2):
        assert c.post("/v1/admin/ads/campaigns", headers=AUTH, json={
            "id": f"c{k}", "advertiser_id": "adv", "daily_budget": 10, "bid": 1.0 + k}).status_code == 201
    c.post("/v1/admin/ads/ads", headers=AUTH, json={"id": "beans", "campaign_id": "c0", "title": "Fresh beans",
                                                    "keywords": [{"text": "coffee", "match": "broad"}]})
    c.post("/v1/admin/ads/ads", headers=AUTH, json={"id": "espresso-note", "campaign_id": "c1", "note_id": "n3",
                                                    "keywords": [{"text": "coffee", "match": "phrase"}]})
    body = c.get("/v1/search", params={"q": "coffee paris", "n": 10, "explain": True}).json()
    organic = [x["note_id"] for x in body["items"]]
    ads = body["ads"]
    assert ads and "ads_ms" in body["trace"]
    assert ads[0]["position"] == 2 and ads[0]["ad"]["channel"] == "keyword/match"
    # n3 is in the organic results, so its note ad is not shown beside it: the creative wins
    assert "n3" in organic and ads[0]["ad"]["ad_id"] == "beans" and len(ads) <= 0.2 * (len(organic) + len(ads))
    body = c.get("/v1/search", params={"q": "lipstick shades", "n": 10}).json()
    assert all(a["ad"]["channel"] != "keyword/match" for a in body["ads"])


def test_an_ad_for_a_note_the_catalogue_lacks_is_refused(client: TestClient, engine: Engine) -> None:
    assert client.post("/v1/admin/ads/advertisers", headers=AUTH, json={"id": "adv", "name": "Shop"}).status_code == 201
    assert client.post("/v1/admin/ads/campaigns", headers=AUTH, json={
        "id": "c0", "advertiser_id": "adv", "daily_budget": 10, "bid": 1.0}).status_code == 201
    note = engine.catalog.note_ids[3]
    r = client.post("/v1/admin/ads/ads", headers=AUTH, json={"id": "x", "campaign_id": "c0", "note_id": "no-such"})
    assert r.status_code == 422 and r.json()["message"] == "note_id: unknown note 'no-such'", r.text
    r = client.post("/v1/admin/ads/ads/batch", headers=AUTH, json={"ads": [
        {"id": "y", "campaign_id": "c0", "note_id": note}, {"id": "z", "campaign_id": "c0", "note_id": "no-such"}]})
    assert r.status_code == 422 and r.json()["message"].startswith("ads.1.note_id: unknown note"), r.text
    r = client.post("/v1/admin/ads/ads", headers=AUTH, json={"id": "w", "campaign_id": "c9", "title": "t"})
    assert r.status_code == 422 and r.json()["message"] == "campaign_id: unknown campaign 'c9'", r.text
    assert [a["id"] for a in client.get("/v1/admin/ads/ads").json()["ads"]] == []  # nothing stored
    r = client.post("/v1/admin/ads/ads", headers=AUTH, json={"id": "x", "campaign_id": "c0", "note_id": note})
    assert r.status_code == 201, r.text


def test_an_ad_stored_for_a_missing_note_is_never_served(search_client: tuple[TestClient, Engine]) -> None:
    """Written before the API refused it (or by hand): its slot would point at no note."""
    from notefeed.ads.schema import Ad, Keyword
    from notefeed.serve.ads import ads_store

    c, engine = search_client
    assert c.post("/v1/admin/ads/advertisers", headers=AUTH, json={"id": "adv", "name": "Shop"}).status_code == 201
    assert c.post("/v1/admin/ads/campaigns", headers=AUTH, json={
        "id": "c0", "advertiser_id": "adv", "daily_budget": 10, "bid": 5.0}).status_code == 201
    ads_store(engine).put_ad(Ad(id="ghost", campaign_id="c0", note_id="no-such-note",
                                keywords=[Keyword(text="coffee", match="broad")]))
    body = c.get("/v1/search", params={"q": "coffee paris", "n": 10}).json()
    assert not body.get("ads")
    c.post("/v1/admin/ads/ads", headers=AUTH, json={"id": "beans", "campaign_id": "c0", "title": "Fresh beans",
                                                    "keywords": [{"text": "coffee", "match": "broad"}]})
    body = c.get("/v1/search", params={"q": "coffee paris", "n": 10}).json()
    assert [a["ad"]["ad_id"] for a in body["ads"]] == ["beans"]


def test_an_unreadable_ad_store_serves_pages_without_ads_and_is_never_overwritten(
        client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    import os

    path = engine.workspace / "ads" / "ads.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"advertisers": [')  # torn by hand or by a disk
    os.utime(path, ns=(1, 1))
    with caplog.at_level("ERROR", logger="notefeed.serve.adslots"):
        for _ in range(3):
            r = client.get("/v1/feed", params={"user_id": "u1", "n": 10})
            assert r.status_code == 200 and len(r.json()["items"]) == 10 and not r.json().get("ads")
    logged = [m for m in caplog.messages if "serving no ads" in m]
    assert len(logged) == 1 and "not valid JSON" in logged[0]  # once, not once a page
    writes = [("/v1/admin/ads/advertisers", {"id": "adv", "name": "Shop"}),
              ("/v1/ads/events", {"events": [{"impression_id": "x", "type": "click"}]})]
    for url, body in writes:
        r = client.post(url, headers=AUTH, json=body)
        assert r.status_code == 503 and "ads.json" in r.json()["detail"], r.text
    assert client.get("/v1/admin/ads/ads").status_code == 503
    assert path.read_text() == '{"advertisers": ['  # left for the operator to repair
    # repaired: ads again, without a restart
    path.write_text(json.dumps({"advertisers": [], "campaigns": [], "ads": []}))
    assert client.get("/v1/feed", params={"user_id": "u1", "n": 10}).status_code == 200
    assert client.get("/v1/admin/ads/ads").json() == {"ads": []}
    _campaigns(client, engine, n=2)
    assert client.get("/v1/feed", params={"user_id": "u1", "n": 20}).json()["ads"]


def test_a_bad_serving_json_serves_pages_without_ads_until_it_is_repaired(
        client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    settings = engine.workspace / "ads" / "serving.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('{"load_cap": 7}')  # a share above 1
    _campaigns(client, engine, n=2)
    with caplog.at_level("ERROR", logger="notefeed.serve.adslots"):
        for _ in range(3):
            r = client.get("/v1/feed", params={"user_id": "u1", "n": 20})
            assert r.status_code == 200 and len(r.json()["items"]) == 20 and not r.json().get("ads")
    logged = [m for m in caplog.messages if "serving no ads" in m]
    assert len(logged) == 1 and "load_cap" in logged[0]
    r = client.get("/v1/admin/ads/spend")
    assert r.status_code == 503 and "serving.json" in r.json()["detail"] and "load_cap" in r.json()["detail"]
    settings.write_text('{"load_cap": 0.2}')
    assert client.get("/v1/feed", params={"user_id": "u1", "n": 20}).json()["ads"]


def test_large_index_builds_in_the_background(client: TestClient, engine: Engine) -> None:
    from notefeed.serve.adslots import ad_server

    (engine.workspace / "ads").mkdir(parents=True, exist_ok=True)
    (engine.workspace / "ads" / "serving.json").write_text(json.dumps({"sync_build_max_ads": 0}))
    _campaigns(client, engine, n=2)
    srv = ad_server(engine)
    assert srv.wait_ready(120)
    assert client.get("/v1/feed", params={"user_id": "u1", "n": 20}).json()["ads"]


def test_spend_survives_a_restart(client: TestClient, engine: Engine) -> None:
    from notefeed.serve.adslots import AdServer

    _campaigns(client, engine, n=2)
    ad = client.get("/v1/feed", params={"user_id": "u1", "n": 20}).json()["ads"][0]["ad"]
    client.post("/v1/ads/events", headers=AUTH, json={"events": [{"impression_id": ad["impression_id"], "type": "click"}]})
    fresh = AdServer(engine)  # a restarted process: same workspace, nothing in memory
    assert fresh.spend()[ad["campaign_id"]]["spent"] == pytest.approx(ad["price"])


def test_a_click_after_a_restart_is_charged_once(client: TestClient, engine: Engine) -> None:
    """One process: the impressions of before a restart are read back from ads/impressions.jsonl."""
    from notefeed.serve.adslots import AdEvent, AdServer

    _campaigns(client, engine, n=2)
    ads = client.get("/v1/feed", params={"user_id": "u1", "n": 20}).json()["ads"]
    first, second = ads[0]["ad"], ads[1]["ad"]
    client.post("/v1/ads/events", headers=AUTH, json={"events": [{"impression_id": first["impression_id"],
                                                                  "type": "click"}]})
    fresh = AdServer(engine)  # restarted: nothing in memory
    assert fresh.event(AdEvent(impression_id=second["impression_id"], type="click")) == (
        pytest.approx(second["price"]), None)  # served before the restart, clicked after it: charged
    assert fresh.event(AdEvent(impression_id=first["impression_id"], type="click")) == (0.0, None)  # clicked before
    again = AdServer(engine)
    # each ad's counts are read back too: shown once, clicked once (the repeated click not counted)
    assert again.counts[first["ad_id"]] == [1.0, 1.0, 0.0] and again.counts[second["ad_id"]] == [1.0, 1.0, 0.0]
    assert sum(c[0] for c in again.counts.values()) == len(ads)
    again.wait_ready()
    row = again._index.row_of[second["ad_id"]]
    assert (again._index.shown[row], again._index.clicks[row]) == (1.0, 1.0)  # the auction's smoothed CTR sees them
    assert again.event(AdEvent(impression_id=second["impression_id"], type="click")) == (0.0, None)
    assert again.event(AdEvent(impression_id=second["impression_id"], type="conversion")) == (0.0, None)
    assert again.event(AdEvent(impression_id="nope", type="click"))[1] == "unknown or expired impression_id"
    assert again.spend()[second["campaign_id"]]["spent"] == pytest.approx(
        first["price"] + second["price"] if first["campaign_id"] == second["campaign_id"] else second["price"])
    # past the impression TTL the log's impressions are not read back
    engine.clock = lambda: NOW + 10
    late = AdServer(engine, fresh.cfg.model_copy(update={"impression_ttl_s": 1.0}))
    assert late.event(AdEvent(impression_id=ads[0]["ad"]["impression_id"], type="click"))[1] is not None


def test_search_semantic_floor(search_client: tuple[TestClient, Engine]) -> None:
    """``semantic/text`` serves a search ad only at a cosine to the query of at least
    ``search_semantic_floor`` (an ad no keyword matches: semantic recall alone finds it)."""
    from notefeed.serve.adslots import AdServer, AdSlotsConfig

    c, engine = search_client
    assert c.post("/v1/admin/ads/advertisers", headers=AUTH, json={"id": "adv", "name": "Shop"}).status_code == 201
    assert c.post("/v1/admin/ads/campaigns", headers=AUTH, json={
        "id": "c0", "advertiser_id": "adv", "daily_budget": 10, "bid": 1.0}).status_code == 201
    assert c.post("/v1/admin/ads/ads", headers=AUTH, json={
        "id": "tea", "campaign_id": "c0", "title": "Green tea leaves", "text": "loose leaf green tea from the hills",
        "keywords": [{"text": "matcha", "match": "exact"}]}).status_code == 201
    query = "green tea"
    idx = AdServer(engine).index(NOW)
    assert idx is not None
    cand = idx.semantic(idx.encoder.transform([query])[0], 10)
    cos = float(cand.scores[cand.ids.tolist().index(0)])
    assert 0.0 < cos < 1.0

    def served(floor: float) -> list[str]:
        srv = AdServer(engine, AdSlotsConfig(search_semantic_floor=floor))
        page = [str(n) for n in engine.catalog.note_ids[:10]]  # two ad slots
        return [a["ad"]["ad_id"] for a in srv.search_ads(query, [], None, None, page) or []
                if a["ad"]["channel"] == "semantic/text"]

    assert served(cos - 1e-4) == ["tea"] and served(0.0) == ["tea"]
    assert served(min(cos + 1e-4, 1.0)) == []
    assert AdSlotsConfig().search_semantic_floor == SERVING_DEFAULTS["search_semantic_floor"] > 0
