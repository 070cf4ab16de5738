"""The dispatcher's live map: the page, its sign-in, the event stream and the files it loads.

Routes (roles)::

    GET  /login, POST /login        the sign-in form; sets the session cookie (anyone)
    POST /logout                    drops the session cookie
    GET  /map                       the live map (dispatcher, commander, viewer; else to /login)
    GET  /map/snapshot              open alerts, the last 24 h of alerts, units, SOS buttons, the last event id (same)
    GET  /map/events                Server-Sent Events: every committed alert, unit and button change (same)
    GET  /map/streets.geojson       the street basemap, built once and cached (same)
    GET  /map/alerts/{id}/route     ?unit_id= that unit's fastest route to the alert, GeoJSON (same)
    GET  /static/{name}             Leaflet and the page's own script and stylesheet (anyone)

The session is the API's own JWT in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over
HTTPS), so page scripts never see it; requests that change something and carry only the cookie
must also send the ``X-Qorgau-Request`` header, which another site's page cannot send without a
CORS pre-flight the service never grants (see :mod:`dispatch.auth`). Actions on the page therefore
go through the same API routes, roles and audit trail as every other client.

The event stream: :class:`LiveFeed` hears every committed change from the
:class:`~dispatch.service.DispatchService` (it is a :class:`~dispatch.ports.ChangeListener`),
numbers it (``<epoch>.<n>``; the epoch changes with every start of the service) and keeps the
last ``capacity`` events. A client that reconnects sends the last id it saw (``Last-Event-ID``,
or ``?after=``) and gets everything after it; when the feed cannot replay that (another epoch, or
older than the buffer) it sends one ``reset`` event and the client loads a fresh snapshot, so no
alert is ever missing after a reconnect.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import math
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import Depends, FastAPI, Form, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from dispatch.api import READERS, AlertOut, UnitOut
from dispatch.auth import CSRF_HEADER, SESSION_COOKIE, Authenticator, Principal, verify_password
from dispatch.domain import Alert, AlertStatus, Role, Unit
from dispatch.lifecycle import CLOSING, OPEN, TRANSITIONS
from dispatch.service import DispatchService
from geo import StreetNetwork
from maps import render_live_map, render_login_page, static_assets

__all__ = ["LANGS", "LiveFeed", "MapOptions", "map_catalogue", "mount_live_map", "street_layers"]

log = logging.getLogger(__name__)

LANGS = ("kk", "ru", "en")
_LOCALES = Path(__file__).with_name("locales")
_MAP_ROLES = frozenset({Role.DISPATCHER, Role.COMMANDER, Role.VIEWER})
_MAJOR = frozenset({"motorway", "trunk", "primary", "secondary", "tertiary"})
_RESET = "event: reset\ndata: {}\n\n"


def map_catalogue(lang: str) -> dict[str, str]:
    """The live map's texts in ``lang`` (``dispatch/locales/map.<lang>.json``)."""
    if lang not in LANGS:
        msg = f"language must be one of {', '.join(LANGS)}, got {lang!r}"
        raise ValueError(msg)
    return json.loads((_LOCALES / f"map.{lang}.json").read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class MapOptions:
    """How the live map is served.

    Parameters
    ----------
    lang
        The page's default language (``?lang=`` overrides it per request).
    tile_url, tile_attribution
        A raster tile URL template (``https://tiles.example/{z}/{x}/{y}.png``) for control rooms
        with a tile server; None draws the city's own streets and needs nothing from outside.
    capacity
        Events kept for clients that reconnect; an older gap is healed with a fresh snapshot.
    heartbeat_s
        A comment line goes out on an idle stream this often, so dead connections are noticed.
    secure_cookie
        Set the cookie's ``Secure`` flag; None: when the request came over HTTPS.
    recent_hours
        Closed alerts received this recently are in the snapshot (for the status filter).
    """

    lang: str = "ru"
    tile_url: str | None = None
    tile_attribution: str = ""
    capacity: int = 20_000
    heartbeat_s: float = 15.0
    secure_cookie: bool | None = None
    recent_hours: float = 24.0
    minor_streets_from_zoom: int = 14

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            msg = f"the map language must be one of {', '.join(LANGS)}, got {self.lang!r}"
            raise ValueError(msg)
        if self.capacity < 1:
            msg = f"capacity must be at least 1 event, got {self.capacity}"
            raise ValueError(msg)


# -- the event feed ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    seq: int
    kind: str
    frame: str  # the whole SSE message


def alert_json(alert: Alert) -> dict[str, Any]:
    """An alert as the map and the API show it (without its orders)."""
    return AlertOut.from_alert(alert).model_dump(mode="json", exclude={"orders"})


def unit_json(unit: Unit, view: dict[str, Any]) -> dict[str, Any]:
    return UnitOut.from_unit(unit, view).model_dump(mode="json")


class LiveFeed:
    """Numbered alert and unit changes for the live map's event streams (thread-safe).

    The service calls :meth:`alert_changed` and :meth:`unit_changed` after each commit, from any
    thread; event streams (asyncio) read :meth:`since` and wait to be woken.
    """

    def __init__(self, service: DispatchService, *, capacity: int = 20_000) -> None:
        self.epoch = secrets.token_hex(4)
        self._service = service
        self._lock = threading.Lock()
        self._events: deque[_Event] = deque(maxlen=capacity)
        self._seq = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.generation = 0
        self.closed = False

    # ChangeListener -----------------------------------------------------------------------

    def alert_changed(self, alert: Alert) -> None:
        self._publish("alert", alert_json(alert))

    def unit_changed(self, unit: Unit) -> None:
        self._publish("unit", unit_json(unit, self._service.unit_view(unit)))

    def device_changed(self, device: dict[str, Any]) -> None:
        """A button went offline, came back or its offline event closed (:mod:`dispatch.supervision`)."""
        self._publish("device", device)

    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._events.append(_Event(seq, kind, f"id: {self.epoch}.{seq}\nevent: {kind}\ndata: {body}\n\n"))
            waiters = list(self._waiters)
        self._wake(waiters)

    @staticmethod
    def _wake(waiters: Iterable[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed: its stream is gone
                pass

    # reading ------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}.{seq}"

    def resume_point(self, last_event_id: str | None) -> int | None:
        """The number to resume after, or None when the client needs a fresh snapshot."""
        if not last_event_id:
            return None
        epoch, _, seq = last_event_id.strip().partition(".")
        if epoch != self.epoch or not seq.isdigit():
            return None
        n = int(seq)
        return n if n <= self.last_seq else None

    def since(self, seq: int, *, limit: int = 5000) -> list[_Event] | None:
        """Events after ``seq`` (oldest first, at most ``limit``); None when some were dropped."""
        with self._lock:
            if seq >= self._seq:
                return []
            if not self._events or self._events[0].seq > seq + 1:
                return None
            found = []
            for event in reversed(self._events):
                if event.seq <= seq:
                    break
                found.append(event)
        found.reverse()
        return found[:limit]

    # streams ------------------------------------------------------------------------------

    def subscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters.add((loop, event))

    def unsubscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters.discard((loop, event))

    @property
    def streams(self) -> int:
        """Event streams open now."""
        with self._lock:
            return len(self._waiters)

    def drop_streams(self) -> None:
        """End every open event stream (clients reconnect and resume); new ones are served."""
        with self._lock:
            self.generation += 1
            waiters = list(self._waiters)
        self._wake(waiters)

    def close(self) -> None:
        """End every open stream and refuse new ones (before the HTTP server stops)."""
        self.closed = True
        self.drop_streams()

    async def stream(self, start: int | None, *, heartbeat_s: float, retry_ms: int = 1000) -> AsyncIterator[str]:
        """The SSE frames for one client, from after ``start`` (None: tell it to reset)."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self.subscribe(loop, wake)
        generation = self.generation
        try:
            yield f"retry: {retry_ms}\n\n"
            if start is None:
                yield _RESET
                return
            cursor = start
            while not self.closed and self.generation == generation:
                wake.clear()
                batch = self.since(cursor)
                if batch is None:
                    yield _RESET
                    return
                if batch:
                    cursor = batch[-1].seq
                    yield "".join(e.frame for e in batch)
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), timeout=heartbeat_s)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            self.unsubscribe(loop, wake)


# -- the street basemap -----------------------------------------------------------------------


def street_layers(network: StreetNetwork, *, decimals: int = 6) -> dict[str, Any]:
    """The streets as at most two MultiLineString features (``class``: ``major`` and ``minor``).

    Each street segment is drawn once (both directions of a two-way street are one), and lines run
    on through junctions, taking the straightest way on, so the basemap is a few long lines rather
    than one per segment.
    """
    u = network.seg_u
    v = network.seg_v
    lo = np.minimum(u, v)
    hi = np.maximum(u, v)
    major = np.isin(np.char.replace(network.seg_highway.astype(str), "_link", ""), list(_MAJOR))
    lat = np.round(network.node_lat, decimals)
    lon = np.round(network.node_lon, decimals)
    x = network.node_lon * math.cos(math.radians(float(np.median(network.node_lat))))
    y = network.node_lat
    features = []
    for cls, mask in (("major", major), ("minor", ~major)):
        if not mask.any():
            continue
        pairs = np.unique(np.stack([lo[mask], hi[mask]], axis=1), axis=0)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        if not len(pairs):
            continue
        free: dict[int, set[int]] = {}
        for a, b in pairs.tolist():
            free.setdefault(a, set()).add(b)
            free.setdefault(b, set()).add(a)

        def walk(start: int) -> list[int]:
            path = [start]
            here, dx, dy = start, 0.0, 0.0
            while free[here]:
                # the straightest way on (any way from the start)
                best = max(free[here], key=lambda n: _cosine(dx, dy, x[n] - x[here], y[n] - y[here]))
                free[here].discard(best)
                free[best].discard(here)
                dx, dy = x[best] - x[here], y[best] - y[here]
                path.append(best)
                here = best
            return path

        lines: list[list[list[float]]] = []
        odd = [n for n, nbrs in free.items() if len(nbrs) % 2]
        for n in odd + list(free):  # lines start where streets end; then what is left is loops
            while free[n]:
                lines.append([[float(lon[i]), float(lat[i])] for i in walk(n)])
        features.append(
            {"type": "Feature", "properties": {"class": cls, "lines": len(lines)},
             "geometry": {"type": "MultiLineString", "coordinates": lines}}
        )  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def _cosine(ax: float, ay: float, bx: float, by: float) -> float:
    norm = math.hypot(ax, ay) * math.hypot(bx, by)
    return 0.0 if norm == 0 else (ax * bx + ay * by) / norm


@dataclass(frozen=True, slots=True)
class _Cached:
    raw: bytes
    gzipped: bytes
    etag: str


def _metres(points: list[tuple[float, float]]) -> float:
    total = 0.0
    for (lat1, lon1), (lat2, lon2) in zip(points[:-1], points[1:], strict=True):
        dx = (lon2 - lon1) * 111_320.0 * math.cos(math.radians((lat1 + lat2) / 2))
        dy = (lat2 - lat1) * 110_574.0
        total += math.hypot(dx, dy)
    return total


def _utc_label(offset: timedelta, zone: str) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return f"UTC{sign}{h}" + (f":{m:02d}" if m else "") + f", {zone}"


# -- routes -----------------------------------------------------------------------------------


def _devices(app: FastAPI) -> list[dict[str, Any]]:
    """The SOS buttons and their supervision state, when the service supervises them."""
    supervisor = getattr(app.state, "supervisor", None)
    return [] if supervisor is None else supervisor.devices_view()



def _token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(SESSION_COOKIE)


def _safe_next(value: str | None) -> str:
    """Only this service's map pages are valid targets after sign-in (no open redirect)."""
    if value and value.startswith("/map") and not value.startswith("//") and "\\" not in value:
        return value
    return "/map"


def mount_live_map(app: FastAPI, service: DispatchService, options: MapOptions | None = None) -> LiveFeed:
    """Add the live map's routes to ``app`` and hook its event feed into ``service``."""
    options = options or MapOptions()
    feed = LiveFeed(service, capacity=options.capacity)
    service.add_listener(feed)
    app.state.live_feed = feed
    streets_lock = threading.Lock()
    streets_cache: list[_Cached] = []
    zone = ZoneInfo(service.policy.timezone)

    def lang_of(lang: str | None) -> str:
        return lang if lang in LANGS else options.lang

    def principal(request: Request) -> Principal | None:
        auth: Authenticator = request.app.state.auth
        token = _token_of(request)
        return None if token is None else auth.principal(token)

    def login_redirect(lang: str, next_url: str = "/map") -> RedirectResponse:
        return RedirectResponse(f"/login?lang={lang}&next={quote(_safe_next(next_url), safe='/')}", status_code=303)

    # sign-in ------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(lang: str | None = None, next: str | None = None) -> HTMLResponse:
        code = lang_of(lang)
        return HTMLResponse(render_login_page(labels=map_catalogue(code), next_url=_safe_next(next), lang=code, langs=LANGS))

    @app.post("/login", include_in_schema=False)
    def login_submit(
        request: Request,
        username: Annotated[str, Form(max_length=128)],
        password: Annotated[str, Form(max_length=256)],
        next: Annotated[str | None, Form()] = None,
        lang: Annotated[str | None, Form()] = None,
    ) -> Response:
        code = lang_of(lang)
        labels = map_catalogue(code)
        client = request.client.host if request.client else None
        throttle = request.app.state.login_throttle  # dispatch.hardening: shared with POST /api/token
        wait = throttle.retry_after_s(client or "unknown", username)
        if wait is not None:
            page = render_login_page(labels=labels, next_url=_safe_next(next), lang=code, langs=LANGS,
                                     error=labels["too_many_logins"].format(s=wait), username=username)
            return HTMLResponse(page, status_code=429, headers={"Retry-After": str(wait)})
        found = service.store.get_user(username)
        ok = found is not None and not found[0].disabled and verify_password(found[1], password)
        service.store.audit("login" if ok else "login_failed", actor=username, after={"client": client, "via": "map"})
        (throttle.succeeded if ok else throttle.failed)(client or "unknown", username)
        if not ok or found is None:
            page = render_login_page(labels=labels, next_url=_safe_next(next), lang=code, langs=LANGS,
                                     error=labels["wrong_login"], username=username)
            return HTMLResponse(page, status_code=401)
        user = found[0]
        if user.role not in _MAP_ROLES:
            page = render_login_page(labels=labels, next_url=_safe_next(next), lang=code, langs=LANGS,
                                     error=labels["no_map_role"], username=username)
            return HTMLResponse(page, status_code=403)
        auth: Authenticator = request.app.state.auth
        target = _safe_next(next)
        target += ("&" if "?" in target else "?") + f"lang={code}" if "lang=" not in target else ""
        response = RedirectResponse(target, status_code=303)
        secure = options.secure_cookie if options.secure_cookie is not None else request.url.scheme == "https"
        response.set_cookie(
            SESSION_COOKIE, auth.issue(user), max_age=int(auth.token_ttl.total_seconds()),
            httponly=True, samesite="strict", secure=secure, path="/",
        )  # fmt: skip
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(lang: str | None = None) -> Response:
        response = RedirectResponse(f"/login?lang={lang_of(lang)}", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # the page -----------------------------------------------------------------------------

    @app.get("/map", response_class=HTMLResponse, include_in_schema=False)
    def map_page(request: Request, lang: str | None = None) -> Response:
        code = lang_of(lang)
        who = principal(request)
        if who is None:
            return login_redirect(code, f"/map?lang={code}")
        labels = map_catalogue(code)
        if who.role not in _MAP_ROLES:
            return HTMLResponse(f"<p>{labels['no_map_role']}</p>", status_code=403)
        network = service.router.network
        min_lat, min_lon, max_lat, max_lon = network.bounds
        offset = datetime.now(zone).utcoffset() or timedelta(0)
        config = {
            "urls": {
                "snapshot": "/map/snapshot", "events": "/map/events", "streets": "/map/streets.geojson",
                "route": "/map/alerts/{id}/route", "alert": "/api/alerts/{id}", "assign": "/api/alerts/{id}/assign",
                "transition": "/api/alerts/{id}/transition", "recommend": "/api/alerts/{id}/recommend", "login": "/login",
            },
            "can_act": who.role is Role.DISPATCHER,
            "role": who.role.value,
            "user": who.username,
            "transitions": {s.value: sorted(t.value for t in targets) for s, targets in TRANSITIONS.items()},
            "utc_offset_s": int(offset.total_seconds()),
            "tz_label": _utc_label(offset, service.policy.timezone),
            "stale_after_s": service.policy.stale_after.total_seconds(),
            "opened_at": service.opened_at.isoformat(),
            "csrf_header": CSRF_HEADER,
            "minor_streets_from_zoom": options.minor_streets_from_zoom,
        }  # fmt: skip
        page = render_live_map(
            labels=labels, config=config, center=network.center,
            bounds=((min_lat, min_lon), (max_lat, max_lon)), tile_url=options.tile_url,
            tile_attribution=options.tile_attribution, lang=code, langs=LANGS,
            user=who.username, role=labels.get(f"role_{who.role.value}", who.role.value),
        )  # fmt: skip
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    # data ---------------------------------------------------------------------------------

    @app.get("/map/snapshot", dependencies=[Depends(READERS)], include_in_schema=False)
    def snapshot() -> JSONResponse:
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
            "last_event_id": feed.event_id(seq),
            "alerts": [alert_json(a) for a in alerts.values()],
            "units": [unit_json(u, service.unit_view(u)) for u in service.units() if not u.retired],
            "devices": _devices(app),
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/map/events", dependencies=[Depends(READERS)], include_in_schema=False)
    def events(
        after: str | None = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> StreamingResponse:
        start = feed.resume_point(last_event_id or after)
        return StreamingResponse(
            feed.stream(start, heartbeat_s=options.heartbeat_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/map/streets.geojson", dependencies=[Depends(READERS)], include_in_schema=False)
    def streets(
        if_none_match: Annotated[str | None, Header()] = None,
        accept_encoding: Annotated[str | None, Header()] = None,
    ) -> Response:
        with streets_lock:
            if not streets_cache:
                raw = json.dumps(street_layers(service.router.network), separators=(",", ":")).encode()
                etag = '"' + hashlib.sha256(raw).hexdigest()[:20] + '"'
                streets_cache.append(_Cached(raw, gzip.compress(raw, 6), etag))
            cached = streets_cache[0]
        headers = {"ETag": cached.etag, "Cache-Control": "private, max-age=86400", "Vary": "Accept-Encoding"}
        if if_none_match == cached.etag:
            return Response(status_code=304, headers=headers)
        if accept_encoding and "gzip" in accept_encoding:
            return Response(cached.gzipped, media_type="application/geo+json", headers={**headers, "Content-Encoding": "gzip"})
        return Response(cached.raw, media_type="application/geo+json", headers=headers)

    @app.get("/map/alerts/{alert_id}/route", dependencies=[Depends(READERS)], include_in_schema=False)
    def route(alert_id: int, unit_id: Annotated[str, Query(min_length=1, max_length=128)]) -> dict[str, Any]:
        alert = service.get_alert(alert_id)
        points = service.route_to_alert(alert_id, unit_id)
        eta = next((r.eta_s for r in alert.recommendations if r.unit_id == unit_id), None)
        return {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[round(lon, 7), round(lat, 7)] for lat, lon in points]},
            "properties": {"alert_id": alert_id, "unit_id": unit_id, "eta_s": eta, "distance_m": round(_metres(list(points)), 1)},
        }

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str, if_none_match: Annotated[str | None, Header()] = None) -> Response:
        asset = static_assets().get(name)
        if asset is None:
            raise HTTPException(404, detail=f"no static file {name!r}")
        headers = {"ETag": asset.etag, "Cache-Control": "public, max-age=3600"}
        if if_none_match == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    return feed
