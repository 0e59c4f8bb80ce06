import numpy as np
import pytest

from notefeed.sim import behaviour as B
from notefeed.sim.config import BehaviourParams
from notefeed.sim.env import SimEnvironment

P = BehaviourParams()


def test_click_probability_falls_with_position_and_fatigue():
    aff = np.full(5, 0.5, np.float32)
    q = np.full(5, 0.5, np.float32)
    by_pos = B.click_probability(aff, q, np.arange(5), 0, 0, P)
    assert (np.diff(by_pos) < 0).all()
    by_seen = B.click_probability(aff, q, np.zeros(5), np.arange(5), 0, P)
    assert (np.diff(by_seen) < 0).all()
    by_topic = B.click_probability(aff, q, np.zeros(5), 0, np.arange(5) + P.topic_free, P)
    assert (np.diff(by_topic) < 0).all()
    by_aff = B.click_probability(np.linspace(-1, 1, 5), q, np.zeros(5), 0, 0, P)
    assert (np.diff(by_aff) > 0).all()


def test_action_ordering_and_dwell_grow_with_affinity():
    pa = B.action_probabilities(np.linspace(-1, 1, 9).astype(np.float32), np.full(9, 0.5, np.float32), P)
    assert (np.diff(pa, axis=1) < 0).all()  # like > collect > comment > share > follow
    rng = np.random.default_rng(0)
    n = 20_000
    lo = B.sample_reactions(rng, np.full(n, 0.1, np.float32), np.full(n, 0.5, np.float32), np.zeros(n), 0, 0, P)
    hi = B.sample_reactions(rng, np.full(n, 0.9, np.float32), np.full(n, 0.5, np.float32), np.zeros(n), 0, 0, P)
    assert hi.click.mean() > lo.click.mean()
    assert np.nanmean(hi.dwell_s) > np.nanmean(lo.dwell_s)
    assert lo.hide.mean() > hi.hide.mean()
    assert not (hi.hide & hi.click).any()


def test_fatigue_lowers_ctr_on_repeats(tiny):
    env = SimEnvironment(tiny, seed=3)
    rng = np.random.default_rng(0)
    users = np.arange(tiny.world.n_users)
    # pages of notes each user likes, so the first showing has clicks to lose
    pages = []
    for u in users:
        cand = rng.choice(tiny.world.n_notes, 60, replace=False)
        s = env.expected_engagement(int(u), cand)
        pages.append(cand[np.argsort(-s)[:10]])
    first = env.respond_batch(users, pages)
    env.advance(60)
    second = env.respond_batch(users, pages)

    def ctr(ev):
        return (ev["type"] == "click").sum() / (ev["type"] == "impression").sum()

    assert ctr(second) < 0.6 * ctr(first)


def test_position_bias_in_environment(tiny):
    env = SimEnvironment(tiny, seed=4)
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(tiny.world.n_users), 4)
    pages = [rng.choice(tiny.world.n_notes, 10, replace=False) for _ in users]
    ev = env.respond_batch(users, pages)
    imp = ev[ev["type"] == "impression"].groupby("position").size()
    clk = ev[ev["type"] == "click"].groupby("position").size().reindex(imp.index, fill_value=0)
    top, bottom = clk.iloc[:3].sum() / imp.iloc[:3].sum(), clk.iloc[-3:].sum() / imp.iloc[-3:].sum()
    assert top > bottom


def test_true_affinity_shapes_and_range(tiny):
    users = np.array([0, 1, 2])
    items = np.array([5, 6, 7])
    a = tiny.true_affinity(users, items)
    assert a.shape == (3,) and (np.abs(a) <= 1.0 + 1e-5).all()
    e = tiny.expected_engagement(users, items)
    assert e.shape == (3,) and (e >= 0).all()
    with pytest.raises(ValueError, match="users"):
        tiny.true_affinity(np.array([0, 1]), np.array([1]))
