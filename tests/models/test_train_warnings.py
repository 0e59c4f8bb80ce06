"""`notefeed train` warns when an ungated coarse ranker was validated on too few candidate
sets, says what each ranker's gate decided, and checks the rankers' settings up front."""

import time

import pytest

from notefeed.data.store import Workspace
from notefeed.models.train import (
    COARSE_MIN_VALID_GROUPS,
    TrainError,
    coarse_data_warning,
    coarse_gate,
    gate_line,
    ranker_config,
    train_workspace,
)
from notefeed.serve.components import POPULARITY_WEIGHTS
from notefeed.serve.config import ServeConfig
from notefeed.serve.models import FEATURES
from tests.eval.test_feed import chain_log


def test_few_validation_sets_warn_only_when_the_coarse_ranker_is_ungated() -> None:
    few = {"coarse": {"valid_groups": 26.0, "valid_hr10_in_candidates": 0.0}}
    msg = coarse_data_warning(few)
    assert msg is not None and "26 candidate sets" in msg and "HR@10 0.000" in msg and "ungated" in msg
    assert coarse_data_warning({"coarse": {"valid_groups": float(COARSE_MIN_VALID_GROUPS)}}) is None
    assert coarse_data_warning({}) is None  # no coarse ranker trained (a hand-set coarse stage)
    assert coarse_data_warning({"coarse": {}}) is None
    # the gate decided (kept or not): its out-of-fold evidence covers every set, no warning
    for passed in (0.0, 1.0):
        assert coarse_data_warning({"coarse": {**few["coarse"], "gate_passed": passed}}) is None


def test_gate_lines_say_what_was_served() -> None:
    m = {"gate_passed": 0.0, "gate_oof_hr10": 0.05, "gate_oof_base_hr10": 0.1, "gate_groups": 260.0, "gate_z": -2.5}
    line = gate_line("coarse", m, "the builtin/popularity formula")
    assert line is not None and "not kept, the stage serves the builtin/popularity formula" in line
    assert "0.050 against 0.100 over 260 candidate sets (z -2.50)" in line
    assert gate_line("fine", {**m, "gate_passed": 1.0}, "x").startswith("fine ranker kept:")
    assert gate_line("coarse", {"valid_groups": 3.0}, "x") is None and gate_line("coarse", None, "x") is None


def test_coarse_gate_is_the_popularity_formula_on_the_coarse_features() -> None:
    gate = coarse_gate()
    assert set(gate) == {f"base.{f}" for f in POPULARITY_WEIGHTS} and all(f in FEATURES for f in POPULARITY_WEIGHTS)
    assert list(gate.values()) == list(POPULARITY_WEIGHTS.values())


def test_ranker_settings_are_checked_before_any_fitting() -> None:
    cfg = ServeConfig()
    assert ranker_config(cfg, "coarse", 3).gate == coarse_gate() and ranker_config(cfg, "coarse", 3).seed == 3
    assert ranker_config(cfg, "fine", 0).gate == "stage.coarse"
    assert ranker_config(cfg.with_overrides(coarse={"params": {"gate": None}}), "coarse", 0).gate is None
    assert ranker_config(cfg, "coarse", 0).bag is True and ranker_config(cfg, "fine", 0).bag is False
    assert ranker_config(cfg.with_overrides(coarse={"params": {"bag": False}}), "coarse", 0).bag is False
    for params, named in (({"gate": {"base.log_pop": "fast"}}, "coarse.params.gate"),
                          ({"gate": {}}, "coarse.params.gate"), ({"residual": 3}, "coarse.params.residual"),
                          ({"epoch": 3}, "coarse.params.epoch"), ({"bag": "yes"}, "coarse.params.bag")):
        with pytest.raises(ValueError, match=named.replace(".", r"\.")):
            ranker_config(cfg.with_overrides(coarse={"params": params}), "coarse", 0)


def test_train_names_a_bad_gate_at_once(tmp_path) -> None:
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(chain_log())
    t0 = time.perf_counter()
    with pytest.raises(TrainError, match=r"--config: fine\.params\.gate: a feature name"):
        train_workspace(ws, ServeConfig().with_overrides(fine={"params": {"gate": {"stage.coarse": True}}}),
                        progress=False)
    assert time.perf_counter() - t0 < 30  # before the channels are fitted
