"""The booth-siting map: existing and new booths, walking areas, uncovered hot spots, districts.

One self-contained HTML file that works without internet, like the plan map
(:mod:`maps.plan_map`): Leaflet is inlined, no tile server is used and the streets are drawn as
the base layer. Everything it shows is handed to it as GeoJSON and plain labels; it measures
nothing itself.
"""

from __future__ import annotations

import html
from typing import Any

import folium
from branca.element import Element

from maps.assets import assert_offline
from maps.folium_page import add_streets, offline_map

__all__ = ["SITES_MAP_LABEL_KEYS", "render_sites_map"]

SITES_MAP_LABEL_KEYS = (
    "layer_streets",
    "layer_existing",
    "layer_added",
    "layer_area",
    "layer_uncovered",
    "layer_districts",
    "existing_booth",
    "new_booth",
    "uncovered_spot",
    "marginal_weight",
    "cumulative_share",
    "district",
    "district_share",
    "district_share_existing",
    "weight",
    "attribution",
)
"""The labels :func:`render_sites_map` reads (``warning`` is optional)."""

_AREA_COLOURS = ("#1b5e20", "#66bb6a", "#a5d6a7", "#c8e6c9")
"""Walking areas, the shortest walk darkest."""

_CSS = (
    "<style>.q-booth{background:#1a237e;color:#fff;font:bold 12px/20px sans-serif;text-align:center;"
    "width:20px;height:20px;border:2px solid #fff;box-shadow:0 0 3px #000}"
    ".q-new{background:#e65100;color:#fff;font:bold 11px/22px sans-serif;text-align:center;border-radius:50%;"
    "width:22px;height:22px;border:2px solid #fff;box-shadow:0 0 3px #000}"
    ".q-legend{position:fixed;bottom:24px;right:10px;z-index:1000;background:#fff;padding:6px 9px;"
    "font:12px sans-serif;border:1px solid #999;border-radius:4px;max-width:340px}</style>"
)


def _text(value: object) -> str:
    """Markup-safe text for a tooltip (folium puts tooltips in a JavaScript template literal)."""
    return html.escape(str(value)).replace("`", "&#96;").replace("$", "&#36;")


def _pct(x: object) -> str:
    return f"{float(x):.1%}" if isinstance(x, (int, float)) else "–"


