"""A plan as the commander's documents: GeoJSON layers, CSV rows, the Markdown sheet, GPX parts.

Pure functions from a :class:`patrol_planner.planner.PlanBundle` to dictionaries and text; the
files are written by :mod:`patrol_planner.io` and the map by :mod:`maps`.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, TypedDict

import numpy as np

from patrol_planner.i18n import Messages
from patrol_planner.planner import PlanBundle
from patrol_planner.routes import PatrolRoute

__all__ = [
    "PLAN_CSV_HEADER",
    "ROUTE_COLOURS",
    "GpxParts",
    "booths_geojson",
    "gpx_parts",
    "hotspots_geojson",
    "plan_csv_rows",
    "plan_markdown",
    "risk_cells_geojson",
    "route_colour",
    "routes_geojson",
    "streets_geojson",
]

#: Distinct colours for routes (ColorBrewer Set1/Dark2/Paired, dark enough on a white map).
ROUTE_COLOURS = (
    "#e41a1c",
    "#377eb8",
    "#4daf4a",
    "#984ea3",
    "#ff7f00",
    "#a65628",
    "#f781bf",
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
    "#1f78b4",
    "#33a02c",
    "#fb9a99",
    "#6a3d9a",
    "#b15928",
    "#666666",
    "#17becf",
)


def route_colour(k: int) -> str:
    return ROUTE_COLOURS[k % len(ROUTE_COLOURS)]


def _iso(bundle: PlanBundle, offset_s: float) -> str:
    """Local time with its UTC offset, ISO 8601 (``2026-01-05T22:15:00+05:00``)."""
    return bundle.plan.shift.at(offset_s).strftime("%Y-%m-%dT%H:%M:%S") + bundle.plan.shift.utc_offset()


def _hhmm(bundle: PlanBundle, offset_s: float) -> str:
    return bundle.plan.shift.at(offset_s).strftime("%H:%M")


def _route_coords(bundle: PlanBundle, route: PatrolRoute) -> list[list[float]]:
    net = bundle.network
    coords = [[round(route.booth.lon, 7), round(route.booth.lat, 7)]]
    coords += [[round(float(net.node_lon[n]), 7), round(float(net.node_lat[n]), 7)] for n in route.path]
    coords.append([round(route.booth.lon, 7), round(route.booth.lat, 7)])
    return coords


def routes_geojson(bundle: PlanBundle) -> dict[str, Any]:
    """Routes (LineStrings, booth to booth) and their stops (Points), with times and risk."""
    features = []
    total = bundle.plan.total_risk or 1.0
    for k, r in enumerate(bundle.plan.routes):
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": _route_coords(bundle, r)},
                "properties": {
                    "kind": "route",
                    "patrol": r.patrol_id,
                    "booth": r.booth.id,
                    "colour": route_colour(k),
                    "length_m": round(r.length_m, 1),
                    "walking_min": round(r.walking_s / 60, 1),
                    "stops": len(r.stops),
                    "start": _iso(bundle, 0.0),
                    "back_at_booth": _iso(bundle, r.end_s) if r.stops else _iso(bundle, 0.0),
                    "risk_covered": round(r.risk_covered, 6),
                    "risk_share": round(r.risk_covered / total, 5),
                },
            }
        )
        for i, s in enumerate(r.stops, start=1):
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [round(s.lon, 7), round(s.lat, 7)]},
                    "properties": {
                        "kind": "stop",
                        "patrol": r.patrol_id,
                        "colour": route_colour(k),
                        "seq": i,
                        "hot_spot": s.spot,
                        "arrive": _iso(bundle, s.arrive_s),
                        "depart": _iso(bundle, s.depart_s),
                        "dwell_min": round(s.dwell_s / 60, 1),
                        "risk_covered": round(s.risk_covered, 6),
                    },
                }
            )
    return {"type": "FeatureCollection", "features": features}


def booths_geojson(bundle: PlanBundle) -> dict[str, Any]:
    patrols_at: dict[str, list[str]] = {}
    for r in bundle.plan.routes:
        patrols_at.setdefault(r.booth.id, []).append(r.patrol_id)
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [b.lon, b.lat]},
                "properties": {"kind": "booth", "id": b.id, "name": b.name, "patrols": patrols_at.get(b.id, [])},
            }
            for b in bundle.booths
        ],
    }


def hotspots_geojson(bundle: PlanBundle) -> dict[str, Any]:
    """Hot spots with their risk, visits, and whether they are beyond the booths' reach."""
    visits: dict[int, list[str]] = {}
    for r in bundle.plan.routes:
        for s in r.stops:
            visits.setdefault(s.spot, []).append(f"{r.patrol_id} {_hhmm(bundle, s.arrive_s)}")
    far = {s.id: m for s, m in bundle.coverage.uncovered}
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
                "properties": {
                    "kind": "hot_spot",
                    "id": s.id,
                    "rank": i + 1,
                    "risk": round(s.risk, 6),
                    "visits": visits.get(s.id, []),
                    "uncovered": s.id in far,
                    "booth_walk_min": None if s.id not in far or not math.isfinite(far[s.id]) else round(far[s.id], 1),
                },
            }
            for i, s in enumerate(bundle.risk.hotspots)
        ],
    }


