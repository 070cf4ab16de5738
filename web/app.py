"""The dispatcher's HTTP API and live map as one FastAPI app.

Every route but ``/healthz``, ``/metrics``, ``POST /api/token`` and the map's sign-in needs a
bearer token (or the map's session cookie) and one of the roles its router lists; the routers
are :mod:`web.routes`. The app is armoured by :mod:`web.hardening` and answers the dispatch
room's errors as JSON (404, 409 with the alert's state, 503 when the store is down).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client.registry import Collector

from dispatch.auth import Authenticator
from dispatch.reports import Districts
from dispatch.service import Conflict, DispatchService, NotFound
from dispatch.store import StoreError
from dispatch.supervision import DeviceSupervisor
from web.deps import WebContext, install
from web.handheld import HandheldFeed
from web.hardening import HttpHardening, LoginThrottle, install_hardening
from web.live_feed import LiveFeed
from web.pages import MapOptions, StreetBasemap
from web.plan_jobs import PlanJobs
from web.routes import (
    admin,
    alerts,
    devices,
    handheld,
    handheld_page,
    health,
    live_map,
    patrol_plans,
    plans_page,
    reports,
    units,
)
from web.routes import auth as auth_routes
from web.routes import plan_dosage as plan_dosage_routes
from web.routes import plans as plan_routes
from web.routes import sites as site_routes
from web.schemas import ERROR_RESPONSES
from web.site_jobs import SiteJobs
from web.telemetry import ServiceCollector

__all__ = ["create_app", "warm_routes"]

_WARM_UP_PATH = "/.well-known/qorgau-warm-up"
"""A path no route answers: a request for it passes every route, which builds them all (404)."""


def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"the alert store is unavailable: {exc}"}, status_code=503)


def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


def _conflict(request: Request, exc: Exception) -> JSONResponse:
    current = exc.current if isinstance(exc, Conflict) else None
    return JSONResponse({"detail": str(exc), "current": current}, status_code=409)


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
    plans: PlanJobs | None = None,
    sites: SiteJobs | None = None,
    replica: str | None = None,
) -> FastAPI:
    """Build the HTTP API over a running :class:`~dispatch.service.DispatchService`.

    Parameters
    ----------
    service
        The service whose store, units and counters the API shows.
    checks
        Extra health checks by name (e.g. ``{"mqtt": bridge.is_connected}``) for ``/healthz``.
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
    probes
        Health checks that also tell why, by name: each returns a dict with ``ok`` and details,
        shown under that name in ``/healthz`` (e.g. the MQTT lanes, queues and last message's age).
    collectors
        More Prometheus collectors for ``/metrics`` (the MQTT bridge's), beside the service's own.
    hardening
        Body size limit, CORS origins, login throttle (:mod:`web.hardening`); by default closed.
    plans
        Patrol plans for ``/api/plans`` (commander role); None: no plans API.
    sites
        Booth sitings for ``/api/sites`` (commander role); None: no sitings API.
    replica
        This replica's name: in ``/healthz`` and as the ``replica`` label of every ``/metrics`` sample.
    """
    options = map_options or MapOptions()
    hardening = hardening or HttpHardening()
    feed = LiveFeed(service, capacity=options.capacity)
    # The change stream, with each unit's order and withdrawn events; buttons' supervision changes
    # (offline, back) are changes of the stream too, from whichever replica supervises.
    feed.attach(HandheldFeed(service, feed))
    scraped = [ServiceCollector(service.metrics, supervisor.metrics if supervisor is not None else None), *collectors]

    app = FastAPI(title=title, responses=ERROR_RESPONSES)
    install(
        app,
        WebContext(
            service=service,
            auth=auth or Authenticator(),
            login_throttle=LoginThrottle(hardening.login_max_failures, hardening.login_window_s),
            live_feed=feed,
            map_options=options,
            hardening=hardening,
            basemap=StreetBasemap(service.router.network),
            supervisor=supervisor,
            districts=districts,
            settings_view=settings_view,
            checks=dict(checks or {}),
            probes=dict(probes or {}),
            collectors=scraped,
            plans=plans,
            sites=sites,
            replica=replica,
        ),
    )
    install_hardening(app, hardening)  # size limit, CORS, security headers
    app.add_exception_handler(StoreError, _store_unavailable)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    # /healthz first: FastAPI builds a router's routes (their request models) at the first request
    # that reaches it, so the first probe of a starting replica builds three routes, not thirty
    # (the paths are distinct: the order decides nothing else). warm_routes builds the rest.
    for routes in (health, auth_routes, alerts, units, handheld, reports, admin, live_map, devices):
        app.include_router(routes.router)
    app.include_router(handheld_page.router)
    app.include_router(patrol_plans.router)  # a unit's current patrol plan, the live map's plan layer
    if plans is not None:
        app.include_router(plan_routes.router)
        app.include_router(plans_page.router)  # the commander's console: /plans
        app.include_router(plan_dosage_routes.router)
    if sites is not None:
        app.include_router(site_routes.router)
    return app


def warm_routes(app: FastAPI) -> int:
    """Build every route's request handling now, not at its first request; return the status (404).

    FastAPI builds a route's models and dependencies when the first request reaches it; one
    in-process request for a path that no route answers reaches them all. No socket, no access
    log; it runs through the middleware like any unknown path. For a background thread once the
    service is up (:func:`qorgau.runtime.preload`).
    """
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": _WARM_UP_PATH,
        "raw_path": _WARM_UP_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }
    asyncio.run(app(scope, receive, send))
    return status
