"""Units: patrols, cars and booths, their status and their orders.

Routes (roles)::

    GET  /api/units, /api/units/{id}         with freshness (dispatcher, commander, viewer; unit: its own)
    POST /api/units                          register (commander)
    PATCH /api/units/{id}                    change (commander)
    POST /api/units/{id}/retire              retire, never delete (commander)
    PUT  /api/units/{id}/status              {"status", "alert_id"} (dispatcher, commander; unit: its own)
    GET  /api/units/{id}/orders              (dispatcher, commander, viewer; unit: its own)
    POST /api/units/{id}/ack                 {"alert_id"} (unit: its own)
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from dispatch.domain import Unit, UnitStatus
from dispatch.service import Conflict, DispatchService
from web.deps import Commander, Reader, ServiceDep, UnitLogin, UnitReader, UnitStatusSetter, own_unit
from web.schemas import AckIn, AlertOut, AssignmentOut, StatusIn, UnitIn, UnitOut, UnitPatch

__all__ = ["router"]

router = APIRouter(prefix="/api/units", tags=["units"])


def _out(service: DispatchService, unit: Unit) -> UnitOut:
    return UnitOut.of(unit, service.unit_view(unit))


@router.get("", response_model=list[UnitOut])
def list_units(service: ServiceDep, _: Reader, retired: bool = False) -> list[UnitOut]:
    return [_out(service, u) for u in service.units() if retired or not u.retired]


@router.get("/{unit_id}", response_model=UnitOut)
def get_unit(unit_id: str, service: ServiceDep, who: UnitReader) -> UnitOut:
    own_unit(who, unit_id)
    return _out(service, service.get_unit(unit_id))


@router.post("", response_model=UnitOut, status_code=201)
def create_unit(body: UnitIn, service: ServiceDep, who: Commander) -> UnitOut:
    try:
        unit = Unit(**body.model_dump(exclude={"status", "kind"}), kind=body.kind, status=UnitStatus(body.status))
        return _out(service, service.create_unit(unit, actor=who.actor))
    except ValueError as e:
        if isinstance(e, Conflict):
            raise
        raise HTTPException(422, detail=str(e)) from e


@router.patch("/{unit_id}", response_model=UnitOut)
def update_unit(unit_id: str, body: UnitPatch, service: ServiceDep, who: Commander) -> UnitOut:
    try:
        return _out(service, service.update_unit(unit_id, actor=who.actor, **body.model_dump(exclude_unset=True)))
    except ValueError as e:
        if isinstance(e, Conflict):
            raise
        raise HTTPException(422, detail=str(e)) from e


@router.post("/{unit_id}/retire", response_model=UnitOut)
def retire_unit(unit_id: str, service: ServiceDep, who: Commander) -> UnitOut:
    return _out(service, service.retire_unit(unit_id, actor=who.actor))


@router.put("/{unit_id}/status", response_model=UnitOut)
def set_status(unit_id: str, body: StatusIn, service: ServiceDep, who: UnitStatusSetter) -> UnitOut:
    own_unit(who, unit_id)
    return _out(
        service, service.set_unit_status(unit_id, UnitStatus(body.status), actor=who.actor, alert_id=body.alert_id)
    )


@router.get("/{unit_id}/orders", response_model=list[AssignmentOut])
def unit_orders(unit_id: str, service: ServiceDep, who: UnitReader) -> list[AssignmentOut]:
    own_unit(who, unit_id)
    service.get_unit(unit_id)
    return [AssignmentOut.model_validate(a) for a in service.store.assignments_of_unit(unit_id)]


@router.post("/{unit_id}/ack", response_model=AlertOut)
def unit_ack(unit_id: str, body: AckIn, service: ServiceDep, who: UnitLogin) -> AlertOut:
    own_unit(who, unit_id)
    return AlertOut.of(service.acknowledge(body.alert_id, unit_id, actor=who.actor))