def risk_cells_geojson(bundle: PlanBundle, *, max_cells: int = 3000, share: float = 0.95) -> dict[str, Any]:
    """The hottest grid cells as polygons (until ``share`` of the risk or ``max_cells``)."""
    risk = bundle.risk.risk
    grid = bundle.risk.surface.grid
    order = np.argsort(-risk, kind="stable")
    order = order[risk[order] > 0]
    cum = np.cumsum(risk[order])
    n = min(max_cells, int(np.searchsorted(cum, share * cum[-1])) + 1) if order.size else 0
    order = order[:n]
    rows, cols = np.divmod(order, grid.nx)
    x0 = grid.x0 + cols * grid.cell_m
    y0 = grid.y0 + rows * grid.cell_m
    net = bundle.network
    xs = np.concatenate([x0, x0 + grid.cell_m, x0 + grid.cell_m, x0])
    ys = np.concatenate([y0, y0, y0 + grid.cell_m, y0 + grid.cell_m])
    lat, lon = net.to_latlon(xs, ys)
    lat = lat.reshape(4, n)
    lon = lon.reshape(4, n)
    top = float(risk[order[0]]) if n else 1.0
    features = []
    for j, c in enumerate(order.tolist()):
        ring = [[round(float(lon[q, j]), 7), round(float(lat[q, j]), 7)] for q in (0, 1, 2, 3, 0)]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "kind": "risk_cell",
                    "risk": round(float(risk[c]), 6),
                    "level": round(float(risk[c]) / top, 4),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


PLAN_CSV_HEADER = (
    "patrol",
    "booth",
    "seq",
    "kind",
    "hot_spot",
    "lat",
    "lon",
    "arrive",
    "depart",
    "dwell_min",
    "risk_covered",
    "route_length_m",
    "route_walking_min",
    "route_risk_covered",
)


def plan_csv_rows(bundle: PlanBundle) -> list[list[object]]:
    """One row per booth departure, stop and return, with the route's totals repeated."""
    rows: list[list[object]] = []
    for r in bundle.plan.routes:
        tail = [round(r.length_m, 1), round(r.walking_s / 60, 1), round(r.risk_covered, 6)]
        rows.append(
            [r.patrol_id, r.booth.id, 0, "start", "", r.booth.lat, r.booth.lon, "", _iso(bundle, 0.0), "", "", *tail]
        )
        for i, s in enumerate(r.stops, start=1):
            rows.append(
                [
                    r.patrol_id,
                    r.booth.id,
                    i,
                    "stop",
                    s.spot,
                    round(s.lat, 7),
                    round(s.lon, 7),
                    _iso(bundle, s.arrive_s),
                    _iso(bundle, s.depart_s),
                    round(s.dwell_s / 60, 1),
                    round(s.risk_covered, 6),
                    *tail,
                ]
            )
        end = r.end_s if r.stops else 0.0
        rows.append(
            [
                r.patrol_id,
                r.booth.id,
                len(r.stops) + 1,
                "end",
                "",
                r.booth.lat,
                r.booth.lon,
                _iso(bundle, end),
                "",
                "",
                "",
                *tail,
            ]
        )
    return rows


def _minutes(m: Messages, seconds: float) -> str:
    h, mm = divmod(round(seconds / 60), 60)
    return f"{h} {m('hours')} {mm:02d} {m('minutes')}" if h else f"{mm} {m('minutes')}"


