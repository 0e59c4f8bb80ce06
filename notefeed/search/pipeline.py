"""The search pipeline: understand -> retrieve (BM25 + dense, rewrites) -> fuse -> personalise
-> (diversify) -> page, with a per-request trace.

Built from a ``Dataset.notes``-shaped frame (:meth:`SearchPipeline.build`), grown by
:meth:`add_notes` (published notes are searchable when it returns), persisted under one folder
(``WORKSPACE/search/``: tantivy's directory, safetensors and JSON; never pickle).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from notefeed.recall._common import in_sorted
from notefeed.search.base import Hits, ParsedQuery, RewriteBackend, SearchError
from notefeed.search.config import SearchConfig, page_reranker
from notefeed.search.dense import DenseIndex, DenseJob
from notefeed.search.fusion import (
    FEATURES,
    LearnedFusion,
    candidate_features,
    rrf,
    union_ranks,
    without_personal,
)
from notefeed.search.intent import CategoryModel
from notefeed.search.interleave import TEAMS, team_draft
from notefeed.search.lexical import LexicalIndex, analyze_notes
from notefeed.search.personal import TagTable, UserProfile, personal_features
from notefeed.search.rewrite import HttpRewriteBackend, MinedRewrites, mine_rewrites
from notefeed.search.store import load_state, save_state
from notefeed.search.suggest import Suggester
from notefeed.search.tokens import NoteTokens, analyze_catalogue
from notefeed.search.topics import (
    TOPIC_FIELDS,
    TopicTable,
    counts_of_ids,
    model_ids,
    note_topics,
    refine_log_lik,
    topics_of_ids,
    with_log_lik,
)
from notefeed.search.understand import QueryUnderstanding
from notefeed.threads import gc_paused

__all__ = ["SearchPipeline", "SearchResult", "SmallCreatorOf", "small_creator_lookup", "small_creator_within"]

#: ``(items,) int -> (items,) bool``: whose creator has under 1,000 followers (the
#: small-creator rule's input; serving reads its catalogue's live follower counts)
SmallCreatorOf = Callable[[np.ndarray], np.ndarray]

log = logging.getLogger(__name__)

_INTENT_FIT_MAX = 100_000
#: row pieces of the notes' topic mixtures at build, shared by the dense worker and this process
_TOPIC_PIECES = 8
#: notes per piece of the catalogue's analysis shared with the dense worker process
_ANALYSIS_PIECE = 50_000
#: the note columns the analysis reads (what a piece sent to the worker carries)
_ANALYSED = ("title", "text", "tags", "author", "author_id", "category")
#: the personal features the hand-weighted (RRF) score averages
_RRF_PERSONAL = ("user_category", "user_tag", "user_vector")


@dataclass
class SearchResult:
    """``items`` (n,) item indices best first, ``scores`` (n,); ``trace`` when explained."""

    query: ParsedQuery
    items: np.ndarray
    scores: np.ndarray
    ms: dict[str, float] = field(default_factory=dict)
    trace: dict[str, Any] | None = None
    fusion: str = "rrf"  # the fusion that ranked the page (rrf / learned / interleave)
    #: on an interleaved page, the ranking each item came from (:data:`~notefeed.search.interleave.TEAMS`)
    teams: list[str] | None = None
    #: (len(items),) bool: which notes are a small creator's, when the rule had the flags
    small_creator: np.ndarray | None = None


class SearchPipeline:
    """Hybrid note search. Thread-safe for concurrent searches and note additions."""

    def __init__(self, config: SearchConfig, lexical: LexicalIndex, dense: DenseIndex | None,
                 intent: CategoryModel, suggester: Suggester, note_ids: list[str], item_category: list[int],
                 categories: list[str], item_tags: list[list[int]], tags: list[str],
                 mined: MinedRewrites | None = None, fusion: LearnedFusion | None = None,
                 path: Path | None = None, topics: TopicTable | None = None) -> None:
        self.config, self.lexical, self.dense, self.intent = config, lexical, dense, intent
        self.suggester, self.mined, self.fusion, self.path = suggester, mined, fusion, path
        self.note_ids, self.item_category, self.categories = note_ids, item_category, categories
        self.item_tags, self.tags = item_tags, tags
        self.note_index = {n: i for i, n in enumerate(note_ids)}
        self.category_index = {c: i for i, c in enumerate(categories)}
        self.tag_index = {t: i for i, t in enumerate(tags)}
        self._cat_arr = np.asarray(item_category, np.int64)
        self._tag_table = TagTable()
        #: per-note topic mixtures over ``intent.categories`` (item i = row i)
        self.topics = topics if topics is not None else TopicTable()
        #: the last note-log edit (its position) this index holds (:meth:`update_notes` is
        #: given the edits past it; the serving engine's catalogue keeps them in order)
        self.edits_seq = 0
        self._intent_index = {c: i for i, c in enumerate(intent.categories)}
        self._lock = threading.Lock()
        self._rand = random.Random()  # which searches interleave, and team draft's coin
        #: the page re-rankers, with and without the small-creator rule, and the config they are for
        self._rerankers: dict[bool, tuple[SearchConfig, Any]] = {}
        rewriters: list[RewriteBackend] = []
        if mined is not None and config.mined_rewrites:
            rewriters.append(mined)
        self.http: HttpRewriteBackend | None = None
        if config.http_rewrite is not None:
            h = config.http_rewrite
            self.http = HttpRewriteBackend(h.base_url, h.model, h.api_key, h.timeout_s, h.wait_s,
                                           max_rewrites=config.max_rewrites)
            rewriters.append(self.http)
        self.understanding = QueryUnderstanding(lexical.df, lambda: lexical.n_docs, intent, rewriters,
                                                spelling=config.spelling, max_chars=config.max_query_chars)
        if config.fusion == "learned" and fusion is None:
            raise SearchError("fusion: 'learned' needs trained weights (fusion.json); use 'rrf' or train one")

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, notes: pd.DataFrame, config: SearchConfig | None = None, path: str | Path | None = None,
              query_log: pd.DataFrame | None = None, seed: int = 0) -> SearchPipeline:
        """Index ``notes`` (item ``i`` = row ``i``); with ``path`` the index lives and is saved there.
        From ``dense_process_min`` notes the dense vectors are computed in a second process while
        this one builds the category model, refines its likelihoods and builds the lexical
        index; the notes' topic mixtures are then shared by both processes (the same arrays as
        in one process)."""
        with gc_paused():
            return cls._build(notes, config, path, query_log, seed)

    @classmethod
    def _build(cls, notes: pd.DataFrame, config: SearchConfig | None, path: str | Path | None,
               query_log: pd.DataFrame | None, seed: int) -> SearchPipeline:
        cfg = config or SearchConfig()
        p = None if path is None else Path(path)
        background = 0 < cfg.dense_process_min <= len(notes) and (os.cpu_count() or 1) > 1
        # in the worker the projection takes one thread: this process works on the other core
        job = (DenseJob(notes, cfg.dense_dim, cfg.dense_fit_max, seed, cfg.build_workers,
                        threads=1 if background else 2, background=background, tf_scope=cfg.dense_tf)
               if cfg.dense and len(notes) else None)
        try:
            return cls._build_with(notes, cfg, p, query_log, seed, job)
        except BaseException:
            if job is not None:
                job.cancel()
            raise

    @classmethod
    def _build_with(cls, notes: pd.DataFrame, cfg: SearchConfig, p: Path | None, query_log: pd.DataFrame | None,
                    seed: int, job: DenseJob | None) -> SearchPipeline:
        # with a worker process (it fits the dense encoder first) the analysis is shared with it
        # in row pieces; the vectors are then encoded there from these tokens
        share = job.share if job is not None else (lambda fn, tasks: lambda: [fn(*t) for t in tasks])
        if job is not None and job.background and len(notes) >= 2 * _ANALYSIS_PIECE:
            cols = [c for c in notes.columns if c in _ANALYSED]
            pieces = _pieces(len(notes), len(notes) // _ANALYSIS_PIECE)
            docs = NoteTokens.concat(share(analyze_catalogue, [(notes.iloc[a:b][cols], cfg.build_workers)
                                                               for a, b in pieces])())
        else:
            docs = analyze_catalogue(notes, cfg.build_workers)
        if job is not None:
            job.encode(docs)
        # the category model here, then every note's mixture queued behind the vectors in row
        # pieces, shared with this process once it has built the lexical index: the same arrays
        # as in one process
        cats = notes["category"].astype(str).tolist() if "category" in notes.columns else [""] * len(notes)
        rng = np.random.default_rng(seed)
        fit = np.arange(len(notes)) if len(notes) <= _INTENT_FIT_MAX else rng.choice(len(notes), _INTENT_FIT_MAX, replace=False)
        intent = CategoryModel().fit_codes(*docs.fields(("title", "text", "tags"), fit), docs.vocab,
                                           [cats[j] for j in fit.tolist()])
        # the likelihoods refined here on the fitting notes' counts; each piece of notes is
        # counted where its mixtures are computed (its ids sent over)
        ids = model_ids(docs.vocab, intent.vocab)
        x_fit = counts_of_ids(*docs.fields(TOPIC_FIELDS, fit), ids, len(intent.vocab))
        intent = with_log_lik(intent, refine_log_lik(x_fit, intent.log_lik, intent.alpha, cfg.topic_refine))
        topics_of = share(topics_of_ids, [(docs.field_ids(TOPIC_FIELDS, a, b), ids, intent.log_lik)
                                          for a, b in _pieces(len(notes), _TOPIC_PIECES)])
        lex = LexicalIndex(None if p is None else p / "lexical", boosts=cfg.boosts, heap_mb=cfg.index_heap_mb,
                           threads=cfg.index_threads)
        if lex.n_docs:  # rebuilding over an old index
            lex.close()
            import shutil

            shutil.rmtree(p / "lexical")  # type: ignore[operator]
            lex = LexicalIndex(p / "lexical", boosts=cfg.boosts, heap_mb=cfg.index_heap_mb,  # type: ignore[operator]
                               threads=cfg.index_threads)
        lex.add_tokens(docs, np.arange(len(notes), dtype=np.int64))
        mined = None
        if query_log is not None and len(query_log):
            suggester = Suggester(query_log["query"].astype(str).tolist(), source="query log")
            mined = MinedRewrites(mine_rewrites(query_log))
        else:
            suggester = Suggester(notes["title"].astype(str).tolist() if "title" in notes.columns else [], "titles")
        parts = topics_of()
        topics = TopicTable(np.concatenate([ids for ids, _ in parts]), np.concatenate([w for _, w in parts]))
        dense = (DenseIndex.of_vectors(*job.result(), hnsw_min=cfg.hnsw_min, approx=cfg.dense_ann,
                                       nprobe=cfg.dense_nprobe) if job is not None else None)
        pipe = cls(cfg, lex, dense, intent, suggester, notes["note_id"].astype(str).tolist(), [], [], [], [],
                   mined=mined, path=p, topics=topics)
        pipe._add_meta(notes)
        if p is not None:
            pipe.save()
        return pipe

    def _add_meta(self, notes: pd.DataFrame) -> None:
        cats = notes["category"].astype(str).tolist() if "category" in notes.columns else [""] * len(notes)
        tags = notes["tags"].tolist() if "tags" in notes.columns else [[]] * len(notes)
        for c, ts in zip(cats, tags, strict=True):
            self.item_category.append(self.category_index.setdefault(c, len(self.category_index)))
            if len(self.category_index) > len(self.categories):
                self.categories.append(c)
            ids = []
            for t in (ts if isinstance(ts, list | tuple | np.ndarray) else []):
                t = str(t).strip().lower()
                if t not in self.tag_index:
                    self.tag_index[t] = len(self.tags)
                    self.tags.append(t)
                ids.append(self.tag_index[t])
            self.item_tags.append(ids)
        self._cat_arr = np.asarray(self.item_category, np.int64)

    def add_notes(self, notes: pd.DataFrame) -> np.ndarray:
        """Index published notes (new ``note_id``s) under the next item indices; returns them.
        Searchable when this returns."""
        ids = notes["note_id"].astype(str).tolist()
        with self._lock:
            dup = [n for n in ids if n in self.note_index]
            if dup or len(set(ids)) != len(ids):
                raise SearchError(f"note_id: {dup[0] if dup else 'repeated in the batch'!r} already indexed")
            items = np.arange(len(self.note_ids), len(self.note_ids) + len(ids), dtype=np.int64)
            docs = analyze_notes(notes)
            self.lexical.add_tokens(docs, items)
            self.topics.extend(*note_topics(docs, self.intent))
            if self.dense is not None:
                self.dense.add(notes, items)
            for n, i in zip(ids, items.tolist(), strict=True):
                self.note_ids.append(n)
                self.note_index[n] = i
            self._add_meta(notes)
            if self.suggester.source == "titles" and "title" in notes.columns:
                self.suggester.add(notes["title"].astype(str).tolist())
            if self.understanding.spell is not None:
                self.understanding.spell.add_words(list({t for f in ("title", "text", "tags") if f in notes
                                                          for t in " ".join(map(str, notes[f])).lower().split()}))
        return items

    def update_notes(self, old: pd.DataFrame, new: pd.DataFrame) -> np.ndarray:
        """Re-index edited notes: ``old`` as they were indexed, ``new`` as they are now (the
        same ``note_id``s, indexed already); their text, category, tags, topic mixture, dense
        vector (not with an HNSW dense index: it cannot remove one) and title suggestion are
        replaced. Returns their items. Searchable as edited when this returns."""
        ids = new["note_id"].astype(str).tolist()
        if old["note_id"].astype(str).tolist() != ids:
            raise SearchError("note_id: the old and new rows of the edited notes differ")
        with self._lock:
            unknown = [n for n in ids if n not in self.note_index]
            if unknown:
                raise SearchError(f"note_id: {unknown[0]!r} is not indexed")
            items = np.asarray([self.note_index[n] for n in ids], np.int64)
            docs = analyze_notes(new)
            self.lexical.replace_tokens(analyze_notes(old), docs, items)
            self.topics.set_rows(items, *note_topics(docs, self.intent))
            if self.dense is not None and not self.dense.replace(new, items):
                log.warning("search: the dense vectors of %d edited notes stay the old ones (HNSW index)", len(items))
            cats = new["category"].astype(str).tolist() if "category" in new.columns else [""] * len(new)
            tags = new["tags"].tolist() if "tags" in new.columns else [[]] * len(new)
            n0 = len(self.item_category)
            self._add_meta(pd.DataFrame({"category": cats, "tags": tags}))  # appended, then moved into place
            for k, i in enumerate(items.tolist()):
                self.item_category[i] = self.item_category[n0 + k]
                self.item_tags[i] = self.item_tags[n0 + k]
            del self.item_category[n0:], self.item_tags[n0:]
            self._cat_arr = np.asarray(self.item_category, np.int64)
            self._tag_table = TagTable()  # rebuilt from the tag lists on the next personal search
            if self.suggester.source == "titles" and "title" in new.columns:
                self.suggester.remove(old["title"].astype(str).tolist() if "title" in old.columns else [])
                self.suggester.add(new["title"].astype(str).tolist())
            if self.understanding.spell is not None:
                self.understanding.spell.add_words(list({t for f in ("title", "text", "tags") if f in new
                                                          for t in " ".join(map(str, new[f])).lower().split()}))
        return items

    def __len__(self) -> int:
        return len(self.note_ids)

    # ------------------------------------------------------------------ searching
    def profile(self, history: np.ndarray | None) -> UserProfile | None:
        if history is None or len(history) == 0:
            return None
        h = np.asarray(history, np.int64)
        h = h[(h >= 0) & (h < len(self._cat_arr))]
        vecs = self.dense.item_vectors(h) if self.dense is not None else None
        prof = UserProfile.from_history(h, self._cat_arr, len(self.categories), self.item_tags, vecs)
        if len(h):
            prof.topics = self.topics.dense(h, len(self.intent.categories)).mean(axis=0)
        return prof

    def retrieve(self, pq: ParsedQuery) -> tuple[Hits, Hits]:
        """(lexical hits incl. rewrites, dense hits) of an understood query."""
        cfg = self.config
        lex = self.lexical.retrieve(pq, cfg.lexical_k)
        for rw in pq.rewrites[: cfg.max_rewrites]:
            terms, _ = self.understanding.terms_of(rw)
            extra = self.lexical.retrieve(ParsedQuery(rw, rw, terms), cfg.lexical_k)
            lex = _merge_scored(lex, extra, cfg.rewrite_weight, cfg.lexical_k)
        dense = self.dense.retrieve(pq, cfg.dense_k) if self.dense is not None else Hits.none("dense/text")
        return lex, dense

    def features(self, pq: ParsedQuery, lex: Hits, dense: Hits,
                 profile: UserProfile | None) -> tuple[np.ndarray, np.ndarray]:
        """(items (u,), X (u, len(FEATURES))) of the fused candidates."""
        items, _ = union_ranks([lex.items, dense.items])
        cats = self._intent(pq)
        probs = dict(cats)
        cm = np.array([probs.get(self.categories[c], 0.0) for c in self._cat_arr[items].tolist()], np.float32)
        vecs = self.dense.item_vectors(items) if (self.dense is not None and profile is not None) else None
        table = self._tag_table.sync(self.item_tags) if profile is not None else None
        pf = personal_features(profile, items, self._cat_arr, self.item_tags, vecs, table)
        n_c = len(self.intent.categories)
        mix = self.topics.dense(items, n_c)
        qp = np.zeros(n_c)
        for c, pr in cats:
            if c in self._intent_index:
                qp[self._intent_index[c]] = pr
        ut = mix @ profile.topics if profile is not None and profile.topics is not None else None
        return candidate_features(lex, dense, cm, pf, self.config.rrf_k, topic_match=mix @ qp, user_topic=ut)

    def _intent(self, pq: ParsedQuery) -> list[tuple[str, float]]:
        """The query's categories; for a query none of whose words the category model knows
        (a made-up synonym, say), those of the rewrites searched in its place."""
        if pq.categories or not pq.rewrites:
            return pq.categories
        terms = [t for rw in pq.rewrites[: self.config.max_rewrites] for t in self.understanding.terms_of(rw)[0]]
        return self.intent.predict(terms) if terms else []

    def serving_fusion(self) -> str:
        """The fusion a search without an explicit ``fusion`` uses: ``config.fusion``, where
        ``auto`` is ``learned`` when the loaded fusion was trained from the search log and beat
        RRF on its validation clicks (:mod:`notefeed.search.clickfusion`), else ``rrf``."""
        f = self.config.fusion
        if f != "auto":
            return f
        return "learned" if self.fusion is not None and (self.fusion.meta.get("beats_rrf") is True
                                                         or self._verdict() == "learned") else "rrf"

    def _verdict(self) -> str | None:
        """The loaded fusion's interleaving verdict (``meta["interleaving"]``), if any."""
        v = self.fusion.meta.get("interleaving") if self.fusion is not None else None
        return v.get("verdict") if isinstance(v, dict) else None

    def interleaving(self) -> bool:
        """Whether searches without an explicit ``fusion`` interleave (a share of them): ``auto``
        with a loaded learned fusion that does not serve yet and whose interleaving has no
        verdict (still collecting), ``interleave_share > 0``."""
        return (self.config.fusion == "auto" and self.fusion is not None and self.config.interleave_share > 0
                and self.serving_fusion() == "rrf" and self._verdict() in (None, "collecting"))

    def fusion_status(self) -> dict[str, Any]:
        """Which fusion serves and why (for health and responses): ``fusion`` (rrf / learned),
        ``configured``, ``interleaving`` (the share of searches interleaved now), and the loaded
        fusion's model and training record (with its interleaving's count), if any."""
        out: dict[str, Any] = {"fusion": self.serving_fusion(), "configured": self.config.fusion,
                               "interleaving": self.config.interleave_share if self.interleaving() else 0.0}
        f = self.fusion
        if f is None:
            out["learned"] = None
            if self.config.fusion == "auto":
                out["reason"] = "no fusion.json in the index (notefeed search train-fusion writes one)"
        else:
            out["learned"] = {"model": f.model, "features": list(f.features), **f.meta}
            if self.config.fusion == "rrf":
                out["reason"] = "fusion: rrf is configured (auto or learned would serve the loaded fusion)"
            elif self.config.fusion == "auto" and out["fusion"] == "rrf":
                verdict = self._verdict()
                if verdict in ("rrf", "no difference"):
                    out["reason"] = f"the interleaving's verdict: {verdict}"
                elif "beats_rrf" not in f.meta:
                    out["reason"] = "the fusion was not trained from the search log"
                elif self.interleaving():
                    out["reason"] = ("the trained fusion did not beat RRF on its validation clicks; a share of "
                                     "searches interleaves the two until the verdict")
                else:
                    out["reason"] = "the trained fusion did not beat RRF on its validation clicks"
            elif self.config.fusion == "auto" and self._verdict() == "learned":
                out["reason"] = "the learned fusion won the interleaving"
        return out

    def score(self, x: np.ndarray, lex: Hits, dense: Hits, personal: bool,
              fusion: str | None = None) -> np.ndarray:
        """(u,) final scores of the candidates (rows of ``x``, the union order)."""
        cfg = self.config
        if (fusion or self.serving_fusion()) == "learned":
            if self.fusion is None:
                raise SearchError("fusion: 'learned' needs trained weights")
            return self.fusion.score(x if personal else without_personal(x))
        _, ranks = union_ranks([lex.items, dense.items])
        base = rrf(ranks, cfg.rrf_k, np.array([1.0, cfg.dense_weight]))
        base = base / max(float(base.max()), 1e-12) if len(base) else base
        if personal and len(x):  # each personal feature scaled by its best candidate: units the weight can mean
            pf = x[:, [FEATURES.index(f) for f in _RRF_PERSONAL]].astype(np.float64)
            top = np.abs(pf).max(axis=0)
            base = base + cfg.personal_weight * (pf / np.where(top > 0, top, 1.0)).mean(axis=1)
        return base

    def search(self, q: object, n: int = 10, history: np.ndarray | None = None, explain: bool = False,
               fusion: str | None = None, personalise: bool | None = None, rewrite: bool = True,
               exclude: np.ndarray | None = None, small_creator: SmallCreatorOf | None = None) -> SearchResult:
        """The page for query ``q`` (raises :class:`SearchError` naming ``q`` / ``n`` on bad input);
        ``exclude``: items never to return (notes taken down; ascending), dropped before the page is cut.
        ``small_creator``: which items are small creators' notes; with it (and
        ``small_creator_share > 0``) the page follows the small-creator rule (:meth:`_select`).
        ``fusion``: rrf / learned / interleave (the two by team draft, :mod:`notefeed.search.interleave`;
        the result's ``teams`` say which ranking put each note there, its scores are the page
        order); None: :meth:`serving_fusion`, or on a share of searches ``interleave`` while
        :meth:`interleaving`."""
        cfg = self.config
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= cfg.max_page:
            raise SearchError(f"n: expected an integer in [1, {cfg.max_page}], got {n!r}")
        ms: dict[str, float] = {}
        t = time.perf_counter()
        pq = self.understanding.parse(q, rewrite=rewrite)
        ms["understand"] = _lap(t)
        if pq.empty and not pq.rewrites:
            return SearchResult(pq, np.zeros(0, np.int64), np.zeros(0, np.float32), ms,
                                {"query": _query_trace(pq), "reason": "no searchable terms"} if explain else None,
                                fusion=fusion or self.serving_fusion())
        t = time.perf_counter()
        lex, dense = self.retrieve(pq)
        ms["retrieve"] = _lap(t)
        t = time.perf_counter()
        personal = (cfg.personalise if personalise is None else personalise) and history is not None
        profile = self.profile(history) if personal else None
        items, x = self.features(pq, lex, dense, profile)
        if fusion is None and self.interleaving() and self._rand.random() < cfg.interleave_share:
            fusion = "interleave"
        if fusion == "interleave":
            if self.fusion is None:
                raise SearchError("fusion: 'interleave' needs trained weights")
            ranked = [self._ranked(items, self.score(x, lex, dense, profile is not None, f), exclude, n, ms,
                                   small_creator) for f in TEAMS]
            ms["rank"] = round(_lap(t) - ms.get("rerank", 0.0), 3)
            small = None  # the rule on the drafted page: each team's small creators' notes within the depth
            if small_creator is not None and cfg.small_creator_share > 0:
                tops = [r[0][: cfg.small_creator_depth] for r in ranked]
                small = (set(tops[0][small_creator(tops[0])].tolist()), set(tops[1][small_creator(tops[1])].tolist()))
            page, team = team_draft(ranked[0][0], ranked[1][0], n, self._rand, small, cfg.small_creator_share)
            row = {i: j for j, i in enumerate(items.tolist())}  # each candidate's row
            top = np.asarray([row[i] for i in page.tolist()], np.int64)
            s = np.zeros(len(items))
            s[top] = 1.0 / (1.0 + np.arange(len(top)))  # the page's order (the two teams' scores differ in scale)
            res = SearchResult(pq, items[top], s[top].astype(np.float32), ms, fusion="interleave",
                               teams=[TEAMS[k] for k in team.tolist()])
        else:
            s = self.score(x, lex, dense, profile is not None, fusion)
            top = self._ranked(items, s, exclude, n, ms, small_creator)[1][:n]
            ms["rank"] = round(_lap(t) - ms.get("rerank", 0.0), 3)
            res = SearchResult(pq, items[top], s[top].astype(np.float32), ms, fusion=fusion or self.serving_fusion())
        if small_creator is not None:
            res.small_creator = np.asarray(small_creator(res.items), bool)
        if explain:
            rule = self._rule_trace(res.small_creator)
            res.trace = {"query": _query_trace(pq), "candidates": {"lexical": len(lex), "dense": len(dense),
                                                                   "fused": len(items)},
                         "personalised": profile is not None, "fusion": res.fusion, "small_creator": rule,
                         "items": [{"item": int(items[j]), **{k: round(float(v), 5) for k, v in
                                    zip(FEATURES, x[j], strict=True)}, "score": float(s[j]),
                                    **({"team": res.teams[r]} if res.teams is not None else {})}
                                   for r, j in enumerate(top.tolist())]}
        return res

    def _ranked(self, items: np.ndarray, s: np.ndarray, exclude: np.ndarray | None, n: int,
                ms: dict[str, float], small_creator: SmallCreatorOf | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(items best first, their candidate rows) by scores ``s``: ``exclude``d items dropped,
        the page's first ``n`` chosen by :meth:`_select` when the config re-ranks or the
        small-creator rule applies (its time added to ``ms["rerank"]``)."""
        order = np.argsort(-s, kind="stable")
        if exclude is not None and len(exclude):
            order = order[~in_sorted(items[order], np.asarray(exclude, np.int64))]
        rule = small_creator if self.config.small_creator_share > 0 else None
        if (self.config.rerank or rule is not None) and len(order) > 1:
            t = time.perf_counter()
            order = self._select(items, s, order, n, rule)
            ms["rerank"] = ms.get("rerank", 0.0) + _lap(t)
        return items[order], order

    def _select(self, items: np.ndarray, s: np.ndarray, order: np.ndarray, n: int,
                small_creator: SmallCreatorOf | None) -> np.ndarray:
        """``order`` (candidate rows by score) with its first ``n`` picked by the configured
        re-ranker (``rerank``, over the ``rerank_window`` best), or by score, under the
        small-creator rule when ``small_creator`` is given: the feed's hard fairness
        (:class:`~notefeed.rerank.constraints.PageConstraints`) with target
        ``small_creator_share``, over the small creators' notes among the
        ``small_creator_depth`` best ranked (deeper ones count as not small here, so the rule
        never reaches past them). The rest follow by score."""
        from notefeed.rerank.base import RerankInput

        cfg = self.config
        reach = cfg.rerank_window if cfg.rerank else 0
        small = None
        if small_creator is not None:
            reach = max(reach, cfg.small_creator_depth)
        w = order[:reach]
        if small_creator is not None:
            small = np.array(small_creator(items[w]), bool)
            small[cfg.small_creator_depth:] = False
        vecs = (self.dense.item_vectors(items[w]) if cfg.rerank and self.dense is not None
                else np.zeros((len(w), 1), np.float32))
        rr = self._page_reranker(small is not None)
        inp = RerankInput(scores=s[w], vectors=vecs, categories=self._cat_arr[items[w]], small_creator=small)
        picked = w[np.asarray(rr.select(inp, min(n, len(w))), np.int64)]
        rest = np.setdiff1d(order, picked, assume_unique=True)
        return np.concatenate([picked, rest[np.argsort(-s[rest], kind="stable")]])

    def _page_reranker(self, rule: bool) -> Any:
        """The configured re-ranker (``rerank/topk`` without one), with the small-creator rule's
        hard fairness when ``rule``: built once per config (re-rankers keep no state between pages)."""
        cfg = self.config
        got = self._rerankers.get(rule)
        if got is None or got[0] is not cfg:
            from notefeed.rerank.constraints import FairnessConfig

            fair = FairnessConfig(target=cfg.small_creator_share, mode="hard") if rule else None
            got = (cfg, page_reranker(cfg, fair))
            self._rerankers[rule] = got
        return got[1]

    def _rule_trace(self, small: np.ndarray | None) -> dict[str, Any]:
        """The small-creator rule's settings and what the page holds (for ``explain``)."""
        cfg = self.config
        out: dict[str, Any] = {"share": cfg.small_creator_share, "depth": cfg.small_creator_depth,
                               "applied": cfg.small_creator_share > 0 and small is not None}
        if small is not None:
            out["on_page"] = int(small.sum())
        elif cfg.small_creator_share > 0:
            out["reason"] = "no follower counts given (the serving catalogue or a dataset's creators give them)"
        return out

    def suggest(self, prefix: str, n: int = 10) -> list[tuple[str, int]]:
        return self.suggester.suggest(prefix, n)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path | None = None) -> Path:
        p = Path(path) if path is not None else self.path
        if p is None:
            raise SearchError("path: nowhere to save an in-memory search index")
        with self._lock:
            save_state(self, p)
        return p

    @classmethod
    def load(cls, path: str | Path, config: SearchConfig | None = None) -> SearchPipeline:
        return load_state(cls, Path(path), config)

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.path is not None:
            self.save()
        self.lexical.close()


