"""`notefeed train` warns when the coarse ranker was validated on too few candidate sets."""

from notefeed.models.train import COARSE_MIN_VALID_GROUPS, coarse_data_warning


def test_few_validation_sets_warn_and_enough_do_not() -> None:
    few = {"coarse": {"valid_groups": 26.0, "valid_hr10_in_candidates": 0.0}}
    msg = coarse_data_warning(few)
    assert msg is not None and "26 candidate sets" in msg and "HR@10 0.000" in msg
    assert coarse_data_warning({"coarse": {"valid_groups": float(COARSE_MIN_VALID_GROUPS)}}) is None
    assert coarse_data_warning({}) is None  # no coarse ranker trained (a hand-set coarse stage)
    assert coarse_data_warning({"coarse": {}}) is None
