"""``notefeed serve --workers N``: N uvicorn worker processes behind one port.

Each worker is a whole engine on the same workspace (the promoted model version, loaded, not
trained). They share what must be shared through Redis and the workspace:

- the online state (short sequences, seen notes, windowed counters) lives in Redis, so an
  event accepted by one worker is in the next feed any worker serves;
- the event stream is one Redis stream; every worker also folds the entries the *others*
  wrote into its in-memory parts (popularity, cold-start pool) within 0.2 s
  (:meth:`~notefeed.serve.engine.Engine._follow`);
- published notes go to the workspace's note log; the others add them from there.

So ``online.backend: redis`` is required: an SQLite state is one process's. The worker
processes find their settings in the environment (``NOTEFEED_SERVE_*``), as uvicorn starts
each one by importing :func:`create_worker_app`.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

__all__ = ["create_worker_app", "worker_env", "ENV_WORKSPACE", "ENV_CONFIG", "ENV_TOKEN"]

ENV_WORKSPACE = "NOTEFEED_SERVE_WORKSPACE"
ENV_CONFIG = "NOTEFEED_SERVE_CONFIG"
ENV_TOKEN = "NOTEFEED_SERVE_TOKEN"


def worker_env(workspace: Path, config: Path | None, token: str) -> dict[str, str]:
    """The environment :func:`create_worker_app` reads in each worker."""
    return {ENV_WORKSPACE: str(workspace), ENV_CONFIG: "" if config is None else str(config), ENV_TOKEN: token}


def create_worker_app() -> FastAPI:
    """One worker: the workspace's engine (promoted version) as an app that closes it on shutdown."""
    from notefeed.serve.app import create_app
    from notefeed.serve.cli import load_workspace_dataset
    from notefeed.serve.config import load_config
    from notefeed.serve.versions import engine_from_store
    from notefeed.threads import one_thread_for_process

    one_thread_for_process()  # request-sized work: see notefeed.threads
    workspace = Path(os.environ[ENV_WORKSPACE])
    cfg = load_config(os.environ.get(ENV_CONFIG) or None).with_overrides(api={"token": os.environ[ENV_TOKEN]})
    if cfg.online.backend != "redis":
        raise ValueError("--workers: several workers need online.backend: redis (an SQLite state is one process's)")
    # read-only: the N workers load it at the same time (a read-write open locks out the others)
    ds = load_workspace_dataset(workspace, read_only=True, lock_wait_s=60.0, data=cfg.data)
    engine = engine_from_store(ds, cfg, workspace)
    app = create_app(engine)
    app.router.on_shutdown.append(engine.close)
    return app
