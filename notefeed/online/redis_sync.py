"""Keeping the Redis online state in step with the Redis event stream.

An accepted batch is two writes: ``XADD`` to the stream (the record) and the per-user state
updates. Done one after the other, a kill between them leaves events in the stream that the
state never saw, and nothing at start-up would notice. So:

- :func:`append_and_apply`: both writes, plus a counter of stream entries folded into the
  state (``{stream}:applied``), in one ``MULTI/EXEC`` when stream and state live on the same
  Redis server (all or nothing); on two servers, the stream first, then the state and counter
  in one transaction.
- :func:`catch_up` at start-up: the stream entries past the counter are folded into the state
  (optimistic ``WATCH`` on the counter, so two servers starting together do not both apply
  them). After an atomic append there are none; they come from a kill between the two writes
  on two servers, or from a stream written by an older notefeed without the counter.
- :func:`erase`: an erasure's ``XDEL`` of a user's entries. The counter counts positions, and
  the stream's newest ``added - applied`` entries are the ones not applied yet. A deleted entry
  among them will never be applied, so the counter counts it as done (else :func:`catch_up`
  would start that many entries early and apply entries of other users twice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

from notefeed.online.bus import RedisEventBus
from notefeed.online.events import EventRecord, StateUpdate
from notefeed.online.state import RedisOnlineState

__all__ = ["append_and_apply", "applied_key", "catch_up", "erase", "same_server"]

log = logging.getLogger(__name__)

_CHUNK = 1000


def applied_key(bus: RedisEventBus) -> str:
    """The counter of stream entries the online state has applied."""
    return f"{bus.stream}:applied"


def _where(client: Any) -> tuple[Any, ...]:
    kw = client.connection_pool.connection_kwargs
    return kw.get("host"), kw.get("port"), kw.get("path"), kw.get("db", 0)


def same_server(bus: Any, state: Any) -> bool:
    """Whether ``bus`` and ``state`` are a Redis stream and state on one server and database
    (then one transaction can hold both writes)."""
    if not isinstance(bus, RedisEventBus) or not isinstance(state, RedisOnlineState):
        return False
    try:
        return _where(bus.r) == _where(state.r)
    except AttributeError:  # a client without a connection pool (a fake): not provably one server
        return False


def append_and_apply(bus: RedisEventBus, state: RedisOnlineState, recs: Sequence[EventRecord],
                     updates: Sequence[StateUpdate]) -> None:
    """Store ``recs`` in the stream and fold ``updates`` (theirs) into the state, counting the
    entries as applied; one ``MULTI/EXEC`` when both are on one server."""
    if not recs:
        return
    if same_server(bus, state):
        p = bus.r.pipeline(transaction=True)
        bus.queue_append(p, recs)
    else:
        bus.append(recs)
        p = state.r.pipeline(transaction=True)
    touched = state.queue_apply(p, updates)
    p.incrby(applied_key(bus), len(recs))
    p.execute()
    state.prune(touched)


def _stream_totals(bus: RedisEventBus) -> tuple[int, int]:
    """(entries ever added, entries still in the stream); a trimmed stream has fewer."""
    import redis

    try:
        info = bus.r.xinfo_stream(bus.stream)
    except redis.ResponseError:  # no such key: nothing was ever appended
        return 0, 0
    length = int(info["length"])
    return int(info.get("entries-added", length)), length  # entries-added: Redis >= 7


def _legacy_state(bus: RedisEventBus, state: RedisOnlineState, added: int) -> bool:
    """A state without a counter but with users was written by a notefeed that did not
    count: take it as caught up (counted from now on) rather than apply the stream twice."""
    key = applied_key(bus)
    if not added or state.r.exists(key):
        return False
    if next(iter(state.r.scan_iter(match=f"{state.prefix}:u:*", count=1000)), None) is None:
        return False
    log.warning("online state %r has no applied-events counter: taken as caught up with the %d "
                "stream entries", state.prefix, added)
    return bool(state.r.set(key, added, nx=True))


def catch_up(bus: RedisEventBus, state: RedisOnlineState,
             updates_of: Callable[[Sequence[EventRecord]], list[StateUpdate]]) -> int:
    """Fold the stream entries the state has not applied into it, in chunks of one
    transaction each; return how many. A chunk is applied only while the counter still says
    what it said when the chunk was read (``WATCH``); otherwise the positions are read again."""
    import redis

    key = applied_key(bus)
    done = 0
    while True:
        added, length = _stream_totals(bus)
        if _legacy_state(bus, state, added):
            return done
        applied = int(state.r.get(key) or 0)
        if applied >= added:
            return done
        skip = applied - (added - length)  # position in the (possibly trimmed) stream
        if skip < 0:
            log.warning("%d stream entries were trimmed before the online state applied them", -skip)
            state.r.set(key, added - length)
            continue
        entries = islice(bus.replay(), skip, skip + added - applied)  # one pass over the stream
        moved = False
        while not moved:
            chunk = list(islice(entries, _CHUNK))
            if not chunk:
                return done
            with state.r.pipeline(transaction=True) as p:
                try:
                    p.watch(key)
                    if int(p.get(key) or 0) != applied:  # another server moved it: read again
                        moved = True
                        continue
                    p.multi()
                    touched = state.queue_apply(p, updates_of(chunk))
                    p.incrby(key, len(chunk))
                    p.execute()
                except redis.WatchError:
                    moved = True
                    continue
            state.prune(touched)
            applied += len(chunk)
            done += len(chunk)


def _unapplied(bus: RedisEventBus, applied: int, ids: Sequence[str]) -> int:
    """How many of ``ids`` are among the stream's newest ``added - applied`` entries (those the
    state has not applied)."""
    lag = _stream_totals(bus)[0] - applied
    if lag <= 0:
        return 0
    pending = {entry_id for entry_id, _ in bus.r.xrevrange(bus.stream, "+", "-", count=lag)}
    return sum(1 for i in ids if i in pending)


def erase(bus: RedisEventBus, state: RedisOnlineState, user_id: str, until: float) -> int:
    """Delete ``user_id``'s stream entries received up to ``until`` (as
    :meth:`RedisEventBus.erase`) and count those the state had not applied as applied; returns
    how many were deleted. On one server the deletion and the count are one transaction,
    ``WATCH``-ed on the counter (an ingest or a catch-up in between: look again). On two, the
    stream goes first, then the count (an ``INCRBY``, which concurrent ingests' counts commute
    with); a kill between the two leaves the count short as before this function, and a
    catch-up starting on another server during the erasure is not guarded against."""
    import redis

    gone = bus.entry_ids_of(user_id, until)
    if not gone:
        return 0
    key = applied_key(bus)
    if not same_server(bus, state):
        unapplied = _unapplied(bus, int(state.r.get(key) or 0), gone)
        bus.delete(gone)
        if unapplied:
            state.r.incrby(key, unapplied)
        return len(gone)
    while True:
        with state.r.pipeline(transaction=True) as p:
            try:
                p.watch(key)
                unapplied = _unapplied(bus, int(p.get(key) or 0), gone)
                p.multi()
                bus.delete(gone, p)
                if unapplied:
                    p.incrby(key, unapplied)
                p.execute()
                return len(gone)
            except redis.WatchError:
                continue