def plan_markdown(bundle: PlanBundle, m: Messages, *, files: list[str] | None = None) -> str:
    """The plan sheet in the commander's language."""
    plan, risk, cov, rep = bundle.plan, bundle.risk, bundle.coverage, bundle.report
    shift = plan.shift
    total = plan.total_risk or 1.0
    out = [f"# {m('plan_title')}: {shift.label}", ""]
    if bundle.synthetic or "synthetic" in bundle.network_label.lower():
        out += [f"> **{m('synthetic_warning')}**", ""]
    out += [
        f"- {m('shift')}: {shift.start:%Y-%m-%d %H:%M} – {shift.end:%Y-%m-%d %H:%M}",
        f"- {m('timezone', tz=shift.timezone, offset=shift.utc_offset())}",
        f"- {m('network')}: {bundle.network_label}",
        f"- {m('incidents')}: "
        + m(
            "incidents_used",
            kept=rep.kept,
            rows=rep.rows,
            dropped=rep.dropped,
            missing_coordinates=rep.missing_coordinates,
            missing_time=rep.missing_time,
            invalid_coordinates=rep.invalid_coordinates,
            outside_area=rep.outside_area,
        ),
        f"- {m('estimator')}: `{risk.estimator}`; "
        + m("trained_until", date=f"{risk.trained_until:%Y-%m-%d}", n=risk.training_events),
        *(
            [
                f"- {m('trained_on')}: "
                + m(
                    "trained_on_detail",
                    public=bundle.training.public,
                    officer=bundle.training.officer,
                    used=bundle.training.officer_used,
                    weight=f"{bundle.training.officer_weight:g}",
                    by=m(f"flagged_by_{bundle.training.flagged_by}"),
                )
            ]
            if bundle.training is not None
            else []
        ),
        f"- {m('expected_per_shift')}: {risk.expected_per_shift:.3f}",
        f"- {m('patrols')}: {len(plan.routes)}; {m('walk_speed')}: {plan.walk_speed_mps:.1f} m/s; "
        f"{m('dwell')}: {plan.dwell_s / 60:.0f} {m('minutes')}",
        f"- {m('seed')}: {plan.seed if plan.seed is not None else m('seed_none')}",
        f"- {m('risk_covered_total')}: {plan.risk_covered:.4f} ({plan.risk_covered / total:.1%} {m('share_of_shift_risk')}); "
        f"{m('risk_per_patrol_hour')}: {plan.risk_per_patrol_hour:.5f}",
        "",
        f"## {m('summary')}",
        "",
        f"| {m('patrol')} | {m('booth')} | {m('length_km')} | {m('walking_time')} | {m('stops')} | {m('risk_covered')} | {m('back_at_booth')} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in plan.routes:
        back = _hhmm(bundle, r.end_s) if r.stops else "-"
        out.append(
            f"| {r.patrol_id} | {r.booth.name or r.booth.id} | {r.length_m / 1000:.2f} | {_minutes(m, r.walking_s)} | "
            f"{len(r.stops)} | {r.risk_covered:.4f} ({r.risk_covered / total:.1%}) | {back} |"
        )
    for r in plan.routes:
        out += [
            "",
            f"## {m('patrol')} {r.patrol_id} — {m('booth')} {r.booth.name or r.booth.id}",
            "",
            f"| # | {m('hot_spot')} | {m('arrive')} | {m('depart')} | {m('dwell_min')} | {m('risk_covered')} |",
            "|---|---|---|---|---|---|",
            f"| 0 | {m('start_at_booth')} | | {_hhmm(bundle, 0.0)} | | |",
        ]
        for i, s in enumerate(r.stops, start=1):
            out.append(
                f"| {i} | #{s.spot + 1} ({s.lat:.5f}, {s.lon:.5f}) | {_hhmm(bundle, s.arrive_s)} | "
                f"{_hhmm(bundle, s.depart_s)} | {s.dwell_s / 60:.0f} | {s.risk_covered:.4f} |"
            )
        if r.stops:
            out.append(f"| {len(r.stops) + 1} | {m('back_at_booth')} | {_hhmm(bundle, r.end_s)} | | | |")
    far_m = max(cov.minutes)
    out += [
        "",
        f"## {m('coverage_title')}",
        "",
        f"| | {m('share_of_risk')} | {m('share_of_incidents')} |",
        "|---|---|---|",
    ]
    for mins in cov.minutes:
        out.append(f"| {m('within_walk', m=mins)} | {cov.risk_share[mins]:.1%} | {cov.incident_share[mins]:.1%} |")
    out += ["", f"### {m('uncovered_title', m=far_m)}", ""]
    if not cov.uncovered:
        out.append(m("uncovered_none", m=far_m))
    for spot, walk_min in cov.uncovered:
        walk = f"{walk_min:.0f} {m('minutes')}" if math.isfinite(walk_min) else m("unreachable")
        out.append(f"- #{spot.id + 1} ({spot.lat:.5f}, {spot.lon:.5f}): {m('risk')} {spot.risk:.4f}; {walk}")
    if plan.notes:
        out += ["", f"## {m('notes')}", ""] + [f"- {n}" for n in plan.notes]
    if files:
        out += ["", f"## {m('files')}", ""] + [f"- `{f}`" for f in files]
    return "\n".join(out) + "\n"


class GpxParts(TypedDict):
    """The keyword arguments of :func:`patrol_planner.io.write_gpx` for one patrol."""

    name: str
    track: list[tuple[float, float]]
    waypoints: list[tuple[float, float, str, str, str]]


def gpx_parts(bundle: PlanBundle, route: PatrolRoute, m: Messages) -> GpxParts:
    """Name, track points and waypoints (stops with planned UTC times) of one patrol's GPX file."""
    shift = bundle.plan.shift
    track = [(lat, lon) for lon, lat in _route_coords(bundle, route)]
    wpts = [
        (
            route.booth.lat,
            route.booth.lon,
            f"0 {m('start_at_booth')}",
            route.booth.name or route.booth.id,
            _utc(shift.utc(0.0)),
        )
    ]
    for i, s in enumerate(route.stops, start=1):
        desc = f"{m('arrive')} {_hhmm(bundle, s.arrive_s)}, {m('dwell_min')} {s.dwell_s / 60:.0f}"
        wpts.append((s.lat, s.lon, f"{i} {m('stop')} #{s.spot + 1}", desc, _utc(shift.utc(s.arrive_s))))
    return {"name": f"{m('patrol')} {route.patrol_id} {shift.label}", "track": track, "waypoints": wpts}


def _utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def streets_geojson(bundle: PlanBundle, *, margin_m: float = 300.0, max_segments: int = 25_000) -> dict[str, Any]:
    """Walkable streets around the plan (booths, hot spots, routes plus a margin), for the base map.

    On a large city only the ``max_segments`` longest segments in that box are kept.
    """
    net = bundle.network
    path = np.array([n for r in bundle.plan.routes for n in r.path], dtype=np.int64)
    lats = np.concatenate([[b.lat for b in bundle.booths], [s.lat for s in bundle.risk.hotspots], net.node_lat[path]])
    lons = np.concatenate([[b.lon for b in bundle.booths], [s.lon for s in bundle.risk.hotspots], net.node_lon[path]])
    dlat = margin_m / 111_320.0
    dlon = margin_m / (111_320.0 * math.cos(math.radians(float(np.mean(lats)))))
    lo_lat, hi_lat = float(lats.min()) - dlat, float(lats.max()) + dlat
    lo_lon, hi_lon = float(lons.min()) - dlon, float(lons.max()) + dlon
    u, v = net.seg_u, net.seg_v
    inside = net.seg_walk & (
        (net.node_lat[u] >= lo_lat)
        & (net.node_lat[u] <= hi_lat)
        & (net.node_lon[u] >= lo_lon)
        & (net.node_lon[u] <= hi_lon)
    )
    idx = np.flatnonzero(inside)
    if idx.size > max_segments:
        idx = idx[np.argsort(-net.seg_length_m[idx], kind="stable")[:max_segments]]
    # Rounded in one pass (numpy), then plain lists: one list per segment is all that is left.
    ends = np.round(
        np.stack([net.node_lon[u[idx]], net.node_lat[u[idx]], net.node_lon[v[idx]], net.node_lat[v[idx]]], axis=1), 6
    )
    features = [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[x0, y0], [x1, y1]]}, "properties": {}}
        for x0, y0, x1, y1 in ends.tolist()
    ]
    return {"type": "FeatureCollection", "features": features}
