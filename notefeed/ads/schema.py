"""Advertisers, campaigns, ads and bid keywords: validated pydantic models.

Money is in the account currency (floats, finite, >= 0); times are UNIX seconds. A campaign
bids per click (``cpc``: ``bid`` is the max CPC) or optimises conversions (``ocpc``: ``bid``
is the target cost per conversion; the auction bids ``bid x pCVR`` per click). Errors name
the field (pydantic's ``loc``), e.g. ``campaigns.daily_budget: must be finite``.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["Advertiser", "Targeting", "Campaign", "Keyword", "Ad", "MATCH_TYPES", "ID_PATTERN"]

MATCH_TYPES = ("exact", "phrase", "broad")
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_ID = re.compile(ID_PATTERN)


def _finite(v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Advertiser(_Model):
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    balance: float = Field(default=0.0, ge=0.0)

    @field_validator("balance")
    @classmethod
    def _fin(cls, v: float) -> float:
        return _finite(v)  # type: ignore[return-value]


class Targeting(_Model):
    """Empty lists target everyone; ages are inclusive bounds."""

    categories: list[str] = Field(default_factory=list, max_length=100)
    interests: list[str] = Field(default_factory=list, max_length=100)
    age_min: int = Field(default=13, ge=13, le=120)
    age_max: int = Field(default=120, ge=13, le=120)

    @model_validator(mode="after")
    def _ages(self) -> Targeting:
        if self.age_min > self.age_max:
            raise ValueError(f"age_min ({self.age_min}) must be <= age_max ({self.age_max})")
        return self

    def matches(self, age: int | None = None, interests: tuple[str, ...] = (), category: str | None = None) -> bool:
        if age is not None and not self.age_min <= age <= self.age_max:
            return False
        if self.interests and interests and not set(self.interests) & set(interests):
            return False
        return not (self.categories and category is not None and category not in self.categories)


class Campaign(_Model):
    id: str = Field(pattern=ID_PATTERN)
    advertiser_id: str = Field(pattern=ID_PATTERN)
    name: str = Field(default="", max_length=200)
    daily_budget: float = Field(gt=0.0, le=1e9)
    bidding: Literal["cpc", "ocpc"] = "cpc"
    bid: float = Field(gt=0.0, le=1e6, description="max CPC (cpc) or target CPA (ocpc)")
    start: float = Field(default=0.0, ge=0.0)
    end: float | None = Field(default=None, ge=0.0)
    targeting: Targeting = Field(default_factory=Targeting)
    active: bool = True

    @field_validator("daily_budget", "bid", "start", "end")
    @classmethod
    def _fin(cls, v: float | None) -> float | None:
        return _finite(v)

    @model_validator(mode="after")
    def _window(self) -> Campaign:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

    def running(self, now_s: float) -> bool:
        return self.active and self.start <= now_s and (self.end is None or now_s < self.end)


class Keyword(_Model):
    text: str = Field(min_length=1, max_length=100)
    match: Literal["exact", "phrase", "broad"] = "broad"
    bid: float | None = Field(default=None, gt=0.0, le=1e6, description="overrides the campaign bid")

    @field_validator("bid")
    @classmethod
    def _fin(cls, v: float | None) -> float | None:
        return _finite(v)


class Ad(_Model):
    """An ad promotes an existing note (``note_id``) or a creative (``title`` + ``text``)."""

    id: str = Field(pattern=ID_PATTERN)
    campaign_id: str = Field(pattern=ID_PATTERN)
    note_id: str | None = Field(default=None, max_length=64)
    title: str = Field(default="", max_length=200)
    text: str = Field(default="", max_length=2000)
    category: str | None = Field(default=None, max_length=100)
    keywords: list[Keyword] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _content(self) -> Ad:
        if self.note_id is None and not (self.title or self.text):
            raise ValueError("an ad needs a note_id or a creative (title or text)")
        return self


def check_id(value: str, field: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{field}: invalid id {value!r} (letters, digits, _.:- ; 1-64 characters)")
    return value
