"""The officer's handheld (``/unit``): the page, its web-app manifest, its service worker and icon.

A phone-first page (360 x 640, usable on a tablet) for one unit: its current order, the route on
the city's own streets and big buttons for the order's next steps. Like the live map it renders
what it is handed: every text comes in ``labels`` (the reader's language), what the script needs
comes in ``config`` and is handed to ``maps/static/handheld.js`` as ``window.QORGAU_UNIT``.
The page loads Leaflet, its script and its stylesheet from the service (``asset_base``), so it
needs nothing from the internet; the service worker (``maps/pwa/sw.js``) keeps a copy of all of
it, and of the last order, for when the network is gone.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from maps.assets import assert_offline

__all__ = [
    "HANDHELD_ACTIONS",
    "OUTCOMES",
    "handheld_icon",
    "handheld_manifest",
    "handheld_service_worker",
    "render_handheld",
]

_PWA = Path(__file__).with_name("pwa")

HANDHELD_ACTIONS = ("ack", "en_route", "on_scene", "close", "available", "off_duty")
"""The buttons' ``data-action`` values, in the order the page shows them."""

OUTCOMES = ("resolved", "false_alarm", "nobody_found", "handed_over")
"""How an officer may close an order."""


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\!--")


def render_handheld(
    *,
    labels: Mapping[str, str],
    config: Mapping[str, Any],
    unit_name: str,
    unit_kind: str,
    lang: str = "ru",
    langs: Sequence[str] = ("kk", "ru", "en"),
    asset_base: str = "/static/",
    page_url: str = "/unit",
    manifest_url: str = "/unit/manifest.webmanifest",
    icon_url: str = "/unit/icon.svg",
    logout_url: str = "/logout",
) -> str:
    """The handheld page as HTML.

    Parameters
    ----------
    labels
        Every text of the page in the reader's language (the web room keeps them in
        ``web/locales/unit.<lang>.json``).
    config
        Handed to the script as ``window.QORGAU_UNIT``: ``unit`` (id, name, kind), ``urls``
        (order, status, availability, position, plan, events, streets, sw, login), ``transitions``,
        ``utc_offset_s``, ``tz_label``, ``csrf_header``, ``center``, ``bounds`` and the position
        policy (``position_min_interval_s``, ``position_min_move_m``, ``position_keepalive_s``);
        ``labels`` and ``lang`` are filled in here.
    unit_name, unit_kind
        Shown in the header (``booth``, ``foot`` or ``car``; booths share no position).

    Raises
    ------
    RuntimeError
        If the page would load anything from another host.
    """
    t = labels
    e = html.escape
    cfg = dict(config)
    cfg.update(labels=dict(labels), lang=lang)
    base = e(asset_base)
    langs_html = " ".join(
        f"<b>{code}</b>" if code == lang else f'<a href="{e(page_url)}?lang={code}">{code}</a>' for code in langs
    )
    kind = t.get(f"unit_{unit_kind}", unit_kind)
    outcomes = "".join(
        f'<label class="u-outcome"><input type="radio" name="outcome" value="{o}" required> {e(t[f"outcome_{o}"])}</label>'
        for o in OUTCOMES
    )
    page = f"""<!DOCTYPE html>
<html lang="{e(lang)}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="theme-color" content="#0d47a1">
<title>{e(t["title"])}</title>
<link rel="manifest" href="{e(manifest_url)}?lang={e(lang)}">
<link rel="icon" href="{e(icon_url)}" type="image/svg+xml">
<link rel="stylesheet" href="{base}leaflet.css">
<link rel="stylesheet" href="{base}handheld.css">
<script src="{base}leaflet.js"></script>
<script>window.QORGAU_UNIT = {_json_for_script(cfg)};</script>
<script src="{base}handheld.js" defer></script>
</head>
<body data-unit-kind="{e(unit_kind)}">
<header id="u-head">
  <div id="u-who"><b id="u-unit-name">{e(unit_name)}</b> <span class="u-kind">{e(kind)}</span>
    <span id="u-unit-status" class="u-chip"></span></div>
  <div id="u-bar"><span id="u-conn" data-state="connecting">{e(t["conn_connecting"])}</span>
    <span class="u-langs">{langs_html}</span>
    <form method="post" action="{e(logout_url)}"><button type="submit" class="u-link">{e(t["sign_out"])}</button></form></div>
</header>
<div id="u-msg" role="alert" hidden></div>
<div id="u-pending" role="status" hidden></div>
<div id="u-fix" role="status" hidden></div>
<main id="u-main">
  <section id="u-order" aria-label="{e(t["order"])}" hidden>
    <div class="u-line1"><span id="u-priority" class="u-prio"></span><span id="u-source"></span><span id="u-site"></span></div>
    <div id="u-street"></div>
    <div class="u-facts"><span id="u-distance"></span><span id="u-eta"></span><span id="u-since"></span></div>
    <div id="u-deadline" hidden></div>
    <div id="u-state"></div>
  </section>
  <section id="u-none">{e(t["no_order"])}</section>
  <section id="u-plan" aria-label="{e(t["plan"])}" hidden>
    <h2 id="u-plan-title"></h2>
    <ol id="u-plan-stops"></ol>
  </section>
  <div id="u-map" aria-label="{e(t["map"])}"></div>
  <section id="u-actions">
    <button type="button" data-action="ack" class="u-big u-ack">{e(t["action_ack"])}</button>
    <button type="button" data-action="en_route" class="u-big">{e(t["action_en_route"])}</button>
    <button type="button" data-action="on_scene" class="u-big">{e(t["action_on_scene"])}</button>
    <button type="button" data-action="close" class="u-big u-close">{e(t["action_close"])}</button>
    <button type="button" data-action="available" class="u-big u-avail">{e(t["action_available"])}</button>
    <button type="button" data-action="off_duty" class="u-big u-avail">{e(t["action_off_duty"])}</button>
  </section>
  <footer id="u-foot">{e(t["times_in"])} {e(str(config.get("tz_label", "")))}</footer>
</main>
<dialog id="u-close-dialog">
  <form id="u-close-form" method="dialog">
    <h2>{e(t["close_title"])}</h2>
    <fieldset><legend>{e(t["outcome"])}</legend>{outcomes}</fieldset>
    <label for="u-note">{e(t["note"])}</label>
    <textarea id="u-note" name="note" maxlength="500" rows="3"></textarea>
    <div class="u-dialog-buttons">
      <button type="button" id="u-close-cancel" class="u-big u-secondary">{e(t["cancel"])}</button>
      <button type="submit" id="u-close-confirm" class="u-big u-close">{e(t["close_confirm"])}</button>
    </div>
  </form>
</dialog>
</body></html>"""
    assert_offline(page, what="handheld page")
    return page


