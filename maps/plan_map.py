"""The patrol plan's map: one self-contained HTML file that works without internet.

Folium writes the map; Leaflet's own JavaScript and CSS (from the ``django-js-lib-leaflet``
package, Leaflet 1.9.4, installed with Qorgau) are inlined into the page, with the CSS images as
data URIs, and no tile server is used: the streets themselves are drawn as the base layer. A
control room without internet sees everything.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import folium
from branca.element import Element, MacroElement
from jinja2 import Template

from maps.assets import assert_offline
from maps.folium_page import add_streets, offline_map

__all__ = ["render_plan_map"]

_JQUERY = re.compile(r"=\s*\$\(")


class _Points(MacroElement):
    """Many markers drawn by one script from one JSON array, into the layer it is added to.

    Folium makes one element per marker, and branca compiles every element's rendered script as
    a Jinja template: 6,400 markers cost seconds. Here a layer's markers are data, and one loop
    in the page makes them (``L.marker`` with a ``divIcon`` when ``icon`` is given, else
    ``L.circleMarker`` with ``style``), each with its tooltip.
    """

    _template = Template(
        """{% macro script(this, kwargs) %}
(function () {
  var layer = {{ this._parent.get_name() }};
  {{ this.data }}.forEach(function (p) {
    var m = p.icon
      ? L.marker([p.lat, p.lon], {icon: L.divIcon({html: p.icon, className: "", iconSize: p.size, iconAnchor: p.anchor}),
                                  interactive: !!p.tip})
      : L.circleMarker([p.lat, p.lon], p.style);
    if (p.tip) { m.bindTooltip(p.tip, {sticky: true}); }
    m.addTo(layer);
  });
})();
{% endmacro %}"""
    )

    def __init__(self, points: list[dict[str, Any]]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # branca's MacroElement.__init__ is unannotated
        self._name = "Points"
        # JSON inside <script>: "</" would end the script element.
        self.data = json.dumps(points, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def _circle(lat: float, lon: float, tip: str, **style: object) -> dict[str, Any]:
    return {"lat": lat, "lon": lon, "tip": tip, "style": style}


def _icon(lat: float, lon: float, icon: str, size: int, tip: str | None = None) -> dict[str, Any]:
    return {"lat": lat, "lon": lon, "icon": icon, "size": [size, size], "anchor": [size // 2, size // 2], "tip": tip}


def _bearing(a: list[float], b: list[float]) -> float:
    """Compass bearing (degrees clockwise from north) from ``[lon, lat]`` a to b."""
    dx = (b[0] - a[0]) * math.cos(math.radians((a[1] + b[1]) / 2))
    dy = b[1] - a[1]
    return math.degrees(math.atan2(dx, dy)) % 360


def _risk_colour(level: float) -> str:
    """Yellow (low) to dark red (high) for a level in [0, 1]."""
    stops = [
        (0.0, (255, 255, 178)),
        (0.25, (254, 204, 92)),
        (0.5, (253, 141, 60)),
        (0.75, (240, 59, 32)),
        (1.0, (189, 0, 38)),
    ]
    level = min(1.0, max(0.0, level))
    for (l0, c0), (l1, c1) in pairwise(stops):
        if level <= l1:
            t = (level - l0) / (l1 - l0)
            r, g, b = (round(c0[i] + t * (c1[i] - c0[i])) for i in range(3))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#bd0026"


def render_plan_map(
    *,
    routes: dict[str, Any],
    hotspots: dict[str, Any],
    booths: dict[str, Any],
    labels: dict[str, str],
    risk_cells: dict[str, Any] | None = None,
    streets: dict[str, Any] | None = None,
    title: str = "",
    arrow_every_m: float = 120.0,
    distance_m: Callable[[float, float, float, float], float] | None = None,
) -> str:
    """Render a plan as standalone HTML.

    Parameters
    ----------
    routes
        GeoJSON: route LineStrings (``patrol``, ``colour``, ``length_m``, ``walking_min``,
        ``risk_covered``) and stop Points (``patrol``, ``colour``, ``seq``, ``arrive``,
        ``depart``, ``dwell_min``, ``hot_spot``).
    hotspots
        GeoJSON Points with ``rank``, ``risk`` and ``uncovered`` (beyond the booths' reach).
    booths
        GeoJSON Points with ``id``, ``name`` and ``patrols``.
    labels
        Texts in the reader's language: ``layer_streets``, ``layer_risk``, ``layer_hotspots``,
        ``layer_booths``, ``layer_uncovered``, ``layer_route`` (with ``{id}``), ``legend_risk``,
        ``stop``, ``arrive``, ``depart``, ``dwell_min``, ``risk``, ``booth``, ``hot_spot``,
        ``attribution`` and optionally ``warning``.
    risk_cells
        GeoJSON Polygons with ``risk`` and ``level`` (0-1) for the risk surface.
    streets
        GeoJSON LineStrings drawn as the base layer (there are no tiles offline).
    arrow_every_m
        Route direction arrows are drawn about this far apart along each route.
    distance_m
        The distance in metres between two WGS 84 points, ``distance_m(lat1, lon1, lat2, lon2)``
        (pass :func:`geo.great_circle_m`): spaces the direction arrows. Without it no arrows
        are drawn (this package measures nothing itself).

    Raises
    ------
    RuntimeError
        If the page would still load a script or stylesheet from the internet.
    """
    css = (
        "<style>.q-stop{border-radius:50%;color:#fff;font:bold 11px/18px sans-serif;text-align:center;"
        "width:18px;height:18px;border:1px solid #fff;box-shadow:0 0 2px #000}"
        ".q-arrow{font:14px/14px sans-serif;text-shadow:0 0 2px #fff}"
        ".q-booth{background:#1a237e;color:#fff;font:bold 12px/20px sans-serif;text-align:center;"
        "width:20px;height:20px;border:2px solid #fff;box-shadow:0 0 3px #000}"
        ".q-legend{position:fixed;bottom:24px;right:10px;z-index:1000;background:#fff;padding:6px 9px;"
        "font:12px sans-serif;border:1px solid #999;border-radius:4px;max-width:320px}</style>"
    )
    m, root, box = offline_map([routes, booths, hotspots], streets, zoom_start=15, css=css, title=title)
    add_streets(m, streets, labels["layer_streets"])
    if risk_cells and risk_cells.get("features"):
        folium.GeoJson(
            risk_cells,
            name=labels["layer_risk"],
            style_function=lambda f: {
                "fillColor": _risk_colour(f["properties"]["level"]),
                "fillOpacity": 0.25 + 0.35 * f["properties"]["level"],
                "stroke": False,
            },
            tooltip=folium.GeoJsonTooltip(fields=["risk"], aliases=[labels["risk"]]),
        ).add_to(m)

    hot = folium.FeatureGroup(name=labels["layer_hotspots"])
    far = folium.FeatureGroup(name=labels["layer_uncovered"])
    hot_points: list[dict[str, Any]] = []
    far_points: list[dict[str, Any]] = []
    for f in hotspots.get("features", []):
        lon, lat = f["geometry"]["coordinates"][:2]
        p = f["properties"]
        tip = f"{labels['hot_spot']} #{p['rank']}: {labels['risk']} {p['risk']:.4f}"
        if p.get("uncovered"):
            far_points.append(_circle(lat, lon, tip, radius=11, color="#b71c1c", weight=3, dashArray="4 3", fill=False))
        hot_points.append(
            _circle(lat, lon, tip, radius=5, color="#7f0000", weight=1, fill=True, fillColor="#d50000", fillOpacity=0.8)
        )
    hot.add_child(_Points(hot_points))
    far.add_child(_Points(far_points))
    hot.add_to(m)
    far.add_to(m)

    groups: dict[str, folium.FeatureGroup] = {}
    points: dict[str, list[dict[str, Any]]] = {}

    def group(patrol: str) -> folium.FeatureGroup:
        points.setdefault(patrol, [])
        return groups.setdefault(patrol, folium.FeatureGroup(name=labels["layer_route"].format(id=patrol)))

    for f in routes.get("features", []):
        p = f["properties"]
        if p.get("kind") != "route":
            continue
        g = group(p["patrol"])
        coords = f["geometry"]["coordinates"]
        tip = f"{p['patrol']}: {p['length_m'] / 1000:.2f} km, {p['walking_min']:.0f} min, {labels['risk']} {p['risk_covered']:.4f}"
        folium.PolyLine([[c[1], c[0]] for c in coords], color=p["colour"], weight=4, opacity=0.8, tooltip=tip).add_to(g)  # type: ignore[no-untyped-call]  # folium's PolyLine.__init__ is unannotated
        if distance_m is None:
            continue  # nothing measures the route: no direction arrows
        run = 0.0
        for a, b in pairwise(coords):
            d = distance_m(a[1], a[0], b[1], b[0])
            run += d
            if run >= arrow_every_m and d > 5:
                run = 0.0
                rot = _bearing(a, b) - 90
                arrow = (
                    f'<div class="q-arrow" style="color:{p["colour"]};transform:rotate({rot:.0f}deg)">&#10148;</div>'
                )
                points[p["patrol"]].append(_icon((a[1] + b[1]) / 2, (a[0] + b[0]) / 2, arrow, 14))
    for f in routes.get("features", []):
        p = f["properties"]
        if p.get("kind") != "stop":
            continue
        group(p["patrol"])
        lon, lat = f["geometry"]["coordinates"][:2]
        text = (
            f"<b>{html.escape(p['patrol'])} · {labels['stop']} {p['seq']}</b><br>"
            f"{labels['hot_spot']} #{p['hot_spot'] + 1}<br>"
            f"{labels['arrive']}: {p['arrive'][11:16]}<br>{labels['depart']}: {p['depart'][11:16]}<br>"
            f"{labels['dwell_min']}: {p['dwell_min']:.0f}"
        )
        # A tooltip, not a popup: folium's popups need jQuery, which the offline page does not carry.
        stop = f'<div class="q-stop" style="background:{p["colour"]}">{p["seq"]}</div>'
        points[p["patrol"]].append(_icon(lat, lon, stop, 18, text))
    for patrol, g in groups.items():
        g.add_child(_Points(points[patrol]))
        g.add_to(m)

    bg = folium.FeatureGroup(name=labels["layer_booths"])
    booth_points: list[dict[str, Any]] = []
    for f in booths.get("features", []):
        lon, lat = f["geometry"]["coordinates"][:2]
        p = f["properties"]
        name = html.escape(p.get("name") or p["id"])
        pats = ", ".join(p.get("patrols") or [])
        tip = f"{labels['booth']}: {name}" + (f" ({html.escape(pats)})" if pats else "")
        booth_points.append(_icon(lat, lon, '<div class="q-booth">&#9733;</div>', 20, tip))
    bg.add_child(_Points(booth_points))
    bg.add_to(m)

    folium.LayerControl(collapsed=False).add_to(m)
    if box[0] != box[1]:
        m.fit_bounds(box, padding=(20, 20))
    legend = "<div class='q-legend'>"
    if title:
        legend += f"<b>{html.escape(title)}</b><br>"
    if labels.get("warning"):
        legend += f"<span style='color:#b71c1c'><b>{html.escape(labels['warning'])}</b></span><br>"
    legend += (
        f"<span style='background:{_risk_colour(0.1)}'>&nbsp;&nbsp;&nbsp;</span>"
        f"<span style='background:{_risk_colour(0.5)}'>&nbsp;&nbsp;&nbsp;</span>"
        f"<span style='background:{_risk_colour(1.0)}'>&nbsp;&nbsp;&nbsp;</span> {html.escape(labels['legend_risk'])}<br>"
        f"<span style='color:#1a237e'>&#9733;</span> {html.escape(labels['layer_booths'])} &nbsp; "
        f"<span style='color:#b71c1c'>&#9711;</span> {html.escape(labels['layer_uncovered'])}<br>"
        f"<small>{html.escape(labels['attribution'])}</small></div>"
    )
    root.html.add_child(Element(legend))
    page = root.render()
    assert_offline(page, what="plan map")
    if _JQUERY.search(page):
        msg = "the plan map uses jQuery ($), which the offline page does not carry"
        raise RuntimeError(msg)
    return page
