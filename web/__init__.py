"""web: the HTTP edge of Qorgau — the dispatcher's API, the live map and the plans API.

The room turns HTTP into calls of the dispatch room's services and back: the FastAPI app
(:func:`create_app`), its dependencies (:mod:`web.deps`, the only code that reads the app's
state), the API models (:mod:`web.schemas`), one router per resource (:mod:`web.routes`), the live
map's pages and event feed (:mod:`web.pages`, :mod:`web.live_feed`), the sign-in
(:mod:`web.sign_in`), the HTTP armour (:mod:`web.hardening`), ``/metrics``
(:mod:`web.telemetry`) and patrol plans over HTTP (:mod:`web.plan_jobs`, :mod:`web.plan_outputs`).
It imports ``dispatch``, ``patrol_planner``, ``maps`` and ``geo``; never ``qorgau``, which wires it.

Public names::

    app = create_app(service, auth=Authenticator(secret), supervisor=supervisor,
                     map_options=MapOptions(lang="kk"), hardening=HttpHardening(cors_origins=()),
                     plans=PlanJobs(graph=lambda: WalkGraph(router), data_dir="var/plans"))
    context_of(app).live_feed.close()       # before the HTTP server stops (open event streams)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from web.app import create_app, warm_routes
    from web.deps import WebContext, context_of, require_role
    from web.hardening import HttpHardening
    from web.pages import MapOptions
    from web.plan_jobs import PlanJobs
    from web.site_jobs import SiteJobs


__all__ = [
    "HttpHardening",
    "MapOptions",
    "PlanJobs",
    "SiteJobs",
    "WebContext",
    "context_of",
    "create_app",
    "preload_renderers",
    "require_role",
    "warm_routes",
]


def preload_renderers() -> None:
    """Import the map renderer (Folium) that ``serve`` leaves out of its start.

    Call it from a background thread once the service is up, so that the first sign-in or map page
    does not wait for the import (a request arriving meanwhile waits on Python's import lock).
    """
    importlib.import_module("maps.live_map")


_HOMES = {
    "create_app": "web.app",
    "warm_routes": "web.app",
    "WebContext": "web.deps",
    "context_of": "web.deps",
    "require_role": "web.deps",
    "HttpHardening": "web.hardening",
    "MapOptions": "web.pages",
    "PlanJobs": "web.plan_jobs",
    "SiteJobs": "web.site_jobs",
}


def __getattr__(name: str) -> Any:
    """Import the public names on first use: ``qorgau.settings`` needs only :mod:`web.hardening`,
    and importing it must not build the whole HTTP edge (the planner, the map renderer)."""
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'web' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
