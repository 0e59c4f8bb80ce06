"""notefeed.online: the event bus (SQLite WAL or Redis Streams) and per-user online state
(seen set, short sequence, windowed category counters; memory or Redis)."""

from notefeed.online.bus import EventBus, RedisEventBus, SideEffects, SqliteEventBus, open_bus
from notefeed.online.events import EventRecord, StateUpdate
from notefeed.online.state import WINDOWS, MemoryOnlineState, OnlineState, RedisOnlineState, UserSnapshot

__all__ = [
    "EventBus",
    "SqliteEventBus",
    "RedisEventBus",
    "SideEffects",
    "open_bus",
    "EventRecord",
    "StateUpdate",
    "OnlineState",
    "MemoryOnlineState",
    "RedisOnlineState",
    "UserSnapshot",
    "WINDOWS",
]
