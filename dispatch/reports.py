"""Response times for accountability: per-alert durations, grouped statistics, CSV, the public report.

Pure functions over alerts (no I/O but reading a districts GeoJSON and the message catalogues).

Per alert, seconds from receipt to: recommendation, first assignment, first acknowledgement,
arrival on scene, closing. Groups report ``count`` (alerts in the group) and, per measure, how many
alerts reached it, the median and the 90th percentile (linear interpolation between order
statistics, numpy's default).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from dispatch.domain import Alert, AlertSource, AlertStatus

__all__ = [
    "FALSE_ALARM_GROUPINGS",
    "GROUPINGS",
    "MEASURES",
    "Districts",
    "FalseAlarmStats",
    "GroupStats",
    "catalogue",
    "durations",
    "false_alarm_csv",
    "false_alarm_rates",
    "quarter_bounds",
    "render_public_report",
    "summarize",
    "to_csv",
]

MEASURES = ("to_recommend", "to_assign", "to_acknowledge", "to_arrive", "to_close")
"""The response-time measures, in the order of an alert's life."""

_STAMPS = dict(
    zip(MEASURES, ("recommended_at", "assigned_at", "acknowledged_at", "on_scene_at", "closed_at"), strict=True)
)

GROUPINGS = ("district", "unit", "source", "priority")

LOCALES = ("kk", "ru", "en")
_LOCALE_DIR = Path(__file__).with_name("locales")


def durations(alert: Alert) -> dict[str, float | None]:
    """Seconds from receipt to each stage the alert reached (None where it did not)."""
    out: dict[str, float | None] = {}
    for measure, field in _STAMPS.items():
        stamp: datetime | None = getattr(alert, field)
        out[measure] = None if stamp is None else max(0.0, (stamp - alert.received_at).total_seconds())
    return out


class Districts:
    """Named polygons from a GeoJSON FeatureCollection (property ``name``, else ``id``)."""

    def __init__(self, names: Sequence[str], geometries: Sequence[Any]) -> None:
        from shapely import STRtree  # with the districts only: a replica without them never loads shapely

        self.names = list(names)
        self._geoms = list(geometries)
        self._tree = STRtree(self._geoms)

    @classmethod
    def from_geojson(cls, path: str | Path) -> Districts:
        from shapely.geometry import shape

        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        names, geoms = [], []
        for i, feature in enumerate(doc.get("features") or []):
            props = feature.get("properties") or {}
            geom = shape(feature["geometry"])
            if geom.geom_type not in ("Polygon", "MultiPolygon"):
                msg = f"{path}: feature {i} must be a Polygon or MultiPolygon, got {geom.geom_type}"
                raise ValueError(msg)
            names.append(str(props.get("name") or props.get("id") or f"district {i + 1}"))
            geoms.append(geom)
        if not geoms:
            msg = f"{path} has no district polygons"
            raise ValueError(msg)
        return cls(names, geoms)

    def name_of(self, lat: float, lon: float) -> str | None:
        from shapely.geometry import Point

        point = Point(lon, lat)
        hits = self._tree.query(point, predicate="intersects")
        return self.names[int(min(hits))] if len(hits) else None


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Counts and response-time statistics of one group."""

    key: str
    count: int
    stats: dict[str, dict[str, float | int | None]]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "count": self.count, **self.stats}


def _key(alert: Alert, group_by: str, districts: Districts | None) -> str:
    if group_by == "district":
        name = districts.name_of(alert.lat, alert.lon) if districts is not None else None
        return name or "(outside districts)"
    if group_by == "unit":
        return alert.assigned_unit_id or "(none)"
    if group_by == "source":
        return alert.source.value
    if group_by == "priority":
        return f"P{alert.priority}"
    msg = f"group_by must be one of {', '.join(GROUPINGS)}, got {group_by!r}"
    raise ValueError(msg)


def summarize(alerts: Iterable[Alert], group_by: str, *, districts: Districts | None = None) -> list[GroupStats]:
    """Count, median and p90 of each measure per group, groups sorted by key."""
    if group_by not in GROUPINGS:
        msg = f"group_by must be one of {', '.join(GROUPINGS)}, got {group_by!r}"
        raise ValueError(msg)
    groups: dict[str, list[dict[str, float | None]]] = {}
    for alert in alerts:
        groups.setdefault(_key(alert, group_by, districts), []).append(durations(alert))
    order = sorted(groups, key=lambda k: (len(k), k) if group_by == "priority" else (0, k))
    return [GroupStats(key, len(groups[key]), _stats(groups[key])) for key in order]


def _stats(rows: Sequence[dict[str, float | None]]) -> dict[str, dict[str, float | int | None]]:
    stats: dict[str, dict[str, float | int | None]] = {}
    for m in MEASURES:
        values = np.array([r[m] for r in rows if r[m] is not None], dtype=float)
        stats[m] = {
            "n": int(values.size),
            "median_s": None if not values.size else round(float(np.median(values)), 3),
            "p90_s": None if not values.size else round(float(np.percentile(values, 90)), 3),
        }
    return stats


def to_csv(groups: Sequence[GroupStats], group_by: str) -> str:
    """One row per group: key, count, then n/median/p90 of each measure."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([group_by, "count", *[f"{m}_{s}" for m in MEASURES for s in ("n", "median_s", "p90_s")]])
    for g in groups:
        writer.writerow(
            [
                g.key,
                g.count,
                *["" if g.stats[m][s] is None else g.stats[m][s] for m in MEASURES for s in ("n", "median_s", "p90_s")],
            ]
        )
    return buffer.getvalue()


