"""What a route may ask for: the one place that reads the app's state.

:func:`web.create_app` puts one :class:`WebContext` on the app (:func:`install`); routes never
touch ``app.state`` but name what they need in their signature::

    @router.post("/{alert_id}/recommend", response_model=AlertOut)
    def recommend(alert_id: AlertIdPath, service: ServiceDep, who: Dispatcher) -> AlertOut: ...

Who is calling: a bearer token from ``POST /api/token`` or, for browsers (the live map), the same
JWT in the ``qorgau_session`` cookie (``HttpOnly``, ``SameSite=Strict``). A request without a
bearer token is authenticated by that cookie; one that would change something (any method but
GET, HEAD, OPTIONS) must then also carry the ``X-Qorgau-Request`` header, which a page of another
site cannot add without a CORS pre-flight that this service never grants (CSRF defence on top of
SameSite). Without credentials a route answers 401; with a role it does not list, 403. Routes
declare their roles with :func:`require_role` or one of the aliases (:data:`Reader`,
:data:`Dispatcher`, :data:`Commander`, ...), which other routers reuse::

    router = APIRouter(dependencies=[Depends(require_role("commander"))])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from prometheus_client.registry import Collector

from dispatch.auth import BOOTSTRAP_ADMIN, Authenticator, Principal
from dispatch.domain import Role
from dispatch.reports import Districts
from dispatch.service import DispatchService
from dispatch.store import StoreError
from dispatch.supervision import DeviceSupervisor
from web.hardening import HttpHardening, LoginThrottle
from web.live_feed import LiveFeed
from web.pages import MapOptions, StreetBasemap
from web.plan_jobs import PlanJobs
from web.site_jobs import SiteJobs

log = logging.getLogger(__name__)

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Admin",
    "AuditorDep",
    "AuthDep",
    "BasemapDep",
    "Commander",
    "ContextDep",
    "DeviceReader",
    "Dispatcher",
    "DistrictsDep",
    "FalseAlarmReader",
    "FeedDep",
    "MapOptionsDep",
    "MaybeServiceDep",
    "MetricsReader",
    "PlansDep",
    "PrincipalDep",
    "Reader",
    "ReportReader",
    "RoleGuard",
    "ServiceDep",
    "SessionDep",
    "SitesDep",
    "SupervisorDep",
    "ThrottleDep",
    "UnitLogin",
    "UnitReader",
    "UnitStatusSetter",
    "WebContext",
    "authenticator",
    "context",
    "context_of",
    "current_principal",
    "install",
    "own_unit",
    "plans",
    "require_role",
    "session_principal",
    "sites",
]

SESSION_COOKIE = "qorgau_session"
"""The cookie that carries a browser's token (HttpOnly, SameSite=Strict)."""

