"""The record the online stage moves around: one accepted event, as stored.

The HTTP API validates :class:`notefeed.schema.Event`; once accepted, an event becomes an
:class:`EventRecord` with the server's receive time, which is what the bus stores and
what the windowed counters use (clients' clocks and simulator timestamps may be anything).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from notefeed.schema import EVENT_TYPES, POSITIVE_TYPES, Event

__all__ = ["EventRecord", "StateUpdate"]

_POSITIVE = frozenset(POSITIVE_TYPES)


@dataclass(frozen=True)
class EventRecord:
    """One accepted event. ``received_at`` is server unix time in seconds (float)."""

    user_id: str
    note_id: str
    ts: int
    type: str
    received_at: float
    dwell_s: float | None = None
    position: int | None = None
    request_id: str | None = None
    surface: str = "feed"
    #: the client's id for idempotent retries (None: not given)
    event_id: str | None = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"EventRecord: unknown type {self.type!r} (field 'type')")

    @classmethod
    def from_event(cls, ev: Event, received_at: float) -> EventRecord:
        return cls(
            user_id=ev.user_id,
            note_id=ev.note_id,
            ts=ev.ts,
            type=ev.type,
            received_at=received_at,
            dwell_s=ev.dwell_s,
            position=ev.position,
            request_id=ev.request_id,
            surface=ev.surface,
            event_id=ev.event_id,
        )

    @property
    def positive(self) -> bool:
        return self.type in _POSITIVE

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class StateUpdate:
    """What the online state needs from one event: who, what, which category, when."""

    user_id: str
    note_id: str
    type: str
    category: str
    at: float

    @property
    def positive(self) -> bool:
        return self.type in _POSITIVE