def quarter_bounds(quarter: str, zone: str = "Asia/Almaty") -> tuple[datetime, datetime]:
    """``"2026Q4"`` -> the quarter's start and end (exclusive) in UTC, quarters in the city's local time."""
    match = re.fullmatch(r"(\d{4})-?Q([1-4])", quarter.strip().upper())
    if not match:
        msg = f"quarter must look like 2026Q4, got {quarter!r}"
        raise ValueError(msg)
    year, q = int(match.group(1)), int(match.group(2))
    tz = ZoneInfo(zone)
    start = datetime(year, 3 * q - 2, 1, tzinfo=tz)
    end = datetime(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def catalogue(lang: str) -> dict[str, str]:
    """The message catalogue of ``lang`` (kk, ru, en)."""
    if lang not in LOCALES:
        msg = f"language must be one of {', '.join(LOCALES)}, got {lang!r}"
        raise ValueError(msg)
    texts: dict[str, str] = json.loads((_LOCALE_DIR / f"{lang}.json").read_text(encoding="utf-8"))
    return texts


def _fmt_s(value: float | int | None, t: dict[str, str] | None = None) -> str:
    if value is None:
        return "—"
    value = float(value)
    sec, mins = (t or {}).get("unit_s", "s"), (t or {}).get("unit_min", "min")
    return f"{value:.0f} {sec}" if value < 120 else f"{value / 60:.1f} {mins}"


def _svg_chart(
    groups: Sequence[GroupStats], *, title: str, median_label: str, p90_label: str, t: dict[str, str] | None = None
) -> str:
    """A horizontal bar chart (median and p90 of time to arrive) as inline SVG; no scripts, works offline."""
    rows = [(g.key, g.stats["to_arrive"]["median_s"], g.stats["to_arrive"]["p90_s"]) for g in groups]
    top = max([float(p or 0) for _, _, p in rows] + [1.0])
    bar_w, left, row_h = 420, 170, 34
    height = 50 + row_h * max(1, len(rows)) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + bar_w + 90}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="12">',
        f'<text x="0" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (key, median, p90) in enumerate(rows):
        y = 36 + i * row_h
        parts.append(f'<text x="0" y="{y + 16}">{html.escape(key)}</text>')
        for j, (value, colour) in enumerate(((median, "#2b6cb0"), (p90, "#90cdf4"))):
            w = 0 if value is None else bar_w * float(value) / top
            parts.append(f'<rect x="{left}" y="{y + j * 13}" width="{w:.1f}" height="12" fill="{colour}"/>')
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + j * 13 + 10}">{_fmt_s(value, t)}</text>')
    y = height - 12
    parts.append(f'<rect x="{left}" y="{y - 9}" width="10" height="10" fill="#2b6cb0"/>')
    parts.append(f'<text x="{left + 14}" y="{y}">{html.escape(median_label)}</text>')
    parts.append(f'<rect x="{left + 140}" y="{y - 9}" width="10" height="10" fill="#90cdf4"/>')
    parts.append(f'<text x="{left + 154}" y="{y}">{html.escape(p90_label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def render_public_report(
    alerts: Sequence[Alert],
    *,
    quarter: str,
    lang: str = "ru",
    fmt: str = "html",
    districts: Districts | None = None,
    generated_at: datetime | None = None,
    dosage: Sequence[tuple[str, int, float, float]] | None = None,
) -> str:
    """The quarterly public report: aggregates by district, priority and source; no personal data.

    No alert text, sender, device, position or unit appears: only counts and response-time
    statistics of groups. ``dosage`` adds a section of rows ``(district, plans, planned minutes,
    delivered minutes)``: the patrol minutes the quarter's plans gave their hot spots and those
    delivered (issue 14); districts only, never a patrol or unit.
    """
    t = catalogue(lang)
    if fmt not in ("html", "md"):
        msg = f"format must be html or md, got {fmt!r}"
        raise ValueError(msg)
    by_district = summarize(alerts, "district", districts=districts) if districts is not None else []
    by_priority = summarize(alerts, "priority")
    by_source = summarize(alerts, "source")
    overall = [GroupStats(t["all_alerts"], len(alerts), _stats([durations(a) for a in alerts]))]
    headers = [t["group"], t["count"], *[f"{t[m]} ({t['median']} / p90)" for m in MEASURES]]

    def table_rows(groups: Sequence[GroupStats], label: Any = None) -> list[list[str]]:
        return [
            [
                label(g.key) if label else g.key,
                str(g.count),
                *[f"{_fmt_s(g.stats[m]['median_s'], t)} / {_fmt_s(g.stats[m]['p90_s'], t)}" for m in MEASURES],
            ]
            for g in groups
        ]

    source_label = lambda k: t.get(f"source_{k}", k)  # noqa: E731
    priority_label = lambda k: t.get(f"priority_{k}", k)  # noqa: E731
    sections = [(t["overall"], table_rows(overall))]
    if by_district:
        sections.append((t["by_district"], table_rows(by_district)))
    sections += [
        (t["by_priority"], table_rows(by_priority, priority_label)),
        (t["by_source"], table_rows(by_source, source_label)),
    ]
    dosage_headers = [t[k] for k in ("dosage_district", "dosage_plans", "dosage_planned_min", "dosage_delivered_min",
                                     "dosage_delivered_share")]  # fmt: skip
    dosage_rows = [
        [name, str(plans), f"{planned:.0f}", f"{delivered:.0f}", f"{100 * delivered / planned:.0f}" if planned else "—"]
        for name, plans, planned, delivered in dosage or ()
    ]
    chart_groups = by_district or by_priority
    chart = _svg_chart(chart_groups, title=t["chart_title"], median_label=t["median"], p90_label="p90", t=t)
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    title = t["title"].format(quarter=quarter)
    notes = [t["note_privacy"], t["note_method"], t["generated"].format(time=generated)]
    if fmt == "md":
        out = [f"# {title}", "", t["intro"], ""]
        for heading, rows in sections:
            out += [f"## {heading}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            out += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("")
        if dosage_rows:
            out += [f"## {t['dosage_by_district']}", "", t["dosage_intro"], ""]
            out += ["| " + " | ".join(dosage_headers) + " |", "|" + "---|" * len(dosage_headers)]
            out += ["| " + " | ".join(r) + " |" for r in dosage_rows]
            out.append("")
        out += [f"## {t['chart_title']}", "", chart, ""]
        out += [f"_{n}_  " for n in notes]
        return "\n".join(out) + "\n"
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>", f"<p>{esc(t['intro'])}</p>"]
    for heading, rows in sections:
        body.append(
            f"<h2>{esc(heading)}</h2><table><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in headers)
            + "</tr></thead><tbody>"
        )
        body += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        body.append("</tbody></table>")
    if dosage_rows:
        body.append(
            f"<h2>{esc(t['dosage_by_district'])}</h2><p>{esc(t['dosage_intro'])}</p><table><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in dosage_headers)
            + "</tr></thead><tbody>"
        )
        body += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in dosage_rows]
        body.append("</tbody></table>")
    body += [f"<h2>{esc(t['chart_title'])}</h2>", chart]
    body += [f"<p><small>{esc(n)}</small></p>" for n in notes]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# -- false alarms (issue 6, supervision) -------------------------------------------------------

