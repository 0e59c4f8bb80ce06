"""SSD's sliding-window update (one Cholesky solve per slide) against the least-squares reference."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.rerank import RerankInput, SSDReRanker, ssd_vectors
from notefeed.rerank import ssd as ssd_module
from notefeed.rerank._common import normalise_quality
from notefeed.rerank.base import unit_rows
from notefeed.rerank.ssd import ssd

from .reference import naive_ssd


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("window", [4, 10])
@pytest.mark.parametrize("seed", range(3))
def test_long_sliding_run_matches_reference(window: int, seed: int) -> None:
    """Many slides in a row (k >> window): rank updates must not drift from the exact residuals."""
    rng = np.random.default_rng(200 + seed)
    n, d, k = 150, 16, 70
    q, V = rng.random(n), _unit(rng, n, d)
    got = ssd(q, V, k, gamma=0.6, window=window, jitter=0.0)
    assert np.array_equal(got, naive_ssd(q, V, k, 0.6, window))


def test_singular_window_falls_back_then_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exact duplicate makes the window singular: the exact fallback runs while it is in the
    window, and the rank-one slides resume after it leaves -- picks equal the reference."""
    rng = np.random.default_rng(7)
    n, d, k, window = 60, 6, 30, 4
    V = _unit(rng, n, d)
    V[1] = V[0]
    q = rng.random(n) * 0.8
    q[0], q[1] = 1.0, 0.99  # the duplicate follows the original into the window
    calls = {"posv": 0, "fallback": 0}
    real_posv, real_inverse = ssd_module._posv, ssd_module.window_inverse

    def posv(*a, **kw):  # type: ignore[no-untyped-def]
        calls["posv"] += 1
        return real_posv(*a, **kw)

    def inverse(G: np.ndarray) -> np.ndarray | None:
        calls["fallback"] += 1
        return real_inverse(G)

    monkeypatch.setattr(ssd_module, "_posv", posv)
    monkeypatch.setattr(ssd_module, "window_inverse", inverse)
    got = ssd(q, V, k, gamma=0.05, window=window, jitter=0.0)
    assert got[:2].tolist() == [0, 1]
    assert np.array_equal(got, naive_ssd(q, V, k, 0.05, window))
    assert calls["fallback"] >= 1 and calls["posv"] >= k - window - calls["fallback"]


@pytest.mark.parametrize("bias", [0.0, 0.1])
@pytest.mark.parametrize("gamma", [0.0, 0.25, 2.0])
def test_reranker_fused_prep_equals_public_kernel(bias: float, gamma: float) -> None:
    """SSDReRanker folds gamma into a transposed vector buffer; same picks as the public path."""
    rng = np.random.default_rng(3)
    n, d, k = 120, 12, 40
    vecs = rng.normal(size=(n, d))
    vecs[5] = 0.0  # an item without an embedding
    inp = RerankInput(rng.normal(size=n), vecs)
    got = SSDReRanker(gamma=gamma, window=6, bias=bias).select(inp, k)
    want = ssd(normalise_quality(inp.scores, "minmax"), ssd_vectors(vecs, True, bias), k, gamma, 6)
    assert np.array_equal(got, want)


def test_ssd_vectors_layout_and_values() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(9, 5))
    X[2] = 0.0
    V = ssd_vectors(X, normalise=True, bias=0.3)
    assert V.shape == (9, 6)
    np.testing.assert_allclose(V[:, :5], unit_rows(X), rtol=0, atol=1e-15)
    assert np.all(V[:, 5] == 0.3) and np.all(V[2, :5] == 0.0)
    np.testing.assert_array_equal(ssd_vectors(X, normalise=False), X)


@pytest.mark.parametrize("gamma", [-0.1, float("nan"), float("inf")])
def test_kernel_rejects_bad_gamma(gamma: float) -> None:
    with pytest.raises(ValueError, match="gamma"):
        ssd(np.zeros(3), np.eye(3), 2, gamma=gamma)
