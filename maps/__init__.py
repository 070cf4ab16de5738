"""maps: Folium/Leaflet rendering of GeoJSON, as self-contained pages that work offline.

Renders what others hand it (streets, routes, hot spots, booths, as GeoJSON and plain labels in
the reader's language); imports neither the MQTT bridge nor dispatch, nor the planner.

Public names::

    html = render_plan_map(routes=..., hotspots=..., booths=..., labels=..., risk_cells=..., streets=...)
"""

from maps.plan_map import leaflet_assets, render_plan_map

__all__ = ["leaflet_assets", "render_plan_map"]