FALSE_ALARM_GROUPINGS = ("device", "site")


@dataclass(frozen=True, slots=True)
class FalseAlarmStats:
    """SOS presses of one button or one kind of site, and how many were closed as false alarms."""

    key: str
    presses: int
    false_alarms: int

    @property
    def rate(self) -> float | None:
        """False alarms per press (None without presses)."""
        return None if not self.presses else round(self.false_alarms / self.presses, 4)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "presses": self.presses, "false_alarms": self.false_alarms, "rate": self.rate}


def false_alarm_rates(alerts: Iterable[Alert], group_by: str = "site") -> list[FalseAlarmStats]:
    """Presses, false alarms and their rate per button (``device``) or per kind of site (``site``).

    Only SOS presses count: self-tests (status ``test``) and 102 reports are left out. A press is a
    false alarm when a dispatcher closed it as ``false_alarm`` (which needs a reason) or the unit on
    scene closed it with the outcome ``false_alarm`` (:attr:`Alert.false_alarm`). Groups are sorted
    by key.
    """
    if group_by not in FALSE_ALARM_GROUPINGS:
        msg = f"group_by must be one of {', '.join(FALSE_ALARM_GROUPINGS)}, got {group_by!r}"
        raise ValueError(msg)
    presses: dict[str, int] = {}
    false: dict[str, int] = {}
    for alert in alerts:
        if alert.source is not AlertSource.SOS or alert.status is AlertStatus.TEST:
            continue
        key = alert.sender if group_by == "device" else (alert.site.value if alert.site is not None else "other")
        presses[key] = presses.get(key, 0) + 1
        false[key] = false.get(key, 0) + alert.false_alarm
    return [FalseAlarmStats(k, presses[k], false[k]) for k in sorted(presses)]


