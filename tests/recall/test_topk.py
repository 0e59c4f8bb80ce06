"""``topk`` narrows long score arrays through a sampled threshold: the same answer as the
full indirect partition, ties, infinities and NaN included."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.recall import _common
from notefeed.recall._common import topk


def _full(scores: np.ndarray, k: int) -> np.ndarray:
    """The full path: indirect partition of the whole array (what ``topk`` always did)."""
    n = scores.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.empty(0, np.int64)
    idx = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return idx[np.isfinite(scores[idx])].astype(np.int64)


def _cases(rng: np.random.Generator):
    n = _common.TOPK_NARROW_MIN
    yield rng.standard_normal(100_000).astype(np.float32)
    yield rng.standard_normal(n).astype(np.float64) * 1e-3
    s = rng.standard_normal(60_000).astype(np.float32)
    s[rng.integers(0, s.size, 500)] = -np.inf  # excluded notes
    yield s
    s = np.round(rng.standard_normal(50_000), 1).astype(np.float32)  # ties everywhere
    yield s
    s = rng.standard_normal(50_000).astype(np.float32)
    s[np.argsort(-s)[:3]] = np.inf  # infinities at the top: the full path drops them
    yield s
    s = rng.standard_normal(50_000).astype(np.float32)
    s[rng.integers(0, s.size, 100)] = np.nan
    yield s
    s = np.full(40_000, -np.inf, np.float32)
    s[:150] = rng.standard_normal(150)  # fewer finite scores than k
    yield s
    s = rng.standard_normal(40_000).astype(np.float32)
    s[np.argsort(-s)[99:101]] = s.max() + 1  # a tie at the boundary (k = 100)
    yield s
    yield np.sort(rng.standard_normal(30_000).astype(np.float32))  # sorted: a skewed sample
    yield rng.exponential(size=80_000).astype(np.float32) ** 8  # heavy tail


@pytest.mark.parametrize("seed", range(4))
def test_topk_equals_the_full_partition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    narrowed = 0
    for s in _cases(rng):
        for k in (1, 5, 100, 200, 1000, s.size // 8, s.size):
            got, want = topk(s, k), _full(s, k)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want, err_msg=f"n={s.size} k={k}")
            narrowed += int(_common._topk_narrowed(s, k) is not None) if 8 * k <= s.size else 0
    assert narrowed > 20  # the narrowed path did answer most of them


def test_narrowed_path_declines_ties_and_infinities() -> None:
    s = np.zeros(50_000, np.float32)
    assert _common._topk_narrowed(s, 10) is None  # all tied
    s = np.arange(50_000, dtype=np.float32)
    s[-1] = np.inf
    assert _common._topk_narrowed(s, 10) is None
    s[-1] = 1e9
    assert _common._topk_narrowed(s, 10).tolist() == list(range(49_999, 49_989, -1))
