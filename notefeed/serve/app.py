"""The HTTP API (FastAPI; OpenAPI at ``/docs``). A thin shell over :class:`Engine`.

Writes need ``Authorization: Bearer <api.token>`` (401 otherwise); reads too when
``api.require_token_for_reads``. Bodies over ``api.max_body_bytes`` and event batches over
``api.max_batch`` get 413; malformed JSON or fields get 422 naming the field. All of these
are refused before anything is stored.

Numbers must be finite and timestamps (``ts``, ``created_at``) at most ``api.max_future_skew_s``
ahead of the server clock; the 422 answer sanitises the values it echoes (NaN, lone surrogates),
so it never fails on the input it reports. An event may carry a client ``event_id``: a retried
batch is answered with those events under ``duplicates`` and not stored twice.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import os
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as FPath
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from notefeed.schema import SMALL_CREATOR_FOLLOWERS, Event, Note, NoteEdit, id_problem
from notefeed.serve.adslots import page_ads
from notefeed.serve.docs import add_docs
from notefeed.serve.engine import DUPLICATE, Engine, NoteRemoved, UnknownNote
from notefeed.serve.search import SearchService, add_search_routes
from notefeed.threads import AsyncFifoGate

__all__ = ["create_app", "EventBatch", "ReloadRequest", "ConfigRequest"]


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Event] = Field(min_length=1)


class ConfigRequest(BaseModel):
    """A serving config to hot-reload (``POST /v1/admin/config``)."""

    model_config = ConfigDict(extra="forbid")
    yaml: str = Field(min_length=1, max_length=200_000, description="the whole config as YAML (keys left out: defaults)")
    dry_run: bool = Field(default=False, description="only validate and say what would change")


class ReloadRequest(BaseModel):
    """Either ``version`` (a model store version: every trained component) or ``path`` (a fine
    model directory: the fine ranker only)."""

    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(default=None, min_length=1, max_length=64,
                                description="a version from `notefeed models list`")
    path: str | None = Field(default=None, min_length=1,
                             description="fine model directory (model.json + weights.safetensors)")
    wait: bool = Field(default=False, description="answer after the swap instead of at once")

    @model_validator(mode="after")
    def _one_source(self) -> ReloadRequest:
        if (self.version is None) == (self.path is None):
            raise ValueError("give exactly one of 'version' (model store) or 'path' (fine model directory)")
        return self


class FollowersBody(BaseModel):
    """A creator's follower count (``PUT /v1/creators/{id}``)."""

    model_config = ConfigDict(extra="forbid")
    followers: int = Field(ge=0, le=2**53, strict=True, description="the creator's follower count in the app")


class TitleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=20_000, description="the note body")
    n: int = Field(3, ge=1, le=10, description="suggestions wanted")


def _json_safe(obj: Any) -> Any:
    """What a 422 echoes, made JSON-encodable: NaN/Infinity as text, lone surrogates escaped."""
    if isinstance(obj, dict):
        return {_json_safe(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, str):
        return obj.encode("utf-8", "backslashreplace").decode("utf-8")
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    return _json_safe(str(obj))


def _validation_error(loc: tuple[Any, ...], msg: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "type": "value_error", "msg": msg, "input": value}])


