"""The dispatcher's HTTP API (FastAPI). Every route but ``/healthz`` and ``POST /api/token`` needs a
bearer token and one of the roles listed per route (see :mod:`dispatch.auth`).

Routes (roles)::

    POST /api/token                          OAuth2 password login -> {"access_token", "token_type"}
    GET  /api/alerts                         by priority then age (dispatcher, commander, viewer)
    GET  /api/alerts/{id}                    with recommendations and orders (dispatcher, commander, viewer)
    GET  /api/alerts/{id}/timeline           the alert's audit trail (dispatcher, commander, viewer)
    POST /api/alerts/{id}/assign             {"unit_id", "reason"} (dispatcher)
    POST /api/alerts/{id}/transition         {"status", "reason"} (dispatcher)
    POST /api/alerts/{id}/recommend          rank again (dispatcher)
    POST /api/alerts/{id}/unlink             undo a duplicate link (dispatcher)
    GET  /api/units, /api/units/{id}         with freshness (dispatcher, commander, viewer; unit: its own)
    POST /api/units                          register (commander)
    PATCH /api/units/{id}                    change (commander)
    POST /api/units/{id}/retire              retire, never delete (commander)
    PUT  /api/units/{id}/status              {"status", "alert_id"} (dispatcher, commander; unit: its own)
    GET  /api/units/{id}/orders              (dispatcher, commander, viewer; unit: its own)
    POST /api/units/{id}/ack                 {"alert_id"} (unit: its own)
    GET  /api/reports/response-times        ?from&to&group_by&format=json|csv (commander, viewer)
    GET  /api/audit/verify                   (admin, commander)
    GET/POST /api/users                      (admin)
    GET  /api/settings                       (admin)
    GET  /api/devices, /api/device-events    supervision of SOS buttons (dispatch.supervision_api)
    GET  /api/metrics                        (admin, commander, dispatcher, viewer)
    GET  /healthz                            200 when the database and every extra check answer, else 503
    GET  /metrics                            Prometheus text format (no sign-in; bind to a private address)

The dispatcher's live map (``/login``, ``/map``, ``/map/events``, ...) is mounted on the same app
by :func:`dispatch.live.mount_live_map`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client.registry import Collector
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import AwareDatetime, BaseModel, Field

from dispatch.auth import Authenticator, Principal, hash_password, require_role, verify_password
from dispatch.domain import Alert, AlertStatus, Assignment, Role, Unit, UnitKind, UnitStatus, User
from dispatch.hardening import MAX_ID, AlertIdPath, BoundedId, HttpHardening, RequestBody, install_hardening
from dispatch.lifecycle import OPEN
from dispatch.reports import Districts, report_window, summarize, to_csv
from dispatch.service import Conflict, DispatchService, NotFound
from dispatch.store import StoreError
from dispatch.telemetry import CONTENT_TYPE, ServiceCollector, render

if TYPE_CHECKING:
    from dispatch.live import MapOptions
    from dispatch.supervision import DeviceSupervisor

__all__ = ["AlertOut", "RecommendationOut", "UnitOut", "create_app"]

R = Role
READERS = require_role(R.DISPATCHER, R.COMMANDER, R.VIEWER)
DISPATCHER = require_role(R.DISPATCHER)
COMMANDER = require_role(R.COMMANDER)
UNIT_READERS = require_role(R.DISPATCHER, R.COMMANDER, R.VIEWER, R.UNIT)
UNIT_STATUS = require_role(R.DISPATCHER, R.COMMANDER, R.UNIT)
UNIT_ONLY = require_role(R.UNIT)
REPORTERS = require_role(R.COMMANDER, R.VIEWER)
AUDITORS = require_role(R.ADMIN, R.COMMANDER)
ADMIN = require_role(R.ADMIN)
METRICS = require_role(R.ADMIN, R.COMMANDER, R.DISPATCHER, R.VIEWER)


class RecommendationOut(BaseModel):
    unit_id: str
    unit_kind: str
    eta_s: float
    distance_m: float


class AssignmentOut(BaseModel):
    order_id: int
    unit_id: str
    assigned_at: datetime
    assigned_by: str
    override: bool
    auto: bool
    reason: str | None
    eta_s: float | None
    ack_due_at: datetime
    acknowledged_at: datetime | None
    missed_at: datetime | None

    @classmethod
    def from_assignment(cls, a: Assignment) -> AssignmentOut:
        assert a.id is not None
        fields = {f.name: getattr(a, f.name) for f in dataclasses.fields(a) if f.name not in ("id", "alert_id")}
        return cls(order_id=a.id, **fields)


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
    location_unverified: bool
    duplicate_of: int | None
    escalated: bool
    escalations: int
    assigned_unit_id: str | None
    proposed_unit_id: str | None
    close_reason: str | None
    recommended_at: datetime | None
    assigned_at: datetime | None
    acknowledged_at: datetime | None
    en_route_at: datetime | None
    on_scene_at: datetime | None
    closed_at: datetime | None
    recommendations: list[RecommendationOut]
    orders: list[AssignmentOut] | None = None

    @classmethod
    def from_alert(cls, alert: Alert, orders: list[Assignment] | None = None) -> AlertOut:
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
            location_unverified=alert.location_unverified,
            duplicate_of=alert.duplicate_of,
            escalated=alert.escalations > 0,
            escalations=alert.escalations,
            assigned_unit_id=alert.assigned_unit_id,
            proposed_unit_id=alert.proposed_unit_id,
            close_reason=alert.close_reason,
            recommended_at=alert.recommended_at,
            assigned_at=alert.assigned_at,
            acknowledged_at=alert.acknowledged_at,
            en_route_at=alert.en_route_at,
            on_scene_at=alert.on_scene_at,
            closed_at=alert.closed_at,
            recommendations=[
                RecommendationOut(unit_id=r.unit_id, unit_kind=r.unit_kind, eta_s=r.eta_s, distance_m=r.distance_m)
                for r in alert.recommendations
            ],
            orders=None if orders is None else [AssignmentOut.from_assignment(a) for a in orders],
        )


class UnitOut(BaseModel):
    id: str
    kind: str
    name: str
    lat: float
    lon: float
    status: str
    position_ts: datetime | None
    retired: bool = False
    staff_from: str | None = None
    staff_to: str | None = None
    alert_id: int | None = None
    stale: bool = False
    position_age_s: float | None = None
    recommendable: bool = True

    @classmethod
    def from_unit(cls, unit: Unit, view: Mapping[str, Any] | None = None) -> UnitOut:
        return cls(
            id=unit.id,
            kind=unit.kind.value,
            name=unit.name,
            lat=unit.lat,
            lon=unit.lon,
            status=unit.status.value,
            position_ts=unit.position_ts,
            retired=unit.retired,
            staff_from=unit.staff_from,
            staff_to=unit.staff_to,
            alert_id=unit.alert_id,
            **(view or {}),
        )


HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
UnitId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^/+#\s]+$")]


class UnitIn(RequestBody):
    id: UnitId
    kind: UnitKind
    name: str = Field(min_length=1, max_length=256)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    status: Literal["available", "off_duty", "offline"] = "available"
    staff_from: HHMM | None = None
    staff_to: HHMM | None = None


class UnitPatch(RequestBody):
    name: str | None = Field(None, min_length=1, max_length=256)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    staff_from: HHMM | None = None
    staff_to: HHMM | None = None


class StatusIn(RequestBody):
    status: Literal["available", "en_route", "on_scene", "off_duty", "offline"]
    alert_id: BoundedId | None = None


class AssignIn(RequestBody):
    unit_id: str
    reason: str | None = Field(None, max_length=2000)


class TransitionIn(RequestBody):
    status: Literal["en_route", "on_scene", "closed", "cancelled", "false_alarm"]
    reason: str | None = Field(None, max_length=2000)


class AckIn(RequestBody):
    alert_id: BoundedId


class UserIn(RequestBody):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: Role
    unit_id: str | None = None


class ErrorOut(BaseModel):
    """An error: what was wrong (a list of field errors for request validation)."""

    detail: str | list[dict[str, Any]]


class ConflictOut(ErrorOut):
    """The state machine refused: ``current`` is the alert's state now."""

    current: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body could not be read (not JSON, or not the declared encoding)"},
    401: {"model": ErrorOut, "description": "not signed in, or the token is invalid or expired"},
    403: {"model": ErrorOut, "description": "the role may not do this"},
    404: {"model": ErrorOut, "description": "no such alert, unit, user or plan"},
    409: {"model": ConflictOut, "description": "the alert's or unit's state does not allow this now"},
    413: {"model": ErrorOut, "description": "request body over the limit (QORGAU_MAX_REQUEST_BYTES)"},
    422: {"model": ErrorOut, "description": "invalid input"},
    429: {"model": ErrorOut, "description": "too many failed sign-ins (Retry-After says how long to wait)"},
    503: {"model": ErrorOut, "description": "the database is unavailable"},
}
"""Declared on every operation (OpenAPI): the errors any route may answer."""


