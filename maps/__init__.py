"""maps: Folium/Leaflet rendering of GeoJSON, as self-contained pages that work offline.

Renders what others hand it (streets, routes, hot spots, booths, as GeoJSON and plain labels in
the reader's language); imports neither the MQTT bridge nor dispatch, nor the planner.

Public names::

    html = render_plan_map(routes=..., hotspots=..., booths=..., labels=..., risk_cells=..., streets=...)
    html = render_live_map(labels=..., config=..., center=(lat, lon), tile_url=None)   # the dispatcher's map
    html = render_login_page(labels=..., next_url="/map")
    static_assets()["leaflet.js"].body          # files the live map page loads from the service
    html = render_handheld(labels=..., config=..., unit_name=..., unit_kind="foot")  # the officer's handheld
    handheld_manifest(...), handheld_service_worker(...), handheld_icon()           # its PWA files
"""

from maps.assets import StaticAsset, leaflet_assets, static_assets
from maps.handheld import handheld_icon, handheld_manifest, handheld_service_worker, render_handheld
from maps.live_map import render_live_map, render_login_page
from maps.plan_map import render_plan_map

__all__ = [
    "StaticAsset",
    "handheld_icon",
    "handheld_manifest",
    "handheld_service_worker",
    "leaflet_assets",
    "render_handheld",
    "render_live_map",
    "render_login_page",
    "render_plan_map",
    "static_assets",
]
