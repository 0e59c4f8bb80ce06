"""Search on the serving engine: ``GET /v1/search``, ``GET /v1/search/suggest`` and
``POST /v1/search/image``.

:class:`SearchService` hangs on the engine as ``engine.search``. It builds the index from the
engine's catalogue (base notes, then published notes, in item order, so search and feed share
item indices) in a background thread at start-up, or opens ``WORKSPACE/search/`` when that
holds an index of the same catalogue (notes published since are added). That shared index is
built, caught up and saved under its lock, then copied to ``WORKSPACE/search.run/<pid>-<random>``,
which this process alone writes and removes on close: with ``serve --workers N`` every worker
serves its own copy and indexes the notes any worker published (:meth:`SearchService.catch_up`,
called by the engine's follower). Until the index is ready a search answers 503. A note
published through the API is indexed before the publish answers, so it is searchable at once.

Search events: every page gets a ``request_id``; the query and the notes shown go to the
search query log (:class:`notefeed.search.querylog.SearchLog`, ``WORKSPACE/search_log.sqlite``)
and, for a known ``user_id``, the page's notes are ingested as ``impression`` events
(``surface="search"``, the ``request_id``, ``position``) through the engine's event ingest, the
one feed events take (bus, online state). Clicks (and likes, ...) on results are posted by the
client to ``POST /v1/events`` with ``surface="search"`` and the page's ``request_id``; they
change the user's online state like feed events (the next search and feed are personalised by
them) and are recorded against their query in the log. Both run on the engine's side-effect
thread, never delaying the page. Suggestions come from the logged queries first, then from
the index's own suggester (titles, or the query log it was built with).

Fusion: the pages are ranked by the fusion ``SearchConfig.fusion`` names (``auto``: the
``fusion.json`` trained from the search log by ``notefeed search-train-fusion`` when it beat RRF on
its validation clicks, else RRF). Each ``/v1/search`` answer says which (``fusion``), and
``GET /v1/search/status`` gives the index state, the fusion with its training record and the
log's size. A ``fusion.json`` in ``WORKSPACE/search/`` outlives a rebuild of the index.

Search by image: ``POST /v1/search/image`` with ``{"vector": [...]}`` (any client-side
encoder, the image index's dimension) or ``{"image": "<base64 JPEG/PNG>"}`` (encoded with the
image index's own encoder: the ``content`` extra's OpenCLIP and a local checkpoint) answers the
notes with the nearest image vectors (:mod:`notefeed.search.image`, ``WORKSPACE/images/``,
re-read when its files change). No image index: 409; a vector of the wrong length, both or
neither input, an undecodable image or no encoder for an image: 422 naming the field.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from notefeed.schema import STORED, Event, Note, id_problem
from notefeed.search import SearchConfig, SearchError, SearchPipeline
from notefeed.search.fusion import LearnedFusion
from notefeed.search.image import ImageIndex, load_encoder
from notefeed.search.interleave import verdict_from_log
from notefeed.search.pipeline import small_creator_within
from notefeed.search.querylog import SearchLog
from notefeed.search.store import folder_lock
from notefeed.search.suggest import Suggester
from notefeed.serve.adslots import page_ads

log = logging.getLogger(__name__)

__all__ = ["SearchService", "add_search_routes", "ImageQuery"]

#: how often (seconds, at most once per search request) a server looks for a newly trained fusion.json
FUSION_CHECK_S = 5.0
#: seconds between two readings of the search log's interleaved pages (while interleaving)
INTERLEAVE_CHECK_S = 30.0
#: largest accepted base64 image (characters), about 15 MB of image
MAX_IMAGE_B64 = 20_000_000


class ImageQuery(BaseModel):
    """``POST /v1/search/image``: exactly one of ``vector`` and ``image``."""

    model_config = ConfigDict(extra="forbid")
    vector: list[float] | None = Field(default=None, min_length=1, max_length=4096,
                                       description="a query image vector of the image index's dimension")
    image: str | None = Field(default=None, min_length=1, max_length=MAX_IMAGE_B64,
                              description="a JPEG/PNG/WebP image, base64 (needs the index's image encoder)")
    n: int = Field(default=10, ge=1, le=1000)
    user_id: str | None = Field(default=None, min_length=1, max_length=128)


_NOTE_COLS = ["note_id", "author_id", "title", "text", "tags", "category"]


def _catalog_notes(engine: Any, start: int = 0) -> pd.DataFrame:
    """Notes ``start..`` of the engine's catalogue as a ``Dataset.notes``-shaped frame (edited
    notes as they are now)."""
    return engine.catalog.notes_frame(start, columns=_NOTE_COLS)


def _edited_rows(engine: Any, entries: list[tuple[int, int, dict[str, Any], dict[str, Any]]]) -> tuple[pd.DataFrame,
                                                                                                      pd.DataFrame]:
    """(old, new) note frames of catalogue edit-log ``entries``, for ``SearchPipeline.update_notes``."""
    ids = [engine.catalog.note_ids[i] for _, i, _, _ in entries]
    old = pd.DataFrame([{"note_id": n, **o} for n, (_, _, o, _) in zip(ids, entries, strict=True)])
    new = pd.DataFrame([{"note_id": n, **w} for n, (_, _, _, w) in zip(ids, entries, strict=True)])
    return old, new


def _apply_edits(engine: Any, p: SearchPipeline, fresh_from: int | None = None, fresh_upto: int = 0) -> None:
    """Re-index in ``p`` the catalogue's edits past ``p.edits_seq``, one by one in order (a note
    edited twice is replaced twice). Items from ``fresh_from`` on were indexed from the
    catalogue just now, with every edit up to position ``fresh_upto`` in them already."""
    todo = [e for e in list(engine.catalog.edit_log) if e[0] > p.edits_seq
            and not (fresh_from is not None and e[1] >= fresh_from and e[0] <= fresh_upto)]
    for e in todo:
        if e[1] < len(p):
            p.update_notes(*_edited_rows(engine, [e]))
        p.edits_seq = e[0]
    if fresh_upto > p.edits_seq:
        p.edits_seq = fresh_upto


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """``path``'s (modification time in ns, size, inode): another value, another file (written
    again, or replaced); ``None`` when it is not there."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _clear_stale(run_dir: Path) -> None:
    """Remove the index copies in ``run_dir`` of processes that are gone (killed before their
    close removed them)."""
    if not run_dir.is_dir():
        return
    for d in run_dir.iterdir():
        try:
            pid = int(d.name.split("-")[0])
            if pid <= 0:
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError, OverflowError):  # not ours, or alive under another user
            continue


