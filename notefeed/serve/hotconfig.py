"""Config hot reload: ``POST /v1/admin/config`` swaps in a new serving config without a restart.

Only what needs no training and no new process state changes live: ``fusion`` (weights),
``rerank`` (re-ranker and its params, window), ``exposure`` (knobs, policy), ``coarse.keep``
and each recall channel's ``quota``. The new pipelines are built from the served version's
trained components (the same ``fitted``), then swapped in as one reference, as a model reload
is; a fine ranker the online trainer has updated stays served. Any other difference (a
channel added, a ranker changed, the API or online sections...) is refused with the first
differing field named: those need a restart, and trained components ``notefeed train``.

The config file stays the record: a hot reload is not written anywhere, so the next start
reads the file again (write the file too).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from notefeed.serve.config import ServeConfig
from notefeed.threads import trim_heap

__all__ = ["HOT_SECTIONS", "cold_difference", "apply_config"]

#: top-level sections that may change live, whole
HOT_SECTIONS = ("fusion", "rerank", "exposure")

_lock = threading.Lock()


def _first_difference(a: Any, b: Any, where: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}.{k}"
            d = _first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _first_difference(x, y, f"{where}.{i}")
            if d:
                return d
        return None
    return None if a == b else where


def cold_difference(old: ServeConfig, new: ServeConfig) -> str | None:
    """The first field where ``new`` differs from ``old`` outside what may change live
    (``None``: everything that differs is hot)."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    for d in (a, b):
        for s in HOT_SECTIONS:
            d.pop(s, None)
        d["coarse"].pop("keep", None)
        for ch in d["recall"]["channels"]:
            ch.pop("quota", None)
    for section in a:
        diff = _first_difference(a[section], b.get(section), section)
        if diff:
            return diff
    return None


def apply_config(engine: Any, new: ServeConfig, dry_run: bool = False) -> dict[str, Any]:
    """Swap ``new`` in on ``engine`` (see the module docstring); raises ``ValueError`` naming
    the first field that cannot change live. Returns the sections that changed; ``dry_run``
    only checks."""
    from notefeed.serve.versions import build_served

    with _lock:
        old_cfg = engine.config
        if new.api.token is None and old_cfg.api.token is not None:  # the token comes from env/file
            new = new.with_overrides(api={"token": old_cfg.api.token})
        cold = cold_difference(old_cfg, new)
        if cold is not None:
            raise ValueError(f"{cold}: cannot change while serving (hot: {', '.join(HOT_SECTIONS)}, coarse.keep, "
                             "recall.channels.<i>.quota); restart with the new config")
        before, after = old_cfg.model_dump(), new.model_dump()
        changed = sorted(k for k in before if before[k] != after[k])
        old = engine.served
        # built in full, a dry run too: a component that refuses its name or params (an unknown
        # re-ranker, a negative gamma) fails here, before anything is swapped
        served = build_served(engine, engine.fitted, old.version, config=new, extra_users=old.extra_users)
        if dry_run:
            served.close()
            return {"status": "valid", "changed": changed, "version": old.version}
        fine = old.models.current()
        if "+online." in fine.version:  # keep what the online trainer learned
            served.models.set(fine)
        served = dataclasses.replace(served, fallback=tuple(r for r in old.fallback
                                                            if r.startswith("promoted version")) + served.fallback)
        replaced = engine.swap_served(served, config=new)  # as a model reload
        replaced.close()
        del old, fine, replaced
        engine.refreeze_heap()
        trim_heap()
        engine.metrics.inc("config_reloads_total")
        return {"status": "applied", "changed": changed, "version": served.version}
