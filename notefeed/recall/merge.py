"""The one recall merge: channel answers -> one candidate set, used by serving and evaluation.

The kernel (:func:`merge_lists`) is what the serving pipeline serves: each channel's list is cut
to its quota, the lists are concatenated in channel (config) order and an item keeps the
position of its first occurrence; every channel that found it is kept (provenance), and its
``recall`` score is the best *rank-normalised* score over those channels (``1 - rank / len``:
1 for a channel's first item, so a channel with huge raw scores cannot crowd out another, and
every channel's list spans the same range whatever its length).

:func:`merge_answers` adds what the serving pipeline writes (``recall``, ``recall.<channel>``
and side-source columns, channel lists); :func:`merge_candidates` / :class:`RecallStage` are
the recall stage on its own (``notefeed eval --stage recall``, ``bench recall``). Where a
``total`` cuts the merged set, the order is by ``recall`` score, ties by merged position: the
order the serving pipeline's ``recall`` probe (feed evaluation) reports. A channel that raises
is caught and reported with its error (fail open).

Config, one entry per channel (quota plus the channel's own params)::

    {"item-to-item/swing": {"quota": 2000, "top_n": 100},
     "non-personalized/popular": {"quota": 500}}
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.recall.base import CHANNELS, Candidates, RecallChannel, UserContext

__all__ = [
    "ChannelLists",
    "channel_counts",
    "MergeArrays",
    "merge_lists",
    "merge_answers",
    "MergedCandidates",
    "RecallStage",
    "merge_candidates",
    "DEFAULT_CONFIG",
    "COLD_START_CHANNELS",
]

#: Channels that serve a user we know nothing about.
COLD_START_CHANNELS = ("non-personalized/popular", "fresh/pool")

#: The default stage: every channel, quotas summing to 10k.
DEFAULT_CONFIG: dict[str, dict[str, object]] = {
    "item-to-item/swing": {"quota": 2000},
    "item-to-item/itemcf": {"quota": 1500},
    "embedding/two-tower": {"quota": 2000},
    "explore/es-noise": {"quota": 500},
    "explore/multi-interest": {"quota": 1000},
    "tag/interest": {"quota": 800},
    "user-to-user/default": {"quota": 800},
    "social/follow": {"quota": 400},
    "fresh/pool": {"quota": 500},
    "non-personalized/popular": {"quota": 500},
}


@dataclass(frozen=True)
class MergeArrays:
    """The merge as flat arrays. ``n`` distinct items, ``m`` hits (one per item of a cut list,
    in concatenation order).

    ``items`` (n,) int64 in first-occurrence order; ``best`` (n,) float32 the best hit score;
    ``row`` (m,) int64 each hit's position in ``items``; ``channel`` (m,) int64 the list it
    came from; ``rank`` (m,) int64 its rank in that list; ``score`` (m,) float32 its
    rank-normalised score ``1 - rank / max(1, len)``.
    """

    items: np.ndarray
    best: np.ndarray
    row: np.ndarray
    channel: np.ndarray
    rank: np.ndarray
    score: np.ndarray


class ChannelLists(Sequence[list[str]]):
    """Each candidate's channels, as a hit-count matrix instead of ``n`` small lists.

    ``names`` (c,) the channel of each merged answer (in answer order; a name may repeat),
    ``hits`` (n, c) int32: how many times answer ``a`` recalled item ``j`` (normally 0 or 1).
    Row ``j`` reads as the list a per-hit loop over the answers builds: each answer's name once
    per hit, in answer order. The hot path (merge, ``take``, the channel-count feature) stays in
    arrays; the lists are built only when read (trace, explain, tests).
    """

    __slots__ = ("names", "hits")

    def __init__(self, names: Sequence[str], hits: np.ndarray) -> None:
        self.names = tuple(names)
        self.hits = np.asarray(hits, np.int32)
        if self.hits.ndim != 2 or self.hits.shape[1] != len(self.names):
            raise ValueError(f"ChannelLists: hits {self.hits.shape} do not match {len(self.names)} names")

    def __len__(self) -> int:
        return int(self.hits.shape[0])

    def _row(self, j: int) -> list[str]:
        row = self.hits[j]
        return [self.names[c] for c in np.flatnonzero(row).tolist() for _ in range(int(row[c]))]

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self._row(i) for i in range(*j.indices(len(self)))]
        return self._row(int(j))

    def __iter__(self) -> Iterator[list[str]]:
        return (self._row(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChannelLists | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ChannelLists({list(self)!r})"

    def counts(self) -> np.ndarray:
        """(n,) int64 number of hits per item (the length of each row's list)."""
        return self.hits.sum(axis=1, dtype=np.int64)

    def take(self, pos: np.ndarray) -> ChannelLists:
        return ChannelLists(self.names, self.hits[np.asarray(pos, np.int64)])


def channel_counts(channels: Sequence[Sequence[str]]) -> np.ndarray:
    """(n,) int64 length of each candidate's channel list (:class:`ChannelLists` or lists)."""
    if isinstance(channels, ChannelLists):
        return channels.counts()
    return np.fromiter((len(c) for c in channels), np.int64, count=len(channels))


def merge_lists(lists: Sequence[np.ndarray], quotas: Sequence[int]) -> MergeArrays:
    """Merge ranked item lists (each (len_c,) int) cut to ``quotas`` (one per list).

    ``best`` is computed in float64 then rounded, ``score`` in float32: bit for bit what the
    serving pipeline has always written (the learned ranker was trained on those values).
    """
    if len(lists) != len(quotas):
        raise ValueError(f"merge: {len(lists)} lists but {len(quotas)} quotas")
    cut = [np.asarray(li, np.int64)[: max(0, int(q))] for li, q in zip(lists, quotas, strict=True)]
    lens = np.array([len(c) for c in cut], np.int64)
    item = np.concatenate(cut) if cut else np.empty(0, np.int64)
    channel = np.repeat(np.arange(len(cut), dtype=np.int64), lens)
    rank = np.arange(item.size, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    m = np.maximum(lens, 1)[channel]
    score = np.float32(1.0) - rank.astype(np.float32) / m.astype(np.float32)
    uniq, first, inv = np.unique(item, return_index=True, return_inverse=True)
    order = np.argsort(first)
    pos = np.empty(uniq.size, np.int64)
    pos[order] = np.arange(uniq.size)
    row = pos[inv.reshape(-1)]
    best = np.full(uniq.size, -np.inf)
    np.maximum.at(best, row, 1.0 - rank / m)
    return MergeArrays(uniq[order], best.astype(np.float32), row, channel, rank, score.astype(np.float32))


def merge_answers(answers: Sequence[tuple[Candidates, int]]
                  ) -> tuple[np.ndarray, ChannelLists, dict[str, np.ndarray]]:
    """The serving pipeline's candidate set from ``(channel answer, quota)`` pairs:
    ``(items, channels, columns)``.

    ``channels[j]`` names every channel that recalled ``items[j]`` (in channel order; a
    :class:`ChannelLists`);
    ``columns``: ``recall`` (best rank-normalised score), a channel answer's own per-item
    ``columns`` (side sources; NaN where it did not recall the item, the last channel's value
    where several did), then ``recall.<channel>`` for every channel (its rank-normalised
    score, 0 where it did not recall the item; the learned rankers read these).
    """
    names = [c.channel for c, _ in answers]
    mg = merge_lists([c.items for c, _ in answers], [q for _, q in answers])
    n, c_all = mg.items.size, len(answers)
    chans = ChannelLists(names, np.bincount(mg.row * c_all + mg.channel, minlength=n * c_all).reshape(n, c_all))
    columns: dict[str, np.ndarray] = {"recall": mg.best}
    sel = [np.flatnonzero(mg.channel == c) for c in range(len(answers))]
    extra: dict[str, np.ndarray] = {}
    for (cand, _), s in zip(answers, sel, strict=True):
        if s.size == 0:
            continue
        for k, v in getattr(cand, "columns", {}).items():  # a channel's own columns (side sources)
            col = extra.setdefault(k, np.full(n, np.nan, np.float32))
            col[mg.row[s]] = np.asarray(v)[mg.rank[s]].astype(np.float32)
    columns.update(extra)
    for name, s in zip(names, sel, strict=True):
        col = columns.setdefault(f"recall.{name}", np.zeros(n, np.float32))
        col[mg.row[s]] = mg.score[s]
    return mg.items, chans, columns


@dataclass
class MergedCandidates:
    """The merged answer of the recall stage. ``items`` ranked by ``scores`` (the served
    ``recall`` score, ties by merged position), at most ``total``.

    ``provenance[item]`` lists ``(channel, rank, score)`` for every channel that returned it
    within its quota (raw channel score; built lazily from the flat ``hits`` arrays: the hot
    path never makes 10k small lists); ``counts`` how many of ``items`` each channel
    contributed (the channel that gave the best score, ties: config order); ``errors``
    failing channels' messages; ``found`` each channel's raw list length; ``timings_ms`` per
    channel and merge.
    """

    items: np.ndarray
    scores: np.ndarray
    hits: dict[str, np.ndarray]
    channels: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    @cached_property
    def provenance(self) -> dict[int, list[tuple[str, int, float]]]:
        h = self.hits
        keep = np.isin(h["item"], self.items)
        order = np.lexsort((h["channel"][keep], h["item"][keep]))
        out: dict[int, list[tuple[str, int, float]]] = {int(i): [] for i in self.items}
        for it, c, r, sc in zip(h["item"][keep][order].tolist(), h["channel"][keep][order].tolist(),
                                h["rank"][keep][order].tolist(), h["score"][keep][order].tolist(), strict=True):
            out[it].append((self.channels[c], r, sc))
        return out

    def report(self) -> dict[str, dict[str, object]]:
        """Per-channel trace: found, contributed, error, ms (empty channels included)."""
        names = sorted(set(self.found) | set(self.errors))
        return {
            n: {"found": self.found.get(n, 0), "contributed": self.counts.get(n, 0),
                "error": self.errors.get(n), "ms": round(self.timings_ms.get(n, 0.0), 3)}
            for n in names
        }


def merge_candidates(
    lists: list[Candidates],
    quotas: dict[str, int],
    total: int,
    drop: np.ndarray | None = None,
) -> MergedCandidates:
    """Merge channel lists under ``quotas`` (name -> max items; absent: 0) with
    :func:`merge_lists`, and keep the ``total`` best by ``recall`` score.

    ``drop`` holds item indices filtered out of every list before the quota cut (seen,
    hidden, blocked authors: :class:`RecallStage` over-fetches for them).
    """
    names = [c.channel for c in lists]
    its, raw = [], []
    for c in lists:
        items, scores = np.asarray(c.items, np.int64), np.asarray(c.scores)
        q = max(0, int(quotas.get(c.channel, 0)))
        if drop is not None and len(drop):
            keep = ~np.isin(items, np.asarray(drop, np.int64))
            items, scores = items[keep], scores[keep]
        its.append(items[:q])
        raw.append(scores[:q])
    mg = merge_lists(its, [len(i) for i in its])
    chosen = np.argsort(-mg.best, kind="stable")[: max(0, int(total))]
    # credit each item to the hit that gave its best score (ties: the earlier hit)
    h = np.lexsort((np.arange(mg.row.size), -mg.score, mg.row))
    first = h[np.r_[True, mg.row[h][1:] != mg.row[h][:-1]]] if h.size else h
    credit = np.empty(mg.items.size, np.int64)
    credit[mg.row[first]] = mg.channel[first]
    counts = dict(zip(names, np.bincount(credit[chosen], minlength=len(names)).tolist(), strict=True))
    hits = {"item": mg.items[mg.row], "channel": mg.channel, "rank": mg.rank,
            "score": np.concatenate(raw).astype(np.float32) if raw else np.empty(0, np.float32)}
    return MergedCandidates(mg.items[chosen], mg.best[chosen], hits, names, counts,
                            {c.channel: len(c) for c in lists}, {c.channel: c.error for c in lists if c.error})


class RecallStage:
    """Channels built from a config ``{name: {"quota": int, **params}}``; ``retrieve`` merges them."""

    def __init__(self, config: dict[str, dict[str, object]] | None = None, overfetch: float = 1.0) -> None:
        config = DEFAULT_CONFIG if config is None else config
        if not config:
            raise ValueError("recall stage: config has no channels")
        self.quotas: dict[str, int] = {}
        self.channels: dict[str, RecallChannel] = {}
        for name, entry in config.items():
            if not isinstance(entry, dict):
                raise ValueError(f"recall stage: config['{name}'] must be a dict with 'quota'")
            params = dict(entry)
            q = params.pop("quota", None)
            if not isinstance(q, int) or isinstance(q, bool) or q < 0:
                raise ValueError(f"recall stage: config['{name}'].quota must be a non-negative int, got {q!r}")
            self.quotas[name] = q
            self.channels[name] = CHANNELS.create(name, **params)
        self.overfetch = float(overfetch)
        self.author: np.ndarray | None = None

    def fit(self, ds: Dataset) -> RecallStage:
        tower = self.channels.get("embedding/two-tower")
        names = sorted(self.channels, key=lambda n: n != "embedding/two-tower")  # the tower first
        for name in names:
            ch = self.channels[name]
            if tower is not None and hasattr(ch, "tower") and getattr(ch, "tower", None) is None:
                ch.tower = tower  # type: ignore[attr-defined]  # explore channels share the trained tower
            ch.fit(ds)
        self.author = ds.item_author.astype(np.int64)
        return self

    def run_channels(self, ctx: UserContext, cold: bool) -> tuple[list[Candidates], dict[str, float]]:
        out, timings = [], {}
        for name, ch in self.channels.items():
            if cold and name not in COLD_START_CHANNELS and len(ctx.history) == 0:
                continue
            t0 = time.perf_counter()
            try:
                c = ch.recall(ctx, int(np.ceil(self.quotas[name] * self.overfetch)))
                if c.channel != name:
                    raise RuntimeError(f"channel returned candidates named {c.channel!r}")
            except Exception as e:  # fail open: one broken channel degrades the feed, never kills it
                c = Candidates.empty(name, error=f"{type(e).__name__}: {e}")
            timings[name] = (time.perf_counter() - t0) * 1e3
            out.append(c)
        return out, timings

    def retrieve(self, ctx: UserContext, total: int = 10_000) -> MergedCandidates:
        """Run every channel, merge under the quotas, filter blocked authors; never raises for a user."""
        if total < 0:
            raise ValueError(f"recall stage: 'total' must be >= 0, got {total}")
        cold = ctx.user is None
        lists, timings = self.run_channels(ctx, cold)
        drop = np.empty(0, np.int64)
        if self.author is not None and len(ctx.blocked_authors):
            drop = np.flatnonzero(np.isin(self.author, np.asarray(ctx.blocked_authors, np.int64)))
        t0 = time.perf_counter()
        merged = merge_candidates(lists, self.quotas, total, drop=drop)
        merged.timings_ms = {**timings, "merge": (time.perf_counter() - t0) * 1e3}
        return merged
