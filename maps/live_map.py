"""The dispatcher's live map page and its login page.

Folium builds the Leaflet map (canvas by default, no tiles unless a tile URL is given); the page
loads Leaflet and the live map's own script and stylesheet from the service (``asset_base``), so
nothing comes from the internet. Everything the page shows in words comes in ``labels`` (the
reader's language); what it needs to know comes in ``config`` and is handed to the script as JSON.
The script itself (``maps/static/live-map.js``) fetches the snapshot, follows the event stream and
draws alerts, units, routes and the street basemap.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import folium
from branca.element import Element, Figure

from maps.assets import assert_offline

__all__ = ["ALERT_STATUSES", "render_live_map", "render_login_page"]

ALERT_STATUSES = (
    "new",
    "recommended",
    "assigned",
    "acknowledged",
    "en_route",
    "on_scene",
    "closed",
    "cancelled",
    "false_alarm",
    "test",
)
"""The states an alert can be in, in lifecycle order; the first six are open."""

_OPEN = ALERT_STATUSES[:6]
_SHAPES = {
    "circle": "M3,8a5,5 0 1,0 10,0a5,5 0 1,0 -10,0",
    "square": "M3.5,3.5h9v9h-9z",
    "diamond": "M8,1.5L14.5,8L8,14.5L1.5,8z",
    "triangle": "M8,2L14,13H2z",
    "plus": "M6,2h4v4h4v4h-4v4h-4v-4h-4v-4h4z",
    "house": "M3,14V7L8,2.5L13,7V14z",
    "car": "M1,5h14v6h-14z",
}


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\!--")


def _icon(shape: str, fill: str, stroke: str = "#212121") -> str:
    return (
        f'<svg width="16" height="16" viewBox="0 0 16 16" aria-hidden="true"><path d="{_SHAPES[shape]}" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="1.2"/></svg>'
    )


def _checkboxes(name: str, options: Sequence[tuple[str, str, bool]]) -> str:
    return "".join(
        f'<label><input type="checkbox" data-filter="{name}" value="{html.escape(v)}"{" checked" if on else ""}> '
        f"{html.escape(text)}</label>"
        for v, text, on in options
    )


def _lang_links(path: str, lang: str, langs: Sequence[str]) -> str:
    return " ".join(
        f"<b>{code}</b>" if code == lang else f'<a href="{html.escape(path)}?lang={code}">{code}</a>' for code in langs
    )


def render_live_map(
    *,
    labels: Mapping[str, str],
    config: Mapping[str, Any],
    center: tuple[float, float],
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None,
    tile_url: str | None = None,
    tile_attribution: str = "",
    asset_base: str = "/static/",
    lang: str = "ru",
    langs: Sequence[str] = ("kk", "ru", "en"),
    user: str = "",
    role: str = "",
    logout_url: str = "/logout",
) -> str:
    """The live map as HTML.

    Parameters
    ----------
    labels
        Every text of the page in the reader's language (the web room keeps them in ``web/locales/map.<lang>.json``).
    config
        Handed to the script as ``window.QORGAU_CONFIG``: ``urls`` (snapshot, events, streets,
        route, alert, assign, transition, recommend, login), ``can_act``, ``transitions``,
        ``utc_offset_s``, ``tz_label``, ``stale_after_s``, ``opened_at``, ``csrf_header``,
        ``minor_streets_from_zoom``; ``labels``, ``lang``, ``tiles``, ``map`` and ``bounds`` are
        filled in here.
    center
        ``(lat, lon)`` the map opens on; ``bounds`` (``((s, w), (n, e))``) wins when given.
    tile_url
        A raster tile URL template for connected control rooms; None draws the city's own streets.
    asset_base
        Where the service serves ``leaflet.js``, ``leaflet.css``, ``live-map.js`` and ``live-map.css``.

    Raises
    ------
    RuntimeError
        If the page would still load anything from another host (a tile URL is fetched by the
        script at run time and is not part of the page).
    """
    t = labels
    m = folium.Map(location=list(center), zoom_start=14, tiles=None, prefer_canvas=True, control_scale=True)
    m.default_js = []
    m.default_css = []
    if tile_url:
        folium.TileLayer(tiles=tile_url, attr=tile_attribution or " ", name=t["layer_tiles"], max_zoom=19).add_to(m)
    # A Map sits in a Figure (folium.Map adds itself to one); branca types get_root() as any Element.
    root = cast(Figure, m.get_root())
    cfg = dict(config)
    cfg.update(
        labels=dict(labels),
        lang=lang,
        tiles=bool(tile_url),
        map=m.get_name(),
        bounds=None if bounds is None else [list(bounds[0]), list(bounds[1])],
    )
    base = html.escape(asset_base)
    root.header.add_child(Element(f"<title>{html.escape(t['title'])}</title>"), name="title")
    root.header.add_child(Element('<link rel="icon" href="data:,">'), name="favicon")  # no request for /favicon.ico
    root.header.add_child(Element(f'<link rel="stylesheet" href="{base}leaflet.css">'), name="leaflet_css")
    root.header.add_child(Element(f'<link rel="stylesheet" href="{base}live-map.css">'), name="qorgau_css")
    root.header.add_child(Element(f'<script src="{base}leaflet.js"></script>'), name="leaflet_js")
    root.header.add_child(
        Element(f"<script>window.QORGAU_CONFIG = {_json_for_script(cfg)};</script>"), name="qorgau_cfg"
    )
    root.header.add_child(Element(f'<script src="{base}live-map.js"></script>'), name="qorgau_js")

    statuses = _checkboxes("status", [(s, t[f"status_{s}"], s in _OPEN) for s in ALERT_STATUSES])
    sources = _checkboxes("source", [(s, t[f"source_{s}"], True) for s in ("sos", "app102")])
    priorities = _checkboxes("priority", [(str(p), f"P{p}", True) for p in range(1, 6)])
    windows = "".join(
        f'<option value="{h}"{" selected" if h == 0 else ""}>{html.escape(t[key])}</option>'
        for h, key in ((1, "window_1h"), (6, "window_6h"), (24, "window_24h"), (0, "window_all"))
    )
    legend_alerts = " ".join(
        f"{_icon(shape, '#ff6d00')}{html.escape(t[f'status_{s}'])}"
        for s, shape in (
            ("new", "diamond"),
            ("recommended", "circle"),
            ("assigned", "square"),
            ("en_route", "triangle"),
            ("on_scene", "plus"),
        )
    )
    legend_prio = " ".join(
        f'<span style="color:{c}">&#9632;</span>P{p}'
        for p, c in ((1, "#d50000"), (2, "#ff6d00"), (3, "#ffc400"), (4, "#2962ff"))
    )
    legend_units = (
        " ".join(
            f"{_icon(shape, '#2e7d32', '#fff')}{html.escape(t[f'unit_{kind}'])}"
            for kind, shape in (("booth", "house"), ("foot", "circle"), ("car", "car"))
        )
        + f" {_icon('circle', '#bdbdbd', '#757575')}{html.escape(t['stale'])}"
    )
    who = html.escape(user) + (f" ({html.escape(t.get(f'role_{role}', role))})" if role else "")
    panel = f"""
