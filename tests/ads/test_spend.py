"""Campaign spend shared by serving workers through Redis (notefeed/ads/spend.py): a real
redis-server, two processes and two engines charging the same campaign at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from notefeed.ads.spend import RedisSpendLedger

NOW = 1_700_000_000.0
TOKEN = "ads-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# one worker process: charges random prices to campaign "c" until told to stop; prints what it charged
_WORKER = """
import json, sys, time
import numpy as np
from notefeed.ads.spend import RedisSpendLedger
url, prefix, seed, n, budget, now = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
led = RedisSpendLedger.from_url(url, prefix=prefix)
rng = np.random.default_rng(seed)
led.r.incr(prefix + ":ready")  # start together: wait for the test's go
while not led.r.exists(prefix + ":go"):
    time.sleep(0.001)
charged, prices = 0.0, []
for _ in range(n):
    p = float(rng.uniform(0.05, 1.0))
    prices.append(p)
    ok, _total = led.charge("c", p, budget, now)
    charged += p if ok else 0.0
print(json.dumps({"charged": charged, "max_price": max(prices)}))
"""


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    import redis

    p = f"adtest-{uuid.uuid4().hex[:8]}"
    yield p
    r = redis.Redis.from_url(redis_url)
    for k in r.scan_iter(f"{p}:*"):
        r.delete(k)
    r.close()


def test_ledger_charges_below_budget_only(redis_url: str, prefix: str) -> None:
    led = RedisSpendLedger.from_url(redis_url, prefix=prefix)
    assert led.charge("c", 0.7, 1.0, NOW) == (True, pytest.approx(0.7))
    assert led.charge("c", 0.7, 1.0, NOW) == (True, pytest.approx(1.4))  # spend was below: charged
    assert led.charge("c", 0.1, 1.0, NOW) == (False, pytest.approx(1.4))  # at or past the budget: refused
    assert led.charge("c", 0.3, 1.0, NOW + 86400) == (True, pytest.approx(0.3))  # a new day starts from 0
    assert led.spent(NOW) == {"c": pytest.approx(1.4)}
    with pytest.raises(ValueError):
        led.charge("c", -1.0, 1.0, NOW)
    led.close()


def test_two_processes_never_overspend_by_more_than_one_click(redis_url: str, prefix: str, tmp_path: Path) -> None:
    import redis

    budget = 150.0
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, redis_url, prefix, str(seed), "400", str(budget),
                               str(NOW)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    r = redis.Redis.from_url(redis_url)
    for _ in range(3000):
        if int(r.get(f"{prefix}:ready") or 0) == 2:
            break
        time.sleep(0.01)
    r.set(f"{prefix}:go", 1)
    r.close()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    total = RedisSpendLedger.from_url(redis_url, prefix=prefix).spent(NOW)["c"]
    # each process alone would spend ~210 (400 clicks x 0.52): both charged, and together
    # they stopped at the budget, past it by less than the dearest click
    assert all(o["charged"] > 0 for o in outs)
    assert sum(o["charged"] for o in outs) == pytest.approx(total)
    assert budget <= total < budget + max(o["max_price"] for o in outs)


def _engine(ds: object, ws: Path, url: str, prefix: str) -> object:
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import Engine

    cfg = builtin_config().with_overrides(api={"token": TOKEN},
                                          online={"backend": "redis", "redis_url": url, "redis_prefix": prefix})
    eng = Engine(ds, cfg, ws)
    eng.clock = lambda: NOW
    return eng


def test_two_engines_share_one_budget(redis_url: str, prefix: str, tmp_path: Path) -> None:
    """Two engines on one workspace and one Redis (two ``--workers``): pages from both, clicks on
    both at once; the campaign's spend is one figure, past the budget by less than one click."""
    from notefeed.serve.app import create_app
    from notefeed.serve.synth import synthetic_community

    ds = synthetic_community(600, n_users=60, n_events=2000, seed=5)
    engines = [_engine(ds, tmp_path / "ws", redis_url, prefix) for _ in range(2)]
    try:
        clients = [TestClient(create_app(e)) for e in engines]
        c0 = clients[0]
        assert c0.post("/v1/admin/ads/advertisers", headers=AUTH, json={"id": "adv", "name": "Shop"}).status_code == 201
        budget = 1.0
        assert c0.post("/v1/admin/ads/campaigns", headers=AUTH, json={
            "id": "c0", "advertiser_id": "adv", "daily_budget": budget, "bid": 1.0}).status_code == 201
        cats = sorted({engines[0].catalog.category_name(i) for i in range(engines[0].catalog.n_items)})
        ads = [{"id": f"a{j}", "campaign_id": "c0", "title": f"Offer {cat}", "text": f"best {cat} deal",
                "category": cat} for j, cat in enumerate(cats)]
        assert c0.post("/v1/admin/ads/ads/batch", headers=AUTH, json={"ads": ads}).status_code in (200, 201)

        prices: list[float] = []
        charged = [0.0, 0.0]

        # both engines click in the same rounds: free-running, one thread could spend the whole
        # budget before the other's first click on a busy machine (then nothing is shared)
        rounds = threading.Barrier(2, timeout=120)

        def worker(k: int) -> None:
            c = clients[k]
            for u in range(60):
                body = c.get("/v1/feed", params={"user_id": f"u{(u + 30 * k) % 60}", "n": 20}).json()
                rounds.wait()
                for a in body.get("ads", []):
                    prices.append(a["ad"]["price"])
                    r = c.post("/v1/ads/events", headers=AUTH,
                               json={"events": [{"impression_id": a["ad"]["impression_id"], "type": "click"}]})
                    assert r.status_code == 200, r.text
                    charged[k] += r.json()["charged"]

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert prices and all(charged), charged  # both engines served and charged the campaign
        spent = [c.get("/v1/admin/ads/spend").json()["campaigns"]["c0"]["spent"] for c in clients]
        assert spent[0] == pytest.approx(spent[1]) == pytest.approx(sum(charged))  # one figure for both
        assert budget <= spent[0] < budget + max(prices)
        # neither engine serves the campaign once its spend is synced
        for c in clients:
            assert c.get("/v1/feed", params={"user_id": "u7", "n": 20}).json()["ads"] == []
    finally:
        for e in engines:
            e.close()


