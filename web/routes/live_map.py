"""The dispatcher's live map: the page, its sign-in, the event stream and the files it loads.

Routes (roles)::

    GET  /login, POST /login        the sign-in form; sets the session cookie (anyone)
    POST /logout                    drops the session cookie
    GET  /map                       the live map (dispatcher, commander, viewer; else to /login)
    GET  /map/snapshot              open alerts, the last 24 h of alerts, units, SOS buttons, the last event id (same)
    GET  /map/events                Server-Sent Events: every committed alert, unit and button change (same)
    GET  /map/streets.geojson       the street basemap, built once and cached (same, and unit logins)
    GET  /map/alerts/{id}/route     ?unit_id= that unit's fastest route to the alert, GeoJSON (same)
    GET  /map/plan                  the issued patrol plan's routes and hot spots (web.routes.patrol_plans)
    GET  /static/{name}             Leaflet and the page's own script and stylesheet (anyone)

The session is the API's own JWT in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over
HTTPS), so page scripts never see it; requests that change something and carry only the cookie
must also send the ``X-Qorgau-Request`` header (see :mod:`web.deps`). Actions on the page
therefore go through the same API routes, roles and audit trail as every other client. The sign-in
is the API's own (:func:`web.sign_in.authenticate`). None of these routes is in the OpenAPI
document.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import APIRouter, Form, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

import maps  # its names load on first use: Folium only when the first page is rendered
from dispatch.domain import AlertStatus, Role
from dispatch.lifecycle import CLOSING, OPEN, TRANSITIONS
from dispatch.service import DispatchService
from geo import great_circle_m
from web.deps import (
    CSRF_HEADER,
    SESSION_COOKIE,
    AuthDep,
    BasemapDep,
    FeedDep,
    MapOptionsDep,
    Reader,
    ServiceDep,
    SessionDep,
    SupervisorDep,
    ThrottleDep,
    UnitReader,
)
from web.live_feed import LiveFeed, alert_json, unit_json
from web.pages import LANGS, MAP_ROLES, MapOptions, map_catalogue, utc_label
from web.sign_in import Throttled, authenticate

__all__ = ["router"]

router = APIRouter(tags=["live map"], include_in_schema=False)


def _lang(lang: str | None, options: MapOptions) -> str:
    return lang if lang in LANGS else options.lang


def _safe_next(value: str | None) -> str:
    """Only this service's map, handheld and plans pages are valid targets after sign-in (no open redirect)."""
    if value and value.startswith(("/map", "/unit", "/plans")) and not value.startswith("//") and "\\" not in value:
        return value
    return "/map"


def _landing(role: Role, next_url: str | None) -> str:
    """Where a sign-in lands: a unit login on its handheld (``/unit``), everyone else on the map."""
    target = _safe_next(next_url)
    if role is Role.UNIT:
        return target if target.startswith("/unit") else "/unit"
    return "/map" if target.startswith("/unit") else target


def _login_redirect(lang: str, next_url: str = "/map") -> RedirectResponse:
    return RedirectResponse(f"/login?lang={lang}&next={quote(_safe_next(next_url), safe='/')}", status_code=303)


def _metres(points: list[tuple[float, float]]) -> float:
    """The length of a (lat, lon) polyline along the great circle."""
    if len(points) < 2:
        return 0.0
    lat, lon = np.asarray(points, dtype=np.float64).T
    return float(great_circle_m(lat[:-1], lon[:-1], lat[1:], lon[1:]).sum())


# -- sign-in ------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(options: MapOptionsDep, lang: str | None = None, next: str | None = None) -> HTMLResponse:
    code = _lang(lang, options)
    return HTMLResponse(
        maps.render_login_page(labels=map_catalogue(code), next_url=_safe_next(next), lang=code, langs=LANGS)
    )


