"""Per-user online state: seen set, short positive sequence, windowed category counters.

Updated synchronously when the API accepts an event, so the same user's next feed already
reflects it (the seen filter drops the note; the short sequence feeds recall). Two backends
share one contract: :class:`MemoryOnlineState` (embedded default; rebuilt at start-up by
replaying the event log) and :class:`RedisOnlineState` (a set, a list and a hash per user,
shared by several server processes).

Counters use the server's receive time: "what did this user engage with in the last
5 minutes / hour" is a statement about now, whatever timestamp the client sent.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from notefeed.online.events import StateUpdate

__all__ = [
    "UserSnapshot",
    "OnlineState",
    "MemoryOnlineState",
    "RedisOnlineState",
    "WINDOWS",
]

#: Counter windows, name -> seconds.
WINDOWS: dict[str, int] = {"5m": 300, "1h": 3600}


@dataclass
class UserSnapshot:
    """A read of one user's online state. ``short_seq`` is oldest first."""

    user_id: str
    seen: set[str] = field(default_factory=set)
    short_seq: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: {w: {} for w in WINDOWS})
    n_events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "n_seen": len(self.seen),
            "short_seq": list(self.short_seq),
            "counts": {w: dict(c) for w, c in self.counts.items()},
            "n_events": self.n_events,
        }


@runtime_checkable
class OnlineState(Protocol):
    """Apply accepted events; read a user's snapshot."""

    name: str

    def apply(self, updates: Sequence[StateUpdate]) -> None: ...

    def snapshot(self, user_id: str, now: float | None = None) -> UserSnapshot: ...

    def forget(self, user_id: str) -> None:
        """Drop everything held about ``user_id`` (an erased user)."""
        ...

    def close(self) -> None: ...


def _window_counts(recent: Sequence[tuple[float, str]], now: float) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {w: {} for w in WINDOWS}
    for at, cat in recent:
        age = now - at
        for w, secs in WINDOWS.items():
            if age <= secs:
                out[w][cat] = out[w].get(cat, 0) + 1
    return out


class _UserRow:
    __slots__ = ("seen", "seq", "recent", "n_events")

    def __init__(self, seq_len: int) -> None:
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.seq: deque[str] = deque(maxlen=seq_len)
        self.recent: deque[tuple[float, str]] = deque()
        self.n_events = 0


class MemoryOnlineState:
    """In-process state. Bounded: ``max_seen`` most recent seen notes per user, the last
    ``seq_len`` positives, positive (time, category) pairs of the longest window only."""

    name = "memory"

    def __init__(self, seq_len: int = 50, max_seen: int = 5000, max_users: int = 1_000_000) -> None:
        if seq_len < 1 or max_seen < 1:
            raise ValueError("seq_len and max_seen must be >= 1")
        self.seq_len, self.max_seen, self.max_users = seq_len, max_seen, max_users
        self._users: OrderedDict[str, _UserRow] = OrderedDict()
        self._lock = threading.Lock()
        self._horizon = max(WINDOWS.values())

    def apply(self, updates: Sequence[StateUpdate]) -> None:
        with self._lock:
            for up in updates:
                row = self._users.get(up.user_id)
                if row is None:
                    row = self._users[up.user_id] = _UserRow(self.seq_len)
                    if len(self._users) > self.max_users:  # evict the least recently active user
                        self._users.popitem(last=False)
                else:
                    self._users.move_to_end(up.user_id)
                row.n_events += 1
                row.seen[up.note_id] = None
                row.seen.move_to_end(up.note_id)
                if len(row.seen) > self.max_seen:
                    row.seen.popitem(last=False)
                if up.positive:
                    row.seq.append(up.note_id)
                    row.recent.append((up.at, up.category))
                while row.recent and up.at - row.recent[0][0] > self._horizon:
                    row.recent.popleft()

    def snapshot(self, user_id: str, now: float | None = None) -> UserSnapshot:
        now = time.time() if now is None else now
        with self._lock:
            row = self._users.get(user_id)
            if row is None:
                return UserSnapshot(user_id)
            return UserSnapshot(
                user_id,
                seen=set(row.seen),
                short_seq=list(row.seq),
                counts=_window_counts(list(row.recent), now),
                n_events=row.n_events,
            )

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._users.pop(user_id, None)

    def n_users(self) -> int:
        return len(self._users)

    def close(self) -> None:
        pass


