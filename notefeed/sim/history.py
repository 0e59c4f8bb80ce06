"""Logged history of a simulated community: a logging policy shows pages, users react.

The logging policy mixes popular notes, notes of followed creators and random notes (all
created before the request). Requests are processed in batches of users, all vectorised; every
request of a user falls in one batch, so repeated exposures are counted exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from notefeed.schema import EVENT_TYPES, SURFACES
from notefeed.sim.behaviour import ACTIONS, sample_reactions
from notefeed.sim.world import World

__all__ = ["LoggingPolicy", "log_requests", "EventArrays", "events_frame", "same_topic_before"]

_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}


@dataclass(frozen=True)
class LoggingPolicy:
    """Share of page slots filled from each source (normalised)."""

    popular: float = 0.4
    followed: float = 0.3
    random: float = 0.3


@dataclass
class EventArrays:
    """Columnar events before they become a frame (all (n,) arrays)."""

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    code: np.ndarray  # int8 index into EVENT_TYPES
    dwell_s: np.ndarray
    position: np.ndarray
    request: np.ndarray  # int64 request number

    @staticmethod
    def concat(parts: list[EventArrays]) -> EventArrays:
        if not parts:
            z = np.zeros(0)
            return EventArrays(z.astype(np.int32), z.astype(np.int32), z.astype(np.int64), z.astype(np.int8),
                               z.astype(np.float32), z.astype(np.int32), z.astype(np.int64))
        return EventArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                             ("user", "item", "ts", "code", "dwell_s", "position", "request")))

    def __len__(self) -> int:
        return len(self.user)


def same_topic_before(topics: np.ndarray) -> np.ndarray:
    """(R, P) count of earlier positions on the same page with the same topic; ``topics`` (R, P)."""
    p = topics.shape[1]
    eq = topics[:, :, None] == topics[:, None, :]
    return (eq & np.tri(p, p, -1, dtype=bool)[None]).sum(axis=2).astype(np.float32)


def reactions_to_events(rng: np.random.Generator, world: World, users: np.ndarray, items: np.ndarray,
                        ts: np.ndarray, position: np.ndarray, request: np.ndarray, affinity: np.ndarray,
                        n_seen: np.ndarray, n_same: np.ndarray) -> EventArrays:
    """Impression events for (n,) shown items plus the sampled clicks, actions and hides."""
    params = world.config.behaviour
    q = world.note_quality[items]
    r = sample_reactions(rng, affinity, q, position, n_seen, n_same, params)
    imp_ts = ts + position.astype(np.int64) * 2
    parts_idx = [np.arange(len(items))]
    codes = [np.full(len(items), _CODE["impression"], np.int8)]
    tss = [imp_ts]
    dwell = [np.full(len(items), np.nan, np.float32)]
    ci = np.flatnonzero(r.click)
    parts_idx.append(ci)
    codes.append(np.full(len(ci), _CODE["click"], np.int8))
    tss.append(imp_ts[ci] + 1)
    dwell.append(r.dwell_s[ci])
    after = imp_ts + 1 + np.nan_to_num(r.dwell_s, nan=0.0).astype(np.int64)
    for j, act in enumerate(ACTIONS):
        ai = np.flatnonzero(r.actions[:, j])
        parts_idx.append(ai)
        codes.append(np.full(len(ai), _CODE[act], np.int8))
        tss.append(after[ai])
        dwell.append(np.full(len(ai), np.nan, np.float32))
    hi = np.flatnonzero(r.hide)
    parts_idx.append(hi)
    codes.append(np.full(len(hi), _CODE["hide"], np.int8))
    tss.append(imp_ts[hi] + 1)
    dwell.append(np.full(len(hi), np.nan, np.float32))
    idx = np.concatenate(parts_idx)
    return EventArrays(users[idx].astype(np.int32), items[idx].astype(np.int32), np.concatenate(tss),
                       np.concatenate(codes), np.concatenate(dwell), position[idx].astype(np.int32),
                       request[idx].astype(np.int64))


def _user_batches(users: np.ndarray, batch_requests: int) -> Iterator[np.ndarray]:
    """Slices of request indices (sorted by user) that never split a user's requests."""
    order = np.argsort(users, kind="stable")
    su = users[order]
    start = 0
    n = len(order)
    while start < n:
        stop = min(start + batch_requests, n)
        if stop < n:  # extend to the end of the current user
            stop = int(np.searchsorted(su, su[stop - 1], side="right"))
        yield order[start:stop]
        start = stop


