"""Search on the serving engine: ``GET /v1/search`` and ``GET /v1/search/suggest``.

:class:`SearchService` hangs on the engine as ``engine.search``. It builds the index from the
engine's catalogue (base notes, then published notes, in item order, so search and feed share
item indices) in a background thread at start-up, or opens ``WORKSPACE/search/`` when that
holds an index of the same catalogue (notes published since are added). Until the index is
ready a search answers 503. A note published through the API is indexed before the publish
answers, so it is searchable at once.
"""

from __future__ import annotations

import logging
import shutil
import threading
from typing import Any

import pandas as pd
from fastapi import FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError

from notefeed.schema import Note
from notefeed.search import SearchConfig, SearchError, SearchPipeline
from notefeed.serve.adslots import page_ads

log = logging.getLogger(__name__)

__all__ = ["SearchService", "add_search_routes"]


def _catalog_notes(engine: Any, start: int = 0) -> pd.DataFrame:
    """Notes ``start..`` of the engine's catalogue as a ``Dataset.notes``-shaped frame."""
    cat = engine.catalog
    base = engine.ds.notes
    parts = []
    if start < len(base):
        parts.append(base.iloc[start:][["note_id", "author_id", "title", "text", "tags", "category"]])
    pub = [cat.published[i].model_dump() for i in range(max(start, len(base)), cat.n_items) if i in cat.published]
    if pub:
        parts.append(pd.DataFrame(pub)[["note_id", "author_id", "title", "text", "tags", "category"]])
    if not parts:
        return pd.DataFrame({c: [] for c in ("note_id", "author_id", "title", "text", "tags", "category")})
    return pd.concat(parts, ignore_index=True)


class SearchService:
    """The engine's search index, built or opened in the background (see the module docstring)."""

    def __init__(self, engine: Any, config: SearchConfig | None = None, eager: bool = False,
                 first_wait_s: float = 30.0) -> None:
        """``eager``: start building now (else on the first search request, which waits up to
        ``first_wait_s`` for it and answers 503 after that)."""
        self.engine, self.config = engine, config or SearchConfig()
        self.path = engine.workspace / "search"
        self.pipeline: SearchPipeline | None = None
        self.error: str | None = None
        self.first_wait_s = first_wait_s
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._started = False
        if eager:
            self.start()

    def start(self) -> None:
        """Build or open the index in a background thread (once)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._start, name="search-index", daemon=True).start()

    def _open_or_build(self) -> SearchPipeline:
        ids = self.engine.catalog.note_ids
        if (self.path / "catalog.json").exists():
            try:
                p = SearchPipeline.load(self.path, self.config)
                if p.note_ids == ids[: len(p.note_ids)]:
                    return p
                p.close()
                log.warning("search: %s indexes another catalogue; rebuilding", self.path)
            except SearchError as e:
                log.warning("search: cannot open %s (%s); rebuilding", self.path, e)
            shutil.rmtree(self.path, ignore_errors=True)
        return SearchPipeline.build(_catalog_notes(self.engine), self.config, path=self.path)

    def _start(self) -> None:
        try:
            p = self._open_or_build()
            with self._lock:  # notes published while building: index them before going live
                n = len(p)
                if self.engine.catalog.n_items > n:
                    p.add_notes(_catalog_notes(self.engine, n))
                self.pipeline = p
        except Exception as e:  # search stays unavailable (503); the feed is unaffected
            log.exception("search: building the index failed")
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout) and self.pipeline is not None

    def published(self, note: Note) -> None:
        """Index a note the engine has just published (called before the publish answers)."""
        with self._lock:
            if self.pipeline is None:  # not built yet: _start picks it up from the catalogue
                return
            try:
                self.pipeline.add_notes(_catalog_notes(self.engine, len(self.pipeline)))
            except Exception:  # the note is durable and in the feed; search catches up on restart
                log.exception("search: indexing published note %s failed", note.note_id)
                self.engine.metrics.inc("stage_errors_total", stage="search:add_notes")

    def require(self) -> SearchPipeline:
        if self.pipeline is None and not self._started:
            self.start()
            self._ready.wait(self.first_wait_s)
        if self.pipeline is None:
            detail = f"search index unavailable: {self.error}" if self.error else "search index is being built"
            raise HTTPException(503, detail, headers={"Retry-After": "5"})
        return self.pipeline

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()


def _invalid(field: str, msg: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", field), "type": "value_error", "msg": msg,
                                    "input": value if not isinstance(value, str) else value[:200]}])


def add_search_routes(app: FastAPI, engine: Any, deps: list[Any]) -> None:
    """Register the search endpoints on ``app`` (``deps``: the read-auth dependencies)."""

    @app.get("/v1/search", dependencies=deps)
    def search(q: str = Query(..., description="the query text"),
               user_id: str | None = Query(None, min_length=1, max_length=128),
               n: int = Query(10, ge=1), explain: bool = False) -> dict[str, Any]:
        pipe = engine.search.require()
        if n > pipe.config.max_page:
            raise _invalid("n", f"Input should be less than or equal to {pipe.config.max_page}", n)
        history = engine.context(user_id).history if user_id is not None else None
        try:
            res = pipe.search(q, n, history=history, explain=explain)
        except SearchError as e:
            field, _, msg = str(e).partition(": ")
            raise _invalid(field if field in ("q", "n") else "q", msg or str(e), q) from None
        items = []
        for i, s in zip(res.items.tolist(), res.scores.tolist(), strict=True):
            row = engine.catalog.note_json(i) if i < engine.catalog.n_items else {"note_id": pipe.note_ids[i]}
            items.append({**row, "score": float(s)})
        body: dict[str, Any] = {"query": res.query.text, "terms": res.query.terms,
                                "corrections": res.query.corrections,
                                "categories": [[c, round(p, 4)] for c, p in res.query.categories],
                                "rewrites": res.query.rewrites, "user_id": user_id, "items": items}
        cat = res.query.categories[0][0] if res.query.categories else None
        ads, ads_ms = page_ads(engine, [x["note_id"] for x in items], user_id=user_id, query=res.query.text,
                               rewrites=list(res.query.rewrites), category=cat)
        if ads is not None:  # the workspace has ads (notefeed/serve/adslots.py): slots with positions
            body["ads"] = ads
        if explain:
            body["trace"] = {**(res.trace or {}), "ms": res.ms, "ads_ms": ads_ms}
        return body

    @app.get("/v1/search/suggest", dependencies=deps)
    def suggest(prefix: str = Query(..., max_length=200), n: int = Query(10, ge=1, le=50)) -> dict[str, Any]:
        pipe = engine.search.require()
        if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in prefix):
            raise _invalid("prefix", "control characters are not allowed", prefix)
        got = pipe.suggest(prefix, n)
        return {"prefix": prefix, "source": pipe.suggester.source,
                "suggestions": [{"text": s, "weight": w} for s, w in got]}


