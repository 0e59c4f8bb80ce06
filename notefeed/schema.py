"""The one vocabulary of notefeed: notes, users, creators, events and queries.

These pydantic models validate data at the edges (file loaders, the HTTP API,
the event bus). Inside the engine, data travels as columnar arrays
(:class:`notefeed.data.Dataset`), with these names for the columns.

Ids are strings at the edges (``"n123"``, a Qilin hex id, a MovieLens ``"1"``);
the dataset maps them to dense integer indices for the algorithms.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "EVENT_TYPES",
    "POSITIVE_TYPES",
    "SURFACES",
    "SMALL_CREATOR_FOLLOWERS",
    "MAX_INT",
    "STORED",
    "CONTROL_CHARS",
    "id_problem",
    "EventType",
    "Surface",
    "Note",
    "NoteEdit",
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

#: characters no id may hold (the API's ids and the importer's rows)
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
#: validation context of records read back from this project's own logs: written under older
#: rules, they are accepted as they were stored (the server always starts on what it wrote)
STORED = {"stored": True}


def id_problem(v: str) -> str | None:
    """Why ``v`` cannot be an id written through the API, or None (length is checked apart)."""
    m = CONTROL_CHARS.search(v)
    return None if m is None else f"control character U+{ord(m.group()):04X} at position {m.start()}"


def _no_control(v: str, info: ValidationInfo) -> str:
    problem = id_problem(v)
    if problem is not None and not (info.context or {}).get("stored"):
        raise ValueError(problem)
    return v


#: an id: 1..128 characters, no control characters (they break CSV exports, logs and pages)
_ID = Field(min_length=1, max_length=128)
_Id = Annotated[str, _ID, AfterValidator(_no_control)]

#: The largest integer a JSON number carries exactly; ints beyond it (``2**63``) would also
#: overflow SQLite and numpy int64 after the API had accepted them.
MAX_INT = 2**53
# Strict: ``true`` is not a timestamp and ``"12"`` is not a count; a float field takes ints.
# Finite: NaN / Infinity (and 1e400, which JSON parsers read as Infinity) are refused, since
# a stored NaN fails validation when the log is read back at the next start.
_Int = Annotated[int, Strict()]
_Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Note(_Strict):
    """A user-written note: title, text, tags, taxonomy, media."""

    note_id: _Id
    author_id: _Id
    title: str = Field(default="", max_length=1_000)
    text: str = Field(default="", max_length=100_000)
    tags: list[str] = Field(default_factory=list, max_length=256)
    category: str = Field(default="", max_length=256)
    created_at: _Int = Field(default=0, ge=0, le=MAX_INT, description="unix seconds")
    media: list[str] = Field(default_factory=list, max_length=64, description="media refs (paths/urls)")
    media_vector: list[_Float] | None = Field(default=None, max_length=4096, description="precomputed vector")

    @field_validator("tags")
    @classmethod
    def _tags_nonempty(cls, v: list[str]) -> list[str]:
        out = [t.strip() for t in v]
        if any(not t or len(t) > 128 for t in out):
            raise ValueError("each tag must be 1..128 characters")
        return out


class NoteEdit(_Strict):
    """An edit of a note (``PATCH /v1/notes/{id}``): the fields to change, at least one; the
    id, author, creation time and media stay."""

    title: str | None = Field(default=None, max_length=1_000)
    text: str | None = Field(default=None, max_length=100_000)
    tags: list[str] | None = Field(default=None, max_length=256)
    category: str | None = Field(default=None, max_length=256)

    @field_validator("tags")
    @classmethod
    def _tags_nonempty(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else Note._tags_nonempty(v)

    @model_validator(mode="after")
    def _something(self) -> NoteEdit:
        if not self.changes():
            raise ValueError("give at least one of title, text, tags, category")
        return self

    def changes(self) -> dict[str, object]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class User(_Strict):
    """A user with free-form attributes (age bucket, gender, city...)."""

    user_id: _Id
    attributes: dict[str, str | _Int | _Float] = Field(default_factory=dict, max_length=256)


class Creator(_Strict):
    """A note author; ``followers`` drives the small-creator guarantee."""

    creator_id: _Id
    followers: _Int = Field(default=0, ge=0, le=MAX_INT)


class Event(_Strict):
    """One user action on one note."""

    user_id: _Id
    note_id: _Id
    ts: _Int = Field(ge=0, le=MAX_INT, description="unix seconds")
    type: EventType
    dwell_s: _Float | None = Field(default=None, ge=0, le=86_400)
    position: _Int | None = Field(default=None, ge=0, le=100_000)
    request_id: str | None = Field(default=None, max_length=128)
    surface: Surface = "feed"
    #: the client's id of this event: a retried batch with the same ids is not stored twice
    event_id: str | None = Field(default=None, min_length=1, max_length=128)


class Query(_Strict):
    """One search request (Qilin's search logs)."""

    query_id: _Id
    user_id: _Id
    text: str = Field(min_length=1, max_length=2_000)
    ts: _Int = Field(default=0, ge=0, le=MAX_INT)
    clicked_note_ids: list[str] = Field(default_factory=list)