def log_requests(world: World, users: np.ndarray, ts: np.ndarray, seed: int,
                 policy: LoggingPolicy = LoggingPolicy(), batch_requests: int = 20_000,
                 progress: Callable[[int], None] | None = None) -> EventArrays:
    """Serve one page per request (``users``/``ts`` are (R,)) and sample the reactions.

    ``progress`` is an optional callable(n_requests_done) for CLI progress bars.
    """
    rng = np.random.default_rng(seed)
    cfg = world.config
    page = cfg.page_size
    created = world.note_created_at
    ts = np.maximum(ts, created[0] + 1)
    pop_w = world.note_quality.astype(np.float64) ** 2 * world.creator_followers[world.note_creator] ** 0.3
    pop_cum = np.cumsum(pop_w)
    by_creator = np.argsort(world.note_creator, kind="stable")  # time order within a creator
    ckey = world.note_creator[by_creator].astype(np.int64) << 40 | created[by_creator]
    cstart = np.searchsorted(world.note_creator[by_creator], np.arange(world.n_creators))
    share = np.array([policy.popular, policy.followed, policy.random], float)
    share_cum = np.cumsum(share / share.sum())
    s_w = cfg.behaviour.short_weight
    out: list[EventArrays] = []
    for rows in _user_batches(users, batch_requests):
        u, t = users[rows], ts[rows]
        r = len(rows)
        n_avail = np.searchsorted(created, t, side="right")  # notes are in time order
        src = np.searchsorted(share_cum, rng.random((r, page)))
        # random
        items = (rng.random((r, page)) * n_avail[:, None]).astype(np.int64)
        # popular among available
        pi = np.searchsorted(pop_cum, rng.random((r, page)) * pop_cum[n_avail - 1][:, None], side="right")
        items = np.where(src == 0, np.minimum(pi, n_avail[:, None] - 1), items)
        # followed creators' available notes
        nf = (world.follow_indptr[u + 1] - world.follow_indptr[u])[:, None]
        pick = world.follow_indptr[u][:, None] + (rng.random((r, page)) * nf).astype(np.int64)
        fc = world.follow_creator[np.minimum(pick, len(world.follow_creator) - 1)] if len(world.follow_creator) \
            else np.zeros((r, page), np.int32)
        end = np.searchsorted(ckey, fc.astype(np.int64) << 40 | t[:, None], side="right")
        cnt = end - cstart[fc]
        fi = by_creator[np.minimum(cstart[fc] + (rng.random((r, page)) * cnt).astype(np.int64), len(by_creator) - 1)]
        items = np.where((src == 1) & (nf > 0) & (cnt > 0), fi, items)
        for _ in range(2):  # replace repeats within a page by random notes
            srt = np.sort(items, axis=1)
            if not (srt[:, 1:] == srt[:, :-1]).any():
                break
            dup = np.zeros_like(items, bool)
            for j in range(1, page):
                dup[:, j] = (items[:, :j] == items[:, j : j + 1]).any(axis=1)
            items = np.where(dup, (rng.random((r, page)) * n_avail[:, None]).astype(np.int64), items)
        # short-term interest: mostly a draw from the user's interests, sometimes the initial one
        cdf = np.cumsum(world.user_interest[u], axis=1)
        draw = np.minimum((cdf < rng.random(r)[:, None]).sum(axis=1), cfg.n_topics - 1)
        short = np.where(rng.random(r) < 0.6, draw, world.user_short_topic[u])
        ueff = (1 - s_w) * world.user_long[u] + s_w * world.topic_vecs[short]
        ueff /= np.linalg.norm(ueff, axis=1, keepdims=True)
        aff = np.einsum("rd,rpd->rp", ueff, world.note_vec[items])
        n_same = same_topic_before(world.note_topic[items])
        # repeated exposures across this user's earlier requests
        flat_u = np.repeat(u, page).astype(np.int64)
        flat_i = items.ravel()
        flat_t = np.repeat(t, page)
        key = flat_u * world.n_notes + flat_i
        o = np.lexsort((flat_t, key))
        ks = key[o]
        first = np.r_[True, ks[1:] != ks[:-1]]
        grp_start = np.maximum.accumulate(np.where(first, np.arange(len(ks)), 0))
        n_seen = np.empty(len(ks), np.float32)
        n_seen[o] = np.arange(len(ks)) - grp_start
        pos = np.tile(np.arange(page, dtype=np.int32), r)
        req = np.repeat(rows.astype(np.int64), page)
        out.append(reactions_to_events(rng, world, flat_u, flat_i, flat_t, pos, req, aff.ravel(),
                                       n_seen, n_same.ravel()))
        if progress is not None:
            progress(r)
    return EventArrays.concat(out)


def events_frame(ev: EventArrays, request_prefix: str | None = None) -> pd.DataFrame:
    """Sort by (ts, user) and build the :class:`~notefeed.data.Dataset` events frame.

    With ``request_prefix``, a ``request_id`` string column ``f"{prefix}{request}"`` is added.
    """
    o = np.lexsort((ev.user, ev.ts))
    frame = pd.DataFrame(
        {
            "user": ev.user[o],
            "item": ev.item[o],
            "ts": ev.ts[o],
            "type": pd.Categorical.from_codes(ev.code[o], categories=list(EVENT_TYPES)),
            "dwell_s": ev.dwell_s[o],
            "position": ev.position[o],
            "surface": pd.Categorical.from_codes(np.zeros(len(o), np.int8), categories=list(SURFACES)),
        }
    )
    if request_prefix is not None:
        req = ev.request[o]
        lo = int(req.min()) if len(req) else 0
        hi = int(req.max()) + 1 if len(req) else 0
        # request numbers are dense (one per page served): name each once, then gather
        names = np.array([f"{request_prefix}{r}" for r in range(lo, hi)], dtype=object)
        frame["request_id"] = pd.array(names[req - lo], dtype="string")
    return frame