def small_creator_within(n: int, flags_of: SmallCreatorOf) -> SmallCreatorOf:
    """A :data:`SmallCreatorOf` asking ``flags_of`` about the items below ``n`` (those it
    knows, e.g. a serving catalogue's); items past them (indexed since) count as not small."""

    def of(items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, np.int64)
        out = np.zeros(len(items), bool)
        inside = items < n
        out[inside] = flags_of(items[inside])
        return out

    return of


def small_creator_lookup(flags: np.ndarray) -> SmallCreatorOf:
    """:func:`small_creator_within` per-item flags (item ``i``: ``flags[i]``, e.g.
    ``Dataset.item_is_small_creator``)."""
    f = np.asarray(flags, bool)
    return small_creator_within(len(f), f.__getitem__)


def _pieces(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` row ranges covering ``0..n`` (fewer when ``n < k``; one, empty, when ``n == 0``)."""
    cuts = np.unique(np.linspace(0, n, max(1, min(k, n)) + 1).astype(np.int64)).tolist()
    return list(zip(cuts[:-1], cuts[1:], strict=True)) or [(0, 0)]


def _lap(t: float) -> float:
    return round((time.perf_counter() - t) * 1e3, 3)


def _query_trace(pq: ParsedQuery) -> dict[str, Any]:
    return {"text": pq.text, "terms": pq.terms, "weights": [round(float(w), 4) for w in pq.weights],
            "corrections": pq.corrections, "categories": [[c, round(p, 4)] for c, p in pq.categories],
            "rewrites": pq.rewrites}


def _merge_scored(a: Hits, b: Hits, weight: float, k: int) -> Hits:
    """``a`` and ``b`` (scores times ``weight``) merged by best score per item, top ``k``."""
    if not len(b):
        return a
    items = np.concatenate([a.items, b.items])
    scores = np.concatenate([a.scores, b.scores * weight])
    order = np.lexsort((-scores, items))
    items, scores = items[order], scores[order]
    first = np.r_[True, items[1:] != items[:-1]]
    items, scores = items[first], scores[first]
    top = np.argsort(-scores, kind="stable")[:k]
    return Hits(a.retriever, items[top], scores[top].astype(np.float32))


