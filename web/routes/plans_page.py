"""The commander's plans console: ``GET /plans`` (commander; others refused, strangers to /login).

The page makes plans through the plans API (``POST /api/plans``, ``GET /api/plans/{id}``, its map
and files, ``POST /api/plans/{id}/issue``, an issued plan's ``GET /api/plans/{id}/dosage``) with the session cookie and the ``X-Qorgau-Request``
header, like the live map: the same roles and audit trail apply, the commander is the actor.
The app includes this router when it keeps plans (:func:`web.create_app`, ``plans=``). Not in the
OpenAPI document.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

import maps
from dispatch.domain import Role, UnitKind
from dispatch.service import DispatchService
from web.deps import CSRF_HEADER, MapOptionsDep, ServiceDep, SessionDep
from web.pages import LANGS, MapOptions, plans_catalogue, utc_label

__all__ = ["PAGE", "router"]

router = APIRouter(tags=["plans console"], include_in_schema=False)

PAGE = "/plans"
HISTORY_DAYS = 90
"""The form's history period starts this many days back."""


def _lang(lang: str | None, options: MapOptions) -> str:
    return lang if lang in LANGS else options.lang


DOSAGE_REFRESH_S = 30.0
"""An issued plan's dose is asked for again this often (seconds) until its shift is over; ``?refresh=`` sets it."""


def _config(service: DispatchService, *, refresh_s: float = DOSAGE_REFRESH_S) -> dict[str, Any]:
    zone = ZoneInfo(service.policy.timezone)
    now = datetime.now(zone)
    offset = now.utcoffset() or timedelta(0)
    network = service.router.network
    min_lat, min_lon, max_lat, max_lon = network.bounds
    booths = [
        {"id": u.id, "name": u.name or u.id, "lat": u.lat, "lon": u.lon}
        for u in sorted(service.units(), key=lambda u: u.id)
        if u.kind is UnitKind.BOOTH and not u.retired
    ]
    return {
        "urls": {"plans": "/api/plans", "streets": "/map/streets.geojson", "login": f"/login?next={PAGE}"},
        "booths": booths,
        "timezone": service.policy.timezone,
        "defaults": {
            "date": now.date().isoformat(),
            "shift": "22:00-06:00",
            "patrols": 2,
            "walk_speed": round(service.router.walk_speed_mps, 2),
            "dwell": 15,
            "seed": None,
            "time_limit": 30,
            "since": (now - timedelta(days=HISTORY_DAYS)).strftime("%Y-%m-%dT%H:%M"),
            "until": None,  # empty: up to the moment the plan is asked for
        },
        "utc_offset_s": int(offset.total_seconds()),
        "tz_label": utc_label(offset, service.policy.timezone),
        "csrf_header": CSRF_HEADER,
        "center": list(network.center),
        "bounds": [[min_lat, min_lon], [max_lat, max_lon]],
        "dosage_refresh_s": refresh_s,
    }


@router.get(PAGE, response_class=HTMLResponse)
def plans_console(
    service: ServiceDep,
    options: MapOptionsDep,
    who: SessionDep,
    lang: str | None = None,
    refresh: Annotated[float, Query(ge=2, le=600)] = DOSAGE_REFRESH_S,
) -> Response:
    code = _lang(lang, options)
    if who is None:
        return RedirectResponse(f"/login?lang={code}&next={quote(PAGE, safe='/')}", status_code=303)
    labels = plans_catalogue(code)
    if who.role is not Role.COMMANDER:
        return HTMLResponse(f"<!DOCTYPE html><p>{html.escape(labels['no_plans_role'])}</p>", status_code=403)
    page = maps.render_plans_console(
        labels=labels,
        config=_config(service, refresh_s=refresh),
        lang=code,
        langs=LANGS,
        user=who.username,
        page_url=PAGE,
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
