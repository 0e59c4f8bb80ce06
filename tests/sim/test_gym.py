"""The exposure-control Gymnasium environment: checker, seeding, observation = the serving step's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from notefeed.serve.exposure import KNOBS, OBS_NAMES  # noqa: E402
from notefeed.sim.env import SimEnvironment  # noqa: E402
from notefeed.sim.gym import (  # noqa: E402
    ExposureEnv,
    RewardConfig,
    action_of_knobs,
    drift_interests,
    knobs_of_action,
    objective,
    page_reward,
)


@pytest.fixture(scope="module")
def env():
    e = ExposureEnv(preset="tiny", communities=(1000,), steps=3, requests_per_step=4)
    yield e
    e.close()


def _trajectory(env: ExposureEnv, seed: int, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=seed)
    seen, rewards = [obs], []
    for a in actions:
        obs, r, terminated, truncated, _ = env.step(a)
        seen.append(obs)
        rewards.append(r)
        assert not terminated
        if truncated:
            break
    return np.array(seen), np.array(rewards)


def test_passes_the_gymnasium_checker(env) -> None:
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (len(OBS_NAMES),)
    assert env.action_space.shape == (len(KNOBS),)


def test_same_seed_same_trajectory(env) -> None:
    acts = np.random.default_rng(0).uniform(-1, 1, (env.horizon, len(KNOBS))).astype(np.float32)
    obs_a, rew_a = _trajectory(env, 5, acts)
    obs_b, rew_b = _trajectory(env, 5, acts)
    assert len(rew_a) == env.horizon
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    _, rew_c = _trajectory(env, 6, acts)
    assert not np.array_equal(rew_a, rew_c)


def test_observation_is_what_the_serving_step_sees_and_knobs_are_applied(env) -> None:
    obs, _ = env.reset(seed=1)
    for knobs in ([2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.5, 2.0]):
        nxt, _, _, _, info = env.step(action_of_knobs(np.array(knobs)))
        last = env._step.last  # the decision the pipeline's policy/rl step took on the real request
        np.testing.assert_allclose(last["observation"], obs, rtol=1e-6)
        np.testing.assert_allclose(last["knobs"], knobs, atol=1e-6)
        np.testing.assert_allclose(info["knobs"], knobs, atol=1e-6)
        assert last["source"] == "policy"
        obs = nxt


def test_small_boost_raises_the_small_creator_share(env) -> None:
    def share(knobs: list[float]) -> float:
        env.reset(seed=2)
        vals = [env.step(action_of_knobs(np.array(knobs)))[4]["small_share"] for _ in range(env.horizon)]
        return float(np.mean(vals))

    assert share([2.0, 0.0, 0.0, 0.0]) > share([0.0, 0.0, 0.0, 0.0]) + 0.05


def test_action_scaling_round_trips() -> None:
    k = np.array([0.0, 0.5, 1.5, 2.0])
    np.testing.assert_allclose(knobs_of_action(action_of_knobs(k)), k, atol=1e-6)
    np.testing.assert_allclose(knobs_of_action(np.array([-5.0, 5.0, 0.0, -1.0])), [0.0, 2.0, 1.0, 0.0])
    # a residual range around base knobs: zero action = the base, clipped to [0, 2]
    base = np.array([1.3, 0.2, 0.0, 1.9])
    np.testing.assert_allclose(knobs_of_action(np.zeros(4), base - 0.5, base + 0.5), base)
    np.testing.assert_allclose(knobs_of_action(np.ones(4), base - 0.5, base + 0.5), [1.8, 0.7, 0.5, 2.0])
    np.testing.assert_allclose(knobs_of_action(-np.ones(4), base - 0.5, base + 0.5), [0.8, 0.0, 0.0, 1.4])


def test_page_reward_and_objective_agree() -> None:
    ev = pd.DataFrame({"type": ["impression"] * 4 + ["click", "like", "click", "collect"]})
    small = np.array([True, False, False, False])
    r, parts = page_reward(ev, small, 4)
    # engagement (2 clicks + 1 like + 1.5 collect) / 4 = 1.125; 2 of 4 impressions clicked;
    # small share 0.25: shortfall 0.25
    assert parts["engagement"] == pytest.approx(1.125)
    assert r == pytest.approx(1.125 - 0.1 * 0.5 - 2.0 * 0.25)
    m = {"ctr": 0.5, "like_rate": 0.25, "collect_rate": 0.25, "comment_rate": 0.0, "share_rate": 0.0,
         "small_creator_share": 0.25}
    assert objective(m) == pytest.approx(r)
    r2, _ = page_reward(ev, small, 4, RewardConfig(gains={}, ineffective_cost=0.0, small_target=1.0, small_penalty=1.0))
    assert r2 == pytest.approx(-0.75)


def test_aggregate_charges_add_up_to_the_episode_shortfall() -> None:
    """Pages of small shares 0.0, 1.0, 0.2, 0.6: each alone falls short, the episode (0.45) by
    0.05; the charges sum to that x the pages, so the mean reward is the run's objective."""
    no_events = pd.DataFrame({"type": pd.Series([], dtype=object)})
    served, total = (0, 0), 0.0
    for k in (0, 10, 2, 6):
        small = np.arange(10) < k
        r, parts = page_reward(no_events, small, 10, served=served)
        served = (served[0] + k, served[1] + 10)
        total += r
    # no clicks: ineffective cost 0.1 per page; shortfall charge 2.0 x 0.05 per page on average
    assert total / 4 == pytest.approx(-0.1 - 2.0 * 0.05)
    assert total / 4 == pytest.approx(objective({"ctr": 0.0, "like_rate": 0.0, "collect_rate": 0.0, "comment_rate": 0.0,
                                                 "share_rate": 0.0, "small_creator_share": 0.45}))
    per_page = sum(page_reward(no_events, np.arange(10) < k, 10, RewardConfig(aggregate=False))[0] for k in (0, 10, 2, 6))
    assert per_page / 4 < total / 4  # charging every page alone is stricter


