"""Latent-interest inference and the ``llm/interest`` recall channel.

:func:`infer_interests` reads a user's recent notes and names interest tags with a confidence:
with the built-in model, the recency-weighted mean of its tag head's probabilities over those
notes (so a tag none of the notes carries can still score: a latent interest, flagged
``novel``); with any other backend, a prompt asking for ``tag: confidence`` lines. Near-duplicate
tags are merged by the cosine of their embeddings (SimCSE-style de-duplication): the stronger
one keeps the name and the larger confidence, the others are listed under ``merged``.

The channel recalls notes carrying the user's inferred tags (catalogue tags, and the model's
predicted tags for notes without), weighted by confidence; ``latent_only`` weighs only the
latent (``novel``) ones. With ``slots > 0`` it is a *side* source instead (see
:mod:`notefeed.serve.pipeline`): its candidates are the notes carrying the user's strongest
latent interests (the top ``n_interests`` tags none of the recent notes carries, by
confidence), kept out of ranking with their latent score in the ``interest.score`` column, and
the page mixer (:class:`~notefeed.serve.slots.SideSlots`) places up to ``slots`` of them on
each page at spread positions. Its ``score_items`` still feeds the rankers' ``x.llm/interest``
feature. ``latent_level: category`` chooses the latent interests a level up: the candidates are
notes of categories none of the recent notes has, each category scored by the summed confidence
of the user's top inferred tags that belong to it (a tag's category: the one most notes carrying
it have), and the page mixer skips categories the page already shows. ``slot_position: end``
puts the latent notes at the page's end rather than at spread positions. ``min_score`` is a
confidence floor: a latent candidate is offered only when its latent score (``interest.score``)
is at least ``min_score``, so a user whose latent interests are all weak guesses gets no latent
slot and the ranked page (0, the default: no floor). ``slot_rank: engagement`` (category level)
introduces a latent category with the notes its viewers engaged with most: within a category the
candidates go by their smoothed click rate in the training log (clicks per impression shrunk to
the log's mean rate over 20 impressions; positives counted where the log has no impressions),
then by tag match, instead of tag match first.

``latent_source: cooccurrence`` (category level) scores the latent categories from behaviour
instead of the model's tag head: ``P(a user engages category b | they engage category a)`` over
the training log's users (engaging = at least :data:`COOC_MIN_SHARE` of the user's positive
events on the category's notes), averaged over the recent notes' categories with their recency weights. It is
what a large model's world knowledge supplies in the published setting (people who read about
hiking also read about camping) learned from the workspace's own users, for a built-in model
that knows only the workspace: its tag head says which tags a note *carries*, not which
categories go together in people.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from notefeed.data.dataset import Dataset, type_mask
from notefeed.llm.base import LanguageModel
from notefeed.llm.builtin import TRAIN_BUDGET_S, BuiltinLM
from notefeed.llm.corpus import NoteCorpus
from notefeed.recall._common import (
    candidates_from_scores,
    csr_from_state,
    csr_state,
    edited_items,
    excluded_items,
    recency_weights,
)
from notefeed.recall.base import CHANNELS, Candidates, SideCandidates, UserContext
from notefeed.schema import POSITIVE_TYPES

__all__ = ["Interest", "infer_interests", "merge_duplicates", "InterestChannel", "MAX_SLOTS", "engagement_rates"]

#: most latent-interest notes the channel may place on a page
MAX_SLOTS = 20
LATENT_LEVELS = ("tag", "category")
SLOT_POSITIONS = ("spread", "end")
SLOT_RANKS = ("match", "engagement")
LATENT_SOURCES = ("model", "cooccurrence")
#: share of a training-log user's positive events on a category's notes that makes them count as
#: engaging it (``latent_source: cooccurrence``): one of their main interests, not the stray
#: clicks a feed draws from every user (a count threshold, 2 events, tracked the true interests
#: less well: docs/results/llm/latent_cooccurrence_check.json)
COOC_MIN_SHARE = 0.25
#: impressions of prior weight in the smoothed click rate of ``slot_rank: engagement``
RATE_PRIOR_IMPRESSIONS = 20.0

_LINE = re.compile(r"^\s*[-*\d.)]*\s*(.+?)\s*[:=]\s*([01](?:\.\d+)?)\s*$")


@dataclass
class Interest:
    tag: str
    confidence: float
    novel: bool = False  # no recent note carries this tag
    merged: list[str] = field(default_factory=list)


def _tag_text(tag: str) -> str:
    return tag.replace("-", " ")


def merge_duplicates(interests: list[Interest], lm: LanguageModel, threshold: float = 0.9,
                     vectors: Mapping[str, np.ndarray] | None = None) -> list[Interest]:
    """Greedy, strongest first: a tag whose embedding has cosine >= ``threshold`` with a kept one
    merges into it. ``vectors``: each tag's embedding computed beforehand (the channel's cache of
    its model's tags), looked up instead of embedding the tags again."""
    if len(interests) < 2:
        return interests
    ordered = sorted(interests, key=lambda x: -x.confidence)
    z = (lm.embed([_tag_text(x.tag) for x in ordered]) if vectors is None
         else np.stack([vectors[x.tag] for x in ordered]))
    kept: list[int] = []
    for i, it in enumerate(ordered):
        j = next((j for j in kept if float(z[i] @ z[j]) >= threshold), None)
        if j is None:
            kept.append(i)
        else:
            ordered[j].merged.append(it.tag)
    return [ordered[j] for j in kept]


