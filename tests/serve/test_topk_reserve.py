"""Truncations before the re-ranker keep the small-creator share the fairness rule needs."""

import numpy as np

from notefeed.serve.components import TopK
from notefeed.serve.pipeline import CandidateSet


class _Catalog:
    def __init__(self, small: np.ndarray) -> None:
        self._small = small

    def small_creator(self, items: np.ndarray) -> np.ndarray:
        return self._small[items]


def _cs(scores: np.ndarray) -> CandidateSet:
    n = len(scores)
    return CandidateSet(np.arange(n, dtype=np.int64), [["c"]] * n, {"fused": scores.astype(np.float32)})


def test_reserve_swaps_weakest_big_for_best_small_in_score_order():
    scores = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], float)
    small = np.array([0, 0, 0, 0, 0, 0, 1, 0, 1, 1], bool)  # small creators rank 7th, 9th, 10th
    keep = TopK("fused", 4, reserve=0.5, catalog=_Catalog(small)).select(None, _cs(scores), 4)
    assert keep.tolist() == [0, 1, 6, 8]  # two best big, two best small, by score
    assert small[keep].sum() == 2


def test_reserve_is_a_no_op_when_already_met_or_off():
    scores = np.arange(10, 0, -1).astype(float)
    small = np.ones(10, bool)
    assert TopK("fused", 3, reserve=0.5, catalog=_Catalog(small)).select(None, _cs(scores), 3).tolist() == [0, 1, 2]
    small[:] = False
    assert TopK("fused", 3, reserve=0.5, catalog=_Catalog(small)).select(None, _cs(scores), 3).tolist() == [0, 1, 2]
    assert TopK("fused", 3).select(None, _cs(scores), 3).tolist() == [0, 1, 2]


def test_reserve_out_of_range_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="reserve"):
        TopK("fused", 3, reserve=1.5)
