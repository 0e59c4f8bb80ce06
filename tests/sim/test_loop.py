import numpy as np
import pandas as pd
import pytest

from notefeed.sim.env import SimEnvironment
from notefeed.sim.loop import gini, intra_list_diversity, run_closed_loop
from notefeed.sim.policies import POLICIES, Policy, make_policy


def test_registry_and_protocol():
    assert {"random", "popular", "oracle"} <= set(POLICIES.names())
    for name in ("random", "popular", "oracle"):
        p = make_policy(name, seed=0)
        assert isinstance(p, Policy) and p.name == name
    with pytest.raises(KeyError, match="known"):
        make_policy("nope")


def test_oracle_beats_popular_beats_random(tiny, tiny_history):
    res = {}
    for name in ("random", "popular", "oracle"):
        env = SimEnvironment(tiny, seed=11, dataset=tiny_history)
        res[name] = run_closed_loop(env, make_policy(name, seed=11), steps=8, requests_per_step=60,
                                    new_notes_per_step=3)
    assert res["oracle"]["ctr"] > 1.5 * res["random"]["ctr"]
    assert res["popular"]["ctr"] > res["random"]["ctr"]
    r = res["random"]
    assert r["impressions"] == 8 * 60 * 10
    for key in ("small_creator_share", "creator_gini", "diversity", "interest_coverage", "new_note_share"):
        assert 0.0 <= r[key] <= 1.0, key
    assert len(r["series"]) == 8 and r["new_notes"] == 24
    # random spreads exposure over creators more evenly than popular
    assert res["random"]["creator_gini"] < res["popular"]["creator_gini"]
    assert res["random"]["new_note_share"] > 0


def test_env_respond_publish_and_errors(tiny):
    env = SimEnvironment(tiny, seed=0)
    n0 = env.n_items
    new = env.publish(5)
    assert new.tolist() == list(range(n0, n0 + 5)) and env.n_items == n0 + 5
    assert (env.item_created_at[new] == env.now).all()
    frame = env.notes_frame(new)
    assert len(frame) == 5 and frame["note_id"].tolist() == [f"n{i}" for i in new]
    ev = env.respond(3, np.array([new[0], 1, 2]))
    assert isinstance(ev, pd.DataFrame)
    imp = ev[ev["type"] == "impression"]
    assert imp["item"].tolist() == [new[0], 1, 2] and imp["position"].tolist() == [0, 1, 2]
    assert set(env.seen_items(3).tolist()) == {new[0], 1, 2}
    with pytest.raises(ValueError, match="items"):
        env.respond(3, np.array([n0 + 100]))
    with pytest.raises(ValueError, match="items"):
        env.respond(3, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="user"):
        env.respond(10_000, np.array([1]))
    with pytest.raises(ValueError, match="n_new_notes"):
        env.publish(-1)
    with pytest.raises(ValueError, match="steps"):
        run_closed_loop(env, make_policy("random"), steps=0)
    users = env.sample_requests(1000)
    assert users.min() >= 0 and users.max() < env.n_users


def test_short_term_interest_drifts(tiny):
    env = SimEnvironment(tiny, seed=2)
    users = np.arange(env.n_users)
    before = env.short_topic.copy()
    env.advance(3 * 86400)
    env.respond_batch(users, [np.array([0])] * len(users))
    assert (env.short_topic != before).mean() > 0.3


def test_metric_kernels():
    assert gini(np.array([5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 9])) == pytest.approx(0.75)
    assert gini(np.zeros(3)) == 0.0
    assert intra_list_diversity([np.array([1, 1]), np.array([1, 2])]) == pytest.approx(0.5)


def test_notes_frame_is_stable(tiny):
    env = SimEnvironment(tiny, seed=0)
    pd.testing.assert_frame_equal(env.notes_frame(np.arange(3)), tiny.notes.iloc[:3].reset_index(drop=True))
    new = env.publish(4)
    a = env.notes_frame(new)
    env.publish(2)
    pd.testing.assert_frame_equal(a, env.notes_frame(new))
    with pytest.raises(ValueError, match="items"):
        env.notes_frame(np.array([env.n_items]))
