"""The operator console's routes: the static single-page app under ``/console`` and its JSON
under ``/v1/admin/console/...``.

The page shell and its assets (HTML, JS, CSS, our own charting code) are static files in the
package and carry no data, so they are served without a token; every JSON endpoint is a read
behind ``api.require_token_for_reads`` (the page asks for the token on a 401 and sends it as
a bearer header). The two console writes, ``POST /v1/admin/console/models/promote`` and
``.../rollback``, need the write token: they hot-swap a model store version in (as
``POST /v1/admin/models/reload`` does) and, once it serves, record it in the store
(``notefeed models promote`` / ``rollback``), so a restart serves the same version. Config
changes go through ``POST /v1/admin/config`` (hot keys live, the rest 409 naming the field);
:func:`config_changes` lists what a YAML document would change, field by field.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import betaincinv

from notefeed.serve.console.tracker import ExposureTracker, quantile_from_buckets

if TYPE_CHECKING:
    from notefeed.serve.engine import Engine

__all__ = ["add_console_routes", "config_changes", "running_config", "PAGES", "STATIC", "PromoteRequest"]

STATIC = Path(__file__).parent / "static"
#: the console's pages (``/console/<page>``), in menu order
PAGES = ("overview", "feed", "note", "creators", "experiments", "models")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


def _finite(x: Any) -> Any:
    """JSON-safe: NaN / inf as null, recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def overview(engine: Engine, tracker: ExposureTracker, started: float) -> dict[str, Any]:
    m = engine.metrics
    snap = m.snapshot()
    requests = sum(v[0] for v in snap.get("requests_total", {}).values())
    errors_5xx = sum(v[0] for k, v in snap.get("requests_total", {}).items() if k[-1].startswith("5"))
    bounds = m.buckets("stage_latency_ms")
    stages = []
    for (pipeline, stage), h in sorted(snap.get("stage_latency_ms", {}).items()):
        counts = h[: len(bounds) + 1]
        stages.append({"pipeline": pipeline, "stage": stage, "count": int(h[-1]), "mean_ms": h[-2] / max(h[-1], 1),
                       "p50_ms": quantile_from_buckets(bounds, counts, 0.5),
                       "p99_ms": quantile_from_buckets(bounds, counts, 0.99)})
    feeds = []
    for (pipeline,), h in sorted(snap.get("feed_latency_ms", {}).items()):
        counts = h[: len(bounds) + 1]
        feeds.append({"pipeline": pipeline, "count": int(h[-1]),
                      "p50_ms": quantile_from_buckets(bounds, counts, 0.5),
                      "p99_ms": quantile_from_buckets(bounds, counts, 0.99)})
    series = tracker.series()
    recent = [b for b in series[-7:-1]] or series[-1:]  # complete buckets
    qps = sum(b["pages"] for b in recent) / (tracker.bucket_s * len(recent)) if recent else 0.0
    served = engine.served
    now = engine.clock()
    se = engine.side_effects
    return _finite({
        "counts": {"notes": engine.catalog.n_items, "users": engine.ds.n_users,
                   "creators": len(engine.catalog.creator_ids), "logged_events": len(engine.ds.events),
                   "events_replayed": engine.replayed,
                   "events_accepted": m.value("events_accepted_total"),
                   "events_rejected": m.value("events_rejected_total"),
                   "notes_published": m.value("notes_published_total"), "requests": requests},
        "qps": {"feed_pages_per_s": qps, "requests_per_s_since_start": requests / max(time.time() - started, 1e-9)},
        "latency": {"feed": feeds, "stages": stages},
        "errors": {"stage_errors": [{"stage": k[0], "count": v[0]} for k, v in
                                    sorted(snap.get("stage_errors_total", {}).items())],
                   "http_5xx": errors_5xx, "reload_error": engine.reloader.last_error or engine.models.last_error},
        "model": {"version": served.version or served.models.current().version,
                  "fine_model": served.models.current().version, "fallback": list(served.fallback),
                  "reload": engine.reloader.status()},
        "events": {"last_event_age_s": None if tracker.last_event_at is None else now - tracker.last_event_at,
                   "side_effects_queue": se._q.qsize(), "side_effects_dropped": se.dropped,
                   "side_effects_failed": se.failed, "bus": engine.bus.name, "state": engine.state.name},
        "pipelines": {k: [f"{s.kind}:{s.name}" for s in p.steps] for k, p in engine.pipelines.items()},
        # the search index and which fusion ranks its pages (an interleaving's count while auto decides)
        "search": engine.search.status() if getattr(engine, "search", None) is not None else None,
        "series": series[-60:],
        "uptime_s": time.time() - engine.started_at,
    })