def _service(request: Request) -> DispatchService:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[DispatchService, Depends(_service)]


def _own_unit(who: Principal, unit_id: str) -> None:
    if who.role is Role.UNIT and who.unit_id != unit_id:
        raise HTTPException(status_code=403, detail=f"a unit login may act only for its own unit ({who.unit_id!r})")


def create_app(
    service: DispatchService,
    *,
    checks: Mapping[str, Callable[[], bool]] | None = None,
    title: str = "Qorgau dispatch",
    auth: Authenticator | None = None,
    districts: Districts | None = None,
    settings_view: Callable[[], dict[str, Any]] | None = None,
    map_options: MapOptions | None = None,
    supervisor: DeviceSupervisor | None = None,
    probes: Mapping[str, Callable[[], dict[str, Any]]] | None = None,
    collectors: Sequence[Collector] = (),
    hardening: HttpHardening | None = None,
) -> FastAPI:
    """Build the HTTP API over a running :class:`DispatchService`.

    Parameters
    ----------
    service
        The service whose store, units and counters the API shows.
    checks
        Extra health checks by name (e.g. ``{"mqtt": bridge.is_connected}``) for ``/healthz``.
    probes
        Health checks that also tell why, by name: each returns a dict with ``ok`` and details,
        shown under that name in ``/healthz`` (e.g. the MQTT lanes, queues and last message's age).
    collectors
        More Prometheus collectors for ``/metrics`` (the MQTT bridge's), beside the service's own.
    title
        The OpenAPI title.
    auth
        Issues and checks tokens; by default one with a random key and no bootstrap admin token.
    districts
        Polygons for ``group_by=district`` in reports.
    settings_view
        What ``GET /api/settings`` shows (no secrets).
    map_options
        Language and basemap of the live map (``/map``); by default Russian over the city's streets.
    supervisor
        Supervises the SOS buttons (``/api/devices``, ``/api/device-events``, offline buttons on the map).
    hardening
        Body size limit, CORS origins, login throttle (:mod:`dispatch.hardening`); by default closed.
    """
    app = FastAPI(title=title, responses=ERROR_RESPONSES)
    app.state.service = service
    app.state.auth = auth or Authenticator()
    extra_checks = dict(checks or {})
    install_hardening(app, hardening)  # size limit, CORS, security headers, login throttle

    @app.exception_handler(StoreError)
    def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"the alert store is unavailable: {exc}"}, status_code=503)

    @app.exception_handler(NotFound)
    def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "current": exc.current}, status_code=409)

    # login --------------------------------------------------------------------------------

    @app.post("/api/token")
    def login(form: Annotated[OAuth2PasswordRequestForm, Depends()], service: ServiceDep, request: Request) -> dict[str, str]:
        client = request.client.host if request.client else "unknown"
        request.app.state.login_throttle.check(client, form.username)  # 429 after too many failures
        found = service.store.get_user(form.username)
        ok = found is not None and not found[0].disabled and verify_password(found[1], form.password)
        service.store.audit("login" if ok else "login_failed", actor=form.username,
                            after={"client": request.client.host if request.client else None})
        if not ok:
            request.app.state.login_throttle.failed(client, form.username)
            raise HTTPException(status_code=401, detail="wrong username or password", headers={"WWW-Authenticate": "Bearer"})
        request.app.state.login_throttle.succeeded(client, form.username)
        assert found is not None
        return {"access_token": request.app.state.auth.issue(found[0]), "token_type": "bearer"}

    # alerts -------------------------------------------------------------------------------

    @app.get("/api/alerts", response_model=list[AlertOut], dependencies=[Depends(READERS)])
    def list_alerts(
        service: ServiceDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,  # larger: 500 from PostgreSQL's bigint (schemathesis)
        sort: Literal["priority", "newest"] = "priority",
        state: Annotated[str, Query(description="open, all, or one state")] = "all",
    ) -> list[AlertOut]:
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
        return [AlertOut.from_alert(a) for a in alerts]

    @app.get("/api/alerts/{alert_id}", response_model=AlertOut, dependencies=[Depends(READERS)])
    def get_alert(alert_id: AlertIdPath, service: ServiceDep) -> AlertOut:
        return AlertOut.from_alert(service.get_alert(alert_id), service.assignments(alert_id))

    @app.get("/api/alerts/{alert_id}/timeline", dependencies=[Depends(READERS)])
    def timeline(alert_id: AlertIdPath, service: ServiceDep) -> dict[str, Any]:
        service.get_alert(alert_id)
        return {"alert_id": alert_id, "entries": [e.to_json() for e in service.store.audit_entries(alert_id=alert_id)]}

    @app.post("/api/alerts/{alert_id}/assign", response_model=AlertOut)
    def assign(alert_id: AlertIdPath, body: AssignIn, service: ServiceDep, who: Annotated[Principal, Depends(DISPATCHER)]) -> AlertOut:
        alert = service.assign(alert_id, body.unit_id, actor=who.actor, reason=body.reason)
        return AlertOut.from_alert(alert, service.assignments(alert_id))

    @app.post("/api/alerts/{alert_id}/transition", response_model=AlertOut)
    def transition(
        alert_id: AlertIdPath, body: TransitionIn, service: ServiceDep, who: Annotated[Principal, Depends(DISPATCHER)]
    ) -> AlertOut:
        return AlertOut.from_alert(service.transition(alert_id, AlertStatus(body.status), actor=who.actor, reason=body.reason))

    @app.post("/api/alerts/{alert_id}/recommend", response_model=AlertOut)
    def recommend(alert_id: AlertIdPath, service: ServiceDep, who: Annotated[Principal, Depends(DISPATCHER)]) -> AlertOut:
        return AlertOut.from_alert(service.recommend_again(alert_id, actor=who.actor))

    @app.post("/api/alerts/{alert_id}/unlink", response_model=AlertOut)
    def unlink(alert_id: AlertIdPath, service: ServiceDep, who: Annotated[Principal, Depends(DISPATCHER)]) -> AlertOut:
        return AlertOut.from_alert(service.unlink_duplicate(alert_id, actor=who.actor))

    # units --------------------------------------------------------------------------------

    def unit_out(unit: Unit) -> UnitOut:
        return UnitOut.from_unit(unit, service.unit_view(unit))

    @app.get("/api/units", response_model=list[UnitOut], dependencies=[Depends(READERS)])
    def list_units(service: ServiceDep, retired: bool = False) -> list[UnitOut]:
        return [unit_out(u) for u in service.units() if retired or not u.retired]

    @app.get("/api/units/{unit_id}", response_model=UnitOut)
    def get_unit(unit_id: str, service: ServiceDep, who: Annotated[Principal, Depends(UNIT_READERS)]) -> UnitOut:
        _own_unit(who, unit_id)
        return unit_out(service.get_unit(unit_id))

    @app.post("/api/units", response_model=UnitOut, status_code=201)
    def create_unit(body: UnitIn, service: ServiceDep, who: Annotated[Principal, Depends(COMMANDER)]) -> UnitOut:
        try:
            unit = Unit(**body.model_dump(exclude={"status", "kind"}), kind=body.kind, status=UnitStatus(body.status))
            return unit_out(service.create_unit(unit, actor=who.actor))
        except ValueError as e:
            if isinstance(e, Conflict):
                raise
            raise HTTPException(422, detail=str(e)) from e

    @app.patch("/api/units/{unit_id}", response_model=UnitOut)
    def update_unit(unit_id: str, body: UnitPatch, service: ServiceDep, who: Annotated[Principal, Depends(COMMANDER)]) -> UnitOut:
        try:
            return unit_out(service.update_unit(unit_id, actor=who.actor, **body.model_dump(exclude_unset=True)))
        except ValueError as e:
            if isinstance(e, Conflict):
                raise
            raise HTTPException(422, detail=str(e)) from e

    @app.post("/api/units/{unit_id}/retire", response_model=UnitOut)
    def retire_unit(unit_id: str, service: ServiceDep, who: Annotated[Principal, Depends(COMMANDER)]) -> UnitOut:
        return unit_out(service.retire_unit(unit_id, actor=who.actor))

    @app.put("/api/units/{unit_id}/status", response_model=UnitOut)
    def set_status(unit_id: str, body: StatusIn, service: ServiceDep, who: Annotated[Principal, Depends(UNIT_STATUS)]) -> UnitOut:
        _own_unit(who, unit_id)
        return unit_out(service.set_unit_status(unit_id, UnitStatus(body.status), actor=who.actor, alert_id=body.alert_id))

    @app.get("/api/units/{unit_id}/orders", response_model=list[AssignmentOut])
    def unit_orders(unit_id: str, service: ServiceDep, who: Annotated[Principal, Depends(UNIT_READERS)]) -> list[AssignmentOut]:
        _own_unit(who, unit_id)
        service.get_unit(unit_id)
        return [AssignmentOut.from_assignment(a) for a in service.store.assignments_of_unit(unit_id)]

    @app.post("/api/units/{unit_id}/ack", response_model=AlertOut)
    def unit_ack(unit_id: str, body: AckIn, service: ServiceDep, who: Annotated[Principal, Depends(UNIT_ONLY)]) -> AlertOut:
        _own_unit(who, unit_id)
        return AlertOut.from_alert(service.acknowledge(body.alert_id, unit_id, actor=who.actor))

    # reports and audit --------------------------------------------------------------------

    @app.get("/api/reports/response-times", response_model=None, dependencies=[Depends(REPORTERS)],
             responses={200: {"content": {"application/json": {}, "text/csv": {}}, "description": "the report"}})
    def response_times(
        service: ServiceDep,
        from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
        to: AwareDatetime | None = None,
        group_by: Literal["district", "unit", "source", "priority"] = "priority",
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        try:
            start, end = report_window(from_, to, service.clock())
        except ValueError as e:
            raise HTTPException(422, detail=str(e)) from e
        if group_by == "district" and districts is None:
            raise HTTPException(422, detail="group_by=district needs a districts GeoJSON (--districts / QORGAU_DISTRICTS)")
        groups = summarize(service.store.alerts_received_between(start, end), group_by, districts=districts)
        if format == "csv":
            return PlainTextResponse(
                to_csv(groups, group_by), media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="response-times-{group_by}.csv"'},
            )
        return {"from": start.isoformat(), "to": end.isoformat(), "group_by": group_by, "groups": [g.to_json() for g in groups]}

    @app.get("/api/audit/verify", dependencies=[Depends(AUDITORS)])
    def audit_verify(service: ServiceDep) -> dict[str, Any]:
        return dataclasses.asdict(service.store.verify_audit())

    # admin --------------------------------------------------------------------------------

    @app.get("/api/users", dependencies=[Depends(ADMIN)])
    def list_users(service: ServiceDep) -> list[dict[str, Any]]:
        return [{"username": u.username, "role": u.role.value, "unit_id": u.unit_id, "disabled": u.disabled}
                for u in service.store.list_users()]

    @app.post("/api/users", status_code=201)
    def create_user(body: UserIn, service: ServiceDep, who: Annotated[Principal, Depends(ADMIN)]) -> dict[str, Any]:
        if (body.role is Role.UNIT) != (body.unit_id is not None):
            raise HTTPException(422, detail="a 'unit' user needs a unit_id, and only a unit user may have one")
        if body.unit_id is not None:
            service.get_unit(body.unit_id)
        service.store.add_user(User(body.username, body.role, body.unit_id), hash_password(body.password), actor=who.actor)
        return {"username": body.username, "role": body.role.value, "unit_id": body.unit_id}

    @app.get("/api/settings", dependencies=[Depends(ADMIN)])
    def settings(service: ServiceDep) -> dict[str, Any]:
        return settings_view() if settings_view is not None else {}

    @app.get("/api/metrics", dependencies=[Depends(METRICS)])
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
        details: dict[str, Any] = {}
        for name, probe in (probes or {}).items():
            try:
                details[name] = probe()
                results[name] = bool(details[name].get("ok"))
            except Exception as e:
                details[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                results[name] = False
        healthy = all(results.values())
        body = {
            "status": "ok" if healthy else "degraded",
            "checks": {name: "ok" if ok else "failing" for name, ok in results.items()},
            **details,
            "metrics": service.metrics(),
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    scraped = [ServiceCollector(service.metrics, supervisor.metrics if supervisor is not None else None), *collectors]

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus_metrics() -> Response:
        """Counters, queue depths and the ingest latency histogram in the Prometheus text format."""
        return Response(render(scraped), media_type=CONTENT_TYPE)

    from dispatch.live import mount_live_map  # live imports this module's models

    mount_live_map(app, service, map_options)
    from dispatch.supervision_api import mount_supervision  # after the live map: its feed hears the buttons

    mount_supervision(app, service, supervisor)
    return app
