"""The officer's handheld: the page, its web-app manifest, its service worker and icon.

Routes (roles)::

    GET /unit                       the handheld (unit logins; others to /map, strangers to /login)
    GET /unit/manifest.webmanifest  the web-app manifest, ?lang= (anyone: it holds no data)
    GET /unit/sw.js                 the service worker, scope /unit (anyone)
    GET /unit/icon.svg              the app's icon (anyone)

The page acts only through the handheld API (``/api/units/{id}/order``, ``.../order/status``,
``.../availability``, ``.../position``, the ``/unit/events`` stream), with the session cookie and
the ``X-Qorgau-Request`` header like the dispatcher's map, so the same roles, state machine and
audit trail apply; the unit login is the actor. A unit login signing in at ``/login`` lands here
(:mod:`web.routes.live_map`). None of these routes is in the OpenAPI document.
"""

from __future__ import annotations

import hashlib
import html
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dispatch.domain import Role, Unit
from dispatch.lifecycle import TRANSITIONS
from dispatch.service import DispatchService, NotFound
from maps import handheld_icon, handheld_manifest, handheld_service_worker, render_handheld, static_assets
from web.deps import CSRF_HEADER, MapOptionsDep, ServiceDep, SessionDep
from web.pages import LANGS, MapOptions, unit_catalogue, utc_label

__all__ = ["POSITION_POLICY", "router"]

router = APIRouter(tags=["handheld"], include_in_schema=False)

PAGE = "/unit"
SCOPE = "/unit"
_STATIC = "/static/"
_PAGE_ASSETS = ("leaflet.js", "leaflet.css", "handheld.js", "handheld.css")
_STREETS = "/map/streets.geojson"
_EVENTS = "/unit/events"

POSITION_POLICY = {"position_min_interval_s": 5.0, "position_min_move_m": 10.0, "position_keepalive_s": 30.0}
"""When the page sends a fix: after moving this far, never more often than this, and at least this often."""


def _lang(lang: str | None, options: MapOptions) -> str:
    return lang if lang in LANGS else options.lang


def _config(service: DispatchService, unit: Unit) -> dict[str, Any]:
    zone = ZoneInfo(service.policy.timezone)
    offset = datetime.now(zone).utcoffset() or timedelta(0)
    network = service.router.network
    min_lat, min_lon, max_lat, max_lon = network.bounds
    base = f"/api/units/{quote(unit.id, safe='')}"
    return {
        "unit": {"id": unit.id, "name": unit.name, "kind": unit.kind.value},
        "urls": {
            "order": f"{base}/order",
            "status": f"{base}/order/status",
            "availability": f"{base}/availability",
            "position": f"{base}/position",
            "plan": f"{base}/plan",
            "events": _EVENTS,
            "streets": _STREETS,
            "sw": f"{PAGE}/sw.js",
            "sw_scope": SCOPE,
            "login": f"/login?next={PAGE}",
        },
        "transitions": {s.value: sorted(t.value for t in targets) for s, targets in TRANSITIONS.items()},
        "utc_offset_s": int(offset.total_seconds()),
        "tz_label": utc_label(offset, service.policy.timezone),
        "csrf_header": CSRF_HEADER,
        "center": list(network.center),
        "bounds": [[min_lat, min_lon], [max_lat, max_lon]],
        **POSITION_POLICY,
    }


def _refusal(text: str, status_code: int) -> HTMLResponse:
    return HTMLResponse(f"<!DOCTYPE html><p>{html.escape(text)}</p>", status_code=status_code)


@router.get(PAGE, response_class=HTMLResponse)
def handheld(service: ServiceDep, options: MapOptionsDep, who: SessionDep, lang: str | None = None) -> Response:
    code = _lang(lang, options)
    if who is None:
        return RedirectResponse(f"/login?lang={code}&next={quote(PAGE, safe='/')}", status_code=303)
    if who.role is not Role.UNIT:
        return RedirectResponse(f"/map?lang={code}", status_code=303)
    labels = unit_catalogue(code)
    if who.unit_id is None:
        return _refusal(labels["no_unit"], 403)
    try:
        unit = service.get_unit(who.unit_id)
    except NotFound:
        return _refusal(labels["no_unit"], 404)
    page = render_handheld(
        labels=labels,
        config=_config(service, unit),
        unit_name=unit.name,
        unit_kind=unit.kind.value,
        lang=code,
        langs=LANGS,
        asset_base=_STATIC,
        page_url=PAGE,
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get(f"{PAGE}/manifest.webmanifest")
def manifest(options: MapOptionsDep, lang: str | None = None) -> JSONResponse:
    code = _lang(lang, options)
    body = handheld_manifest(labels=unit_catalogue(code), lang=code, start_url=PAGE, scope=SCOPE)
    return JSONResponse(body, media_type="application/manifest+json", headers={"Cache-Control": "public, max-age=3600"})


def service_worker_script() -> str:
    """The service worker with its file list; its version changes whenever one of the page's files does."""
    assets = static_assets()
    precache = [PAGE, *(_STATIC + name for name in _PAGE_ASSETS), _STREETS, f"{PAGE}/manifest.webmanifest"]
    precache.append(f"{PAGE}/icon.svg")
    draft = handheld_service_worker(version="", precache=precache, live=[_EVENTS])
    digest = hashlib.sha256(draft.encode())
    for name in _PAGE_ASSETS:
        digest.update(assets[name].etag.encode())
    return handheld_service_worker(version=digest.hexdigest()[:16], precache=precache, live=[_EVENTS])


@router.get(f"{PAGE}/sw.js")
def service_worker() -> Response:
    return Response(
        service_worker_script(),
        media_type="text/javascript; charset=utf-8",
        headers={"Service-Worker-Allowed": SCOPE, "Cache-Control": "no-cache"},
    )


@router.get(f"{PAGE}/icon.svg")
def icon() -> Response:
    return Response(handheld_icon(), media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})
