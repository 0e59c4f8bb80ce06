"""Closed-loop experiments on the serving pipeline: the filter-bubble report.

:func:`filter_bubble` serves the same seeded community with the default recall channels and with
the default channels plus a small quota of exploration channels (``explore/es-noise``,
``explore/multi-interest``), side by side, and reports per variant CTR, interest coverage (at the
end and per step), topic diversity and the small-creator share. Several exploration strengths
form a small sweep; the best exploration variant is picked by CTR (coverage shown beside it), so
the exploration setting is tuned in closed loop rather than offline.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from notefeed.serve.config import ServeConfig
from notefeed.serve.pipeline import FeedResult
from notefeed.serve.simpolicy import EnginePolicy
from notefeed.sim.env import SimEnvironment

__all__ = ["DEFAULT_TOWER_PARAMS", "default_variants", "explore_config", "ExploreTrackingPolicy", "filter_bubble"]

#: a small, fast two-tower for the exploration channels (about 2 s to fit on ``tiny``); every
#: exploration variant uses the same params, so the shared tower is fitted once per dataset
DEFAULT_TOWER_PARAMS: dict[str, Any] = {"epochs": 1, "dim": 32, "max_samples": 20_000, "seed": 0}

BASELINE = "no-explore"


def default_variants(tower_params: Mapping[str, Any] | None = None, quota: int = 50) -> dict[str, list[dict[str, Any]]]:
    """Variant name -> exploration channels added to the default ones (``[]``: the baseline).

    The sweep: ES noise at two strengths, multi-interest alone, and both together. ``quota`` 50 is
    ~7% of the default channels' 700 candidates.
    """
    tt = dict(DEFAULT_TOWER_PARAMS if tower_params is None else tower_params)

    def es(sigma: float) -> dict[str, Any]:
        return {"name": "explore/es-noise", "quota": quota,
                "params": {"sigma": sigma, "n_probes": 4, "tower_params": tt}}

    mi = {"name": "explore/multi-interest", "quota": quota,
          "params": {"n_clusters": 16, "n_interests": 4, "tower_params": tt}}
    return {
        BASELINE: [],
        "es-0.3": [es(0.3)],
        "es-1.0": [es(1.0)],
        "multi-interest": [mi],
        "es-0.3+multi-interest": [es(0.3), mi],
    }


def explore_config(extra_channels: Sequence[Mapping[str, Any]], base: ServeConfig | None = None) -> ServeConfig:
    """``base`` (default: the built-in config) with ``extra_channels`` appended to ``recall.channels``.

    Appended after the default channels, so the existing sources keep their order and quotas.
    """
    base = base or ServeConfig()
    channels = [c.model_dump() for c in base.recall.channels] + [dict(c) for c in extra_channels]
    return base.with_overrides(recall={"channels": channels})


class ExploreTrackingPolicy(EnginePolicy):
    """:class:`EnginePolicy` that also counts served items recalled by an ``explore/`` channel.

    ``explore_share``: share of served items that an exploration channel recalled;
    ``explore_only_share``: share that only exploration channels recalled (items the default
    channels would not have offered at all).
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.n_served = self.n_explore = self.n_explore_only = 0

    def served(self, result: FeedResult, rows: list[int]) -> None:
        channels = result.candidates.channels
        for j in rows:
            exp = [c.startswith("explore/") for c in (channels[j] if j < len(channels) else [])]
            self.n_served += 1
            self.n_explore += int(any(exp))
            self.n_explore_only += int(bool(exp) and all(exp))

    def metrics(self) -> dict[str, float]:
        n = max(self.n_served, 1)
        return {**super().metrics(), "explore_share": self.n_explore / n, "explore_only_share": self.n_explore_only / n}


def _variant_row(name: str, extra: Sequence[Mapping[str, Any]], cfg: ServeConfig, res: dict[str, Any],
                 wall_s: float) -> dict[str, Any]:
    series = res["series"]
    return {
        "variant": name,
        "explore_channels": [dict(c) for c in extra],
        "channels": [c.name for c in cfg.recall.channels],
        "ctr": res["ctr"],
        "like_rate": res["like_rate"],
        "interest_coverage": res["interest_coverage"],
        "coverage_series": [s["interest_coverage"] for s in series],
        # cumulative coverage after the first and the last step, and what the loop added to it
        "coverage_first": series[0]["interest_coverage"] if series else float("nan"),
        "coverage_last": series[-1]["interest_coverage"] if series else float("nan"),
        "coverage_growth": series[-1]["interest_coverage"] - series[0]["interest_coverage"] if series else float("nan"),
        "ctr_series": [s["ctr"] for s in series],
        "diversity": res["diversity"],
        "diversity_series": [s["diversity"] for s in series],
        "small_creator_share": res["small_creator_share"],
        "creators_exposed": res["creators_exposed"],
        "explore_share": res.get("explore_share", 0.0),
        "explore_only_share": res.get("explore_only_share", 0.0),
        "impressions": res["impressions"],
        "wall_s": wall_s,
    }


