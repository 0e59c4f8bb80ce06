"""``notefeed eval --stage NAME``: each funnel stage registers its evaluation here.

A stage evaluator is ``fn(datasets: list[str], models: list[str] | None, seed: int,
quick: bool, report_dir: Path | None) -> list[dict]``: one row per (dataset, model/method,
setting) with metric columns; the CLI prints the rows as a table and ``--json`` writes
``{"stage": ..., "rows": [...], "meta": {...}}``. ``quick`` subsamples for tests.

An evaluator may take extra keyword options after those five (the ``model`` stage takes
``split`` and ``k``); :func:`run_stage` passes an option only to a stage that declares it
and refuses one the stage does not take, naming it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from notefeed.registry import Registry

__all__ = ["EVAL_STAGES", "StageEvaluator", "run_stage", "stage_options"]

StageEvaluator = Callable[[list[str], "list[str] | None", int, bool, "Path | None"], list[dict]]

#: "model" (full-ranking baselines, eval/), "recall", "rank", "rerank", ...
EVAL_STAGES: Registry[list[dict]] = Registry("eval stage")


def stage_options(name: str) -> list[str]:
    """Extra keyword options the stage ``name`` accepts (beyond the five positional ones)."""
    sig = inspect.signature(EVAL_STAGES.get(name))
    params = list(sig.parameters.values())[5:]
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def run_stage(
    name: str,
    datasets: list[str],
    models: list[str] | None,
    seed: int,
    quick: bool,
    report_dir: Path | None,
    **options: object,
) -> list[dict]:
    """Look up stage ``name`` and run it; ``options`` must be ones it declares."""
    fn = EVAL_STAGES.get(name)
    accepted = stage_options(name)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    unknown = [k for k in options if k not in accepted and not takes_any]
    if unknown:
        opts = ", ".join(accepted) or "none"
        raise ValueError(f"eval stage '{name}' does not take option(s) {', '.join(unknown)}; it takes: {opts}")
    return fn(datasets, models, seed, quick, report_dir, **options)