CSRF_HEADER = "X-Qorgau-Request"
"""Requests that change something and are authenticated by the cookie alone must send this header."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(slots=True)
class WebContext:
    """Everything the routes of one app share (on ``app.state.web``).

    Parameters
    ----------
    service
        The dispatch service the API shows and acts on.
    auth
        Issues and checks tokens.
    login_throttle
        Failed sign-ins per client (``POST /api/token`` and ``/login`` share it).
    live_feed
        The live map's event feed (it hears the service and the supervisor).
    map_options
        How the live map is served.
    hardening
        What the HTTP edge enforces.
    basemap
        The live map's street basemap (built on first use).
    supervisor
        Supervises the SOS buttons; None when the service does not.
    districts
        Polygons for ``group_by=district`` in reports.
    settings_view
        What ``GET /api/settings`` shows (no secrets).
    checks, probes
        Extra health checks for ``/healthz`` (yes/no, and with details).
    collectors
        Everything ``/metrics`` scrapes.
    plans
        The patrol plans (``/api/plans``); None: no plans API.
    sites
        The booth sitings (``/api/sites``); None: no sitings API.
    replica
        This replica's name (``/healthz``, the ``replica`` label in ``/metrics``); None: not named.
    """

    service: DispatchService
    auth: Authenticator
    login_throttle: LoginThrottle
    live_feed: LiveFeed
    map_options: MapOptions
    hardening: HttpHardening
    basemap: StreetBasemap
    supervisor: DeviceSupervisor | None = None
    districts: Districts | None = None
    settings_view: Callable[[], dict[str, Any]] | None = None
    checks: Mapping[str, Callable[[], bool]] = field(default_factory=dict)
    probes: Mapping[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    collectors: Sequence[Collector] = ()
    plans: PlanJobs | None = None
    sites: SiteJobs | None = None
    replica: str | None = None


def install(app: FastAPI, ctx: WebContext) -> WebContext:
    """Put ``ctx`` on ``app`` for the dependencies below."""
    app.state.web = ctx
    return ctx


def context_of(app: FastAPI) -> WebContext:
    """The context :func:`install` put on ``app`` (for the wiring: e.g. to close the live feed)."""
    ctx: WebContext | None = getattr(app.state, "web", None)
    if ctx is None:
        msg = "the app has no WebContext: build it with web.create_app"
        raise RuntimeError(msg)
    return ctx


def context(request: Request) -> WebContext:
    return context_of(request.app)


ContextDep = Annotated[WebContext, Depends(context)]


def service(ctx: ContextDep) -> DispatchService:
    return ctx.service


def service_if_any(request: Request) -> DispatchService | None:
    """The dispatch service, or None in an app built without one (the plans API alone)."""
    ctx: WebContext | None = getattr(request.app.state, "web", None)
    return ctx.service if ctx is not None else None


def authenticator(ctx: ContextDep) -> Authenticator:
    return ctx.auth


def throttle(ctx: ContextDep) -> LoginThrottle:
    return ctx.login_throttle


def supervisor(ctx: ContextDep) -> DeviceSupervisor | None:
    return ctx.supervisor


def feed(ctx: ContextDep) -> LiveFeed:
    return ctx.live_feed


def map_options(ctx: ContextDep) -> MapOptions:
    return ctx.map_options


def districts(ctx: ContextDep) -> Districts | None:
    return ctx.districts


def basemap(ctx: ContextDep) -> StreetBasemap:
    return ctx.basemap


def plans(ctx: ContextDep) -> PlanJobs:
    """The patrol plans; a test app may override this dependency with its own."""
    if ctx.plans is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this service keeps no patrol plans")
    return ctx.plans


def sites(ctx: ContextDep) -> SiteJobs:
    """The booth sitings; a test app may override this dependency with its own."""
    if ctx.sites is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this service runs no booth sitings")
    return ctx.sites


ServiceDep = Annotated[DispatchService, Depends(service)]
MaybeServiceDep = Annotated[DispatchService | None, Depends(service_if_any)]
AuthDep = Annotated[Authenticator, Depends(authenticator)]
ThrottleDep = Annotated[LoginThrottle, Depends(throttle)]
SupervisorDep = Annotated[DeviceSupervisor | None, Depends(supervisor)]
FeedDep = Annotated[LiveFeed, Depends(feed)]
MapOptionsDep = Annotated[MapOptions, Depends(map_options)]
BasemapDep = Annotated[StreetBasemap, Depends(basemap)]
DistrictsDep = Annotated[Districts | None, Depends(districts)]
PlansDep = Annotated[PlanJobs, Depends(plans)]
SitesDep = Annotated[SiteJobs, Depends(sites)]


# -- who is calling -----------------------------------------------------------------------------

_bearer = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def current_principal(request: Request, token: Annotated[str | None, Depends(_bearer)], auth: AuthDep) -> Principal:
    """The caller, or 401."""
    if not token:
        token = request.cookies.get(SESSION_COOKIE)
        if token and request.method not in _SAFE_METHODS and not request.headers.get(CSRF_HEADER):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"a request signed in by the session cookie must send the {CSRF_HEADER} header",
            )
    if not token:
        raise _unauthorized("not signed in: send a bearer token from POST /api/token")
    principal = auth.principal(token)
    if principal is None:
        raise _unauthorized("the token is invalid or expired")
    if _revoked(request, principal):
        raise _unauthorized("the user is disabled or no longer has this role: sign in again")
    return principal


def _revoked(request: Request, principal: Principal) -> bool:
    """Whether the stored user behind a valid token was disabled or changed role or unit since it was issued.

    Looked up in the store on every request (a primary-key read), so a user disabled on one replica
    is refused by all at once. Tokens of users the store does not hold (the bootstrap admin, tokens
    issued by tools) stand as the signature says, and so does every token while the store is down
    (the signature is valid; the map must not go dark with the database).
    """
    svc = service_if_any(request)
    if svc is None or principal.username == BOOTSTRAP_ADMIN:
        return False
    try:
        found = svc.store.get_user(principal.username)
    except StoreError as e:
        log.warning("could not check user %r against the store, taking the token as signed: %s", principal.username, e)
        return False
    if found is None:
        return False
    user = found[0]
    return user.disabled or user.role is not principal.role or user.unit_id != principal.unit_id


def session_principal(request: Request, auth: AuthDep) -> Principal | None:
    """The caller of a page (bearer header or session cookie), or None: pages send strangers to /login."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() or None if header.lower().startswith("bearer ") else request.cookies.get(SESSION_COOKIE)
    principal = None if token is None else auth.principal(token)
    return None if principal is None or _revoked(request, principal) else principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
