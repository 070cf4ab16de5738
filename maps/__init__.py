"""maps: Folium/Leaflet rendering of GeoJSON, as self-contained pages that work offline.

Renders what others hand it (streets, routes, hot spots, booths, as GeoJSON and plain labels in
the reader's language); imports neither the MQTT bridge nor dispatch, nor the planner.

Public names::

    html = render_plan_map(routes=..., hotspots=..., booths=..., labels=..., risk_cells=..., streets=...)
    html = render_sites_map(existing=..., added=..., labels=..., areas=..., uncovered=..., districts=...)
    html = render_live_map(labels=..., config=..., center=(lat, lon), tile_url=None)   # the dispatcher's map
    html = render_login_page(labels=..., next_url="/map")
    static_assets()["leaflet.js"].body          # files the live map page loads from the service
"""

from maps.assets import StaticAsset, leaflet_assets, static_assets
from maps.live_map import render_live_map, render_login_page
from maps.plan_map import render_plan_map
from maps.sites_map import SITES_MAP_LABEL_KEYS, render_sites_map

__all__ = [
    "SITES_MAP_LABEL_KEYS",
    "StaticAsset",
    "leaflet_assets",
    "render_live_map",
    "render_login_page",
    "render_plan_map",
    "render_sites_map",
    "static_assets",
]
