"""Alerts: the dispatcher's queue and what may be done with an alert.

Routes (roles)::

    GET  /api/alerts                         by priority then age (dispatcher, commander, viewer)
    GET  /api/alerts/{id}                    with recommendations and orders (same)
    GET  /api/alerts/{id}/timeline           the alert's audit trail (same)
    POST /api/alerts/{id}/assign             {"unit_id", "reason"} (dispatcher)
    POST /api/alerts/{id}/transition         {"status", "reason"} (dispatcher)
    POST /api/alerts/{id}/recommend          rank again (dispatcher)
    POST /api/alerts/{id}/unlink             undo a duplicate link (dispatcher)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from dispatch.domain import AlertStatus
from dispatch.lifecycle import OPEN
from web.deps import Dispatcher, Reader, ServiceDep
from web.hardening import MAX_ID, AlertIdPath
from web.schemas import AlertOut, AssignIn, TransitionIn

__all__ = ["router"]

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


@router.get("", response_model=list[AlertOut])
def list_alerts(
    service: ServiceDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,  # larger: 500 from PostgreSQL's bigint (schemathesis)
    sort: Literal["priority", "newest"] = "priority",
    state: Annotated[str, Query(description="open, all, or one state")] = "all",
) -> list[AlertOut]:
    statuses: Collection[AlertStatus] | None
    if state == "all":
        statuses = None
    elif state == "open":
        statuses = OPEN
    else:
        try:
            statuses = {AlertStatus(state)}
        except ValueError as e:
            raise HTTPException(422, detail=f"state must be open, all or an alert state, got {state!r}") from e
    alerts = service.store.list_alerts(limit=limit, offset=offset, order=sort, statuses=statuses)
    return [AlertOut.of(a) for a in alerts]


@router.get("/{alert_id}", response_model=AlertOut)
def get_alert(alert_id: AlertIdPath, service: ServiceDep, _: Reader) -> AlertOut:
    return AlertOut.of(service.get_alert(alert_id), service.assignments(alert_id))


@router.get("/{alert_id}/timeline")
def timeline(alert_id: AlertIdPath, service: ServiceDep, _: Reader) -> dict[str, Any]:
    service.get_alert(alert_id)
    return {"alert_id": alert_id, "entries": [e.to_json() for e in service.store.audit_entries(alert_id=alert_id)]}


@router.post("/{alert_id}/assign", response_model=AlertOut)
def assign(alert_id: AlertIdPath, body: AssignIn, service: ServiceDep, who: Dispatcher) -> AlertOut:
    alert = service.assign(alert_id, body.unit_id, actor=who.actor, reason=body.reason)
    return AlertOut.of(alert, service.assignments(alert_id))


@router.post("/{alert_id}/transition", response_model=AlertOut)
def transition(alert_id: AlertIdPath, body: TransitionIn, service: ServiceDep, who: Dispatcher) -> AlertOut:
    return AlertOut.of(service.transition(alert_id, AlertStatus(body.status), actor=who.actor, reason=body.reason))


@router.post("/{alert_id}/recommend", response_model=AlertOut)
def recommend(alert_id: AlertIdPath, service: ServiceDep, who: Dispatcher) -> AlertOut:
    return AlertOut.of(service.recommend_again(alert_id, actor=who.actor))


@router.post("/{alert_id}/unlink", response_model=AlertOut)
def unlink(alert_id: AlertIdPath, service: ServiceDep, who: Dispatcher) -> AlertOut:
    return AlertOut.of(service.unlink_duplicate(alert_id, actor=who.actor))
