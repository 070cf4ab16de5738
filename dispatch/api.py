"""The dispatcher's HTTP API (FastAPI): alerts, units, health and counters.

Routes::

    GET /api/alerts?limit=100&offset=0   alerts newest first, each with its recommendations
    GET /api/alerts/{id}                 one alert; recommendations sorted by eta_s
    GET /api/units                       units with position and status
    GET /api/metrics                     counters: accepted, duplicates, rejected by reason
    GET /healthz                         200 when the database and every extra check answer, else 503
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dispatch.domain import Alert, Unit
from dispatch.service import DispatchService
from dispatch.store import StoreError

__all__ = ["AlertOut", "RecommendationOut", "UnitOut", "create_app"]


class RecommendationOut(BaseModel):
    unit_id: str
    unit_kind: str
    eta_s: float
    distance_m: float


class AlertOut(BaseModel):
    id: int
    source: str
    sender: str
    device_id: str | None
    event_id: str
    event_ts: datetime
    received_at: datetime
    lat: float
    lon: float
    status: str
    priority: int
    kind: str | None
    site: str | None
    accuracy_m: float | None
    category: str | None
    text: str | None
    snap_distance_m: float | None
    recommendations: list[RecommendationOut]

    @classmethod
    def from_alert(cls, alert: Alert) -> AlertOut:
        if alert.id is None:
            msg = f"alert {alert.event_id!r} has no id: it was never committed"
            raise ValueError(msg)
        return cls(
            id=alert.id,
            source=alert.source.value,
            sender=alert.sender,
            device_id=alert.device_id,
            event_id=alert.event_id,
            event_ts=alert.event_ts,
            received_at=alert.received_at,
            lat=alert.lat,
            lon=alert.lon,
            status=alert.status.value,
            priority=alert.priority,
            kind=alert.kind,
            site=None if alert.site is None else alert.site.value,
            accuracy_m=alert.accuracy_m,
            category=alert.category,
            text=alert.text,
            snap_distance_m=alert.snap_distance_m,
            recommendations=[
                RecommendationOut(unit_id=r.unit_id, unit_kind=r.unit_kind, eta_s=r.eta_s, distance_m=r.distance_m)
                for r in alert.recommendations
            ],
        )


class UnitOut(BaseModel):
    id: str
    kind: str
    name: str
    lat: float
    lon: float
    status: str
    position_ts: datetime | None

    @classmethod
    def from_unit(cls, unit: Unit) -> UnitOut:
        return cls(
            id=unit.id,
            kind=unit.kind.value,
            name=unit.name,
            lat=unit.lat,
            lon=unit.lon,
            status=unit.status.value,
            position_ts=unit.position_ts,
        )


def _service(request: Request) -> DispatchService:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[DispatchService, Depends(_service)]


def create_app(
    service: DispatchService,
    *,
    checks: Mapping[str, Callable[[], bool]] | None = None,
    title: str = "Qorgau dispatch",
) -> FastAPI:
    """Build the HTTP API over a running :class:`DispatchService`.

    Parameters
    ----------
    service
        The service whose store, units and counters the API shows.
    checks
        Extra health checks by name (e.g. ``{"mqtt": bridge.is_connected}``) for ``/healthz``.
    title
        The OpenAPI title.
    """
    app = FastAPI(title=title)
    app.state.service = service
    extra_checks = dict(checks or {})

    @app.exception_handler(StoreError)
    def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"the alert store is unavailable: {exc}"}, status_code=503)

    @app.get("/api/alerts", response_model=list[AlertOut])
    def list_alerts(
        service: ServiceDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[AlertOut]:
        return [AlertOut.from_alert(a) for a in service.store.list_alerts(limit=limit, offset=offset)]

    @app.get("/api/alerts/{alert_id}", response_model=AlertOut)
    def get_alert(alert_id: int, service: ServiceDep) -> AlertOut:
        alert = service.store.get_alert(alert_id)
        if alert is None:
            raise HTTPException(status_code=404, detail=f"alert {alert_id} does not exist")
        return AlertOut.from_alert(alert)

    @app.get("/api/units", response_model=list[UnitOut])
    def list_units(service: ServiceDep) -> list[UnitOut]:
        return [UnitOut.from_unit(u) for u in service.units()]

    @app.get("/api/metrics")
    def metrics(service: ServiceDep) -> dict[str, Any]:
        return service.metrics()

    @app.get("/healthz")
    def healthz(service: ServiceDep) -> JSONResponse:
        results = {"database": service.store.ping()}
        for name, check in extra_checks.items():
            try:
                results[name] = bool(check())
            except Exception:  # a failing check reports unhealthy, it does not fail the endpoint
                results[name] = False
        healthy = all(results.values())
        body = {
            "status": "ok" if healthy else "degraded",
            "checks": {name: "ok" if ok else "failing" for name, ok in results.items()},
            "metrics": service.metrics(),
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    return app