def _engine_search_config(engine: Any) -> SearchConfig:
    """The serving config's ``search`` section when it has one (a SearchConfig or its mapping),
    else the defaults of :class:`SearchConfig`."""
    raw = getattr(getattr(engine, "config", None), "search", None)
    if isinstance(raw, SearchConfig):
        return raw
    return SearchConfig.model_validate(raw) if isinstance(raw, dict) else SearchConfig()


class SearchService:
    """The engine's search index, built or opened in the background (see the module docstring)."""

    def __init__(self, engine: Any, config: SearchConfig | None = None, eager: bool = False,
                 first_wait_s: float = 30.0, log_queries: bool = True, log_impressions: bool = True) -> None:
        """``eager``: start building now (else on the first search request, which waits up to
        ``first_wait_s`` for it and answers 503 after that). ``log_queries``: keep the query log
        (and record search clicks in it); ``log_impressions``: ingest each page shown to a user
        as impression events."""
        self.engine, self.config = engine, config or _engine_search_config(engine)
        #: the workspace's shared index: built, caught up and saved under its lock, then copied
        self.path = engine.workspace / "search"
        #: where this process's own copy lives (``<pid>-<random>``; removed on close)
        self.run_dir = engine.workspace / "search.run"
        self.private: Path | None = None
        self.log: SearchLog | None = SearchLog(engine.workspace / "search_log.sqlite") if log_queries else None
        self.log_impressions = log_impressions
        #: logged queries (the latest 100k at start, then each search here and, read from the
        #: shared log at each suggestion request, those served by other workers) for suggestions
        self._query_mark = self.log.last_row() if self.log is not None else 0
        self.logged = Suggester(self.log.queries(limit=100_000) if self.log is not None else (), "query log")
        #: this process's recent search request ids (its own queries are added as they are served)
        self._own: OrderedDict[str, None] = OrderedDict()
        self._own_lock = threading.Lock()
        side = getattr(engine, "side_effects", None)
        if side is not None and self.log is not None:
            side.subscribe(self._on_events)
        self.images_path = engine.workspace / "images"
        self._images: tuple[float, ImageIndex] | None = None
        self._image_encoder: tuple[str, Any] | None = None
        self.pipeline: SearchPipeline | None = None
        #: (the pipeline, the removed items whose titles its suggester no longer holds)
        self._titles_forgotten: tuple[SearchPipeline | None, set[int]] = (None, set())
        self.error: str | None = None
        self.first_wait_s = first_wait_s
        #: when to look at the shared index's fusion.json next, and its stamp when last seen
        self._fusion_check = 0.0
        self._fusion_stamp: tuple[int, int, int] | None = None
        #: when to count the interleaved pages next (:meth:`_follow_interleaving`)
        self._interleave_check = 0.0
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
        """This process's index: the shared one (``WORKSPACE/search``) opened, or built, and
        caught up with the catalogue under its lock (one writer among the serving workers and
        ``notefeed search``), then copied to ``search.run/<pid>-<random>``, which this process
        alone writes (the notes published on any worker) and removes on close."""
        with folder_lock(self.path):
            p = self._open_or_build_shared()
            self._catch_up(p)
            p.close()  # saved, its tantivy writer released
            _clear_stale(self.run_dir)
            private = self.run_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            shutil.copytree(self.path, private)
            self._fusion_stamp = _stamp(self.path / "fusion.json")  # the fusion the copy serves
        self.private = private
        return SearchPipeline.load(private, self.config)

    def _open_or_build_shared(self) -> SearchPipeline:
        ids = self.engine.catalog.note_ids
        kept: LearnedFusion | None = None  # a trained fusion outlives a rebuild of the index
        if (self.path / "fusion.json").exists():
            try:
                kept = LearnedFusion.load(self.path / "fusion.json")
            except SearchError as e:
                log.warning("search: %s", e)
        if (self.path / "catalog.json").exists():
            try:
                p = SearchPipeline.load(self.path, self.config)
                m = min(len(p.note_ids), len(ids))  # longer: another worker indexed notes this one reads next
                if p.note_ids[:m] == ids[:m]:
                    return p
                p.close()
                log.warning("search: %s indexes another catalogue; rebuilding", self.path)
            except SearchError as e:
                log.warning("search: cannot open %s (%s); rebuilding", self.path, e)
            shutil.rmtree(self.path, ignore_errors=True)
        qlog = self.log.frame() if self.log is not None and len(self.log) else None  # rewrites mined from it
        seq = self._last_edit()  # read first: the notes read next hold every edit up to it
        p = SearchPipeline.build(_catalog_notes(self.engine), self.config, path=self.path, query_log=qlog)
        p.edits_seq = seq
        if kept is not None:
            p.fusion = kept
        p.save()
        return p

    def _last_edit(self) -> int:
        log_ = self.engine.catalog.edit_log
        return log_[-1][0] if log_ else 0

    def _catch_up(self, p: SearchPipeline) -> None:
        """Index in ``p`` the catalogue's notes it lacks, then re-index the notes edited since
        the edits it holds."""
        n = len(p)
        seq = self._last_edit()
        if self.engine.catalog.n_items > n:
            p.add_notes(_catalog_notes(self.engine, n))
            _apply_edits(self.engine, p, fresh_from=n, fresh_upto=seq)
        else:
            _apply_edits(self.engine, p)

    def _start(self) -> None:
        try:
            p = self._open_or_build()
            with self._lock:  # notes published (or edited) while building: index them before going live
                self._catch_up(p)
                self.pipeline = p
        except Exception as e:  # search stays unavailable (503); the feed is unaffected
            log.exception("search: building the index failed")
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self._ready.set()

    def health(self) -> dict[str, Any]:
        """The cheap part of :meth:`status` for ``/healthz``: ``ready``, ``error`` and
        ``fusion`` (which fusion ranks the pages: rrf / learned; null until the index is ready)."""
        p = self.pipeline
        return {"ready": p is not None, "error": self.error, "fusion": p.serving_fusion() if p is not None else None}

    def status(self) -> dict[str, Any]:
        """The index's state and which fusion ranks the pages (``GET /v1/search/status``)."""
        p = self.pipeline
        out: dict[str, Any] = {"ready": p is not None, "error": self.error,
                               "notes": len(p) if p is not None else None,
                               "fusion": p.fusion_status() if p is not None else None}
        if self.log is not None:
            out["log"] = {"searches": len(self.log), "searches_with_click": self.log.n_clicked_pages()}
        return out

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout) and self.pipeline is not None

    def published(self, note: Note) -> None:
        """Index a note the engine has just published (called before the publish answers)."""
        self.catch_up()

    def catch_up(self) -> None:
        """Index the catalogue's notes this index lacks (one just published here, or those other
        workers published: the engine's follower calls this after adding them) and re-index the
        notes edited since."""
        with self._lock:
            if self.pipeline is None:  # not built yet: _start picks it up from the catalogue
                return
            try:
                self._catch_up(self.pipeline)
            except Exception:  # the notes are durable and in the feed; search catches up on restart
                log.exception("search: indexing published or edited notes failed")
                self.engine.metrics.inc("stage_errors_total", stage="search:add_notes")

    def require(self) -> SearchPipeline:
        if self.pipeline is None and not self._started:
            self.start()
            self._ready.wait(self.first_wait_s)
        p = self.pipeline
        if p is None:
            detail = f"search index unavailable: {self.error}" if self.error else "search index is being built"
            raise HTTPException(503, detail, headers={"Retry-After": "5"})
        now = time.monotonic()
        if now >= self._fusion_check:
            self._fusion_check = now + FUSION_CHECK_S
            self._follow_fusion(p)
        if now >= self._interleave_check and self.log is not None and p.interleaving():
            self._interleave_check = now + INTERLEAVE_CHECK_S
            side = getattr(self.engine, "side_effects", None)
            if side is None:
                self._follow_interleaving(p)
            else:  # off the request: about 25 ms per thousand interleaved pages read
                side.submit(self._follow_interleaving, p)
        return p

    def _follow_interleaving(self, p: SearchPipeline) -> None:
        """Count the interleaved pages of the shared search log (every worker's, since the loaded
        fusion was trained) into its ``meta["interleaving"]``
        (:func:`~notefeed.search.interleave.interleaving_verdict`): ``auto`` serves the learned
        fusion once it has won, and stops interleaving once there is a verdict. Every worker
        reaches the same verdict from the same log; nothing is written."""
        f = p.fusion
        if f is None or self.log is None:
            return
        v = verdict_from_log(self.log, f, p.config.interleave_pages)
        f.meta = {**f.meta, "interleaving": v}  # one assignment: a reader sees the old or the new
        if v["verdict"] != "collecting":
            log.info("search: the interleaving of RRF and the learned fusion is decided: %s (%d pages, "
                     "learned won %d, RRF %d, p = %.3g)", v["verdict"], v["pages"], v["learned_wins"],
                     v["rrf_wins"], v["p_value"])

    def _follow_fusion(self, p: SearchPipeline) -> None:
        """Serve the learned fusion ``notefeed search-train-fusion`` wrote to the shared index
        (``WORKSPACE/search/fusion.json``) since this process copied it: a changed file is
        loaded (an unreadable one is logged and the fusion served stays)."""
        f = self.path / "fusion.json"
        stamp = _stamp(f)
        if stamp is None or stamp == self._fusion_stamp:  # none (served as copied), or the one copied
            return
        self._fusion_stamp = stamp
        try:
            fusion = LearnedFusion.load(f)
        except SearchError as e:
            log.warning("search: not serving the new %s (%s)", f, e)
            return
        with self._lock:
            p.fusion = fusion
        log.info("search: serving the learned fusion newly written to %s", f)

    # ------------------------------------------------------------------ search by image
    def images(self) -> ImageIndex | None:
        """The workspace's image index (re-read when ``images.json`` changed), or None."""
        meta = self.images_path / "images.json"
        try:
            mtime = meta.stat().st_mtime
        except OSError:
            return None
        with self._lock:
            if self._images is None or self._images[0] != mtime:
                self._images = (mtime, ImageIndex.load(self.images_path))
            return self._images[1]

    def encode_image(self, idx: ImageIndex, data: bytes) -> Any:
        """The (dim,) vector of an uploaded image, by the encoder the index records."""
        from PIL import Image, UnidentifiedImageError

        key = repr(idx.encoder)
        with self._lock:
            if self._image_encoder is None or self._image_encoder[0] != key:
                self._image_encoder = (key, load_encoder(idx.encoder))
            enc = self._image_encoder[1]
        try:
            im = Image.open(io.BytesIO(data))
            im.load()
            im = im.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise SearchError(f"image: not a readable image ({e})") from None
        try:
            return enc.encode([im])[0]
        except Exception as e:  # an image the encoder's preprocessing cannot take
            raise SearchError(f"image: the image encoder could not encode it ({type(e).__name__}: {e})") from None

    # ------------------------------------------------------------------ search events
    def record(self, user_id: str | None, query: str, note_ids: Sequence[str],
               teams: Sequence[str] | None = None) -> str:
        """Log one served page (on the side-effect thread; ``teams``: an interleaved page's
        ranking per note); returns its ``request_id``."""
        rid = uuid.uuid4().hex
        now = time.time()
        self.logged.add([query])
        with self._own_lock:
            self._own[rid] = None
            if len(self._own) > 100_000:
                self._own.popitem(last=False)
        side = getattr(self.engine, "side_effects", None)
        work = (rid, user_id, query, list(note_ids), now, None if teams is None else list(teams))
        if side is None:
            self._record(work)
        else:  # never delays the page (a full queue drops the work, counted by SideEffects)
            side.submit(self._record, work)
        return rid

    def _record(self, work: tuple[str, str | None, str, list[str], float, list[str] | None]) -> None:
        rid, user_id, query, note_ids, now, teams = work
        if self.log is not None:
            self.log.log_query(rid, user_id, query, note_ids, now, teams)
        if self.log_impressions and user_id is not None and note_ids:
            # the ids are the catalogue's own and a checked user id: validated as stored records
            evs = [Event.model_validate({"user_id": user_id, "note_id": n, "ts": int(now), "type": "impression",
                                         "position": k, "request_id": rid, "surface": "search"}, context=STORED)
                   for k, n in enumerate(note_ids)]
            self.engine.ingest(evs)

    def _on_events(self, recs: Sequence[Any]) -> None:
        """Accepted event batches: search engagements are recorded against their query."""
        rows = [(r.request_id, r.note_id, r.user_id, float(r.received_at), r.type, r.position) for r in recs
                if r.surface == "search" and r.request_id and r.type != "impression"]
        if rows and self.log is not None:
            self.log.log_clicks(rows)

    def _forget_removed(self) -> None:
        """Take the titles of notes removed since the last call (by any worker; a rebuilt index
        holds them all again) out of a title suggester, and put back those of notes restored."""
        p = self.pipeline
        gone = self.engine.catalog.removed_items
        if p is None or p.suggester.source != "titles":
            return
        done = self._titles_forgotten[1] if self._titles_forgotten[0] is p else set()
        if not len(gone) and not done:
            return
        with self._lock:
            done = self._titles_forgotten[1] if self._titles_forgotten[0] is p else set()
            now = {i for i in gone.tolist() if i < len(p)}
            new, back = sorted(now - done), sorted(done - now)
            if new:
                p.suggester.remove([self.engine.catalog.title(i) for i in new])
            if back:
                p.suggester.add([self.engine.catalog.title(i) for i in back])
            self._titles_forgotten = (p, now)

    def _others_queries(self) -> None:
        """Add to the suggestions the queries other serving processes logged since the last look
        (this process's own were added as they were served)."""
        if self.log is None:
            return
        mark, rows = self.log.queries_after(self._query_mark)
        with self._own_lock:
            self._query_mark = max(self._query_mark, mark)
            theirs = [q for r, q in rows if r not in self._own]
        if theirs:
            self.logged.add(theirs)

    def suggest(self, prefix: str, n: int) -> tuple[list[tuple[str, int]], str]:
        """Completions from the logged queries, topped up from the index's suggester (never
        the title of a removed note)."""
        self._forget_removed()
        self._others_queries()
        got = self.logged.suggest(prefix, n)
        source = "query log" if got else ""
        if len(got) < n and self.pipeline is not None:
            have = {s for s, _ in got}
            more = [x for x in self.pipeline.suggest(prefix, n) if x[0] not in have][: n - len(got)]
            if more:
                got += more
                source = f"{source}+{self.pipeline.suggester.source}" if source else self.pipeline.suggester.source
        return got, source or "query log"

    def close(self) -> None:
        """Close the index and remove this process's copy of it (once; again is harmless)."""
        if not self._ready.is_set() and self._started:
            self._ready.wait(60.0)  # a build in progress: let it finish its copy first
        with self._lock:
            p, self.pipeline = self.pipeline, None
            private, self.private = self.private, None
        if p is not None:
            p.close()
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
        side = getattr(self.engine, "side_effects", None)
        if side is not None:
            side.drain(2.0)  # logged pages still queued
        if self.log is not None:
            self.log.close()
            self.log = None


