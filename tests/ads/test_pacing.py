import numpy as np

from notefeed.ads.pacing import PidPacer


def _day(budget: float, cpc: float, traffic: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pacer = PidPacer({"c": budget}, day_s=1000.0, update_s=5.0)
    times = np.sort(rng.uniform(0, 1000.0, traffic))
    spend_t = []
    for t in times:
        if pacer.allow("c", t, rng) and rng.random() < 0.3:  # a click
            cost = cpc * rng.uniform(0.5, 1.0)
            pacer.record("c", cost, t)
            spend_t.append((t, cost))
    return pacer, spend_t


def test_never_overspends_more_than_one_click():
    for seed in range(5):
        pacer, _ = _day(budget=20.0, cpc=1.0, traffic=5000, seed=seed)
        assert pacer.state["c"].spent <= 20.0 + 1.0


def test_spend_is_spread_over_the_day():
    pacer, spend = _day(budget=50.0, cpc=1.0, traffic=20000)
    t = np.array([s[0] for s in spend])
    # without pacing the budget would be gone in the first few percent of the day
    assert t.max() > 800.0
    first_half = sum(c for tt, c in spend if tt < 500.0)
    assert 0.3 < first_half / pacer.state["c"].spent < 0.7


def test_budget_resets_next_day():
    rng = np.random.default_rng(0)
    p = PidPacer({"c": 1.0}, day_s=100.0)
    p.record("c", 2.0, 10.0)
    assert not p.allow("c", 20.0, rng)
    assert p.remaining("c") < 0
    allowed = any(p.allow("c", 150.0, rng) for _ in range(50))
    assert allowed
