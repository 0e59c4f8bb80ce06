"""The one vocabulary of notefeed: notes, users, creators, events and queries.

These pydantic models validate data at the edges (file loaders, the HTTP API,
the event bus). Inside the engine, data travels as columnar arrays
(:class:`notefeed.data.Dataset`), with these names for the columns.

Ids are strings at the edges (``"n123"``, a Qilin hex id, a MovieLens ``"1"``);
the dataset maps them to dense integer indices for the algorithms.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "EVENT_TYPES",
    "POSITIVE_TYPES",
    "SURFACES",
    "SMALL_CREATOR_FOLLOWERS",
    "EventType",
    "Surface",
    "Note",
    "User",
    "Creator",
    "Event",
    "Query",
]

#: Every event type, in funnel order. ``impression`` is an exposure; ``hide`` a negative.
EVENT_TYPES: tuple[str, ...] = (
    "impression",
    "click",
    "like",
    "collect",
    "comment",
    "share",
    "follow",
    "hide",
)
#: Types that count as positive engagement for recall training and metrics.
POSITIVE_TYPES: tuple[str, ...] = ("click", "like", "collect", "comment", "share", "follow")
SURFACES: tuple[str, ...] = ("feed", "search", "related")
#: Xiaohongshu's stated principle: creators under this many followers are "small".
SMALL_CREATOR_FOLLOWERS = 1000

EventType = Literal["impression", "click", "like", "collect", "comment", "share", "follow", "hide"]
Surface = Literal["feed", "search", "related"]

_ID = Field(min_length=1, max_length=128)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Note(_Strict):
    """A user-written note: title, text, tags, taxonomy, media."""

    note_id: str = _ID
    author_id: str = _ID
    title: str = Field(default="", max_length=1_000)
    text: str = Field(default="", max_length=100_000)
    tags: list[str] = Field(default_factory=list, max_length=256)
    category: str = Field(default="", max_length=256)
    created_at: int = Field(default=0, ge=0, description="unix seconds")
    media: list[str] = Field(default_factory=list, max_length=64, description="media refs (paths/urls)")
    media_vector: list[float] | None = Field(default=None, max_length=4096, description="precomputed vector")

    @field_validator("tags")
    @classmethod
    def _tags_nonempty(cls, v: list[str]) -> list[str]:
        out = [t.strip() for t in v]
        if any(not t or len(t) > 128 for t in out):
            raise ValueError("each tag must be 1..128 characters")
        return out


class User(_Strict):
    """A user with free-form attributes (age bucket, gender, city...)."""

    user_id: str = _ID
    attributes: dict[str, str | int | float] = Field(default_factory=dict, max_length=256)


class Creator(_Strict):
    """A note author; ``followers`` drives the small-creator guarantee."""

    creator_id: str = _ID
    followers: int = Field(default=0, ge=0)


class Event(_Strict):
    """One user action on one note."""

    user_id: str = _ID
    note_id: str = _ID
    ts: int = Field(ge=0, description="unix seconds")
    type: EventType
    dwell_s: float | None = Field(default=None, ge=0, le=86_400)
    position: int | None = Field(default=None, ge=0, le=100_000)
    request_id: str | None = Field(default=None, max_length=128)
    surface: Surface = "feed"


class Query(_Strict):
    """One search request (Qilin's search logs)."""

    query_id: str = _ID
    user_id: str = _ID
    text: str = Field(min_length=1, max_length=2_000)
    ts: int = Field(default=0, ge=0)
    clicked_note_ids: list[str] = Field(default_factory=list)
