"""Multi-channel recall with per-channel quotas ("multi-queue protection") and provenance.

Each channel has a quota: the most items it may contribute. The merge interleaves the
channels' lists (one item per channel per turn, or in proportion to the quotas), so a
channel with huge scores can never crowd out another, and a channel that runs dry leaves
its turns to the others. Every channel that found an item is kept in its provenance.
A channel that raises is caught and reported with its error (fail open).

Config, one entry per channel (quota plus the channel's own params)::

    {"item-to-item/swing": {"quota": 2000, "top_n": 100},
     "non-personalized/popular": {"quota": 500}}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from notefeed.data.dataset import Dataset
from notefeed.recall.base import CHANNELS, Candidates, RecallChannel, UserContext

__all__ = ["MergedCandidates", "RecallStage", "merge_candidates", "DEFAULT_CONFIG", "COLD_START_CHANNELS"]

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


@dataclass
class MergedCandidates:
    """The merged answer. ``items`` in fill order; ``scores`` reciprocal-rank fusion over channels.

    ``provenance[item]`` lists ``(channel, rank, score)`` for every channel that returned it
    (built lazily from the flat ``hits`` arrays: the hot path never makes 10k small lists);
    ``counts`` how many items each channel contributed; ``errors`` failing channels'
    messages; ``found`` each channel's raw list length; ``timings_ms`` per channel and merge.
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
    fill: str = "round-robin",
) -> MergedCandidates:
    """Merge channel lists under ``quotas`` (name -> max items) up to ``total`` items.

    Each item is credited to the channel that ranks it best (ties: config order); a channel
    keeps its first ``quota`` credited items, and items it had to give up pass to the next
    channel that found them. The kept items are interleaved: ``fill="round-robin"`` one per
    channel per turn, ``"quota"`` in proportion to the quotas; the first ``total`` are returned.
    ``drop`` holds item indices to filter out (seen, hidden, blocked authors).
    """
    if fill not in ("round-robin", "quota"):
        raise ValueError(f"merge: 'fill' must be 'round-robin' or 'quota', got {fill!r}")
    names = [c.channel for c in lists]
    n_ch = len(lists)
    lens = np.array([len(c) for c in lists], np.int64)
    item = np.concatenate([c.items for c in lists]) if n_ch else np.empty(0, np.int64)
    ch = np.repeat(np.arange(n_ch), lens)
    rank = np.concatenate([np.arange(n) for n in lens]) if n_ch else np.empty(0, np.int64)
    score = np.concatenate([c.scores for c in lists]) if n_ch else np.empty(0, np.float32)
    if drop is not None and len(drop):
        keep = ~np.isin(item, np.asarray(drop, np.int64))
        item, ch, rank, score = item[keep], ch[keep], rank[keep], score[keep]
    hits = {"item": item, "channel": ch, "rank": rank, "score": score}
    cap = np.array([max(0, int(quotas.get(n, 0))) for n in names], np.int64)
    left = cap.copy()
    open_ = np.ones(item.size, bool)
    won_item, won_ch, won_rank = [], [], []
    # claims: each pass credits every unclaimed item to its best-ranking channel with quota left
    for _ in range(n_ch + 1):
        idx = np.flatnonzero(open_ & (left[ch] > 0))
        if idx.size == 0:
            break
        idx = idx[np.lexsort((ch[idx], rank[idx]))]
        _, first = np.unique(item[idx], return_index=True)
        idx = idx[np.sort(first)]
        idx = idx[np.lexsort((rank[idx], ch[idx]))]
        pos = _run_rank(ch[idx])
        win = idx[pos < left[ch[idx]]]
        if win.size == 0:
            break
        won_item.append(item[win])
        won_ch.append(ch[win])
        won_rank.append(rank[win])
        left -= np.bincount(ch[win], minlength=n_ch)
        open_ &= ~np.isin(item, item[win])
    if won_item:
        w_item, w_ch, w_rank = np.concatenate(won_item), np.concatenate(won_ch), np.concatenate(won_rank)
    else:
        w_item = w_ch = w_rank = np.empty(0, np.int64)
    o = np.lexsort((w_rank, w_ch))
    w_item, w_ch = w_item[o], w_ch[o]
    turn = _run_rank(w_ch).astype(np.float64)
    if fill == "quota":
        turn = (turn + 0.5) / np.maximum(cap[w_ch], 1)
    o = np.lexsort((w_ch, turn))[: max(0, int(total))]
    chosen, chosen_ch = w_item[o], w_ch[o]
    # reciprocal-rank fusion over every channel that found the item
    uniq, inv = np.unique(item, return_inverse=True)
    rrf = np.zeros(uniq.size)
    np.add.at(rrf, inv, 1.0 / (60.0 + rank))
    scores = rrf[np.searchsorted(uniq, chosen)].astype(np.float32) if chosen.size else np.empty(0, np.float32)
    counts = dict(zip(names, np.bincount(chosen_ch, minlength=n_ch).tolist(), strict=True))
    return MergedCandidates(chosen.astype(np.int64), scores, hits, names, counts,
                            {c.channel: len(c) for c in lists}, {c.channel: c.error for c in lists if c.error})


def _run_rank(keys: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal ``keys`` (keys grouped)."""
    n = keys.size
    if n == 0:
        return np.empty(0, np.int64)
    start = np.r_[True, keys[1:] != keys[:-1]]
    return np.arange(n) - np.maximum.accumulate(np.where(start, np.arange(n), 0))


class RecallStage:
    """Channels built from a config ``{name: {"quota": int, **params}}``; ``retrieve`` merges them."""

    def __init__(self, config: dict[str, dict[str, object]] | None = None, fill: str = "round-robin",
                 overfetch: float = 1.0) -> None:
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
        self.fill, self.overfetch = fill, float(overfetch)
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
        merged = merge_candidates(lists, self.quotas, total, drop=drop, fill=self.fill)
        merged.timings_ms = {**timings, "merge": (time.perf_counter() - t0) * 1e3}
        return merged