@router.post("/login")
def login_submit(
    request: Request,
    service: ServiceDep,
    auth: AuthDep,
    throttle: ThrottleDep,
    options: MapOptionsDep,
    username: Annotated[str, Form(max_length=128)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str | None, Form()] = None,
    lang: Annotated[str | None, Form()] = None,
) -> Response:
    code = _lang(lang, options)
    labels = map_catalogue(code)

    def page(error: str, status_code: int, headers: dict[str, str] | None = None) -> HTMLResponse:
        html = maps.render_login_page(
            labels=labels, next_url=_safe_next(next), lang=code, langs=LANGS, error=error, username=username
        )
        return HTMLResponse(html, status_code=status_code, headers=headers)

    client = request.client.host if request.client else None
    try:
        user = authenticate(service, throttle, username, password, client=client, via="map")
    except Throttled as e:
        return page(labels["too_many_logins"].format(s=e.retry_after_s), 429, {"Retry-After": str(e.retry_after_s)})
    if user is None:
        return page(labels["wrong_login"], 401)
    if user.role not in MAP_ROLES and user.role is not Role.UNIT:
        return page(labels["no_map_role"], 403)
    target = _landing(user.role, next)
    target += ("&" if "?" in target else "?") + f"lang={code}" if "lang=" not in target else ""
    response = RedirectResponse(target, status_code=303)
    secure = options.secure_cookie if options.secure_cookie is not None else request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        auth.issue(user),
        max_age=int(auth.token_ttl.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return response


@router.post("/logout")
def logout(options: MapOptionsDep, lang: str | None = None) -> Response:
    response = RedirectResponse(f"/login?lang={_lang(lang, options)}", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# -- the page -----------------------------------------------------------------------------------


def _config(service: DispatchService, options: MapOptions, role: Role, username: str) -> dict[str, Any]:
    zone = ZoneInfo(service.policy.timezone)
    offset = datetime.now(zone).utcoffset() or timedelta(0)
    return {
        "urls": {
            "snapshot": "/map/snapshot",
            "events": "/map/events",
            "streets": "/map/streets.geojson",
            "route": "/map/alerts/{id}/route",
            "alert": "/api/alerts/{id}",
            "assign": "/api/alerts/{id}/assign",
            "transition": "/api/alerts/{id}/transition",
            "recommend": "/api/alerts/{id}/recommend",
            "login": "/login",
            "plan": "/map/plan",
        },
        "can_act": role is Role.DISPATCHER,
        "role": role.value,
        "user": username,
        "transitions": {s.value: sorted(t.value for t in targets) for s, targets in TRANSITIONS.items()},
        "utc_offset_s": int(offset.total_seconds()),
        "tz_label": utc_label(offset, service.policy.timezone),
        "stale_after_s": service.policy.stale_after.total_seconds(),
        "opened_at": service.opened_at.isoformat(),
        "csrf_header": CSRF_HEADER,
        "minor_streets_from_zoom": options.minor_streets_from_zoom,
        "streets_attribution": options.streets_attribution,
    }


@router.get("/map", response_class=HTMLResponse)
def map_page(service: ServiceDep, options: MapOptionsDep, who: SessionDep, lang: str | None = None) -> Response:
    code = _lang(lang, options)
    if who is None:
        return _login_redirect(code, f"/map?lang={code}")
    labels = map_catalogue(code)
    if who.role is Role.UNIT:
        return RedirectResponse(f"/unit?lang={code}", status_code=303)  # a unit's page is its handheld
    if who.role not in MAP_ROLES:
        return HTMLResponse(f"<p>{labels['no_map_role']}</p>", status_code=403)
    network = service.router.network
    min_lat, min_lon, max_lat, max_lon = network.bounds
    page = maps.render_live_map(
        labels=labels,
        config=_config(service, options, who.role, who.username),
        center=network.center,
        bounds=((min_lat, min_lon), (max_lat, max_lon)),
        tile_url=options.tile_url,
        tile_attribution=options.tile_attribution,
        lang=code,
        langs=LANGS,
        user=who.username,
        role=labels.get(f"role_{who.role.value}", who.role.value),
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


# -- data ---------------------------------------------------------------------------------------


@router.get("/map/snapshot")
def snapshot(
    service: ServiceDep, feed: FeedDep, supervisor: SupervisorDep, options: MapOptionsDep, _: Reader
) -> JSONResponse:
    seq = feed.last_seq  # before reading: later changes are replayed by the stream
    now = service.clock()
    recent_from = now - timedelta(hours=options.recent_hours)
    alerts = {a.id: a for a in service.store.list_alerts(statuses=OPEN, order="priority", limit=100_000)}
    for a in service.store.list_alerts(statuses=CLOSING | {AlertStatus.TEST}, order="newest", limit=5000):
        if a.received_at < recent_from:
            break
        alerts.setdefault(a.id, a)
    body = {
        "now": now.isoformat(),
        "last_event_id": str(seq),
        "alerts": [alert_json(a) for a in alerts.values()],
        "units": [unit_json(u, service.unit_view(u)) for u in service.units() if not u.retired],
        "devices": [] if supervisor is None else [_newest(feed, d) for d in supervisor.devices_view()],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _newest(feed: LiveFeed, device: dict[str, Any]) -> dict[str, Any]:
    """A button as this replica's supervisor knows it, with the state and offline event of its
    newest supervision change from any replica (the leader supervises; every replica hears it)."""
    changed = feed.device(device["id"])
    if changed is None:
        return device
    return {**device, "state": changed["state"], "event": changed["event"]}


@router.get("/map/events")
def events(
    feed: FeedDep,
    options: MapOptionsDep,
    _: Reader,
    after: str | None = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every change after the client's last id (``Last-Event-ID``, or ``?after=`` on a new connection),
    from memory or the database, whichever replica committed it; ``reset`` when it cannot be replayed."""
    start = feed.resume(last_event_id or after)
    return StreamingResponse(
        feed.stream(start, heartbeat_s=options.heartbeat_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/map/streets.geojson")
def streets(
    basemap: BasemapDep,
    _: UnitReader,  # the handheld draws the same streets
    if_none_match: Annotated[str | None, Header()] = None,
    accept_encoding: Annotated[str | None, Header()] = None,
) -> Response:
    cached = basemap.get()
    headers = {"ETag": cached.etag, "Cache-Control": "private, max-age=86400", "Vary": "Accept-Encoding"}
    if if_none_match == cached.etag:
        return Response(status_code=304, headers=headers)
    if accept_encoding and "gzip" in accept_encoding:
        return Response(
            cached.gzipped, media_type="application/geo+json", headers={**headers, "Content-Encoding": "gzip"}
        )
    return Response(cached.raw, media_type="application/geo+json", headers=headers)


@router.get("/map/alerts/{alert_id}/route")
def route(
    alert_id: int, service: ServiceDep, _: Reader, unit_id: Annotated[str, Query(min_length=1, max_length=128)]
) -> dict[str, Any]:
    alert = service.get_alert(alert_id)
    points = service.route_to_alert(alert_id, unit_id)
    eta = next((r.eta_s for r in alert.recommendations if r.unit_id == unit_id), None)
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[round(lon, 7), round(lat, 7)] for lat, lon in points]},
        "properties": {
            "alert_id": alert_id,
            "unit_id": unit_id,
            "eta_s": eta,
            "distance_m": round(_metres(list(points)), 1),
        },
    }


@router.get("/static/{name}")
def static(name: str, if_none_match: Annotated[str | None, Header()] = None) -> Response:
    asset = maps.static_assets().get(name)
    if asset is None:
        raise HTTPException(404, detail=f"no static file {name!r}")
    headers = {"ETag": asset.etag, "Cache-Control": "public, max-age=3600"}
    if if_none_match == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