def false_alarm_csv(rows: Sequence[FalseAlarmStats], group_by: str, *, lang: str = "en") -> str:
    """The false-alarm report as CSV with headers (and site names) in ``lang``."""
    t = catalogue(lang)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([t[f"fa_{group_by}"], t["fa_presses"], t["fa_false_alarms"], t["fa_rate"]])
    for r in rows:
        key = t.get(f"site_{r.key}", r.key) if group_by == "site" else r.key
        writer.writerow([key, r.presses, r.false_alarms, "" if r.rate is None else r.rate])
    return buffer.getvalue()


REPORT_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
REPORT_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def report_window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The ``[from, to)`` of a report in UTC: by default the 30 days up to ``now``.

    Raises
    ------
    ValueError
        If a bound lies outside 1970-9000 (no database stores such times; PostgreSQL's driver
        overflows on them) or ``from`` is not before ``to``.
    """
    try:
        to = (end or now).astimezone(UTC)
        since = start.astimezone(UTC) if start is not None else to - timedelta(days=30)
    except OverflowError as e:
        msg = f"'from' and 'to' must lie between {REPORT_EARLIEST.year} and {REPORT_LATEST.year}"
        raise ValueError(msg) from e
    if not (REPORT_EARLIEST <= since <= REPORT_LATEST and REPORT_EARLIEST <= to <= REPORT_LATEST):
        msg = f"'from' and 'to' must lie between {REPORT_EARLIEST.year} and {REPORT_LATEST.year}"
        raise ValueError(msg)
    if since >= to:
        msg = f"'from' ({since.isoformat()}) must be before 'to' ({to.isoformat()})"
        raise ValueError(msg)
    return since, to
