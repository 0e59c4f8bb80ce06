"""The ads store: advertisers, campaigns and ads in one JSON file, written atomically
(temporary file + ``os.replace``), validated on load. Never pickle.

Referential integrity is checked on write: a campaign needs its advertiser, an ad its campaign;
deleting a parent with children is refused (the message names them).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from notefeed.ads.schema import Ad, Advertiser, Campaign

__all__ = ["AdStore", "AdStoreError"]

M = TypeVar("M", bound=BaseModel)
_KINDS = {"advertisers": Advertiser, "campaigns": Campaign, "ads": Ad}


class AdStoreError(ValueError):
    """A missing parent, a duplicate or an unknown id; the message names the field."""


class AdStore:
    """In memory, persisted to ``path`` (``<workspace>/ads/ads.json``) after every write when set."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.advertisers: dict[str, Advertiser] = {}
        self.campaigns: dict[str, Campaign] = {}
        self.ads: dict[str, Ad] = {}
        self._lock = threading.Lock()
        #: bumped on every load and write: readers rebuild what they derived from the store
        self.version = 0
        self._mtime_ns = -1
        if self.path is not None and self.path.exists():
            self._load()

    # -- persistence ---------------------------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None
        mtime = self.path.stat().st_mtime_ns
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            raise AdStoreError(f"{self.path}: not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise AdStoreError(f"{self.path}: expected an object of advertisers, campaigns and ads, "
                               f"got {type(raw).__name__}")
        tables: dict[str, dict] = {}
        for kind, cls in _KINDS.items():
            table = tables[kind] = {}
            for i, obj in enumerate(raw.get(kind, [])):
                try:
                    m = cls.model_validate(obj)
                except Exception as e:
                    raise AdStoreError(f"{self.path}: {kind}[{i}]: {e}") from e
                table[m.id] = m  # type: ignore[attr-defined]
        self.advertisers, self.campaigns, self.ads = tables["advertisers"], tables["campaigns"], tables["ads"]
        self._mtime_ns = mtime
        self.version += 1

    def refresh(self) -> bool:
        """Reload when another process (a second serving worker) rewrote the file; True if it did."""
        if self.path is None:
            return False
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._mtime_ns:
            return False
        with self._lock:
            try:
                self._load()
            except (AdStoreError, ValueError, OSError):  # a torn or bad file: keep what we have
                return False
        return True

    def to_json(self) -> dict[str, list[dict]]:
        return {k: [m.model_dump(mode="json") for m in getattr(self, k).values()] for k in _KINDS}

    def save(self) -> None:
        self.version += 1
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ads-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_json(), f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            self._mtime_ns = self.path.stat().st_mtime_ns
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- writes --------------------------------------------------------------------------------
    def put_advertiser(self, adv: Advertiser) -> Advertiser:
        with self._lock:
            self.advertisers[adv.id] = adv
            self.save()
        return adv

    def put_campaign(self, c: Campaign) -> Campaign:
        with self._lock:
            if c.advertiser_id not in self.advertisers:
                raise AdStoreError(f"advertiser_id: unknown advertiser {c.advertiser_id!r}")
            self.campaigns[c.id] = c
            self.save()
        return c

    def put_ad(self, ad: Ad) -> Ad:
        with self._lock:
            if ad.campaign_id not in self.campaigns:
                raise AdStoreError(f"campaign_id: unknown campaign {ad.campaign_id!r}")
            self.ads[ad.id] = ad
            self.save()
        return ad

    def put_ads(self, ads: list[Ad]) -> list[Ad]:
        """Many ads in one write (one file rewrite, not one per ad); all or none: an unknown
        campaign refuses the batch, naming the first bad row."""
        with self._lock:
            for i, ad in enumerate(ads):
                if ad.campaign_id not in self.campaigns:
                    raise AdStoreError(f"ads.{i}.campaign_id: unknown campaign {ad.campaign_id!r}")
            for ad in ads:
                self.ads[ad.id] = ad
            self.save()
        return ads

    def delete(self, kind: str, id_: str) -> None:
        if kind not in _KINDS:
            raise AdStoreError(f"kind: expected one of {', '.join(_KINDS)}, got {kind!r}")
        with self._lock:
            table = getattr(self, kind)
            if id_ not in table:
                raise AdStoreError(f"id: unknown {kind[:-1]} {id_!r}")
            if kind == "advertisers":
                kids = [c.id for c in self.campaigns.values() if c.advertiser_id == id_]
            elif kind == "campaigns":
                kids = [a.id for a in self.ads.values() if a.campaign_id == id_]
            else:
                kids = []
            if kids:
                raise AdStoreError(f"id: {kind[:-1]} {id_!r} still has children: {', '.join(kids[:10])}")
            del table[id_]
            self.save()

    def snapshot(self) -> tuple[dict[str, Advertiser], dict[str, Campaign], dict[str, Ad], int]:
        """Copies of the tables and the version they are at, taken together (a reader building an
        index while the admin API writes)."""
        with self._lock:
            return dict(self.advertisers), dict(self.campaigns), dict(self.ads), self.version

    def campaign_of(self, ad: Ad) -> Campaign:
        return self.campaigns[ad.campaign_id]
