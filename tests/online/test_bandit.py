"""Beta-Bernoulli kernels: posterior math, Thompson sampling concentrates on the better arm."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.online.bandit import beta_update, check_prior, posterior_mean, thompson_sample, uniform_sample


def test_beta_update_posterior_math():
    a, b = beta_update(np.array([1.0, 2.0]), np.array([9.0, 3.0]), np.array([3, 0]), np.array([10, 5]))
    np.testing.assert_allclose(a, [4.0, 2.0])
    np.testing.assert_allclose(b, [16.0, 8.0])
    # sequential updates equal one batched update (conjugacy)
    a1, b1 = beta_update(np.array([1.0]), np.array([1.0]), np.array([2]), np.array([5]))
    a2, b2 = beta_update(a1, b1, np.array([1]), np.array([4]))
    a3, b3 = beta_update(np.array([1.0]), np.array([1.0]), np.array([3]), np.array([9]))
    np.testing.assert_allclose([a2[0], b2[0]], [a3[0], b3[0]])
    np.testing.assert_allclose(posterior_mean(a3, b3), [4.0 / 11.0])


def test_beta_update_bad_input():
    one = np.ones(1)
    with pytest.raises(ValueError, match="clicks must not exceed impressions"):
        beta_update(one, one, np.array([3]), np.array([2]))
    with pytest.raises(ValueError, match="clicks"):
        beta_update(one, one, np.array([-1]), np.array([2]))
    with pytest.raises(ValueError, match="shapes differ"):
        beta_update(np.ones(2), np.ones(3), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="prior_b"):
        check_prior(1.0, 0.0)


def test_thompson_sample_shapes_and_errors():
    rng = np.random.default_rng(0)
    x = thompson_sample(np.array([1.0, 5.0]), np.array([1.0, 2.0]), rng)
    assert x.shape == (2,) and np.all((x >= 0) & (x <= 1))
    assert thompson_sample(np.zeros(0), np.zeros(0), rng).shape == (0,)
    with pytest.raises(ValueError, match="alpha and beta"):
        thompson_sample(np.array([0.0]), np.array([1.0]), rng)
    assert uniform_sample(3, rng).shape == (3,)


def test_thompson_concentrates_on_better_arm():
    """Two Bernoulli arms (CTR 0.05 vs 0.15): after 2,000 pulls most pulls went to the better arm."""
    rng = np.random.default_rng(7)
    p = np.array([0.05, 0.15])
    alpha, beta = np.ones(2), np.ones(2)
    pulls = np.zeros(2, np.int64)
    for _ in range(2000):
        arm = int(np.argmax(thompson_sample(alpha, beta, rng)))
        click = np.zeros(2)
        imp = np.zeros(2)
        imp[arm] = 1
        click[arm] = float(rng.random() < p[arm])
        alpha, beta = beta_update(alpha, beta, click, imp)
        pulls[arm] += 1
    assert pulls[1] / pulls.sum() > 0.8
    assert posterior_mean(alpha, beta)[1] > posterior_mean(alpha, beta)[0]
    # the uniform baseline splits pulls evenly whatever the feedback
    uni = np.bincount(np.argmax(rng.random((2000, 2)), axis=1), minlength=2)
    assert abs(uni[1] / 2000 - 0.5) < 0.05