class RedisOnlineState:
    """State in Redis: per user a set (seen), a list (short sequence, newest first),
    and a hash of positive counts keyed ``category|minute`` (old minutes pruned on write).

    Keys: ``{prefix}:u:{user}:seen`` / ``:seq`` / ``:cnt`` / ``:n``.
    """

    name = "redis"

    def __init__(self, client: Any, prefix: str = "nf", seq_len: int = 50, max_seen: int = 5000) -> None:
        self.r, self.prefix, self.seq_len, self.max_seen = client, prefix, seq_len, max_seen

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> RedisOnlineState:
        import redis

        return cls(redis.Redis.from_url(url, decode_responses=True), **kw)

    def _k(self, user_id: str, what: str) -> str:
        return f"{self.prefix}:u:{user_id}:{what}"

    def apply(self, updates: Sequence[StateUpdate]) -> None:
        if not updates:
            return
        p = self.r.pipeline(transaction=True)
        touched = self.queue_apply(p, updates)
        p.execute()
        self.prune(touched)

    def queue_apply(self, pipeline: Any, updates: Sequence[StateUpdate]) -> dict[str, float]:
        """Queue the writes of ``updates`` on ``pipeline`` (a transaction that may also hold the
        events' ``XADD``); returns the users touched with their latest time, for :meth:`prune`."""
        touched: dict[str, float] = {}
        for up in updates:
            pipeline.sadd(self._k(up.user_id, "seen"), up.note_id)
            pipeline.incr(self._k(up.user_id, "n"))
            if up.positive:
                pipeline.lpush(self._k(up.user_id, "seq"), up.note_id)
                pipeline.ltrim(self._k(up.user_id, "seq"), 0, self.seq_len - 1)
                pipeline.hincrby(self._k(up.user_id, "cnt"), f"{up.category}|{int(up.at // 60)}", 1)
            touched[up.user_id] = max(touched.get(up.user_id, 0.0), up.at)
        return touched

    def prune(self, touched: dict[str, float]) -> None:
        """Housekeeping after a write: counter minutes past the longest window, seen sets over
        ``max_seen``. Not part of the write's transaction (losing it to a kill loses nothing)."""
        horizon_min = max(WINDOWS.values()) // 60
        # prune counter minutes past the longest window; cheap because hashes stay small
        for uid, at in touched.items():
            key = self._k(uid, "cnt")
            old = [f for f in self.r.hkeys(key) if int(f.rsplit("|", 1)[1]) < int(at // 60) - horizon_min - 1]
            if old:
                self.r.hdel(key, *old)
            if self.r.scard(self._k(uid, "seen")) > self.max_seen:
                self.r.spop(self._k(uid, "seen"), self.r.scard(self._k(uid, "seen")) - self.max_seen)

    def snapshot(self, user_id: str, now: float | None = None) -> UserSnapshot:
        now = time.time() if now is None else now
        p = self.r.pipeline(transaction=False)
        p.smembers(self._k(user_id, "seen"))
        p.lrange(self._k(user_id, "seq"), 0, -1)
        p.hgetall(self._k(user_id, "cnt"))
        p.get(self._k(user_id, "n"))
        seen, seq, cnt, n = p.execute()
        counts: dict[str, dict[str, int]] = {w: {} for w in WINDOWS}
        for fld, val in cnt.items():
            cat, minute = fld.rsplit("|", 1)
            # a minute bucket counts when its start lies inside the window (minute resolution)
            age = now - int(minute) * 60
            for w, secs in WINDOWS.items():
                if age <= secs:
                    counts[w][cat] = counts[w].get(cat, 0) + int(val)
        return UserSnapshot(user_id, set(seen), list(reversed(seq)), counts, int(n or 0))

    def forget(self, user_id: str) -> None:
        self.r.delete(*(self._k(user_id, w) for w in ("seen", "seq", "cnt", "n")))

    def close(self) -> None:
        self.r.close()