def feed_page(engine: Engine, user_id: str, n: int) -> dict[str, Any]:
    """The user's page as the default pipeline (or their experiment arm) serves it, with each
    item's trace. An arm is asked for by name, so the probe is not counted in the experiment."""
    from notefeed.serve.experiments import arm_pipeline

    pipeline, arm = "default", None
    if engine.experiment is not None:
        arm = engine.experiment.arm_of(user_id).name
        pipeline = arm_pipeline(arm)
    ctx, res = engine.feed(user_id, n, pipeline)
    tr = res.trace(engine.catalog.note_ids)
    small = engine.catalog.small_creator(res.items) if len(res.items) else []
    items = []
    for j, row in enumerate(tr["items"]):
        why = [f"recalled by {', '.join(row['channels'])}"] if row["channels"] else []
        cs = row.get("coldstart")
        if cs and cs.get("boosted"):
            why.append(f"cold-start slot ({cs['stage']}, bandit score {cs['score']:.3f})")
        fr = row.get("fused_rank")
        if fr is not None and fr != j:
            why.append(f"re-ranking moved it {'up' if fr > j else 'down'} from fused rank {fr + 1}")
        if bool(small[j]):
            why.append("small creator (< 1,000 followers)")
        items.append({**engine.catalog.note_json(int(row["item"])), **row, "rank_after": j + 1,
                      "rank_before": None if fr is None else fr + 1, "small_creator": bool(small[j]), "why": why})
    return _finite({"user_id": user_id, "user": engine.user(user_id), "pipeline": pipeline, "arm": arm,
                    "model_version": getattr(ctx, "served_version", None), "items": items,
                    "stages": tr["stages"], "total_ms": tr["total_ms"], "errors": tr["errors"]})


def note_detail(engine: Engine, tracker: ExposureTracker, note_id: str, n: int) -> dict[str, Any]:
    i = engine.catalog.item_of(note_id)
    if i is None:
        raise KeyError(note_id)
    gone = engine.note_log.removal(note_id) if engine.catalog.is_removed(np.asarray([i]))[0] else None
    removed = None if gone is None else {"at": gone[0], "reason": gone[1]}
    related = [] if removed else [{**engine.catalog.note_json(j), "score": s} for j, s in engine.related(note_id, n)]
    pool: dict[str, Any] | None = None
    hub = engine.coldstart
    if hub is not None:
        from notefeed.online.coldstart.config import STAGES

        with hub._lock:
            note = hub.pool.notes.get(int(i))
            cfg = hub.pool.config
            if note is not None:
                a = cfg.prior_a + note.clicks
                b = cfg.prior_b + max(note.impressions - note.clicks, 0)
                # the Beta quantiles (scipy.stats.beta.ppf's values; importing scipy.stats took
                # 0.7 s on the first note inspected, in the request)
                lo, hi = betaincinv(a, b, [0.025, 0.975])
                pool = {"stage": STAGES[note.stage], "impressions": note.impressions, "clicks": note.clicks,
                        "engagers": len(note.engagers), "published_ts": note.published_ts, "stage_ts": note.stage_ts,
                        "posterior": {"alpha": a, "beta": b, "mean": a / (a + b), "lo": float(lo), "hi": float(hi)},
                        "handover_impressions": cfg.handover_impressions}
    return _finite({"note": engine.catalog.note_json(i), "item": i, "removed": removed,
                    "restores": engine.note_log.restores(note_id),
                    "small_creator": bool(engine.catalog.small_creator(np.asarray([i]))[0]),
                    "popularity": float(engine.catalog.popularity()[i]), "related": related,
                    "coldstart": pool, "coldstart_enabled": hub is not None,
                    "coldstart_summary": None if hub is None else hub.summary(),
                    "exposure": tracker.exposure(i)})


