"""Config hot reload: ``POST /v1/admin/config`` swaps in a new serving config without a restart.

Only what needs no training and no new process state changes live: ``fusion`` (weights),
``rerank`` (re-ranker and its params, window), ``exposure`` (knobs, policy), ``coarse.keep``
and each recall channel's ``quota``. The new pipelines are built from the served version's
trained components (the same ``fitted``), then swapped in as one reference, as a model reload
is; a fine ranker the online trainer has updated stays served. Any other difference (a
channel added, a ranker changed, the API or online sections...) is refused with the first
differing field named: those need a restart, and trained components ``notefeed train``.

A live change is shared (:class:`LiveConfig`): the process that applied it writes it to
``WORKSPACE/live_config.json`` (under ``live_config.lock``, with a sequence number and a digest
of the config file the servers started from), and every serving process on the workspace
applies each newer one within ``online.follow_promoted_s``, so ``serve --workers N`` serves
one config whichever worker took the request. A process that starts with the same config file
applies the live change again (a restarted worker rejoins its peers); one started with another
file ignores it (the file is newer) and says so in ``/healthz`` ``startup_warnings``. Delete the
file to go back to the config file at the next start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from notefeed.serve.config import ServeConfig
from notefeed.threads import trim_heap

__all__ = ["HOT_SECTIONS", "cold_difference", "apply_config", "LiveConfig", "LIVE_FILE", "config_digest"]

log = logging.getLogger(__name__)

#: the workspace file holding the latest live change (shared by every serving process)
LIVE_FILE = "live_config.json"

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


def _shareable(config: ServeConfig) -> dict[str, Any]:
    """``config`` as JSON without the write token (never written to the workspace)."""
    d = config.model_dump(mode="json")
    d.get("api", {}).pop("token", None)
    return d


def config_digest(config: ServeConfig) -> str:
    """A digest of ``config`` (the write token left out)."""
    return hashlib.sha256(json.dumps(_shareable(config), sort_keys=True).encode()).hexdigest()[:16]


class LiveConfig:
    """The live config changes of every serving process on a workspace (see the module
    docstring): :meth:`publish` after a change applied here, :meth:`follow` to apply the others'."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.path = Path(engine.workspace) / LIVE_FILE
        #: the digest of the config this process started with: only changes made over it apply
        self.base = config_digest(engine.config)
        #: the sequence number of the latest change this process holds (0: the config file's)
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return raw if isinstance(raw, dict) and isinstance(raw.get("seq"), int) else None
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # torn or being replaced: the next look decides
            log.warning("live config: cannot read %s (%s)", self.path, e)
            return None

    def publish(self, config: ServeConfig) -> int:
        """Share ``config`` (just applied here) with the other processes; returns its number."""
        from notefeed.search.store import folder_lock

        with folder_lock(self.path.with_suffix(""), timeout_s=30.0):
            cur = self._read()
            seq = (cur["seq"] if cur else 0) + 1
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"seq": seq, "base": self.base, "at": time.time(), "pid": os.getpid(),
                                       "config": _shareable(config)}), encoding="utf-8")
            os.replace(tmp, self.path)
        self.seq = seq
        return seq

    def catch_up(self) -> str | None:
        """Apply the newest shared change when it is newer than this process's and made over the
        same config file; returns why one was not applied (``None`` otherwise, or with none)."""
        from notefeed.serve.config import ConfigError, parse_config

        cur = self._read()
        if cur is None or cur["seq"] <= self.seq:
            return None
        seq = cur["seq"]
        if cur.get("base") != self.base:
            self.seq = seq  # once
            return (f"{self.path}: a live config change made over another config file was not applied "
                    "(this process started from a different one; delete the file to drop it)")
        try:
            apply_config(self.engine, parse_config(cur["config"], str(self.path)))
        except (ConfigError, ValueError, KeyError) as e:
            self.seq = seq
            return f"{self.path}: live config change {seq} not applied ({e})"
        self.seq = seq
        log.info("live config: applied change %d", seq)
        return None

    def follow(self, every_s: float) -> None:
        """Apply the other processes' changes every ``every_s`` seconds, on a thread."""
        def watch() -> None:
            while not self._stop.wait(every_s):
                try:
                    why = self.catch_up()
                    if why:
                        log.warning("live config: %s", why)
                except Exception:  # never take serving down
                    log.exception("live config: following failed")

        self._thread = threading.Thread(target=watch, name="notefeed-live-config", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
