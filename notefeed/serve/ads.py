"""Admin endpoints for ads: advertisers, campaigns and ads (with their bid keywords).

Writes need the write token; listing follows the read policy. ``POST /v1/admin/ads/ads/batch``
``{"ads": [...]}`` stores up to 10,000 ads in one write (all or none). The store is
``<workspace>/ads/ads.json`` (:class:`~notefeed.ads.store.AdStore`, atomic JSON). Bodies are
the pydantic models of :mod:`notefeed.ads.schema` (422 names the field); a missing parent is
422 on ``advertiser_id`` / ``campaign_id``; deleting a parent with children is 409.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from notefeed.ads.schema import Ad, Advertiser, Campaign
from notefeed.ads.store import AdStore, AdStoreError

__all__ = ["add_ads_routes", "ads_store"]

_KINDS = ("advertisers", "campaigns", "ads")


class AdBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ads: list[Ad] = Field(min_length=1, max_length=10_000)


def ads_store(engine: Any) -> AdStore:
    """The engine's ad store, opened on first use."""
    store = getattr(engine, "ads_store", None)
    if store is None:
        store = AdStore(Path(engine.workspace) / "ads" / "ads.json")
        engine.ads_store = store
    return store


def _unprocessable(field: str, msg: str) -> HTTPException:
    return HTTPException(422, {"detail": [{"loc": ["body", field], "msg": msg}], "message": f"{field}: {msg}"})


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
        return _put(ads_store(engine).put_advertiser, body)

    @router.post("/campaigns", status_code=201, dependencies=write_deps)
    def put_campaign(body: Campaign) -> dict[str, Any]:
        return _put(ads_store(engine).put_campaign, body)

    @router.post("/ads", status_code=201, dependencies=write_deps)
    def put_ad(body: Ad) -> dict[str, Any]:
        return _put(ads_store(engine).put_ad, body)

    @router.post("/ads/batch", status_code=201, dependencies=write_deps)
    def put_ads(body: AdBatch) -> dict[str, Any]:
        """Up to 10,000 ads in one request and one store write (all or none)."""
        try:
            ads_store(engine).put_ads(body.ads)
        except AdStoreError as e:
            field, _, msg = str(e).partition(": ")
            raise _unprocessable(field, msg) from None
        return {"ads": len(body.ads)}

    @router.get("/spend", dependencies=read_deps)
    def spend() -> dict[str, Any]:
        """Today's spend per campaign on this serving process (charged by ad clicks), and which
        pCTR prices the auction (``pctr.source``: ``model`` or ``heuristic``)."""
        from notefeed.serve.adslots import ad_server

        srv = ad_server(engine)
        return {"campaigns": srv.spend(), "pctr": srv.pctr_status()}

    @router.get("/{kind}", dependencies=read_deps)
    def list_kind(kind: str) -> dict[str, Any]:
        if kind not in _KINDS:
            raise HTTPException(404, f"kind: expected one of {', '.join(_KINDS)}")
        return {kind: ads_store(engine).to_json()[kind]}

    @router.delete("/{kind}/{item_id}", dependencies=write_deps)
    def delete(kind: str, item_id: str) -> dict[str, Any]:
        if kind not in _KINDS:
            raise HTTPException(404, f"kind: expected one of {', '.join(_KINDS)}")
        try:
            ads_store(engine).delete(kind, item_id)
        except AdStoreError as e:
            raise HTTPException(409 if "children" in str(e) else 404, str(e)) from None
        return {"deleted": item_id}

    app.include_router(router)
    from notefeed.serve.adslots import add_ad_event_routes

    add_ad_event_routes(app, engine, write_deps)
