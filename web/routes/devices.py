"""HTTP routes of device supervision: the SOS buttons and their offline events.

Routes (roles)::

    GET /api/devices                   every SOS button: site, position, state (online/offline/unknown),
                                       last_seen, the open offline event, last self-test (admin, dispatcher,
                                       commander, viewer)
    GET /api/device-events             offline events, newest first; ?device_id&open=true&limit&offset (same)

Without a :class:`~dispatch.supervision.DeviceSupervisor` (a service that does not supervise its
buttons) ``/api/devices`` lists the registry with state ``unknown`` and the event routes are empty.
The supervision reports (self-tests, false alarms) are :mod:`web.routes.reports`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from web.deps import DeviceReader, ServiceDep, SupervisorDep
from web.hardening import MAX_ID

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["devices"])


@router.get("/devices")
def list_devices(service: ServiceDep, supervisor: SupervisorDep, _: DeviceReader) -> list[dict[str, Any]]:
    if supervisor is not None:
        return supervisor.devices_view()
    return [
        {
            "id": d.id,
            "site": d.site.value,
            "lat": d.lat,
            "lon": d.lon,
            "state": "unknown",
            "last_seen": None,
            "event": None,
        }
        for _, d in sorted(service.devices.items())
    ]


@router.get("/device-events")
def device_events(
    supervisor: SupervisorDep,
    _: DeviceReader,
    device_id: Annotated[str | None, Query(max_length=128)] = None,
    open: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,  # larger: 500 from PostgreSQL's bigint (schemathesis)
) -> list[dict[str, Any]]:
    if supervisor is None:
        return []
    events = supervisor.events(device_id=device_id, open_only=open, limit=limit, offset=offset)
    return [e.to_json() for e in events]