<aside id="q-panel">
  <header id="q-head">
    <h1>{html.escape(t["title"])}</h1>
    <div class="q-who"><span>{who}</span>
      <span id="q-conn" data-state="connecting"><span class="q-conn-text">{html.escape(t["conn_connecting"])}</span></span>
      <span id="q-last"></span>
      <span>{_lang_links("/map", lang, langs)}</span>
      <form method="post" action="{html.escape(logout_url)}"><button type="submit">{html.escape(t["sign_out"])}</button></form>
    </div>
    <div class="q-who">{html.escape(t["times_in"])} {html.escape(str(config.get("tz_label", "")))}</div>
  </header>
  <section id="q-filters" aria-label="{html.escape(t["filters"])}">
    <fieldset><legend>{html.escape(t["status"])}</legend>{statuses}</fieldset>
    <fieldset><legend>{html.escape(t["source"])}</legend>{sources}</fieldset>
    <fieldset><legend>{html.escape(t["priority"])}</legend>{priorities}</fieldset>
    <fieldset><legend>{html.escape(t["window"])}</legend><select id="q-window">{windows}</select></fieldset>
  </section>
  <div id="q-banner" role="alert" hidden></div>
  <div id="q-list-head"><span>{html.escape(t["open_alerts"])}</span><span id="q-count"></span></div>
  <ul id="q-alerts" aria-label="{html.escape(t["open_alerts"])}"></ul>
  <div id="q-empty" hidden>{html.escape(t["no_alerts"])}</div>
  <section id="q-details" hidden></section>
  <footer id="q-legend">{legend_alerts}<br>{legend_prio}<br>{legend_units}</footer>
</aside>"""
    root.html.add_child(Element(panel), name="qorgau_panel")
    page = root.render()
    assert_offline(page, what="live map")
    return page


def render_login_page(
    *,
    labels: Mapping[str, str],
    action: str = "/login",
    next_url: str = "/map",
    error: str | None = None,
    lang: str = "ru",
    langs: Sequence[str] = ("kk", "ru", "en"),
    asset_base: str = "/static/",
    username: str = "",
) -> str:
    """A plain login form (no script) that posts ``username`` and ``password`` to ``action``."""
    t = labels
    e = html.escape
    err = f'<p class="q-error" role="alert">{e(error)}</p>' if error else ""
    links = " ".join(
        f"<b>{code}</b>" if code == lang else f'<a href="{e(action)}?lang={code}&amp;next={e(next_url)}">{code}</a>'
        for code in langs
    )
    page = f"""<!DOCTYPE html>
<html lang="{e(lang)}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(t["login_title"])}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="{e(asset_base)}live-map.css"></head>
<body><main class="q-login"><h1>{e(t["login_title"])}</h1>
<form method="post" action="{e(action)}">
<input type="hidden" name="next" value="{e(next_url)}"><input type="hidden" name="lang" value="{e(lang)}">
<label for="q-username">{e(t["username"])}</label><input id="q-username" name="username" autocomplete="username" required value="{e(username)}">
<label for="q-password">{e(t["password"])}</label><input id="q-password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">{e(t["sign_in"])}</button>{err}</form>
<p class="q-langs">{links}</p></main></body></html>"""
    assert_offline(page, what="login page")
    return page