def _parse(text: str, k: int) -> list[Interest]:
    out: list[Interest] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out.append(Interest(m.group(1).strip().lower(), min(1.0, float(m.group(2)))))
    return out[:k]


def infer_interests(lm: LanguageModel, histories: Sequence[Sequence[str]], k: int = 5, threshold: float = 0.9,
                    history_tags: Sequence[Sequence[str]] | None = None, decay: float = 0.9) -> list[list[Interest]]:
    """Per user (texts of recent notes, oldest first): up to ``k`` interests, strongest first."""
    out: list[list[Interest]] = []
    for u, texts in enumerate(histories):
        texts = [t for t in texts if t]
        seen = {t for t in (history_tags[u] if history_tags is not None else ())}
        if not texts:
            out.append([])
            continue
        if isinstance(lm, BuiltinLM) and lm.tags:
            p = lm.tag_probs(texts)
            w = recency_weights(len(texts), decay)
            conf = (w[:, None] * p).sum(0) / w.sum()
            top = np.argsort(-conf, kind="stable")[: 3 * k]
            cands = [Interest(lm.tags[j], round(float(conf[j]), 4)) for j in top]
        else:
            prompt = ("A user recently read these notes:\n" + "\n".join(f"- {t[:200]}" for t in texts[-10:])
                      + f"\nName up to {k} interest tags this user likely has, including ones not named above, "
                        "one per line as 'tag: confidence' with confidence between 0 and 1.")
            cands = _parse(lm.generate([prompt], max_tokens=16 * k)[0], 3 * k)
        for c in cands:
            c.novel = c.tag not in seen
        out.append(merge_duplicates(cands, lm, threshold)[:k])
    return out


def _top_sparse(p: np.ndarray, k: int) -> sp.csr_matrix:
    top = np.argpartition(-p, min(k, p.shape[1]) - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(len(p)), top.shape[1])
    return sp.csr_matrix((p[rows, top.ravel()], (rows, top.ravel())), shape=p.shape, dtype=np.float32)


