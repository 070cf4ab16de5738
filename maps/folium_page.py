"""What the Folium maps of this room (the plan map, the siting map) share: an offline page frame.

Imported only by those maps (Folium is heavy; the service's own pages never load it).
"""

from __future__ import annotations

import html
from typing import Any, cast

import folium
from branca.element import Element, Figure

from maps.assets import leaflet_assets

__all__ = ["add_streets", "bounds", "offline_map"]


def bounds(collections: list[dict[str, Any]]) -> list[list[float]] | None:
    """``[[south, west], [north, east]]`` of every coordinate in the GeoJSON feature collections, or None."""
    lats: list[float] = []
    lons: list[float] = []

    def walk(c: object) -> None:
        if isinstance(c, list) and c and isinstance(c[0], (int, float)):
            lons.append(float(c[0]))
            lats.append(float(c[1]))
        elif isinstance(c, list):
            for x in c:
                walk(x)

    for col in collections:
        for f in col.get("features", []):
            walk((f.get("geometry") or {}).get("coordinates", []))
    if not lats:
        return None
    return [[min(lats), min(lons)], [max(lats), max(lons)]]


def offline_map(
    layers: list[dict[str, Any]], streets: dict[str, Any] | None, *, zoom_start: int, css: str, title: str
) -> tuple[folium.Map, Figure, list[list[float]]]:
    """A Folium map framed on ``layers`` (else on ``streets``) that loads nothing from the internet:
    Leaflet inlined, no tiles, ``css`` (a ``<style>`` element) and ``title`` in the head. Returns the
    map, its page (the root to render) and its box (for ``fit_bounds``)."""
    box = bounds(layers) or bounds([streets or {}]) or [[0.0, 0.0], [0.0, 0.0]]
    centre = [(box[0][0] + box[1][0]) / 2, (box[0][1] + box[1][1]) / 2]
    m = folium.Map(location=centre, zoom_start=zoom_start, tiles=None, control_scale=True, prefer_canvas=True)
    m.default_js = []  # offline: no CDN links; Leaflet itself is inlined below
    m.default_css = []
    js, leaflet_css = leaflet_assets()
    # A Map sits in a Figure (folium.Map adds itself to one); branca types get_root() as any Element.
    root = cast(Figure, m.get_root())
    root.header.add_child(Element(f"<style>{leaflet_css}</style>"), name="leaflet_css_inline")
    root.header.add_child(Element(f"<script>{js}</script>"), name="leaflet_js_inline")
    root.header.add_child(Element(css), name="qorgau_css")
    if title:
        root.header.add_child(Element(f"<title>{html.escape(title)}</title>"), name="title")
    return m, root, box


def add_streets(m: folium.Map, streets: dict[str, Any] | None, name: str) -> None:
    """The street layer (grey, not interactive), when there are streets."""
    if streets and streets.get("features"):
        folium.GeoJson(
            streets,
            name=name,
            style_function=lambda _f: {"color": "#9e9e9e", "weight": 1.2, "opacity": 0.9},
            interactive=False,
        ).add_to(m)
