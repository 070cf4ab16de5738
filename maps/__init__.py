"""maps: Folium/Leaflet rendering of GeoJSON, as self-contained pages that work offline.

Renders what others hand it (streets, routes, hot spots, booths, as GeoJSON and plain labels in
the reader's language); imports neither the MQTT bridge nor dispatch, nor the planner.

Public names::

    html = render_plan_map(routes=..., hotspots=..., booths=..., labels=..., risk_cells=..., streets=...)
    html = render_live_map(labels=..., config=..., center=(lat, lon), tile_url=None)   # the dispatcher's map
    html = render_login_page(labels=..., next_url="/map")
    static_assets()["leaflet.js"].body          # files the live map page loads from the service
    html = render_plans_console(labels=..., config=...)   # the commander's plans console (/plans)
    html = render_handheld(labels=..., config=..., unit_name=..., unit_kind="foot")  # the officer's handheld
    handheld_manifest(...), handheld_service_worker(...), handheld_icon()           # its PWA files
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maps.assets import StaticAsset, leaflet_assets, static_assets
    from maps.handheld import handheld_icon, handheld_manifest, handheld_service_worker, render_handheld
    from maps.live_map import render_live_map, render_login_page
    from maps.plan_map import render_plan_map
    from maps.plans_console import PLAN_DOWNLOADS, render_plans_console
    from maps.sites_map import SITES_MAP_LABEL_KEYS, render_sites_map

__all__ = [
    "PLAN_DOWNLOADS",
    "SITES_MAP_LABEL_KEYS",
    "StaticAsset",
    "handheld_icon",
    "handheld_manifest",
    "handheld_service_worker",
    "leaflet_assets",
    "render_handheld",
    "render_live_map",
    "render_login_page",
    "render_plan_map",
    "render_plans_console",
    "render_sites_map",
    "static_assets",
]

_HOMES = {
    "StaticAsset": "maps.assets",
    "leaflet_assets": "maps.assets",
    "static_assets": "maps.assets",
    "render_live_map": "maps.live_map",
    "render_login_page": "maps.live_map",
    "render_plan_map": "maps.plan_map",
    "PLAN_DOWNLOADS": "maps.plans_console",
    "render_plans_console": "maps.plans_console",
    "SITES_MAP_LABEL_KEYS": "maps.sites_map",
    "render_sites_map": "maps.sites_map",
    "handheld_icon": "maps.handheld",
    "handheld_manifest": "maps.handheld",
    "handheld_service_worker": "maps.handheld",
    "render_handheld": "maps.handheld",
}


def __getattr__(name: str) -> Any:
    """Import the public names on first use: serving the map's static files needs no Folium, so a
    service starts without it and renders its first page with it."""
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'maps' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
