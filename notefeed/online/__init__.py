"""notefeed.online: the event bus (SQLite WAL or Redis Streams) and per-user online state
(seen set, short sequence, windowed category counters; memory or Redis).

Heavier modules are imported by name, so serving the bus does not load torch:
``notefeed.online.coldstart`` (new-note pool: seed audience, look-alike, Thompson-sampling
boost, hand-over), ``notefeed.online.bandit`` (its kernels) and ``notefeed.online.trainer``
(``OnlineTrainer``: streaming label join, incremental updates of the fine ranker with growing
embedding tables, hot-swapped versions; its simulator study is
``notefeed.sim.online_train.compare_update_modes``)."""

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
