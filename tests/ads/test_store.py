import json

import pytest
from pydantic import ValidationError

from notefeed.ads import Ad, AdStore, AdStoreError, Advertiser, Campaign, Keyword, Targeting


def _fill(store: AdStore) -> None:
    store.put_advertiser(Advertiser(id="adv1", name="Shop"))
    store.put_campaign(Campaign(id="c1", advertiser_id="adv1", daily_budget=50, bid=0.8,
                                targeting=Targeting(interests=["travel"], age_min=18, age_max=40)))
    store.put_ad(Ad(id="ad1", campaign_id="c1", title="Cheap flights", text="fly to Tokyo",
                    keywords=[Keyword(text="tokyo flights", match="phrase")]))


@pytest.mark.parametrize("field,value", [("daily_budget", float("nan")), ("daily_budget", float("inf")),
                                         ("daily_budget", -1.0), ("bid", 0.0), ("bid", float("nan"))])
def test_campaign_rejects_bad_numbers_naming_the_field(field, value):
    kw = {"id": "c1", "advertiser_id": "a", "daily_budget": 10.0, "bid": 1.0, field: value}
    with pytest.raises(ValidationError) as e:
        Campaign(**kw)
    assert field in str(e.value)


def test_validation_rules():
    with pytest.raises(ValidationError, match="end"):
        Campaign(id="c", advertiser_id="a", daily_budget=1, bid=1, start=10, end=5)
    with pytest.raises(ValidationError, match="age_min"):
        Targeting(age_min=40, age_max=20)
    with pytest.raises(ValidationError, match="creative"):
        Ad(id="x", campaign_id="c")
    with pytest.raises(ValidationError, match="match"):
        Keyword(text="a", match="fuzzy")
    with pytest.raises(ValidationError, match="id"):
        Advertiser(id="bad id!", name="x")
    with pytest.raises(ValidationError, match="unknown"):
        Advertiser(id="a", name="x", unknown=1)


def test_store_roundtrip_is_json_and_atomic(tmp_path):
    p = tmp_path / "ads" / "ads.json"
    s = AdStore(p)
    _fill(s)
    raw = json.loads(p.read_text())
    assert [a["id"] for a in raw["ads"]] == ["ad1"]
    assert not list(p.parent.glob(".ads-*"))  # no temporary file left behind
    s2 = AdStore(p)
    assert s2.ads["ad1"].keywords[0].match == "phrase"
    assert s2.campaigns["c1"].targeting.interests == ["travel"]


def test_store_integrity():
    s = AdStore()
    with pytest.raises(AdStoreError, match="advertiser_id"):
        s.put_campaign(Campaign(id="c1", advertiser_id="nope", daily_budget=1, bid=1))
    _fill(s)
    with pytest.raises(AdStoreError, match="children"):
        s.delete("advertisers", "adv1")
    s.delete("ads", "ad1")
    s.delete("campaigns", "c1")
    s.delete("advertisers", "adv1")
    with pytest.raises(AdStoreError, match="unknown"):
        s.delete("ads", "ad1")


def test_store_refuses_a_corrupt_file(tmp_path):
    p = tmp_path / "ads.json"
    p.write_text(json.dumps({"campaigns": [{"id": "c", "advertiser_id": "a", "daily_budget": -1, "bid": 1}]}))
    with pytest.raises(AdStoreError, match="campaigns"):
        AdStore(p)


def test_targeting_matches():
    t = Targeting(interests=["travel"], categories=["trip"], age_min=18, age_max=30)
    assert t.matches(age=20, interests=("travel", "food"), category="trip")
    assert not t.matches(age=40)
    assert not t.matches(interests=("food",))
    assert not t.matches(category="food")