def creators(engine: Engine, tracker: ExposureTracker) -> dict[str, Any]:
    fair = (engine.config.rerank.params or {}).get("fairness") if engine.config.rerank.name else None
    target = float(fair.get("target", 0.0)) if isinstance(fair, dict) and fair.get("mode", "off") != "off" else None
    cat = engine.catalog
    top = [{"creator_id": cat.creator_ids[c], "impressions": k,
            "followers": int(cat._followers.view()[c])} for c, k in tracker.top_creators(10)]
    return _finite({"target": target, "series": tracker.series(), "top_creators": top,
                    "bucket_s": tracker.bucket_s})


def models(engine: Engine) -> dict[str, Any]:
    from notefeed.models.artifacts import ModelError
    from notefeed.models.store import ModelStore, _stack

    store = ModelStore(engine.workspace)
    versions: list[dict[str, Any]] = []
    error = None
    rollback = None
    try:
        for v in store.list():
            versions.append({"version": v.version, "created_at": v.created_at, "promoted": v.promoted,
                             "metrics": v.metrics if isinstance(v.metrics, dict) else {}})
        stack = _stack(store.history())
        rollback = stack[-2] if len(stack) > 1 else None
    except ModelError as e:
        error = str(e)
    import yaml

    cfg = running_config(engine)
    return _finite({"served": engine.model_version, "fallback": list(engine.served.fallback),
                    "reload": engine.reloader.status(), "versions": versions, "rollback_to": rollback,
                    "store_error": error, "config": cfg, "config_yaml": yaml.safe_dump(cfg, sort_keys=False),
                    "token_set": engine.config.api.token is not None})


def running_config(engine: Engine) -> dict[str, Any]:
    """The served config as JSON, without its secrets (reads may need no token): no
    ``api.token`` (a document without one keeps the running token when applied) and a Redis
    URL's password as ``***`` (put the real one back to apply such a document)."""
    cfg = engine.config.model_dump(mode="json")
    cfg.get("api", {}).pop("token", None)
    url = (cfg.get("online") or {}).get("redis_url")
    if isinstance(url, str) and "@" in url:  # redis://user:password@host: the password is a secret too
        from urllib.parse import urlsplit, urlunsplit

        u = urlsplit(url)
        if u.password:
            host = u.netloc.rsplit("@", 1)[1]
            cfg["online"]["redis_url"] = urlunsplit(u._replace(netloc=f"{u.username or ''}:***@{host}"))
    return cfg


def _is_hot(field: str) -> bool:
    from notefeed.serve.hotconfig import HOT_SECTIONS

    parts = field.split(".")
    if parts[0] in HOT_SECTIONS or field == "coarse.keep":
        return True
    return len(parts) == 4 and parts[:2] == ["recall", "channels"] and parts[3] == "quota"


#: a key one side of a diff lacks
ABSENT = "(absent)"


