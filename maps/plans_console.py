"""The commander's plans console (``/plans``): make a patrol plan in the browser, see it, issue it,
and follow the dose its patrols deliver.

Like the live map it renders what it is handed: every text comes in ``labels`` (the reader's
language), what the script needs comes in ``config`` and is handed to ``maps/static/plans.js`` as
``window.QORGAU_PLANS``. The page loads Leaflet, its script and its stylesheet from the service
(``asset_base``) and shows a finished plan's own map (``/api/plans/{id}/map``) in a frame, so it
needs nothing from the internet.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from maps.assets import assert_offline

__all__ = ["PLAN_DOWNLOADS", "render_plans_console"]

_SHIFT_PATTERN = r"\d{2}:\d{2}-\d{2}:\d{2}"
PLAN_DOWNLOADS = ("routes.geojson", "plan.md", "plan.csv")
"""The files offered for download besides each patrol's GPX."""


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\!--")


def render_plans_console(
    *,
    labels: Mapping[str, str],
    config: Mapping[str, Any],
    lang: str = "ru",
    langs: Sequence[str] = ("kk", "ru", "en"),
    user: str = "",
    asset_base: str = "/static/",
    page_url: str = "/plans",
    logout_url: str = "/logout",
) -> str:
    """The plans console as HTML.

    Parameters
    ----------
    labels
        Every text of the page in the reader's language (``web/locales/plans.<lang>.json``).
    config
        Handed to the script as ``window.QORGAU_PLANS``: ``urls`` (plans, streets, login),
        ``booths`` (``id``, ``name``, ``lat``, ``lon``), ``defaults`` (the form's initial values),
        ``utc_offset_s``, ``tz_label``, ``csrf_header``, ``center``, ``bounds``, ``dosage_refresh_s``
        (how often an issued plan's dose is asked for again while its shift is not over); ``labels``,
        ``lang`` and ``downloads`` are filled in here.

    Raises
    ------
    RuntimeError
        If the page would load anything from another host.
    """
    t = labels
    e = html.escape
    cfg = dict(config)
    cfg.update(labels=dict(labels), lang=lang, downloads=list(PLAN_DOWNLOADS))
    base = e(asset_base)
    d = dict(config.get("defaults", {}))
    langs_html = " ".join(
        f"<b>{code}</b>" if code == lang else f'<a href="{e(page_url)}?lang={code}">{code}</a>' for code in langs
    )

    def field(name: str, label: str, kind: str, **attrs: Any) -> str:
        extra = "".join(f' {k.replace("_", "-")}="{e(str(v))}"' for k, v in attrs.items() if v is not None)
        value = d.get(name)
        val = "" if value is None else f' value="{e(str(value))}"'
        return f'<label for="p-{name}">{e(label)}</label><input id="p-{name}" name="{name}" type="{kind}"{val}{extra}>'

    page = f"""<!DOCTYPE html>
<html lang="{e(lang)}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(t["title"])}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{base}leaflet.css">
<link rel="stylesheet" href="{base}plans.css">
<script src="{base}leaflet.js"></script>
<script>window.QORGAU_PLANS = {_json_for_script(cfg)};</script>
<script src="{base}plans.js" defer></script>
</head>
<body>
<header id="p-head"><h1>{e(t["title"])}</h1>
  <span class="p-who">{e(user)}</span>
  <span class="p-langs">{langs_html}</span>
  <a href="/map?lang={e(lang)}">{e(t["to_map"])}</a>
  <form method="post" action="{e(logout_url)}"><button type="submit">{e(t["sign_out"])}</button></form>
  <span class="p-tz">{e(t["times_in"])} {e(str(config.get("tz_label", "")))}</span>
</header>
<main id="p-main">
<form id="p-form" novalidate>
  <fieldset><legend>{e(t["shift_legend"])}</legend>
    {field("date", t["date"], "date", required="")}
    {field("shift", t["shift"], "text", pattern=_SHIFT_PATTERN, placeholder="22:00-06:00", required="")}
    {field("patrols", t["patrols"], "number", min=1, max=200, step=1, required="")}
    {field("walk_speed", t["walk_speed"], "number", min=0.5, max=2.5, step=0.1)}
    {field("dwell", t["dwell"], "number", min=10, max=16, step=1)}
    {field("seed", t["seed"], "number", step=1)}
    {field("time_limit", t["time_limit"], "number", min=1, max=600, step=1)}
  </fieldset>
  <fieldset id="p-incidents"><legend>{e(t["incidents_legend"])}</legend>
    <label><input type="radio" name="source" value="history" checked> {e(t["source_history"])}</label>
    <div class="p-sub" data-source="history">
      {field("since", t["since"], "datetime-local")}
      {field("until", t["until"], "datetime-local")}
      <p class="p-hint">{e(t["history_hint"])}</p>
    </div>
    <label><input type="radio" name="source" value="file"> {e(t["source_file"])}</label>
    <div class="p-sub" data-source="file">
      <input id="p-file" name="file" type="file" accept=".csv,.geojson,.json,text/csv,application/geo+json,application/json">
      <p class="p-hint">{e(t["file_hint"])}</p>
    </div>
  </fieldset>
  <fieldset><legend>{e(t["booths_legend"])}</legend>
    <div id="p-booth-map" aria-label="{e(t["booths_legend"])}"></div>
    <p><span id="p-booth-count"></span> <button type="button" id="p-booths-all">{e(t["booths_all"])}</button>
      <button type="button" id="p-booths-none">{e(t["booths_none"])}</button></p>
    <p class="p-hint">{e(t["booths_hint"])}</p>
  </fieldset>
  <button type="submit" id="p-make" class="p-big">{e(t["make"])}</button>
</form>
<section id="p-result">
  <div id="p-error" role="alert" hidden></div>
  <div id="p-status" role="status" data-state="idle"></div>
  <div id="p-summary" hidden></div>
  <div id="p-issue" hidden>
    <button type="button" id="p-issue-button" class="p-big">{e(t["issue"])}</button>
    <span class="p-hint">{e(t["issue_hint"])}</span>
    <div id="p-issued" role="status"></div>
  </div>
  <section id="p-dosage" data-state="" hidden>
    <h2>{e(t["dose_title"])}</h2>
    <p id="p-dosage-state" role="status"></p>
    <p id="p-dosage-total"></p>
    <p id="p-dosage-inside"></p>
    <p id="p-dosage-nothing"></p>
    <h3>{e(t["dose_patrols"])}</h3>
    <table id="p-dosage-patrols" class="p-dose"><thead><tr><th>{e(t["dose_col_patrol"])}</th>
      <th>{e(t["dose_col_unit"])}</th><th>{e(t["dose_col_planned"])}</th><th>{e(t["dose_col_delivered"])}</th>
      <th>{e(t["dose_col_share"])}</th><th>{e(t["dose_col_visits"])}</th><th>{e(t["dose_col_koper"])}</th>
      <th>{e(t["dose_col_long"])}</th></tr></thead><tbody></tbody></table>
    <h3>{e(t["dose_hot_spots"])}</h3>
    <table id="p-dosage-spots" class="p-dose"><thead><tr><th>{e(t["dose_col_hot_spot"])}</th>
      <th>{e(t["dose_col_planned"])}</th><th>{e(t["dose_col_delivered"])}</th><th>{e(t["dose_col_share"])}</th>
      <th>{e(t["dose_col_visits"])}</th><th>{e(t["dose_col_koper"])}</th></tr></thead><tbody></tbody></table>
    <p id="p-dosage-definition" class="p-hint"></p>
    <p id="p-dosage-files"><a id="p-dosage-md" download>{e(t["dose_md"])}</a>
      <a id="p-dosage-csv" download>{e(t["dose_csv"])}</a></p>
  </section>
  <ul id="p-downloads" hidden></ul>
  <iframe id="p-map" title="{e(t["plan_map"])}" hidden></iframe>
  <h2>{e(t["past_plans"])}</h2>
  <table id="p-list"><thead><tr><th>{e(t["col_requested"])}</th><th>{e(t["col_shift"])}</th>
    <th>{e(t["col_patrols"])}</th><th>{e(t["col_status"])}</th><th>{e(t["col_by"])}</th><th></th></tr></thead>
    <tbody></tbody></table>
  <p id="p-list-empty" hidden>{e(t["no_plans"])}</p>
</section>
</main>
</body></html>"""
    assert_offline(page, what="plans console")
    return page