def test_drift_shifts_interests_of_the_chosen_share(tiny, tiny_history) -> None:
    sim = SimEnvironment(tiny, seed=0, dataset=tiny_history)
    before = sim.world.user_interest.copy()
    users = drift_interests(sim, np.random.default_rng(0), share=0.5)
    after = sim.world.user_interest
    assert 0.35 * len(before) < len(users) < 0.65 * len(before)
    changed = np.flatnonzero(np.abs(after - before).sum(axis=1) > 1e-6)
    assert set(changed.tolist()) <= set(users.tolist())
    assert len(changed) > 0.8 * len(users)  # a permutation can leave a one-topic user unchanged
    np.testing.assert_allclose(after.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(tiny.world.user_interest, before)  # the community is untouched


def test_drift_episodes_mixes_drifting_and_stable_episodes() -> None:
    """With drift_episodes 0.5 some episodes drift (interests change at drift_at) and others
    run stable; 1.0 drifts every episode, and no drift_at never does."""
    e = ExposureEnv(preset="tiny", communities=(1000,), steps=3, requests_per_step=2, drift_at=1, drift_episodes=0.5)
    try:
        seen = {}
        for seed in range(12):
            _, info = e.reset(seed=seed)
            before = e.sim.world.user_interest.copy()
            done = False
            while not done:
                _, _, term, trunc, _ = e.step(np.zeros(len(KNOBS), np.float32))
                done = term or trunc
            seen[seed] = (info["drift"], not np.array_equal(before, e.sim.world.user_interest))
        assert all(flag == changed for flag, changed in seen.values())
        assert 0 < sum(flag for flag, _ in seen.values()) < len(seen)
    finally:
        e.close()
    for kw, want in (({"drift_at": 1}, True), ({}, False), ({"drift_at": 1, "drift_episodes": 0.0}, False)):
        e = ExposureEnv(preset="tiny", communities=(1000,), steps=2, requests_per_step=2, **kw)
        try:
            assert all(e.reset(seed=s)[1]["drift"] is want for s in range(4))
        finally:
            e.close()
    with pytest.raises(ValueError, match="drift_episodes"):
        ExposureEnv(preset="tiny", drift_at=1, drift_episodes=1.5)
