"""``notefeed eval --stage NAME``: each funnel stage registers its evaluation here.

A stage evaluator is ``fn(datasets: list[str], models: list[str] | None, seed: int,
quick: bool, report_dir: Path | None) -> list[dict]``: one row per (dataset, model/method,
setting) with metric columns; the CLI prints the rows as a table and ``--json`` writes
``{"stage": ..., "rows": [...], "meta": {...}}``. ``quick`` subsamples for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from notefeed.registry import Registry

__all__ = ["EVAL_STAGES", "StageEvaluator"]

StageEvaluator = Callable[[list[str], "list[str] | None", int, bool, "Path | None"], list[dict]]

#: "model" (full-ranking baselines, eval/), "recall", "rank", "rerank", ...
EVAL_STAGES: Registry[list[dict]] = Registry("eval stage")
