from types import SimpleNamespace

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from notefeed.ads.store import AdStore
from notefeed.serve.ads import add_ads_routes

AUTH = {"Authorization": "Bearer t"}


def _app(tmp_path):
    def write_auth(authorization: str | None = Header(None)) -> None:
        if authorization != "Bearer t":
            raise HTTPException(401, "missing or wrong bearer token")

    app = FastAPI()
    eng = SimpleNamespace(workspace=tmp_path)
    add_ads_routes(app, eng, [Depends(write_auth)], [])
    return TestClient(app), eng


def test_admin_ads_crud(tmp_path):
    c, eng = _app(tmp_path)
    assert c.post("/v1/admin/ads/advertisers", json={"id": "a1", "name": "Shop"}).status_code == 401
    assert c.post("/v1/admin/ads/advertisers", json={"id": "a1", "name": "Shop"}, headers=AUTH).status_code == 201
    r = c.post("/v1/admin/ads/campaigns", headers=AUTH,
               json={"id": "c1", "advertiser_id": "zz", "daily_budget": 10, "bid": 1})
    assert r.status_code == 422 and "advertiser_id" in r.text
    r = c.post("/v1/admin/ads/campaigns", headers=AUTH, json={"id": "c1", "advertiser_id": "a1", "daily_budget": -1, "bid": 1})
    assert r.status_code == 422 and "daily_budget" in r.text
    assert c.post("/v1/admin/ads/campaigns", headers=AUTH, json={
        "id": "c1", "advertiser_id": "a1", "daily_budget": 10, "bid": 1, "bidding": "ocpc"}).status_code == 201
    r = c.post("/v1/admin/ads/ads", headers=AUTH, json={
        "id": "ad1", "campaign_id": "c1", "title": "Sale", "keywords": [{"text": "shoes", "match": "exact"}]})
    assert r.status_code == 201
    assert [a["id"] for a in c.get("/v1/admin/ads/ads").json()["ads"]] == ["ad1"]
    assert c.delete("/v1/admin/ads/campaigns/c1", headers=AUTH).status_code == 409
    assert c.delete("/v1/admin/ads/ads/nope", headers=AUTH).status_code == 404
    assert c.get("/v1/admin/ads/bogus").status_code == 404
    assert AdStore(tmp_path / "ads" / "ads.json").ads["ad1"].keywords[0].match == "exact"  # persisted


def test_admin_ads_batch(tmp_path):
    c, eng = _app(tmp_path)
    c.post("/v1/admin/ads/advertisers", json={"id": "a1", "name": "Shop"}, headers=AUTH)
    c.post("/v1/admin/ads/campaigns", headers=AUTH, json={"id": "c1", "advertiser_id": "a1", "daily_budget": 10, "bid": 1})
    ads = [{"id": f"ad{i}", "campaign_id": "c1", "title": f"Sale {i}"} for i in range(50)]
    r = c.post("/v1/admin/ads/ads/batch", headers=AUTH, json={"ads": ads})
    assert r.status_code == 201 and r.json() == {"ads": 50}
    bad = [{"id": "x1", "campaign_id": "c1", "title": "ok"}, {"id": "x2", "campaign_id": "nope", "title": "no"}]
    r = c.post("/v1/admin/ads/ads/batch", headers=AUTH, json={"ads": bad})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "ads", 1, "campaign_id"], r.text
    assert "x1" not in AdStore(tmp_path / "ads" / "ads.json").ads  # all or none
    r = c.post("/v1/admin/ads/ads/batch", headers=AUTH, json={"ads": [{"id": "y", "campaign_id": "c1"}]})
    assert r.status_code == 422 and "ads" in r.text  # neither a note nor a creative
    assert c.post("/v1/admin/ads/ads/batch", json={"ads": ads}).status_code == 401
    assert len(AdStore(tmp_path / "ads" / "ads.json").ads) == 50
