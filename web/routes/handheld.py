"""The officer's handheld: a unit's current order, its moves, availability, position and event stream.

Routes (roles)::

    GET  /api/units/{id}/order          {"unit", "order"} (unit: its own; dispatcher, commander, viewer)
    POST /api/units/{id}/order/status   {"alert_id", "status", "outcome", "note"} -> as GET (unit: its own)
    PUT  /api/units/{id}/availability   {"status": "available" | "off_duty"} -> UnitOut (unit: its own;
                                        dispatcher, commander)
    PUT  /api/units/{id}/position       {"lat", "lon", "accuracy_m", "ts"} -> {"accepted", "flagged",
                                        "reason", "accuracy_max_m"} (unit: its own; booths 409)
    GET  /unit/events                   SSE for the signed-in unit: ``order``, ``withdrawn`` (unit)

Every POST/PUT here takes ``Idempotency-Key`` (8-128 characters, made by the client): the first
request is applied and its answer kept in the database; a repeat by the same user gets that
answer again with ``Idempotent-Replay: true`` and changes nothing. A move of an order the unit
no longer holds, or one the lifecycle forbids, is 409 ``{"detail", "current": <GET body>}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response, StreamingResponse

from dispatch.auth import Principal
from dispatch.domain import AlertStatus, CloseOutcome, UnitStatus
from dispatch.errors import Conflict
from dispatch.idempotency import KeyReused, StoredAnswer, fingerprint
from dispatch.service import DispatchService
from web.deps import FeedDep, MapOptionsDep, ServiceDep, UnitLogin, UnitReader, UnitStatusSetter, own_unit
from web.handheld import audience, order_of
from web.schemas import AvailabilityIn, OrderStatusIn, PositionIn, PositionOut, UnitOut

__all__ = ["router"]

router = APIRouter(tags=["handheld"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=8, max_length=128)]
REPLAY_HEADER = "Idempotent-Replay"


def _unit_out(service: DispatchService, unit_id: str) -> dict[str, Any]:
    unit = service.get_unit(unit_id)
    return UnitOut.of(unit, service.unit_view(unit)).model_dump(mode="json")


def _order_body(service: DispatchService, unit_id: str) -> dict[str, Any]:
    return {"unit": _unit_out(service, unit_id), "order": order_of(service, unit_id)}


def _idempotent(
    service: DispatchService,
    who: Principal,
    request: Request,
    key: str | None,
    body: Any,
    apply: Callable[[], JSONResponse],
) -> Response:
    """Apply the request once per ``key`` (see the module docstring); without a key, just apply it."""
    if key is None:
        return apply()
    print_ = fingerprint(request.method, request.url.path, json.dumps(jsonable_encoder(body), sort_keys=True))
    try:
        stored = service.requests.claim(who.username, key, print_)
    except KeyReused as e:
        raise HTTPException(422, detail=str(e)) from e
    if stored is not None:
        return Response(
            stored.body, status_code=stored.status_code, media_type="application/json", headers={REPLAY_HEADER: "true"}
        )
    try:
        answer = apply()
    except HTTPException as e:
        if e.status_code >= 500:
            service.requests.release(who.username, key)
            raise
        answer = JSONResponse({"detail": e.detail}, status_code=e.status_code)
    except BaseException:
        service.requests.release(who.username, key)
        raise
    service.requests.answer(who.username, key, StoredAnswer(answer.status_code, bytes(answer.body).decode()))
    return answer


def _refused(service: DispatchService, unit_id: str, e: Conflict) -> JSONResponse:
    return JSONResponse({"detail": str(e), "current": _order_body(service, unit_id)}, status_code=409)


@router.get("/api/units/{unit_id}/order")
def get_order(unit_id: str, service: ServiceDep, who: UnitReader) -> dict[str, Any]:
    own_unit(who, unit_id)
    return _order_body(service, unit_id)


@router.post("/api/units/{unit_id}/order/status")
def move_order(
    unit_id: str,
    body: OrderStatusIn,
    service: ServiceDep,
    who: UnitLogin,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    own_unit(who, unit_id)
    service.get_unit(unit_id)

    def apply() -> JSONResponse:
        try:
            service.move_order(
                unit_id,
                body.alert_id,
                AlertStatus(body.status),
                actor=who.actor,
                outcome=None if body.outcome is None else CloseOutcome(body.outcome),
                note=body.note,
            )
        except Conflict as e:
            return _refused(service, unit_id, e)
        except ValueError as e:
            raise HTTPException(422, detail=str(e)) from e
        return JSONResponse(_order_body(service, unit_id))

    return _idempotent(service, who, request, idempotency_key, body, apply)


@router.put("/api/units/{unit_id}/availability", response_model=UnitOut)
def set_availability(
    unit_id: str,
    body: AvailabilityIn,
    service: ServiceDep,
    who: UnitStatusSetter,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    own_unit(who, unit_id)
    service.get_unit(unit_id)

    def apply() -> JSONResponse:
        try:
            service.set_unit_status(unit_id, UnitStatus(body.status), actor=who.actor)
        except Conflict as e:
            return JSONResponse({"detail": str(e), "current": e.current}, status_code=409)
        return JSONResponse(_unit_out(service, unit_id))

    return _idempotent(service, who, request, idempotency_key, body, apply)


@router.put("/api/units/{unit_id}/position", response_model=PositionOut)
def report_position(
    unit_id: str,
    body: PositionIn,
    service: ServiceDep,
    who: UnitLogin,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    own_unit(who, unit_id)
    service.get_unit(unit_id)

    def apply() -> JSONResponse:
        try:
            fix = service.report_fix(unit_id, body.lat, body.lon, body.accuracy_m, actor=who.actor, ts=body.ts)
        except Conflict as e:
            return JSONResponse({"detail": str(e), "current": e.current}, status_code=409)
        out = PositionOut(
            accepted=fix.accepted, flagged=fix.flagged, reason=fix.reason, accuracy_max_m=fix.accuracy_max_m
        )
        return JSONResponse(out.model_dump(mode="json"))

    return _idempotent(service, who, request, idempotency_key, body, apply)


@router.get("/unit/events", include_in_schema=False)
def unit_events(
    service: ServiceDep,
    feed: FeedDep,
    options: MapOptionsDep,
    who: UnitLogin,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: str | None = None,
) -> StreamingResponse:
    """The unit's own events; on a fresh connect (or one the feed cannot replay) the current order first."""
    if who.unit_id is None:
        raise HTTPException(403, detail="this unit login is bound to no unit")
    unit_id = who.unit_id
    last_event_id = last_event_id or after
    start = feed.resume(last_event_id, audience=audience(unit_id)) if last_event_id else None
    prelude = ""
    if start is None:
        start = feed.now(audience=audience(unit_id))  # before reading the order: later changes follow
        order = order_of(service, unit_id)
        event_id = str(start.after)
        if last_event_id:  # missed events are gone: tell the page what holds now
            data = json.dumps({"order": order}, separators=(",", ":"), ensure_ascii=False)
            prelude = f"id: {event_id}\nevent: reset\ndata: {data}\n\n"
        elif order is not None:
            data = json.dumps(order, separators=(",", ":"), ensure_ascii=False)
            prelude = f"id: {event_id}\nevent: order\ndata: {data}\n\n"
    return StreamingResponse(
        feed.stream(start, heartbeat_s=options.heartbeat_s, audience=audience(unit_id), prelude=prelude),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