@CHANNELS.register("llm/interest")
class InterestChannel:
    """Recall by inferred interest tags (see the module docstring)."""

    name = "llm/interest"
    offline_only: ClassVar[bool] = True

    #: the page mixer's part when ``slots > 0`` (:mod:`notefeed.serve.slots`)
    slot_score = "interest.score"

    def __init__(self, model_path: str | None = None, n_recent: int = 20, decay: float = 0.9, n_interests: int = 5,
                 note_tags: int = 5, slots: int = 0, latent_only: bool = False, latent_level: str = "tag",
                 slot_position: str = "spread", min_score: float = 0.0, slot_rank: str = "match",
                 latent_source: str = "model", progress: bool = False, **config: object) -> None:
        if not isinstance(slots, int) or isinstance(slots, bool) or not 0 <= slots <= MAX_SLOTS:
            raise ValueError(f"llm/interest: slots must be an integer in [0, {MAX_SLOTS}] (latent-interest notes "
                             f"placed per page; 0: an ordinary recall channel), got {slots!r}")
        if not isinstance(latent_only, bool):
            raise ValueError(f"llm/interest: latent_only must be true or false, got {latent_only!r}")
        if latent_level not in LATENT_LEVELS:
            raise ValueError(f"llm/interest: latent_level must be one of {LATENT_LEVELS}, got {latent_level!r}")
        if slot_position not in SLOT_POSITIONS:
            raise ValueError(f"llm/interest: slot_position must be one of {SLOT_POSITIONS}, got {slot_position!r}")
        if (isinstance(min_score, bool) or not isinstance(min_score, (int, float))
                or not np.isfinite(min_score) or min_score < 0):
            raise ValueError(f"llm/interest: min_score must be a finite number >= 0 (the least latent score, "
                             f"interest.score, a latent slot candidate needs; 0: no floor), got {min_score!r}")
        if slot_rank not in SLOT_RANKS:
            raise ValueError(f"llm/interest: slot_rank must be one of {SLOT_RANKS}, got {slot_rank!r}")
        if slot_rank != "match" and latent_level != "category":
            raise ValueError(f"llm/interest: slot_rank {slot_rank!r} orders notes within a latent category; it needs "
                             f"latent_level: category, got latent_level {latent_level!r}")
        if latent_source not in LATENT_SOURCES:
            raise ValueError(f"llm/interest: latent_source must be one of {LATENT_SOURCES}, got {latent_source!r}")
        if latent_source != "model" and latent_level != "category":
            raise ValueError(f"llm/interest: latent_source {latent_source!r} scores latent categories; it needs "
                             f"latent_level: category, got latent_level {latent_level!r}")
        self.slot_rank, self.latent_source = slot_rank, latent_source
        self.min_score = float(min_score)
        self.slots, self.latent_only, self.latent_level = slots, latent_only, latent_level
        self.slot_position = slot_position
        self.model_path, self.n_recent, self.decay = model_path, int(n_recent), float(decay)
        self.n_interests, self.note_tags, self.progress = int(n_interests), int(note_tags), progress
        self.config = {"max_time_s": TRAIN_BUDGET_S, **config}  # the budget of `notefeed llm embed` unless named
        self.lm: BuiltinLM | None = None
        #: (the model, its tags' embeddings by tag): embedded once per model, not per request
        self._tag_vecs: tuple[BuiltinLM, dict[str, np.ndarray]] | None = None
        self.note_probs: sp.csr_matrix | None = None  # (n_items, n_tags) the model's top tags per note
        self.item_tags: sp.csr_matrix | None = None  # (n_items, n_tags) catalogue tags, else predicted
        self.categories: list[str] = []  # category names; item_cat indexes them
        self.item_cat = np.empty(0, np.int32)  # (n_items,) each note's category (-1: none)
        self._tag_cat: np.ndarray | None = None  # (n_tags,) each tag's category, derived lazily
        self.item_rate = np.empty(0, np.float32)  # (n_items,) smoothed click rate (slot_rank: engagement)
        #: (C, C) P(engages b | engages a) among the training log's users (latent_source: cooccurrence)
        self.cat_cond = np.zeros((0, 0), np.float32)

    def fit(self, ds: Dataset) -> InterestChannel:
        corpus = NoteCorpus.from_dataset(ds)
        if self.model_path:
            self.lm = BuiltinLM.load(self.model_path)
        else:
            from notefeed.llm.builtin import BuiltinConfig
            from notefeed.llm.train import train_builtin

            self.lm = train_builtin(corpus, None, BuiltinConfig(**self.config), progress=self.progress)  # type: ignore[arg-type]
        self.set_notes(corpus)
        self.item_rate = engagement_rates(ds)
        if self.latent_source == "cooccurrence":
            self.cat_cond = category_cooccurrence(ds, self.item_cat, len(self.categories))
        return self

    def set_notes(self, corpus: NoteCorpus) -> None:
        self.note_probs, self.item_tags = self._note_rows(corpus)
        self.categories = []
        self.item_cat = self._cat_codes(corpus.categories)

    def _cat_codes(self, cats: Sequence[str]) -> np.ndarray:
        """Category codes for ``cats`` (new names appended to ``categories``; "": -1)."""
        ix = {c: j for j, c in enumerate(self.categories)}
        out = np.full(len(cats), -1, np.int32)
        for i, c in enumerate(cats):
            if c:
                out[i] = ix.setdefault(c, len(ix))
        self.categories = list(ix)
        self._tag_cat = None
        return out

    def _note_rows(self, corpus: NoteCorpus) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(the model's top tags, the catalogue's tags or else the predicted ones) per note."""
        assert self.lm is not None
        p = self.lm.tag_probs(corpus.texts(with_tags=False))
        probs = _top_sparse(p, self.note_tags)
        ix = {t: j for j, t in enumerate(self.lm.tags)}
        rows, cols = [], []
        for i, ts in enumerate(corpus.tags):
            for t in ts:
                if t in ix:
                    rows.append(i)
                    cols.append(ix[t])
        known = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=p.shape)
        known.data[:] = 1.0
        has = np.asarray(known.sum(1)).ravel() > 0
        return probs, sp.csr_matrix(known + sp.diags((~has).astype(np.float32)) @ probs)

    @property
    def n_indexed(self) -> int | None:
        """Notes the channel can recall (items ``0 .. n_indexed - 1``); None before :meth:`fit`."""
        return None if self.note_probs is None else int(self.note_probs.shape[0])

    def add_items(self, notes: pd.DataFrame) -> np.ndarray:
        """Tag newly published notes from their text (catalogue tags where the model knows
        them) so the channel can recall them at once; returns their item indices, which
        continue after the current catalogue in the order of ``notes``."""
        if self.lm is None or self.note_probs is None or self.item_tags is None:
            raise RuntimeError(f"{self.name}: add_items() before fit()")
        probs, tags = self._note_rows(NoteCorpus.from_notes(notes))
        start = self.note_probs.shape[0]
        self.note_probs = sp.vstack([self.note_probs, probs], format="csr")
        self.item_tags = sp.vstack([self.item_tags, tags], format="csr")
        cats = [str(c) if c is not None else "" for c in notes.get("category", [""] * len(notes))]
        self.item_cat = np.concatenate([self.item_cat, self._cat_codes(cats)])
        prior = float(self.item_rate.mean()) if self.item_rate.size else 0.0  # a new note: no evidence yet
        self.item_rate = np.concatenate([self.item_rate, np.full(len(notes), prior, np.float32)])
        return np.arange(start, start + len(notes), dtype=np.int64)

    def replace_items(self, items: np.ndarray, notes: pd.DataFrame) -> None:
        """Tag edited notes ``items`` again from the ``title``, ``text``, ``tags`` and
        ``category`` of ``notes`` (their engagement rates stay)."""
        if self.lm is None or self.note_probs is None or self.item_tags is None:
            raise RuntimeError(f"{self.name}: replace_items() before fit()")
        items = edited_items(self.name, items, notes, self.note_probs.shape[0], unique=True)
        probs, tags = self._note_rows(NoteCorpus.from_notes(notes))
        self.note_probs = _replace_rows(self.note_probs, items, probs)
        self.item_tags = _replace_rows(self.item_tags, items, tags)
        cats = [str(c) if c is not None else "" for c in notes.get("category", [""] * len(notes))]
        item_cat = self.item_cat.copy()
        item_cat[items] = self._cat_codes(cats)
        self.item_cat = item_cat

    @property
    def side(self) -> bool:
        """A side source (page slots for latent-interest notes) when ``slots > 0``."""
        return self.slots > 0

    def _confidence(self, ctx: UserContext) -> tuple[np.ndarray, np.ndarray] | None:
        """(the recent notes of ``ctx.history``, each tag's recency-weighted confidence), or None."""
        if self.lm is None or self.note_probs is None or self.item_tags is None:
            raise RuntimeError(f"{self.name}: used before fit()")
        h = np.asarray(ctx.history, np.int64)
        h = h[(h >= 0) & (h < self.note_probs.shape[0])][-self.n_recent :]
        if h.size == 0:
            return None
        w = recency_weights(h.size, self.decay)
        return h, np.asarray(self.note_probs[h].T @ w).ravel() / w.sum()

    def interests(self, ctx: UserContext, novel_only: bool = False) -> list[Interest]:
        """The user's inferred interests from ``ctx.history`` (merged, strongest first);
        ``novel_only``: the strongest of those no recent note carries (latent interests)."""
        hc = self._confidence(ctx)
        if hc is None:
            return []
        assert self.lm is not None and self.item_tags is not None
        h, conf = hc
        seen = set(self.item_tags[h].indices.tolist())
        order = np.argsort(-conf, kind="stable")
        if novel_only:
            order = order[~np.isin(order, np.fromiter(seen, np.int64, len(seen)))]
        top = order[: 3 * self.n_interests]
        cands = [Interest(self.lm.tags[j], float(conf[j]), j not in seen) for j in top if conf[j] > 0]
        return merge_duplicates(cands, self.lm, vectors=self._tag_vectors())[: self.n_interests]

    def _tag_vectors(self) -> dict[str, np.ndarray]:
        """Every tag of the model embedded (as :func:`merge_duplicates` would), once per model."""
        lm = self.lm
        assert lm is not None
        cache = self._tag_vecs
        if cache is None or cache[0] is not lm:
            z = lm.embed([_tag_text(t) for t in lm.tags]) if lm.tags else np.zeros((0, 0), np.float32)
            cache = self._tag_vecs = (lm, dict(zip(lm.tags, z, strict=True)))
        return cache[1]

    def _scores(self, ctx: UserContext, novel_only: bool = False) -> np.ndarray | None:
        ints = self.interests(ctx, novel_only)
        if not ints:
            return None
        assert self.lm is not None and self.item_tags is not None
        ix = {t: j for j, t in enumerate(self.lm.tags)}
        q = np.zeros(len(self.lm.tags), np.float32)
        for it in ints:
            q[ix[it.tag]] = it.confidence
        return np.asarray(self.item_tags @ q).ravel()

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if self.slots > 0:
            return self.latent_candidates(ctx, k)
        s = self._scores(ctx, self.latent_only)
        if s is None:
            return Candidates.empty(self.name)
        items = np.flatnonzero(s > 0)
        return candidates_from_scores(self.name, items, s[items], ctx, k)

    def tag_categories(self) -> np.ndarray:
        """(n_tags,) each tag's category: the one most notes carrying it have (-1: no such note)."""
        if self._tag_cat is None or self._tag_cat.size != (self.item_tags.shape[1] if self.item_tags is not None else 0):
            assert self.item_tags is not None
            ok = self.item_cat >= 0
            onehot = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (np.flatnonzero(ok), self.item_cat[ok])),
                                   shape=(self.item_tags.shape[0], max(len(self.categories), 1)))
            counts = (self.item_tags.T @ onehot).toarray()
            self._tag_cat = np.where(counts.max(1) > 0, counts.argmax(1), -1).astype(np.int32)
        return self._tag_cat

    @property
    def slot_groups(self):
        """For the page mixer with ``latent_level: category``: item indices to category codes,
        so that a latent slot shows a category the page does not; else None."""
        return self._groups if self.latent_level == "category" else None

    def _groups(self, items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, np.int64)
        ok = (items >= 0) & (items < self.item_cat.size)
        out = np.full(items.size, -1, np.int32)
        out[ok] = self.item_cat[items[ok]]
        return out

    def latent_categories(self, ctx: UserContext) -> np.ndarray | None:
        """(n_categories,) each latent category's score: the summed confidence of the user's
        top ``3 * n_interests`` inferred tags whose category none of the recent notes has
        (0 elsewhere); None without history."""
        hc = self._confidence(ctx)
        return None if hc is None else self._category_scores(*hc)

    def _category_scores(self, h: np.ndarray, conf: np.ndarray) -> np.ndarray:
        if self.latent_source == "cooccurrence":
            return self._cooccurrence_scores(h)
        tc = self.tag_categories()
        ok = (conf > 0) & (tc >= 0) & ~np.isin(tc, self.item_cat[h])
        tags = np.flatnonzero(ok)
        tags = tags[np.argsort(-conf[tags], kind="stable")][: 3 * self.n_interests]
        return np.bincount(tc[tags], weights=conf[tags], minlength=len(self.categories))

    def _cooccurrence_scores(self, h: np.ndarray) -> np.ndarray:
        """(n_categories,) ``sum_a w_a P(b | a)`` over the recent notes' categories ``a`` (recency
        weights ``w``, summing to 1), 0 for those categories themselves (and for categories
        newer than the training log)."""
        n_c = len(self.categories)
        out = np.zeros(n_c, np.float64)
        c = self.item_cat[h]
        w = recency_weights(h.size, self.decay)
        ok = (c >= 0) & (c < self.cat_cond.shape[0])
        if ok.any():
            wa = np.bincount(c[ok], weights=w[ok], minlength=self.cat_cond.shape[0]) / w.sum()
            m = self.cat_cond.shape[1]
            out[:m] = wa @ self.cat_cond
        out[c[c >= 0]] = 0.0
        return out

    def _latent_category_candidates(self, ctx: UserContext, k: int) -> Candidates:
        """Unseen notes of the latent categories, scored by their category's score; within a
        category by their tags' match with every inferred tag (``slot_rank: engagement``: by
        their smoothed click rate first), then catalogue order. The best
        note of each category comes before any category's second, so ``k`` spans categories."""
        hc = self._confidence(ctx)
        if hc is None or k <= 0:
            return SideCandidates.empty(self.name)
        assert self.item_tags is not None
        cat, ic = self._category_scores(*hc), self.item_cat
        cat = np.where(cat >= self.min_score, cat, 0.0)  # the confidence floor: weak guesses get no slot
        items = np.flatnonzero((ic >= 0) & (cat[np.maximum(ic, 0)] > 0))
        items = items[~np.isin(items, excluded_items(ctx))]
        if items.size == 0:
            return SideCandidates.empty(self.name)
        match = np.asarray(self.item_tags[items] @ hc[1]).ravel()
        c = ic[items]
        if self.slot_rank == "engagement":
            rate = _rows_of(self.item_rate, items)
            o = np.lexsort((items, -match, -rate, c, -cat[c]))
        else:
            o = np.lexsort((items, -match, c, -cat[c]))
        items, c = items[o], c[o]
        start = np.r_[0, np.flatnonzero(c[1:] != c[:-1]) + 1]
        rank = np.arange(items.size) - np.repeat(start, np.diff(np.r_[start, items.size]))
        items = items[np.lexsort((np.arange(items.size), rank))[:k]]
        score = cat[ic[items]].astype(np.float32)
        return SideCandidates(self.name, items, score, columns={self.slot_score: score})

    def latent_candidates(self, ctx: UserContext, k: int) -> Candidates:
        """The side answer: up to ``k`` unseen notes carrying the user's latent interests, by
        latent score (``interest.score``: the summed confidence of their latent tags), ties by
        the score over all inferred interests (a latent note that also matches the known ones
        first), then catalogue order."""
        if self.latent_level == "category":
            return self._latent_category_candidates(ctx, k)
        latent = self._scores(ctx, novel_only=True)
        if latent is None or k <= 0:
            return SideCandidates.empty(self.name)
        items = np.flatnonzero((latent > 0) & (latent >= self.min_score))
        items = items[~np.isin(items, excluded_items(ctx))]
        if items.size == 0:
            return SideCandidates.empty(self.name)
        full = self._scores(ctx)
        tie = full[items] if full is not None else np.zeros(items.size, np.float32)
        order = np.lexsort((items, -tie, -latent[items]))[:k]
        items, scores = items[order], latent[items[order]].astype(np.float32)
        return SideCandidates(self.name, items, scores, columns={self.slot_score: scores})

    def score_items(self, ctx: UserContext, items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, np.int64).ravel()
        s = self._scores(ctx, self.latent_only)
        return np.zeros(items.size, np.float32) if s is None else _rows_of(s, items)

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        if self.lm is None or self.note_probs is None or self.item_tags is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        params = {"n_recent": self.n_recent, "decay": self.decay, "n_interests": self.n_interests,
                  "note_tags": self.note_tags, "slots": self.slots, "latent_only": self.latent_only,
                  "latent_level": self.latent_level, "min_score": self.min_score,
                  "slot_position": self.slot_position, "slot_rank": self.slot_rank,
                  "latent_source": self.latent_source,
                  "note_categories": self.categories, "config": self.config,
                  "lm": {"config": asdict(self.lm.config), "vocab": self.lm.tokenizer.vocab, "tags": self.lm.tags,
                         "categories": self.lm.categories, "info": self.lm.info}}
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.lm.net.state_dict().items()}
        return params, {**arrays, **csr_state("note_probs", self.note_probs), **csr_state("item_tags", self.item_tags),
                        "item_cat": self.item_cat, "item_rate": self.item_rate, "cat_cond": self.cat_cond}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> InterestChannel:
        import torch

        from notefeed.llm.builtin import BuiltinConfig
        from notefeed.llm.tokenizer import Tokenizer

        p = dict(params)
        lmp = p.pop("lm")
        cats = p.pop("note_categories", [])
        ch = cls(**{k: v for k, v in p.items() if k != "config"}, **p.get("config", {}))
        cfg, tok = BuiltinConfig(**lmp["config"]), Tokenizer(lmp["vocab"])
        net = BuiltinLM.new_net(cfg, tok, lmp["tags"], lmp["categories"])
        net.load_state_dict({k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")})
        ch.lm = BuiltinLM(cfg, tok, lmp["tags"], lmp["categories"], net, lmp.get("info"))
        ch.note_probs, ch.item_tags = csr_from_state(arrays, "note_probs"), csr_from_state(arrays, "item_tags")
        ch.categories = list(cats)
        ch.item_cat = (np.asarray(arrays["item_cat"], np.int32) if "item_cat" in arrays
                       else np.full(ch.item_tags.shape[0], -1, np.int32))
        ch.item_rate = (np.asarray(arrays["item_rate"], np.float32) if "item_rate" in arrays
                        else np.zeros(ch.item_tags.shape[0], np.float32))
        ch.cat_cond = np.asarray(arrays.get("cat_cond", np.zeros((0, 0), np.float32)), np.float32)
        return ch


def _rows_of(values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``values[items]`` as float32, 0 for items outside it."""
    out = np.zeros(items.size, np.float32)
    ok = (items >= 0) & (items < values.size)
    out[ok] = values[items[ok]]
    return out


def engagement_rates(ds: Dataset, prior_impressions: float = RATE_PRIOR_IMPRESSIONS) -> np.ndarray:
    """(n_items,) each note's click rate in ``ds``'s log, shrunk to the log's mean: (clicks +
    m * mean) / (impressions + m) with ``m = prior_impressions``. Clicks are ``click`` events
    (any positive event where the log has no click); a log without impressions gives each
    note's positive count, log1p-scaled (popularity), instead."""
    ev = ds.select_events(None)
    n = ds.n_items
    item = ev["item"].to_numpy(np.int64)
    imp = np.bincount(item[type_mask(ev, "impression")], minlength=n)[:n].astype(np.float64)
    is_click = type_mask(ev, "click")
    if not is_click.any():
        is_click = type_mask(ev, *POSITIVE_TYPES)
    clicks = np.bincount(item[is_click], minlength=n)[:n].astype(np.float64)
    if imp.sum() <= 0:
        return np.log1p(clicks).astype(np.float32)
    mean = min(clicks.sum() / imp.sum(), 1.0)
    return ((np.minimum(clicks, imp) + prior_impressions * mean) / (imp + prior_impressions)).astype(np.float32)


def category_cooccurrence(ds: Dataset, item_cat: np.ndarray, n_categories: int,
                          min_share: float = COOC_MIN_SHARE) -> np.ndarray:
    """(C, C) float32: row ``a``, column ``b`` is the share of the log's users engaging category
    ``a`` who also engage ``b`` (engaging: at least ``min_share`` of the user's positive events are
    on the category's notes); the diagonal is 0, as is a row no user engages."""
    n_c = int(n_categories)
    if n_c == 0:
        return np.zeros((0, 0), np.float32)
    ev = ds.select_events()  # the positive ones
    user, item = ev["user"].to_numpy(np.int64), ev["item"].to_numpy(np.int64)
    ok = (item >= 0) & (item < item_cat.size)
    user, item = user[ok], item[ok]
    cat = item_cat[item].astype(np.int64)
    user, cat = user[cat >= 0], cat[cat >= 0]
    if user.size == 0:
        return np.zeros((n_c, n_c), np.float32)
    n_u = int(user.max()) + 1
    counts = sp.csr_matrix((np.ones(user.size, np.float32), (user, cat)), shape=(n_u, n_c))
    counts.sum_duplicates()
    per_user = np.asarray(counts.sum(axis=1)).ravel()
    rows = np.repeat(np.arange(n_u), np.diff(counts.indptr))
    counts.data = (counts.data >= min_share * per_user[rows]).astype(np.float32)
    counts.eliminate_zeros()
    co = np.asarray((counts.T @ counts).todense(), np.float64)
    n_a = np.diag(co).copy()
    cond = np.where(n_a[:, None] > 0, co / np.maximum(n_a, 1.0)[:, None], 0.0)
    np.fill_diagonal(cond, 0.0)
    return cond.astype(np.float32)


def _replace_rows(m: sp.csr_matrix, items: np.ndarray, rows: sp.csr_matrix) -> sp.csr_matrix:
    """A copy of CSR ``m`` whose rows ``items`` are the rows of ``rows`` (in order)."""
    m, rows = sp.csr_matrix(m), sp.csr_matrix(rows, dtype=m.dtype)
    keep = np.ones(m.shape[0], bool)
    keep[items] = False
    lens = np.diff(m.indptr)
    new_lens = np.where(keep, lens, 0)
    new_lens[items] = np.diff(rows.indptr)
    indptr = np.r_[0, np.cumsum(new_lens)].astype(np.int64)
    data = np.empty(int(indptr[-1]), m.dtype)
    indices = np.empty(int(indptr[-1]), np.int64)
    src = np.repeat(keep, lens)  # the kept rows' entries, in order
    dst = np.repeat(keep, new_lens)
    data[dst], indices[dst] = m.data[src], m.indices[src]
    order = np.argsort(items, kind="stable")
    at = np.concatenate([np.arange(indptr[i], indptr[i + 1]) for i in items[order].tolist()]) if len(items) else \
        np.empty(0, np.int64)
    got = rows[order]
    data[at], indices[at] = got.data, got.indices
    return sp.csr_matrix((data, indices, indptr), shape=m.shape)