def render_sites_map(
    *,
    existing: dict[str, Any],
    added: dict[str, Any],
    labels: dict[str, str],
    areas: dict[str, Any] | None = None,
    uncovered: dict[str, Any] | None = None,
    districts: dict[str, Any] | None = None,
    streets: dict[str, Any] | None = None,
    title: str = "",
    summary_lines: list[str] | None = None,
) -> str:
    """Render a siting answer as standalone HTML.

    Parameters
    ----------
    existing
        GeoJSON Points with ``id`` and optionally ``name``: the booths that stand.
    added
        GeoJSON Points with ``id``, ``k`` (build order, from 1), ``marginal_weight`` and
        ``cumulative_share``: the new booths, each drawn with its build order number.
    labels
        Texts in the reader's language: :data:`SITES_MAP_LABEL_KEYS` (``layer_area`` with ``{m}``),
        and optionally ``warning``.
    areas
        GeoJSON (Multi)Polygons with ``minutes``: the walking areas of all booths, one per limit.
    uncovered
        GeoJSON Points with ``weight`` (and ``rank``): the heaviest demand beyond every booth's reach.
    districts
        GeoJSON Polygons with ``name`` and optionally ``covered_share`` and ``covered_share_existing``.
    streets
        GeoJSON LineStrings drawn as the base layer (there are no tiles offline).
    title
        The page title, also at the top of the legend.
    summary_lines
        A few lines of figures for the legend (already formatted).

    Raises
    ------
    RuntimeError
        If the page would load a script, stylesheet or image from the internet.
    """
    m, root, box = offline_map([existing, added, uncovered or {}], streets, zoom_start=13, css=_CSS, title=title)
    add_streets(m, streets, labels["layer_streets"])
    if districts and districts.get("features"):
        has_share = all("covered_share" in (f.get("properties") or {}) for f in districts["features"])
        tip = (
            folium.GeoJsonTooltip(
                fields=["name", "covered_share_pct", "covered_share_existing_pct"],
                aliases=[labels["district"], labels["district_share"], labels["district_share_existing"]],
            )
            if has_share
            else folium.GeoJsonTooltip(fields=["name"], aliases=[labels["district"]])
        )
        shown = {
            "type": "FeatureCollection",
            "features": [
                {
                    **f,
                    "properties": {
                        **(f.get("properties") or {}),
                        "name": str((f.get("properties") or {}).get("name", "")),
                        "covered_share_pct": _pct((f.get("properties") or {}).get("covered_share")),
                        "covered_share_existing_pct": _pct((f.get("properties") or {}).get("covered_share_existing")),
                    },
                }
                for f in districts["features"]
            ],
        }
        folium.GeoJson(
            shown,
            name=labels["layer_districts"],
            style_function=lambda _f: {"color": "#6a1b9a", "weight": 2, "dashArray": "6 4", "fillOpacity": 0.03},
            tooltip=tip,
        ).add_to(m)
    if areas and areas.get("features"):
        ordered = sorted(areas["features"], key=lambda f: -float(f["properties"]["minutes"]))
        for i, f in enumerate(ordered):
            minutes = float(f["properties"]["minutes"])
            colour = _AREA_COLOURS[max(0, min(len(_AREA_COLOURS) - 1, len(ordered) - 1 - i))]
            folium.GeoJson(
                {"type": "FeatureCollection", "features": [f]},
                name=labels["layer_area"].format(m=minutes),
                style_function=lambda _f, c=colour: {"color": c, "weight": 1, "fillColor": c, "fillOpacity": 0.18},
                interactive=False,
            ).add_to(m)

    far = folium.FeatureGroup(name=labels["layer_uncovered"])
    for f in (uncovered or {}).get("features", []):
        lon, lat = f["geometry"]["coordinates"][:2]
        p = f["properties"]
        spot_tip = f"{labels['uncovered_spot']}: {labels['weight']} {float(p.get('weight', 0.0)):.4g}"
        folium.CircleMarker(
            [lat, lon],
            radius=7,
            color="#b71c1c",
            weight=2,
            dash_array="4 3",
            fill=True,
            fill_color="#d50000",
            fill_opacity=0.5,
            tooltip=spot_tip,
        ).add_to(far)
    far.add_to(m)

    old = folium.FeatureGroup(name=labels["layer_existing"])
    for f in existing.get("features", []):
        lon, lat = f["geometry"]["coordinates"][:2]
        p = f["properties"]
        name = _text(p.get("name") or p["id"])
        icon = folium.DivIcon(html='<div class="q-booth">&#9733;</div>', icon_size=(20, 20), icon_anchor=(10, 10))
        folium.Marker([lat, lon], icon=icon, tooltip=f"{labels['existing_booth']}: {name}").add_to(old)
    old.add_to(m)

    new = folium.FeatureGroup(name=labels["layer_added"])
    for f in sorted(added.get("features", []), key=lambda f: int(f["properties"]["k"])):
        lon, lat = f["geometry"]["coordinates"][:2]
        p = f["properties"]
        k = int(p["k"])
        text = (
            f"<b>{labels['new_booth']} {k}: {_text(p['id'])}</b><br>"
            f"{labels['marginal_weight']}: {float(p['marginal_weight']):.4g}<br>"
            f"{labels['cumulative_share']}: {float(p['cumulative_share']):.1%}"
        )
        icon = folium.DivIcon(html=f'<div class="q-new">{k}</div>', icon_size=(22, 22), icon_anchor=(11, 11))
        # A tooltip, not a popup: folium's popups need jQuery, which the offline page does not carry.
        folium.Marker([lat, lon], icon=icon, tooltip=folium.Tooltip(text)).add_to(new)
    new.add_to(m)

    folium.LayerControl(collapsed=False).add_to(m)
    if box[0] != box[1]:
        m.fit_bounds(box, padding=(20, 20))
    legend = "<div class='q-legend'>"
    if title:
        legend += f"<b>{html.escape(title)}</b><br>"
    if labels.get("warning"):
        legend += f"<span style='color:#b71c1c'><b>{html.escape(labels['warning'])}</b></span><br>"
    for line in summary_lines or []:
        legend += f"{html.escape(line)}<br>"
    legend += (
        f"<span style='color:#1a237e'>&#9733;</span> {html.escape(labels['layer_existing'])} &nbsp; "
        f"<span style='color:#e65100'>&#11044;</span> {html.escape(labels['layer_added'])}<br>"
        f"<span style='color:#b71c1c'>&#9711;</span> {html.escape(labels['layer_uncovered'])}<br>"
        f"<small>{html.escape(labels['attribution'])}</small></div>"
    )
    root.html.add_child(Element(legend))
    page = root.render()
    assert_offline(page, what="siting map")
    return page
