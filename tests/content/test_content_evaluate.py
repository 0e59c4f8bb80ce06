from __future__ import annotations

import pytest

import notefeed.content  # noqa: F401  (registers the stage)
from notefeed.eval.stages import EVAL_STAGES, run_stage


def test_content_stage_is_registered_and_content_beats_random_on_cold_notes(tmp_path):
    assert "content" in EVAL_STAGES
    rows = run_stage("content", ["synthetic"], ["content", "cb2cf", "itemcf"], 0, True, tmp_path, k=[10])
    i2i = {(r["method"], r["segment"]): r for r in rows if r["task"] == "item2item-longtail"}
    # a note nobody in the training half engaged with: ItemCF has nothing, content does
    assert i2i[("itemcf", "cold")]["recall@10"] == 0.0
    for m in ("content", "cb2cf"):
        assert i2i[(m, "tail")]["recall@10"] > 3 * i2i[(m, "tail")]["random_recall@10"]
    tags = {r["method"]: r for r in rows if r["task"] == "tags"}
    assert tags["tags/centroid-content"]["p@1"] > tags["tags/popular"]["p@1"]
    assert (tmp_path / "content_neighbours.md").read_text().count("truth (B)") >= 1


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="models: unknown content method"):
        run_stage("content", ["synthetic"], ["nope"], 0, True, None)