SessionDep = Annotated[Principal | None, Depends(session_principal)]


class RoleGuard:
    """A FastAPI dependency that lets through the listed roles (403 for others, 401 without a token)."""

    def __init__(self, *roles: Role | str) -> None:
        if not roles:
            msg = "require_role needs at least one role"
            raise ValueError(msg)
        self.roles = frozenset(Role(r) for r in roles)

    def __call__(self, principal: PrincipalDep) -> Principal:
        if principal.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"role {principal.role.value!r} may not do this (needs: {allowed})"
            )
        return principal

    def __repr__(self) -> str:
        return f"require_role({', '.join(sorted(r.value for r in self.roles))})"


def require_role(*roles: Role | str) -> RoleGuard:
    """A dependency admitting only ``roles``; it returns the :class:`~dispatch.auth.Principal`."""
    return RoleGuard(*roles)


R = Role
Reader = Annotated[Principal, Depends(require_role(R.DISPATCHER, R.COMMANDER, R.VIEWER))]
"""Dispatchers, commanders and viewers: everyone who reads alerts and units."""
Dispatcher = Annotated[Principal, Depends(require_role(R.DISPATCHER))]
Commander = Annotated[Principal, Depends(require_role(R.COMMANDER))]
Admin = Annotated[Principal, Depends(require_role(R.ADMIN))]
UnitReader = Annotated[Principal, Depends(require_role(R.DISPATCHER, R.COMMANDER, R.VIEWER, R.UNIT))]
"""Readers and unit logins (a unit only for its own unit: :func:`own_unit`)."""
UnitStatusSetter = Annotated[Principal, Depends(require_role(R.DISPATCHER, R.COMMANDER, R.UNIT))]
UnitLogin = Annotated[Principal, Depends(require_role(R.UNIT))]
ReportReader = Annotated[Principal, Depends(require_role(R.COMMANDER, R.VIEWER))]
AuditorDep = Annotated[Principal, Depends(require_role(R.ADMIN, R.COMMANDER))]
MetricsReader = Annotated[Principal, Depends(require_role(R.ADMIN, R.COMMANDER, R.DISPATCHER, R.VIEWER))]
DeviceReader = Annotated[Principal, Depends(require_role(R.ADMIN, R.DISPATCHER, R.COMMANDER, R.VIEWER))]
FalseAlarmReader = Annotated[Principal, Depends(require_role(R.COMMANDER, R.VIEWER, R.DISPATCHER))]


def own_unit(who: Principal, unit_id: str) -> None:
    """403 unless ``who`` may act for ``unit_id`` (a unit login only for its own unit)."""
    if who.role is Role.UNIT and who.unit_id != unit_id:
        raise HTTPException(status_code=403, detail=f"a unit login may act only for its own unit ({who.unit_id!r})")
