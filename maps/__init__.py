"""maps: Folium/Leaflet rendering of GeoJSON and GeoDataFrames, served offline.

Renders what others hand it (streets, alerts, units, routes); imports neither the MQTT bridge
nor dispatch. Built in the live-map and patrol-planner issues; nothing is exported yet.
"""

__all__: list[str] = []