def _invalid(field: str, msg: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", field), "type": "value_error", "msg": msg,
                                    "input": value if not isinstance(value, str) else value[:200]}])


def _invalid_body(field: str, msg: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "type": "value_error", "msg": msg, "input": value}])


def _image_hits(idx: ImageIndex, vec: Any, n: int, field: str, catalog: Any) -> list[tuple[str, float]]:
    """The ``n`` nearest notes by image, none of them removed: asked for 4x more each time
    removed notes took places, until ``n`` are found or the index has no more."""
    gone = catalog.removed_items
    k = n
    while True:
        hits = idx.search(vec, k, field)
        if len(gone):
            items = np.asarray([-1 if (i := catalog.item_of(h[0])) is None else i for h in hits], np.int64)
            hits = [h for h, out in zip(hits, catalog.is_removed(items).tolist(), strict=True) if not out]
        if len(hits) >= n or k >= n + len(gone) or k >= idx.n_notes:
            return hits[:n]
        k = min(4 * k, n + len(gone))


def add_search_routes(app: FastAPI, engine: Any, deps: list[Any]) -> None:
    """Register the search endpoints on ``app`` (``deps``: the read-auth dependencies)."""

    @app.get("/v1/search", dependencies=deps)
    def search(q: str = Query(..., description="the query text"),
               user_id: str | None = Query(None, min_length=1, max_length=128),
               n: int = Query(10, ge=1), explain: bool = False) -> dict[str, Any]:
        if user_id is not None and (problem := id_problem(user_id)) is not None:  # impressions are stored under it
            raise _invalid("user_id", problem, user_id)
        pipe = engine.search.require()
        if n > pipe.config.max_page:
            raise _invalid("n", f"Input should be less than or equal to {pipe.config.max_page}", n)
        history = engine.context(user_id).history if user_id is not None else None
        try:
            exclude = engine.catalog.removed_items  # taken down; and the user's blocked creators' notes
            if user_id is not None and len(blocked := engine.blocked_items(user_id)):
                exclude = np.union1d(exclude, blocked)
            res = pipe.search(q, n, history=history, explain=explain, exclude=exclude,
                              # the catalogue's live follower counts; a note it does not hold yet is not small
                              small_creator=small_creator_within(engine.catalog.n_items, engine.catalog.small_creator))
        except SearchError as e:
            field, _, msg = str(e).partition(": ")
            raise _invalid(field if field in ("q", "n") else "q", msg or str(e), q) from None
        items = []
        small = res.small_creator.tolist() if res.small_creator is not None else [False] * len(res.items)
        for i, s, sm in zip(res.items.tolist(), res.scores.tolist(), small, strict=True):
            row = engine.catalog.note_json(i) if i < engine.catalog.n_items else {"note_id": pipe.note_ids[i]}
            items.append({**row, "small_creator": bool(sm), "score": float(s)})
        body: dict[str, Any] = {"query": res.query.text, "terms": res.query.terms,
                                "corrections": res.query.corrections,
                                "categories": [[c, round(p, 4)] for c, p in res.query.categories],
                                "rewrites": res.query.rewrites, "user_id": user_id, "fusion": res.fusion,
                                "items": items}
        cat = res.query.categories[0][0] if res.query.categories else None
        ads, ads_ms = page_ads(engine, [x["note_id"] for x in items], user_id=user_id, query=res.query.text,
                               rewrites=list(res.query.rewrites), category=cat)
        if ads is not None:  # the workspace has ads (notefeed/serve/adslots.py): slots with positions
            body["ads"] = ads
        if explain:
            body["trace"] = {**(res.trace or {}), "ms": res.ms, "ads_ms": ads_ms}
        body["request_id"] = engine.search.record(user_id, res.query.text, [x["note_id"] for x in items], res.teams)
        return body

    @app.get("/v1/search/status", dependencies=deps)
    def search_status() -> dict[str, Any]:
        """Whether the index is ready and which fusion serves (rrf / learned, with the learned
        fusion's training record: searches, validation click figures against RRF)."""
        return engine.search.status()

    @app.post("/v1/search/image", dependencies=deps)
    def search_image(req: ImageQuery) -> dict[str, Any]:
        if (req.vector is None) == (req.image is None):
            raise _invalid_body("vector", "send exactly one of 'vector' and 'image'", None)
        if req.n > engine.search.config.max_page:
            raise _invalid_body("n", f"Input should be less than or equal to {engine.search.config.max_page}", req.n)
        try:
            idx = engine.search.images()
        except SearchError as e:  # a broken index is the server's state, not the request's
            raise HTTPException(409, f"image index unusable: {e}") from None
        if idx is None:
            raise HTTPException(409, "no image index in this workspace (build one with `notefeed search-images`)")
        field = "vector" if req.vector is not None else "image"
        try:
            if req.image is not None:
                try:
                    data = base64.b64decode(req.image, validate=True)
                except (binascii.Error, ValueError):
                    raise SearchError("image: not valid base64") from None
                vec = engine.search.encode_image(idx, data)
            else:
                vec = req.vector
            hits = _image_hits(idx, vec, req.n, field, engine.catalog)
        except SearchError as e:
            f, _, msg = str(e).partition(": ")
            raise _invalid_body(f if f in ("vector", "image") else field, msg or str(e), None) from None
        items = []
        for note_id, s in hits:
            i = engine.catalog.item_of(note_id)
            row = engine.catalog.note_json(i) if i is not None else {"note_id": note_id}
            items.append({**row, "score": s})
        return {"dim": idx.dim, "notes_indexed": idx.n_notes, "user_id": req.user_id, "items": items}

    @app.get("/v1/search/suggest", dependencies=deps)
    def suggest(prefix: str = Query(..., max_length=200), n: int = Query(10, ge=1, le=50)) -> dict[str, Any]:
        engine.search.require()
        if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in prefix):
            raise _invalid("prefix", "control characters are not allowed", prefix)
        got, source = engine.search.suggest(prefix, n)
        return {"prefix": prefix, "source": source, "suggestions": [{"text": s, "weight": w} for s, w in got]}