def _field_message(errors: list[dict[str, Any]]) -> str:
    """``"events.1.ts: Input should be ..."``; malformed JSON: ``"body: invalid JSON at char N"``."""
    parts = []
    for e in errors:
        loc = list(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            err = (e.get("ctx") or {}).get("error", "")
            parts.append(f"body: invalid JSON at char {loc[-1] if loc else '?'} ({err})")
            continue
        where = ".".join(str(x) for x in loc if x != "body") or "body"  # a body that is not an object
        parts.append(f"{where}: {e.get('msg', '')}")
    return "; ".join(parts)


@contextlib.contextmanager
def _note_errors(note_id: str) -> Iterator[None]:
    """A note the catalogue lacks answers 404, one taken down 410."""
    try:
        yield
    except NoteRemoved:
        raise HTTPException(410, f"note_id {note_id!r} was removed") from None
    except UnknownNote:
        raise HTTPException(404, f"unknown note_id {note_id!r}") from None


def create_app(engine: Engine) -> FastAPI:
    cfg = engine.config
    feed_gate = AsyncFifoGate(cfg.api.feed_concurrency)
    # FastAPI's own body limit (Content-Length and streamed bodies) answers 413
    app = FastAPI(title="notefeed", version="0.1.0", max_body_size=cfg.api.max_body_bytes,
                  description="Multi-stage feed recommendation for content communities.",
                  docs_url=None, redoc_url=None)
    app.state.engine = engine
    add_docs(app)
    # note search (notefeed/serve/search.py): its index is built on the first search
    search = getattr(engine, "search", None) or SearchService(engine)
    if getattr(engine, "search", None) is not search:
        engine.note_hooks.append(search.catch_up)  # notes other workers published
    engine.search = search  # type: ignore[attr-defined]

    def _not_future(loc: tuple[Any, ...], ts: int) -> None:
        # the server clock decides what is "now" (cold-start expiry, windows): a client clock
        # days ahead must not push it
        limit = engine.clock() + cfg.api.max_future_skew_s
        if ts > limit:
            raise _validation_error(loc, f"timestamp {ts} is more than api.max_future_skew_s="
                                         f"{cfg.api.max_future_skew_s} s ahead of the server clock", ts)

    def _check(authorization: str | None) -> None:
        token = cfg.api.token
        ok = (
            token is not None
            and authorization is not None
            and authorization.startswith("Bearer ")
            and hmac.compare_digest(authorization[7:].encode(), token.encode())
        )
        if not ok:
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def write_auth(authorization: str | None = Header(None)) -> None:
        _check(authorization)

    def read_auth(authorization: str | None = Header(None)) -> None:
        if cfg.api.require_token_for_reads:
            _check(authorization)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = _json_safe(jsonable_encoder(exc.errors(), custom_encoder={Exception: str}))
        return JSONResponse({"detail": errs, "message": _field_message(errs)}, status_code=422)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        served = engine.served
        reload_error = engine.reloader.last_error or engine.models.last_error
        return {
            # degraded: no trained version is served (the built-in fallback), see fallback_reasons
            "status": "degraded" if served.fallback else "ok",
            "pid": os.getpid(),  # which worker answered (serve --workers N)
            "followed_events": getattr(engine, "followed", 0),  # accepted by the other workers, folded in here
            "notes": engine.catalog.n_items,
            "removed_notes": len(engine.catalog.removed_items),
            "model_version": served.version or served.models.current().version,
            "fallback": bool(served.fallback),
            "fallback_reasons": list(served.fallback),
            # state files start-up could not use (kept aside) and rebuilt instead
            "startup_warnings": list(getattr(engine, "startup_warnings", ())),
            "fine_model_version": served.models.current().version,
            "reload": {**engine.reloader.status(), "fine_error": engine.models.last_error},
            "reload_error": reload_error,
            "bus": engine.bus.name,
            "state": engine.state.name,
            "replayed_events": engine.replayed,
            # the events read from the store at start-up (data.window_days: a window of them)
            "dataset_events": len(engine.ds.events),
            "data_window_days": engine.config.data.window_days,
            "pipelines": {k: [f"{s.kind}:{s.name}" for s in p.steps] for k, p in engine.pipelines.items()},
            # new-note pool: notes per stage (seed, lookalike, handed_over, expired); null when off
            "coldstart": None if engine.coldstart is None else {
                k: (None if isinstance(v, float) and v != v else v) for k, v in engine.coldstart.summary().items()},
            # the fine ranker trained beside serving (online.train); null when off
            "online_train": None if engine.online_ltr is None else engine.online_ltr.stats(),
            # note search: index ready (it is built in the background), its last error, and the
            # fusion that ranks its pages (GET /v1/search/status has the details)
            "search": search.health(),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return engine.metrics.render()

    @app.get("/v1/feed", dependencies=[Depends(read_auth)])
    async def feed(
        user_id: str = Query(min_length=1, max_length=128),
        n: int | None = Query(None, ge=1),
        explain: bool = False,
        pipeline: str = Query("default", max_length=64),
    ) -> JSONResponse:
        n = cfg.page.default_size if n is None else n
        if n > cfg.page.max_size:
            raise RequestValidationError([{"loc": ("query", "n"), "type": "less_than_equal",
                                           "msg": f"Input should be less than or equal to {cfg.page.max_size}",
                                           "input": n}])
        if pipeline not in engine.pipelines:
            raise RequestValidationError([{"loc": ("query", "pipeline"), "type": "enum",
                                           "msg": f"unknown pipeline; known: {sorted(engine.pipelines)}",
                                           "input": pipeline}])
        # api.feed_concurrency pages at once, in arrival order; a waiting request holds no thread
        waited_s = await feed_gate.acquire()
        try:
            return await run_in_threadpool(_feed_page, user_id, n, explain, pipeline, waited_s)
        finally:
            feed_gate.release()

    def _feed_page(user_id: str, n: int, explain: bool, pipeline: str, waited_s: float) -> JSONResponse:
        ctx, res = engine.feed(user_id, n, pipeline)
        cs = res.candidates
        score_col = cs.columns.get("fused", cs.columns.get("coarse", cs.columns.get("recall")))
        items = []
        for j, it in enumerate(res.items.tolist()):
            row = engine.catalog.note_json(it)
            row["score"] = float(score_col[j]) if score_col is not None else 0.0
            items.append(row)
        body: dict[str, Any] = {
            "request_id": uuid.uuid4().hex,
            "user_id": user_id,
            "cold_start": ctx.user is None and (ctx.snapshot is None or ctx.snapshot.n_events == 0),
            # the model store version that served this page (else the fine model's own)
            "model_version": getattr(ctx, "served_version", None) or (ctx.model.version if ctx.model else None),
            "fallback": bool(getattr(ctx, "fallback", False)),
            "items": items,
            "degraded": bool(res.errors),
        }
        ads, ads_ms = page_ads(engine, [x["note_id"] for x in items], user_id=user_id, ctx=ctx)
        if ads is not None:  # the workspace has ads (notefeed/serve/adslots.py): slots with positions
            body["ads"] = ads
        if getattr(ctx, "arm", None) is not None:  # an A/B experiment: which arm served the page
            body["experiment"] = {"name": cfg.experiments.name, "arm": ctx.arm}  # type: ignore[attr-defined]
        if explain:  # the pipeline that ran: an experiment arm's own for the default one
            from notefeed.serve.experiments import arm_pipeline

            ran = pipeline if getattr(ctx, "arm", None) is None else arm_pipeline(ctx.arm)  # type: ignore[attr-defined]
            body["trace"] = {"pipeline": ran, **res.trace(engine.catalog.note_ids)}
        timing = ", ".join(f"{k};dur={v:.3f}" for k, v in
                           {**res.timings(), "ads": ads_ms, "queue": waited_s * 1e3}.items())
        return JSONResponse(body, headers={"Server-Timing": timing})

    @app.get("/v1/notes/{note_id}/related", dependencies=[Depends(read_auth)])
    def related(note_id: str, n: int = Query(10, ge=1, le=1000),
                user_id: str | None = Query(None, min_length=1, max_length=128)) -> dict[str, Any]:
        if user_id is not None and (problem := id_problem(user_id)) is not None:
            raise _validation_error(("query", "user_id"), problem, user_id)
        with _note_errors(note_id):
            pairs = engine.related(note_id, n, user_id)
        return {"note_id": note_id,
                "items": [{**engine.catalog.note_json(i), "score": s} for i, s in pairs]}

    @app.get("/v1/users/{user_id}", dependencies=[Depends(read_auth)])
    def user(user_id: str) -> dict[str, Any]:
        out = engine.user(user_id)
        if not out["known"]:
            raise HTTPException(404, f"unknown user_id {user_id!r}")
        return out

    @app.delete("/v1/users/{user_id}", dependencies=[Depends(write_auth)])
    def erase_user(user_id: str = FPath(min_length=1, max_length=128)) -> dict[str, Any]:
        """Erase the user (account deleted, or a deletion request): logged durably first; their
        events, searches, experiment pages, follows and blocks deleted from the serving logs;
        every worker forgets their state and serves the id as a new user; the next ``notefeed
        train`` sync deletes their rows from the store. Answers with what each log lost; an
        id never seen answers the same with zeros. Repeating it is harmless."""
        if (problem := id_problem(user_id)) is not None:
            raise _validation_error(("path", "user_id"), problem, user_id)
        return engine.erase_user(user_id)

    @app.get("/v1/admin/erasures", dependencies=[Depends(write_auth)])
    def erasures(limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=10**9)) -> dict[str, Any]:
        """The erasures processed (``DELETE /v1/users/{id}``), newest first, with their time: the
        record a deletion request was carried out (the write token: it lists user ids)."""
        n, rows = engine.relation_log.erasure_page(limit, offset)
        return {"erasures": n, "limit": limit, "offset": offset,
                "users": [{"user_id": u, "erased_at": t} for u, t in rows]}

    def _relate(user_id: str, author_id: str, kind: str, active: bool) -> dict[str, Any]:
        for field, v in (("user_id", user_id), ("author_id", author_id)):
            if (problem := id_problem(v)) is not None:
                raise _validation_error(("path", field), problem, v)
        now = engine.relate(user_id, author_id, kind, active)
        key, state = ("blocks", "blocked") if kind == "block" else ("follows", "following")
        return {"user_id": user_id, "author_id": author_id, state: author_id in now, key: list(now)}

    @app.put("/v1/users/{user_id}/blocks/{author_id}", dependencies=[Depends(write_auth)])
    def block(user_id: str = FPath(min_length=1, max_length=128),
              author_id: str = FPath(min_length=1, max_length=128)) -> dict[str, Any]:
        """The user blocks a creator: durable before the answer; from the next request none of
        the creator's notes reaches the user's feed or search, on any worker. Repeating it is harmless."""
        return _relate(user_id, author_id, "block", True)

    @app.delete("/v1/users/{user_id}/blocks/{author_id}", dependencies=[Depends(write_auth)])
    def unblock(user_id: str = FPath(min_length=1, max_length=128),
                author_id: str = FPath(min_length=1, max_length=128)) -> dict[str, Any]:
        """The user unblocks a creator (harmless when it was not blocked)."""
        return _relate(user_id, author_id, "block", False)

    @app.put("/v1/users/{user_id}/follows/{author_id}", dependencies=[Depends(write_auth)])
    def follow(user_id: str = FPath(min_length=1, max_length=128),
               author_id: str = FPath(min_length=1, max_length=128)) -> dict[str, Any]:
        """The user follows a creator (the app's follow button): from the next request
        ``social/follow`` recalls the creator's notes for them, on any worker."""
        return _relate(user_id, author_id, "follow", True)

    @app.delete("/v1/users/{user_id}/follows/{author_id}", dependencies=[Depends(write_auth)])
    def unfollow(user_id: str = FPath(min_length=1, max_length=128),
                 author_id: str = FPath(min_length=1, max_length=128)) -> dict[str, Any]:
        """The user unfollows a creator: ``social/follow`` stops recalling them for the user,
        a follow the channel was trained with included (until a newer follow)."""
        return _relate(user_id, author_id, "follow", False)

    @app.post("/v1/events", dependencies=[Depends(write_auth)])
    def events(batch: EventBatch) -> dict[str, Any]:
        if len(batch.events) > cfg.api.max_batch:
            raise HTTPException(413, f"batch of {len(batch.events)} events exceeds api.max_batch="
                                     f"{cfg.api.max_batch}")
        for j, ev in enumerate(batch.events):
            _not_future(("body", "events", j, "ts"), ev.ts)
        accepted, rejected = engine.ingest(batch.events)
        out: dict[str, Any] = {"accepted": accepted,
                               "rejected": [{"index": r.index, "note_id": r.note_id, "reason": r.reason}
                                            for r in rejected if r.reason != DUPLICATE]}
        dup = [r.index for r in rejected if r.reason == DUPLICATE]
        if dup:  # already stored under the same event_id (a retry): not stored again
            out["duplicates"] = dup
        return out

    @app.post("/v1/notes", status_code=201, dependencies=[Depends(write_auth)])
    def publish(note: Note, followers: int | None = Query(None, ge=0, le=2**53)) -> dict[str, Any]:
        _not_future(("body", "created_at"), note.created_at)
        try:
            i = engine.publish(note, followers)
        except ValueError as e:
            raise HTTPException(409, str(e)) from None
        search.published(note)  # searchable before the answer
        return {"note_id": note.note_id, "item": i}

    def _moderate(act: Callable[[str, str | None], tuple[int, bool]], note_id: str,
                  reason: str | None) -> tuple[int, bool]:
        """A takedown or its undoing (``act``): the reason checked, an unknown note 404."""
        if reason is not None and any(unicodedata.category(ch) == "Cc" for ch in reason):
            raise _validation_error(("query", "reason"), "control characters are not allowed", reason)
        with _note_errors(note_id):
            return act(note_id, reason)

    @app.delete("/v1/notes/{note_id}", dependencies=[Depends(write_auth)])
    def remove(note_id: str, reason: str | None = Query(None, min_length=1, max_length=500)) -> dict[str, Any]:
        """Take a note down: durable before the answer; from the next request no feed, related
        list or search of any worker shows it (restarts included). Repeating it is harmless."""
        i, already = _moderate(engine.remove_note, note_id, reason)
        return {"note_id": note_id, "item": i, "removed": True, "already_removed": already}

    @app.get("/v1/notes/{note_id}", dependencies=[Depends(read_auth)])
    def note(note_id: str) -> dict[str, Any]:
        """A note as served: id, author, creation time, title, text, tags, category (as last
        edited), its creator's follower count. 410 for a note taken down, 404 for an unknown one."""
        with _note_errors(note_id):
            i = engine.live_item(note_id)
        out = {**engine.catalog.note_json(i), **engine.catalog.fields(i), "item": i}
        out["author_followers"] = engine.catalog.followers_of(str(out["author_id"]))
        return out

    @app.patch("/v1/notes/{note_id}", dependencies=[Depends(write_auth)])
    def edit(body: NoteEdit, note_id: str) -> dict[str, Any]:
        """Edit a note's title, text, tags or category: durable before the answer; from the next
        request every worker's pages, related lists and search have the new fields (search is
        caught up before the answer here), restarts included, and ``notefeed train`` learns from
        them. Fields equal to the note's change nothing (``changed: []``)."""
        with _note_errors(note_id):
            i, changed = engine.edit_note(note_id, body.changes())
        if changed:
            search.catch_up()  # searchable as edited before the answer
        return {"note_id": note_id, "item": i, "changed": changed,
                "note": {**engine.catalog.note_json(i), **engine.catalog.fields(i)}}

    @app.post("/v1/notes/{note_id}/restore", dependencies=[Depends(write_auth)])
    def restore(note_id: str, reason: str | None = Query(None, min_length=1, max_length=500)) -> dict[str, Any]:
        """Undo a takedown (an appeal granted): durable before the answer; from the next request
        every worker's feeds, related lists and search show the note again (restarts included).
        Restoring a note that is not down is harmless (``was_removed: false``)."""
        i, was = _moderate(engine.restore_note, note_id, reason)
        return {"note_id": note_id, "item": i, "removed": False, "was_removed": was}

    @app.get("/v1/admin/removed", dependencies=[Depends(read_auth)])
    def removed(limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=10**9)) -> dict[str, Any]:
        """The notes down now, newest takedown first: when, why, and the note."""
        n, rows = engine.note_log.removals(limit, offset)
        notes = []
        for note_id, at, why in rows:
            i = engine.catalog.item_of(note_id)  # None: published on a worker this one has not read yet
            notes.append({**(engine.catalog.note_json(i) if i is not None else {"note_id": note_id}),
                          "removed_at": at, "reason": why})
        return {"removed": n, "limit": limit, "offset": offset, "notes": notes}

    @app.put("/v1/creators/{creator_id}", dependencies=[Depends(write_auth)])
    def set_followers(req: FollowersBody, creator_id: str = FPath(min_length=1, max_length=128)) -> dict[str, Any]:
        """The app's follower count of a creator, between publishes: durable before the answer;
        every worker's small-creator rule reads it from the next request."""
        if (problem := id_problem(creator_id)) is not None:
            raise _validation_error(("path", "creator_id"), problem, creator_id)
        engine.set_followers(creator_id, req.followers)
        return _creator(creator_id)

    @app.get("/v1/creators/{creator_id}", dependencies=[Depends(read_auth)])
    def get_creator(creator_id: str = FPath(min_length=1, max_length=128)) -> dict[str, Any]:
        if engine.catalog.followers_of(creator_id) is None:
            raise HTTPException(404, f"unknown creator_id {creator_id!r}")
        return _creator(creator_id)

    def _creator(creator_id: str) -> dict[str, Any]:
        n = engine.catalog.followers_of(creator_id)
        return {"creator_id": creator_id, "followers": n, "small_creator": n is not None and n < SMALL_CREATOR_FOLLOWERS}

    @app.post("/v1/notes/title-suggest", dependencies=[Depends(read_auth)])
    def title_suggest(req: TitleRequest) -> dict[str, Any]:
        # the workspace's built-in language model (notefeed/llm/, `notefeed llm embed`)
        from notefeed.llm import LLMError, suggest_titles
        from notefeed.llm.tasks import workspace_model

        lm = workspace_model(engine.workspace)
        if lm is None:
            # 409: the workspace lacks what the call needs (no retry helps until `llm embed` runs)
            raise HTTPException(409, "no language model in this workspace: run `notefeed llm embed --workspace WS`")
        try:
            return {"titles": suggest_titles(lm, req.text, req.n), "model": lm.name}
        except LLMError as e:
            raise HTTPException(422, f"text: {e}") from None

    @app.post("/v1/admin/models/reload", dependencies=[Depends(write_auth)])
    def reload(req: ReloadRequest) -> JSONResponse:
        if req.version is not None:  # a store version: every component, swapped as a whole
            from notefeed.models.artifacts import ModelError
            from notefeed.models.store import ModelStore, VersionNotFound

            try:  # a name that is not in the store answers now, not in /healthz later
                ModelStore(engine.workspace).check(req.version)
            except VersionNotFound as e:
                raise HTTPException(404, f"version: {e}") from None
            except ModelError as e:
                raise HTTPException(422, f"version: {e}") from None
            vfut = engine.reloader.reload(req.version)
            if not req.wait:
                return JSONResponse({"status": "loading", "version": req.version,
                                     "current": engine.model_version}, status_code=202)
            try:
                served = vfut.result(timeout=600)
            except Exception as e:
                raise HTTPException(422, f"model reload failed (field 'version'): {e}") from None
            return JSONResponse({"status": "swapped", "version": served.version})
        assert req.path is not None
        fut = engine.models.reload(req.path)
        def _count_swap(f: Any) -> None:
            if f.exception() is None:
                engine.metrics.inc("model_swaps_total")

        fut.add_done_callback(_count_swap)
        if not req.wait:
            return JSONResponse({"status": "loading", "current": engine.models.current().version},
                                status_code=202)
        try:
            mv = fut.result(timeout=300)
        except Exception as e:
            raise HTTPException(422, f"model reload failed (field 'path'): {e}") from None
        return JSONResponse({"status": "swapped", "version": mv.version})

    @app.post("/v1/admin/config", dependencies=[Depends(write_auth)])
    def config_reload(req: ConfigRequest) -> dict[str, Any]:
        """Hot-reload the serving config (``{"yaml": text, "dry_run": false}``): fusion,
        rerank, exposure, coarse.keep and recall quotas change live; anything else answers 409
        naming the field (restart with the new file)."""
        import yaml

        from notefeed.serve.config import ConfigError, parse_config
        from notefeed.serve.hotconfig import apply_config

        try:
            new = parse_config(yaml.safe_load(req.yaml), "yaml")
        except yaml.YAMLError as e:
            raise HTTPException(422, f"yaml: not valid YAML ({str(e).splitlines()[0]})") from None
        except ConfigError as e:
            raise HTTPException(422, str(e)) from None
        try:
            out = apply_config(engine, new, dry_run=req.dry_run)
        except ConfigError as e:  # a component refused its name or params: the config is wrong
            raise HTTPException(422, f"yaml: {e}") from None
        except ValueError as e:  # a change that needs a restart
            raise HTTPException(409, f"yaml: {e}") from None
        live = getattr(engine, "live_config", None)
        if live is not None and not req.dry_run:  # every other serving process applies it too
            try:
                out["shared"] = live.publish(engine.config)
            except (OSError, ValueError) as e:  # the file, or its lock (SearchError is a ValueError)
                out["shared"] = None
                out["warning"] = f"applied here only: sharing it with the other workers failed ({e})"
        return out

    @app.get("/v1/admin/experiments", dependencies=[Depends(read_auth)])
    def experiments() -> dict[str, Any]:
        """The running A/B experiment: per-arm metrics with intervals, differences to the
        control, the sample-ratio check (``active: false`` without one)."""
        if engine.experiment is None:
            return {"active": False}
        return {"active": True, **engine.experiment.report()}

    add_search_routes(app, engine, [Depends(read_auth)])
    from notefeed.serve.ads import add_ads_routes

    add_ads_routes(app, engine, [Depends(write_auth)], [Depends(read_auth)])
    from notefeed.serve.console import add_console_routes

    add_console_routes(app, engine, read_auth)
    app.add_middleware(RequestMetrics, engine=engine)
    return app


class RequestMetrics:
    """Pure ASGI middleware (cheaper than ``@app.middleware``): request count by route
    template and status, and latency, into the engine's metrics."""

    def __init__(self, app: Any, engine: Engine) -> None:
        self.app, self.engine = app, engine

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            ep = getattr(scope.get("route"), "path", "other")
            m = self.engine.metrics
            m.inc("requests_total", endpoint=ep, status=str(status["code"]))
            m.observe("request_latency_ms", (time.perf_counter() - t0) * 1e3, endpoint=ep)