def filter_bubble(preset: str = "tiny", steps: int = 30, requests: int = 40, seed: int = 0,
                  variants: Mapping[str, Sequence[Mapping[str, Any]]] | None = None, page_size: int = 10,
                  new_notes: int = 0, progress: Callable[[str, int], None] | None = None,
                  train: bool = False) -> dict[str, Any]:
    """Serving pipeline without vs with exploration channels, same seeds, in closed loop.

    ``variants``: name -> exploration channel dicts (``{name, quota, params}``) appended to the
    default channels; ``[]`` is the no-exploration baseline (default: :func:`default_variants`).
    ``progress(variant, n_steps)`` is called as steps finish. ``train``: first train the default
    config's components (learned rankers, offline-only channels) on the logged history, once,
    as ``notefeed train`` would, and serve every variant with a copy of them (the exploration
    channels are fitted by the engine); without it the learned stages serve their fallbacks.

    Returns ``{preset, steps, requests_per_step, page_size, seed, baseline, tower_fit_s, trained,
    train_s, variants: [row...], best, best_vs_baseline}``; each row has ``variant``, ``channels``,
    ``explore_channels``, ``ctr``, ``interest_coverage`` (end), ``coverage_series`` (per step),
    ``coverage_first`` / ``coverage_last`` / ``coverage_growth`` (after the first and the last step),
    ``ctr_series``, ``diversity``, ``diversity_series``, ``small_creator_share``,
    ``explore_share``, ``explore_only_share``, ``wall_s``. ``best``: the exploration variant with
    the highest CTR; ``best_vs_baseline``: its CTR ratio and coverage / diversity deltas.
    """
    from notefeed.recall.embedding import shared_two_tower
    from notefeed.sim.community import generate
    from notefeed.sim.loop import run_closed_loop

    for field, v in (("steps", steps), ("requests", requests), ("page_size", page_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"filter_bubble: {field} must be a positive integer, got {v!r}")
    variants = dict(default_variants() if variants is None else variants)
    if not variants:
        raise ValueError("filter_bubble: variants must name at least one variant")
    configs = {name: explore_config(extra) for name, extra in variants.items()}  # validates before any run
    comm = generate(preset, seed=seed)
    hist = comm.history()
    # fit the shared tower(s) up front, so the figure is reported apart from the loop's wall time
    # (the engine may build its own dataset object and refit: then this is what one fit costs)
    tower_keys = {repr(sorted((c.get("params") or {}).get("tower_params", {}).items()))
                  for extra in variants.values() for c in extra}
    t0 = time.perf_counter()
    for extra in variants.values():
        for c in extra:
            tp = (c.get("params") or {}).get("tower_params")
            if tp is not None:
                shared_two_tower(hist, dict(tp))
    tower_fit_s = (time.perf_counter() - t0) if tower_keys else 0.0
    fitted: dict[str, Any] | None = None
    train_s = 0.0
    if train:
        from notefeed.models.train import train_components

        t0 = time.perf_counter()
        fitted, _ = train_components(explore_config([]), hist, progress=False, seed=seed)
        train_s = time.perf_counter() - t0
    rows = []
    for name, extra in variants.items():
        env = SimEnvironment(comm, seed=seed, dataset=hist)
        # a copy per variant: serving updates components online, and no variant may see another's
        pol = ExploreTrackingPolicy(config=configs[name], seed=seed, name=name,
                                    fitted=None if fitted is None else copy.deepcopy(fitted),
                                    model_version=None if fitted is None else f"default@sim-seed-{seed}")
        t1 = time.perf_counter()
        try:
            res = run_closed_loop(env, pol, steps, requests, page_size, new_notes_per_step=new_notes,
                                  progress=None if progress is None else (lambda k, n=name: progress(n, k)))
        finally:
            pol.close()
        rows.append(_variant_row(name, extra, configs[name], res, time.perf_counter() - t1))
    explore_rows = [r for r in rows if r["explore_channels"]]
    base = next((r for r in rows if not r["explore_channels"]), None)
    best = max(explore_rows, key=lambda r: r["ctr"]) if explore_rows else None
    vs = None
    if best is not None and base is not None:
        vs = {"ctr_ratio": best["ctr"] / base["ctr"] if base["ctr"] > 0 else float("nan"),
              "coverage_delta": best["interest_coverage"] - base["interest_coverage"],
              "diversity_delta": best["diversity"] - base["diversity"],
              "small_creator_share_delta": best["small_creator_share"] - base["small_creator_share"]}
    return {
        "preset": preset, "steps": steps, "requests_per_step": requests, "page_size": page_size, "seed": seed,
        "new_notes_per_step": new_notes, "baseline": None if base is None else base["variant"],
        "tower_fit_s": tower_fit_s, "trained": bool(train), "train_s": train_s, "variants": rows, "best": None if best is None else best["variant"],
        "best_vs_baseline": vs,
    }
