"""Admin endpoints for ads: advertisers, campaigns and ads (with their bid keywords).

Writes need the write token; listing follows the read policy. ``POST /v1/admin/ads/ads/batch``
``{"ads": [...]}`` stores up to 10,000 ads in one write (all or none). The store is
``<workspace>/ads/ads.json`` (:class:`~notefeed.ads.store.AdStore`, atomic JSON). Bodies are
the pydantic models of :mod:`notefeed.ads.schema` (422 names the field); a missing parent is
422 on ``advertiser_id`` / ``campaign_id``, a ``note_id`` the catalogue does not hold 422 on
``note_id``; deleting a parent with children is 409.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from notefeed.ads.schema import Ad, Advertiser, Campaign
from notefeed.ads.store import AdStore, AdStoreError

__all__ = ["add_ads_routes", "ads_store", "store_or_503"]

_KINDS = ("advertisers", "campaigns", "ads")


class AdBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ads: list[Ad] = Field(min_length=1, max_length=10_000)


def ads_store(engine: Any) -> AdStore:
    """The engine's ad store, opened on first use (:class:`AdStoreError` when the file cannot
    be read: it is then left as it is, and no write replaces it)."""
    store = getattr(engine, "ads_store", None)
    if store is None:
        store = AdStore(Path(engine.workspace) / "ads" / "ads.json")
        engine.ads_store = store
    return store


def store_or_503(engine: Any) -> AdStore:
    """:func:`ads_store` for an endpoint: an unreadable store file answers 503 naming it."""
    try:
        return ads_store(engine)
    except (AdStoreError, OSError) as e:
        raise HTTPException(503, f"ads: the ad store cannot be read ({e}); nothing was changed. Repair or "
                                 "move the file and retry") from None


def _unprocessable(field: str, msg: str) -> RequestValidationError:
    """A 422 in the API's one shape (``detail`` list, ``message`` naming ``field``, dotted)."""
    loc = tuple(int(k) if k.isdigit() else k for k in field.split("."))  # list indices as pydantic gives them
    return RequestValidationError([{"loc": ("body", *loc), "type": "value_error", "msg": msg, "input": None}])


def _check_notes(engine: Any, ads: list[Ad], prefix: str = "") -> None:
    """An ad's ``note_id`` must be a note of the catalogue (an ad for no note is a creative:
    ``title``/``text``); the first unknown one is refused, naming its row."""
    index = getattr(getattr(engine, "catalog", None), "index", None)
    if index is None:  # no catalogue (a bare ads app)
        return
    for i, ad in enumerate(ads):
        if ad.note_id is not None and ad.note_id not in index:
            raise _unprocessable(f"{prefix.format(i)}note_id", f"unknown note {ad.note_id!r}")


def add_ads_routes(app: FastAPI, engine: Any, write_deps: list[Any], read_deps: list[Any]) -> None:
    router = APIRouter(prefix="/v1/admin/ads", tags=["ads"])

    def _put(fn: Any, obj: Any) -> dict[str, Any]:
        try:
            fn(obj)
        except AdStoreError as e:
            field, _, msg = str(e).partition(": ")
            raise _unprocessable(field, msg) from None
        return obj.model_dump(mode="json")  # type: ignore[no-any-return]

    @router.post("/advertisers", status_code=201, dependencies=write_deps)
    def put_advertiser(body: Advertiser) -> dict[str, Any]:
        return _put(store_or_503(engine).put_advertiser, body)

    @router.post("/campaigns", status_code=201, dependencies=write_deps)
    def put_campaign(body: Campaign) -> dict[str, Any]:
        return _put(store_or_503(engine).put_campaign, body)

    @router.post("/ads", status_code=201, dependencies=write_deps)
    def put_ad(body: Ad) -> dict[str, Any]:
        _check_notes(engine, [body])
        return _put(store_or_503(engine).put_ad, body)

    @router.post("/ads/batch", status_code=201, dependencies=write_deps)
    def put_ads(body: AdBatch) -> dict[str, Any]:
        """Up to 10,000 ads in one request and one store write (all or none)."""
        _check_notes(engine, body.ads, "ads.{}.")
        try:
            store_or_503(engine).put_ads(body.ads)
        except AdStoreError as e:
            field, _, msg = str(e).partition(": ")
            raise _unprocessable(field, msg) from None
        return {"ads": len(body.ads)}

    @router.get("/spend", dependencies=read_deps)
    def spend() -> dict[str, Any]:
        """Today's spend per campaign on this serving process (charged by ad clicks), and which
        pCTR prices the auction (``pctr.source``: ``model`` or ``heuristic``)."""
        from notefeed.serve.adslots import server_or_503

        srv = server_or_503(engine)
        return {"campaigns": srv.spend(), "pctr": srv.pctr_status()}

    @router.get("/{kind}", dependencies=read_deps)
    def list_kind(kind: str) -> dict[str, Any]:
        if kind not in _KINDS:
            raise HTTPException(404, f"kind: expected one of {', '.join(_KINDS)}")
        return {kind: store_or_503(engine).to_json()[kind]}

    @router.delete("/{kind}/{item_id}", dependencies=write_deps)
    def delete(kind: str, item_id: str) -> dict[str, Any]:
        if kind not in _KINDS:
            raise HTTPException(404, f"kind: expected one of {', '.join(_KINDS)}")
        try:
            store_or_503(engine).delete(kind, item_id)
        except AdStoreError as e:
            raise HTTPException(409 if "children" in str(e) else 404, str(e)) from None
        return {"deleted": item_id}

    app.include_router(router)
    from notefeed.serve.adslots import add_ad_event_routes

    add_ad_event_routes(app, engine, write_deps)