def _diff(x: Any, y: Any, where: str, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(x, dict) and isinstance(y, dict):
        for k in list(x) + [k for k in y if k not in x]:
            _diff(x.get(k, ABSENT), y.get(k, ABSENT), f"{where}.{k}" if where else str(k), out)
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            _diff(u, v, f"{where}.{i}", out)
    elif x != y:
        out.append((where, x, y))


def config_changes(old: Any, new: Any) -> list[dict[str, Any]]:
    """Field by field, what serving ``new`` instead of ``old`` (two ``ServeConfig``) changes:
    ``[{"field", "old", "new", "hot"}]``. Lists of different lengths (channels added or
    removed) are one change; ``hot``: it may change while serving (``POST /v1/admin/config``).
    The token is never shown, and a document without one keeps the running one."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    if b["api"].get("token") is None:
        b["api"]["token"] = a["api"].get("token")
    diffs: list[tuple[str, Any, Any]] = []
    _diff(a, b, "", diffs)
    out = []
    for k, va, vb in diffs:
        if k == "api.token":
            va, vb = (None if va is None else "(set)"), (None if vb is None else "(another token)")
        out.append({"field": k, "old": va, "new": vb, "hot": _is_hot(k)})
    return out


def validate_config(text: str, engine: Engine | None = None) -> dict[str, Any]:
    """Parse a YAML serving config; with ``engine``, also list what it would change."""
    import yaml

    from notefeed.serve.config import ConfigError, parse_config

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return {"ok": False, "error": f"not valid YAML ({str(e).splitlines()[0]})"}
    try:
        cfg = parse_config(data, "config")
    except ConfigError as e:
        return {"ok": False, "error": str(e)}
    out: dict[str, Any] = {"ok": True, "error": None, "experiment": cfg.experiments.name}
    if engine is not None:
        out["changes"] = _finite(config_changes(engine.config, cfg))
        if out["changes"]:
            from notefeed.serve.hotconfig import apply_config

            try:  # all changes live: build the pipelines as an apply would (an unknown component, a bad param)
                apply_config(engine, cfg, dry_run=True)
            except ConfigError as e:
                out.update(ok=False, error=str(e))
            except ValueError:  # a change that needs a restart: nothing to build here
                pass
    return out


class PromoteRequest(BaseModel):
    """``POST /v1/admin/console/models/promote``: a version from ``notefeed models list``."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=64)


def _swap(engine: Engine, version: str) -> None:
    """Load ``version`` and serve it (waits); 422 naming the field when it cannot be served."""
    from concurrent.futures import TimeoutError as FutureTimeout

    fut = engine.reloader.reload(version)
    try:
        fut.result(timeout=600)
    except FutureTimeout:
        raise HTTPException(504, f"version: {version} is still loading after 600 s; the model store was left as "
                                 "it was (see /healthz reload)") from None
    except Exception as e:
        raise HTTPException(422, f"version: {version} cannot be served here ({type(e).__name__}: {e}); "
                                 "the model store was left as it was") from None


def promote(engine: Engine, version: str) -> dict[str, Any]:
    """Serve ``version`` now and make it the store's promoted one (what a restart serves).
    The swap comes first: a version this server refuses is not promoted."""
    from notefeed.models.artifacts import ModelError
    from notefeed.models.store import ModelStore, VersionNotFound

    store = ModelStore(engine.workspace)
    try:  # as POST /v1/admin/models/reload: 404 for a name not in the store, 422 for a malformed one
        store.check(version)
        previous = store.promoted()
    except VersionNotFound as e:
        raise HTTPException(404, f"version: {e}") from None
    except ModelError as e:
        raise HTTPException(422, f"version: {e}") from None
    was_served = engine.model_version
    _swap(engine, version)
    try:
        store.promote(version)
    except ModelError as e:
        raise HTTPException(500, f"serving {version}, but the model store could not record it: {e}") from None
    return {"status": "promoted", "version": version, "served": engine.model_version,
            "previous_promoted": previous, "previous_served": was_served}


def rollback(engine: Engine) -> dict[str, Any]:
    """Serve the version promoted before the current one and roll the store back to it."""
    from notefeed.models.artifacts import ModelError
    from notefeed.models.store import ModelStore, _stack

    store = ModelStore(engine.workspace)
    try:
        stack = _stack(store.history())
    except ModelError as e:
        raise HTTPException(422, str(e)) from None
    if len(stack) < 2:
        raise HTTPException(409, "nothing to roll back to ("
                                 f"{'no version was promoted' if not stack else 'only one version was promoted'})")
    target, current = stack[-2], stack[-1]
    _swap(engine, target)
    try:
        got = store.rollback()
    except ModelError as e:
        raise HTTPException(500, f"serving {target}, but the model store could not roll back: {e}") from None
    if got != target:  # another promote/rollback (a CLI) got in between
        raise HTTPException(409, f"the model store changed meanwhile: it rolled back to {got}, this server serves "
                                 f"{target}; promote the one you want")
    return {"status": "rolled back", "version": target, "served": engine.model_version, "previous_promoted": current}


def add_console_routes(app: FastAPI, engine: Engine, read_auth: Callable[..., None]) -> ExposureTracker:
    """Mount the console on ``app`` and start its exposure tracker on ``engine``."""
    if engine.experiment is not None:
        # the experiment report's intervals use scipy.stats, which notefeed.serve.abstats imports
        # on first use (to keep it out of start-up): import it now, off the request path, or
        # the first experiments page waits ~1 s for it
        import importlib
        import threading

        threading.Thread(target=importlib.import_module, args=("scipy.stats",), name="notefeed-console-warm",
                         daemon=True).start()
    tracker = ExposureTracker(engine.catalog, engine.clock)
    engine.page_observers.append(tracker.page)
    engine.side_effects.subscribe(tracker.events)
    started = time.time()
    index = (STATIC / "index.html").read_text(encoding="utf-8")
    files = {p.name for p in STATIC.iterdir() if p.is_file()}
    auth = [Depends(read_auth)]

    def write_auth(authorization: str | None = Header(None)) -> None:
        """The write token, as the app's write endpoints check it."""
        token = engine.config.api.token
        ok = (token is not None and authorization is not None and authorization.startswith("Bearer ")
              and hmac.compare_digest(authorization[7:].encode(), token.encode()))
        if not ok:
            raise HTTPException(401, "missing or wrong bearer token (the console's model actions need the "
                                     "write token)", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/console", response_class=HTMLResponse, include_in_schema=False)
    def console_index() -> HTMLResponse:
        return HTMLResponse(index)

    @app.get("/console/static/{name}", include_in_schema=False)
    def console_static(name: str) -> FileResponse:
        if name not in files:
            raise HTTPException(404, f"no console asset {name!r}")
        p = STATIC / name
        return FileResponse(p, media_type=_TYPES.get(p.suffix, "application/octet-stream"))

    @app.get("/console/{page}", response_class=HTMLResponse, include_in_schema=False)
    def console_page(page: str) -> HTMLResponse:
        if page not in PAGES:
            raise HTTPException(404, f"no console page {page!r}; pages: {list(PAGES)}")
        return HTMLResponse(index)

    @app.get("/v1/admin/console/overview", dependencies=auth)
    def c_overview() -> dict[str, Any]:
        return overview(engine, tracker, started)

    @app.get("/v1/admin/console/users", dependencies=auth)
    def c_users(limit: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
        """The most active users of the dataset (ids to pick in the feed inspector)."""
        ev = engine.ds.events
        if not len(ev):
            return {"users": []}
        counts = np.bincount(ev["user"].to_numpy(np.int64), minlength=engine.ds.n_users)
        ids = engine.ds.users["user_id"].astype(str).to_numpy()
        erased = [j for u in engine.erased_users() if (j := engine.ds.user_index.get(u)) is not None]
        counts[erased] = -1  # not offered: their events are no longer the engine's
        top = np.argsort(-counts, kind="stable")[:limit]
        return {"users": [{"user_id": str(ids[u]), "events": int(counts[u])} for u in top if counts[u] >= 0]}

    @app.get("/v1/admin/console/feed", dependencies=auth)
    def c_feed(user_id: str = Query(min_length=1, max_length=128), n: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
        return feed_page(engine, user_id, n)

    @app.get("/v1/admin/console/note", dependencies=auth)
    def c_note(note_id: str = Query(min_length=1, max_length=128), n: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
        try:
            return note_detail(engine, tracker, note_id, n)
        except KeyError:
            raise HTTPException(404, f"unknown note_id {note_id!r}") from None

    @app.get("/v1/admin/console/notes", dependencies=auth)
    def c_notes(limit: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
        """Notes to pick in the note inspector: the newest published and the most popular."""
        cat = engine.catalog
        newest = list(cat.published)[-limit:][::-1]
        popular = cat.top_popular(limit).tolist()
        return {"newest": [cat.note_json(i) for i in newest], "popular": [cat.note_json(i) for i in popular]}

    @app.get("/v1/admin/console/creators", dependencies=auth)
    def c_creators() -> dict[str, Any]:
        return creators(engine, tracker)

    @app.get("/v1/admin/console/models", dependencies=auth)
    def c_models() -> dict[str, Any]:
        return models(engine)

    @app.post("/v1/admin/console/config/validate", dependencies=auth)
    def c_validate(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Validate a YAML serving config (``{"yaml": text}``): the errors name the field."""
        text = body.get("yaml")
        if not isinstance(text, str):
            raise HTTPException(422, "field 'yaml': a YAML document as a string")
        return validate_config(text, engine)

    @app.post("/v1/admin/console/models/promote", dependencies=[Depends(write_auth)])
    def c_promote(req: PromoteRequest) -> dict[str, Any]:
        """Serve a model store version now (hot swap) and promote it in the store, so a
        restart serves it too: 404 unknown version, 422 one this server cannot serve (the
        store is then left as it was)."""
        return promote(engine, req.version)

    @app.post("/v1/admin/console/models/rollback", dependencies=[Depends(write_auth)])
    def c_rollback() -> dict[str, Any]:
        """Serve the previously promoted version and roll the store back to it (409: nothing
        to roll back to)."""
        return rollback(engine)

    return tracker