def handheld_manifest(
    *,
    labels: Mapping[str, str],
    lang: str,
    start_url: str = "/unit",
    scope: str = "/unit",
    icon_url: str = "/unit/icon.svg",
) -> dict[str, Any]:
    """The web-app manifest (``/unit/manifest.webmanifest``) that makes the page installable."""
    return {
        "name": labels["title"],
        "short_name": labels["short_name"],
        "lang": lang,
        "start_url": f"{start_url}?lang={lang}",
        "scope": scope,
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#ffffff",
        "theme_color": "#0d47a1",
        "icons": [{"src": icon_url, "sizes": "any", "type": "image/svg+xml", "purpose": "any maskable"}],
    }


def handheld_service_worker(*, version: str, precache: Sequence[str], live: Sequence[str] = ()) -> str:
    """The service worker's script (``maps/pwa/sw.js``) with its cache version and file list filled in.

    Parameters
    ----------
    version
        Changes whenever a cached file changes, so phones fetch the new files.
    precache
        URLs cached when the worker installs (the page, its script and stylesheet, Leaflet, the streets).
    live
        URL prefixes the worker never answers from its cache (the event stream).
    """
    text = (_PWA / "sw.js").read_text(encoding="utf-8")
    return (
        text.replace("__QORGAU_VERSION__", json.dumps(version))
        .replace("__QORGAU_PRECACHE__", json.dumps(list(precache)))
        .replace("__QORGAU_LIVE__", json.dumps(list(live)))
    )


def handheld_icon() -> str:
    """The app's icon, an SVG (a shield)."""
    return (_PWA / "icon.svg").read_text(encoding="utf-8")