def test_a_click_on_any_worker_or_after_a_restart_is_charged_once(redis_url: str, prefix: str, tmp_path: Path) -> None:
    """Impressions live in Redis: a page served by worker A is clicked on worker B, again on A,
    and on a restarted worker; it is charged once, and one click sent to both at once too."""
    from notefeed.serve.app import create_app
    from notefeed.serve.synth import synthetic_community

    ds = synthetic_community(600, n_users=60, n_events=2000, seed=5)
    engines = [_engine(ds, tmp_path / "ws", redis_url, prefix) for _ in range(2)]
    try:
        a, b = (TestClient(create_app(e)) for e in engines)
        assert a.post("/v1/admin/ads/advertisers", headers=AUTH, json={"id": "adv", "name": "Shop"}).status_code == 201
        assert a.post("/v1/admin/ads/campaigns", headers=AUTH, json={
            "id": "c0", "advertiser_id": "adv", "daily_budget": 100.0, "bid": 1.0}).status_code == 201
        cats = sorted({engines[0].catalog.category_name(i) for i in range(engines[0].catalog.n_items)})
        for j, cat in enumerate(cats):
            a.post("/v1/admin/ads/ads", headers=AUTH, json={"id": f"a{j}", "campaign_id": "c0", "category": cat,
                                                            "title": f"Offer {cat}"})

        def click(c: TestClient, imp: str, kind: str = "click") -> dict:
            r = c.post("/v1/ads/events", headers=AUTH, json={"events": [{"impression_id": imp, "type": kind}]})
            assert r.status_code == 200, r.text
            return r.json()

        ad = a.get("/v1/feed", params={"user_id": "u1", "n": 20}).json()["ads"][0]["ad"]
        imp, price = ad["impression_id"], ad["price"]
        assert click(b, imp, "conversion")["rejected"][0]["reason"].startswith("conversion before any click")
        assert click(b, imp)["charged"] == pytest.approx(price)  # served by A, clicked on B
        assert click(a, imp) == {"accepted": 1, "charged": 0.0, "rejected": []}  # again, on A: not charged
        assert click(a, imp, "conversion")["accepted"] == 1
        engines.append(_engine(ds, tmp_path / "ws", redis_url, prefix))  # a restarted worker
        c = TestClient(create_app(engines[-1]))
        assert click(c, imp)["charged"] == 0.0 and click(c, "nope")["rejected"][0]["reason"].startswith("unknown")
        # one new click sent to both workers at once: charged once
        imp2 = a.get("/v1/feed", params={"user_id": "u2", "n": 20}).json()["ads"][0]["ad"]["impression_id"]
        go = threading.Barrier(2, timeout=60)
        got: list[float] = []

        def send(cl: TestClient) -> None:
            go.wait()
            got.append(click(cl, imp2)["charged"])

        threads = [threading.Thread(target=send, args=(cl,)) for cl in (a, c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(got) == 2 and sorted(got)[0] == 0.0 and sorted(got)[1] > 0
        spent = b.get("/v1/admin/ads/spend").json()["campaigns"]["c0"]["spent"]
        assert spent == pytest.approx(price + max(got))  # the shared ledger holds both charges, once each
    finally:
        for e in engines:
            e.close()
