"""The siting model's data: demand, candidate sites, the walking-time coverage matrix, districts.

No solver here (:mod:`patrol_planner.siting` solves). Everything is arrays over the walking graph
of :mod:`geo` (through :class:`patrol_planner._graph.WalkGraph`):

- **Demand** (:class:`Demand`): the risk surface of the planner's estimators
  (:mod:`patrol_planner.hotspots`), one point per grid cell at its centre with the cell's risk
  (expected incidents per day in the chosen hours), cells below ``min_share`` of the total left
  out so the MILP stays small; or explicit Point features with a numeric ``weight``.
- **Candidates** (:func:`default_candidates`): points about every ``spacing_m`` along walkable
  streets, leaving out motorways, trunk roads (and their links), tunnels and bridges.
- **Coverage** (:func:`coverage_matrix`): demand point ``i`` is covered by site ``j`` when the
  walking time between them is at most ``walk_min`` minutes, with Qorgau's ETA definition (the
  site's off-street leg at walking speed + network time between the snapped points + the demand
  point's off-street leg), from geo's bounded multi-source search (:func:`geo.reachable`), never
  straight-line. Built as a sparse boolean matrix with array operations only.
- **Districts** (:func:`read_districts`, :func:`district_index`): polygons, and the district of
  each demand point.
- **Walking areas** (:func:`walking_areas`): the streets within 5 or 10 minutes' walk of a set of
  booths, buffered and unioned, for the map.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from scipy import sparse

from geo import Router
from patrol_planner._graph import WalkGraph
from patrol_planner.evaluation import events_xy
from patrol_planner.hotspots import DEFAULT_ESTIMATOR, Grid, Segments, make_estimator
from patrol_planner.incidents import Incidents, hours_mask
from patrol_planner.siting_types import SiteFeature

__all__ = [
    "NO_BOOTH_HIGHWAYS",
    "Demand",
    "District",
    "coverage_matrix",
    "default_candidates",
    "demand_from_incidents",
    "demand_from_points",
    "district_index",
    "read_districts",
    "read_points",
    "walking_areas",
]

NO_BOOTH_HIGHWAYS = frozenset({"motorway", "motorway_link", "trunk", "trunk_link"})
"""Road types beside which no booth stands (with tunnels and bridges of any type)."""

_EPOCH = np.datetime64("1970-01-01T00:00:00", "s")
_DAY_S = 86_400.0


@dataclass(frozen=True)
class Demand:
    """Demand points: where risk (or explicit weight) lies, in WGS 84, with ids and weights."""

    ids: list[str]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    weight: NDArray[np.float64]
    sources: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.weight.size)

    @property
    def total_weight(self) -> float:
        return float(self.weight.sum())

    def feature(self, i: int) -> SiteFeature:
        return SiteFeature(self.ids[i], float(self.lat[i]), float(self.lon[i]), float(self.weight[i]))


@dataclass(frozen=True)
class District:
    name: str
    geometry: shapely.Geometry
    """In WGS 84 (x = lon, y = lat)."""


# -- reading points and polygons -----------------------------------------------------------------


def _features(path: Path, what: str) -> list[dict[str, Any]]:
    if not path.is_file():
        msg = f"{what} file not found: {str(path)!r}"
        raise FileNotFoundError(msg)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        msg = f"{path.name}: not GeoJSON ({e})"
        raise ValueError(msg) from e
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list) or not features:
        msg = f"{path.name}: no GeoJSON features ({what})"
        raise ValueError(msg)
    return features


def read_points(path: str | Path, *, what: str = "points", weight: bool = False) -> list[SiteFeature]:
    """Point features with an ``id`` (and, with ``weight=True``, a numeric ``weight`` >= 0).

    Raises
    ------
    ValueError
        Naming the feature and what is wrong with it: not a Point, no or a repeated ``id``, a
        coordinate outside WGS 84, a missing, non-numeric or negative ``weight``.
    """
    p = Path(path)
    out: list[SiteFeature] = []
    seen: set[str] = set()
    for i, f in enumerate(_features(p, what)):
        props = (f.get("properties") if isinstance(f, dict) else None) or {}
        geom = (f.get("geometry") if isinstance(f, dict) else None) or {}
        if geom.get("type") != "Point":
            msg = f"{p.name}: feature {i} is a {geom.get('type')!r}, {what} must be Points"
            raise ValueError(msg)
        try:
            lon, lat = (float(c) for c in geom["coordinates"][:2])
        except (KeyError, TypeError, ValueError) as e:
            msg = f"{p.name}: feature {i} has no usable coordinates: {geom.get('coordinates')!r}"
            raise ValueError(msg) from e
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            msg = f"{p.name}: feature {i} is outside WGS 84: lat {lat}, lon {lon}"
            raise ValueError(msg)
        ident = props.get("id")
        if ident is None or str(ident).strip() == "":
            if weight:
                ident = f"d{i + 1}"
            else:
                msg = f"{p.name}: feature {i} has no 'id' ({what} need one)"
                raise ValueError(msg)
        ident = str(ident)
        if ident in seen:
            msg = f"{p.name}: id {ident!r} appears twice"
            raise ValueError(msg)
        seen.add(ident)
        w = 0.0
        if weight:
            raw = props.get("weight")
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
                msg = f"{p.name}: feature {i} ({ident!r}) needs a numeric weight >= 0, got {raw!r}"
                raise ValueError(msg)
            w = float(raw)
        out.append(SiteFeature(ident, lat, lon, w))
    return out


def read_districts(path: str | Path) -> list[District]:
    """Polygon or MultiPolygon features named by ``name`` (or ``id``; else ``district N``)."""
    p = Path(path)
    out = []
    for i, f in enumerate(_features(p, "districts")):
        props = f.get("properties") or {}
        geom = f.get("geometry") or {}
        if geom.get("type") not in {"Polygon", "MultiPolygon"}:
            msg = f"{p.name}: feature {i} is a {geom.get('type')!r}, districts must be Polygons"
            raise ValueError(msg)
        shape = shapely.geometry.shape(geom)
        if not shape.is_valid:
            shape = shapely.make_valid(shape)
        name = props.get("name") or props.get("id") or f"district {i + 1}"
        out.append(District(str(name), shape))
    return out


def district_index(
    districts: Sequence[District], lat: NDArray[np.float64], lon: NDArray[np.float64]
) -> NDArray[np.int64]:
    """The index of the (first) district holding each point; ``-1`` outside every district."""
    out = np.full(np.asarray(lat).size, -1, dtype=np.int64)
    for k, d in enumerate(districts):
        hit = (out < 0) & shapely.contains_xy(d.geometry, np.asarray(lon), np.asarray(lat))
        out[hit] = k
    return out


# -- demand --------------------------------------------------------------------------------------


def demand_from_points(points: Sequence[SiteFeature], *, source: str = "demand points") -> Demand:
    """Demand from explicit weighted points (e.g. :func:`read_points` with ``weight=True``)."""
    if not points:
        msg = "no demand points"
        raise ValueError(msg)
    return Demand(
        [p.id for p in points],
        np.array([p.lat for p in points]),
        np.array([p.lon for p in points]),
        np.array([p.weight for p in points]),
        {"demand": source, "demand_points": len(points)},
    )


def demand_from_incidents(
    incidents: Incidents,
    graph: WalkGraph,
    *,
    hours: tuple[int, int] | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
    cell_m: float = 100.0,
    min_share: float = 1e-12,
) -> Demand:
    """The risk surface of ``incidents`` (of the local ``hours`` only, when given) as demand points.

    The estimator is trained on everything up to the day after the last incident; each cell's
    score is scaled to expected incidents per day in those hours (the last year's mean), and
    the cells with at least ``min_share`` of the total become demand points at their centres.
    Incidents known only to the month count for every hour.
    """
    if not len(incidents):
        msg = "no incidents to estimate demand from"
        raise ValueError(msg)
    sel = hours_mask(incidents.hour, hours) | ~incidents.hour_known
    train = incidents.subset(sel)
    if not len(train):
        msg = f"no incidents in the hours {hours[0]:02d}-{hours[1]:02d}" if hours else "no incidents"
        raise ValueError(msg)
    last = train.occurred_at.max()
    at = (last + np.timedelta64(1, "D")).astype("datetime64[D]").astype("datetime64[s]")
    at_s = float((at - _EPOCH).astype(np.float64))
    net = graph.network
    model = make_estimator(estimator)
    segments = Segments.from_graph(graph) if estimator == "network" else None
    ev = events_xy(train, net.crs, graph if segments is not None else None)
    grid = Grid.covering(graph.mid_x, graph.mid_y, cell_m=cell_m)
    surf = model.predict(ev, at_s, grid, segments)
    year = ev.t_s >= at_s - 365 * _DAY_S
    span_days = min(365.0, max(1.0, (at_s - float(ev.t_s[year].min())) / _DAY_S)) if year.any() else 1.0
    per_day = float(np.count_nonzero(year)) / span_days
    total = float(surf.cells.sum())
    if total <= 0:
        msg = "the risk surface is empty (no incidents in the estimator's look-back)"
        raise ValueError(msg)
    keep = np.flatnonzero(surf.cells >= min_share * total)
    keep = keep[surf.cells[keep] > 0]
    cx, cy = grid.centres()
    lat, lon = net.to_latlon(cx[keep], cy[keep])
    weight = surf.cells[keep] / total * per_day
    return Demand(
        [f"cell-{c}" for c in keep.tolist()],
        np.asarray(lat, dtype=np.float64),
        np.asarray(lon, dtype=np.float64),
        np.asarray(weight, dtype=np.float64),
        {
            "demand": "risk surface",
            "estimator": estimator,
            "cell_m": cell_m,
            "incidents": len(incidents),
            "incidents_in_hours": len(train),
            "hours": None if hours is None else f"{hours[0]:02d}:00-{hours[1]:02d}:00",
            "expected_per_day": per_day,
            "cells_kept": int(keep.size),
            "cells_dropped": int(np.count_nonzero(surf.cells > 0) - keep.size),
        },
    )


# -- candidates ----------------------------------------------------------------------------------


def booth_segments(graph: WalkGraph) -> NDArray[np.bool_]:
    """Which walk segments a booth may stand beside: not motorway/trunk (or links), tunnel or bridge."""
    net = graph.network
    seg = graph.graph.segments
    hw = net.seg_highway[seg]
    bad = np.isin(hw, sorted(NO_BOOTH_HIGHWAYS)) | net.seg_tunnel[seg] | net.seg_bridge[seg]
    ok: NDArray[np.bool_] = ~bad
    return ok


def default_candidates(graph: WalkGraph, *, spacing_m: float = 100.0) -> list[SiteFeature]:
    """Candidate booth sites about every ``spacing_m`` along the streets a booth may stand beside.

    Points are laid every ``spacing_m`` along the allowed walk segments taken one after another
    (so about one per ``spacing_m`` of street), then thinned to one per ``spacing_m / 2`` grid
    cell so that crossings and parallel carriageways do not crowd. Ids are ``c00001``, ...
    """
    ok = np.flatnonzero(booth_segments(graph))
    if ok.size == 0:
        msg = "no street where a booth may stand (all motorway, trunk, tunnel or bridge)"
        raise ValueError(msg)
    length = graph.length_m[ok]
    end = np.cumsum(length)
    start = end - length
    marks = np.arange(spacing_m / 2, float(end[-1]), spacing_m)
    k = np.searchsorted(end, marks, side="right").clip(0, ok.size - 1)
    frac = np.clip((marks - start[k]) / np.maximum(length[k], 1e-9), 0.0, 1.0)
    s = ok[k]
    x = graph.x0[s] + frac * (graph.x1[s] - graph.x0[s])
    y = graph.y0[s] + frac * (graph.y1[s] - graph.y0[s])
    cell = spacing_m / 2
    key = np.floor(x / cell).astype(np.int64) * 1_000_003 + np.floor(y / cell).astype(np.int64)
    _, first = np.unique(key, return_index=True)
    first.sort()
    lat, lon = graph.network.to_latlon(x[first], y[first])
    return [SiteFeature(f"c{i + 1:05d}", float(a), float(b)) for i, (a, b) in enumerate(zip(lat, lon, strict=True))]


# -- coverage ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapped:
    segment: NDArray[np.int64]
    to_u_s: NDArray[np.float64]
    """Time from the point to its segment's ``u`` end (off-street leg included)."""
    to_v_s: NDArray[np.float64]
    leg_s: NDArray[np.float64]
    fraction: NDArray[np.float64]


def _snap(graph: WalkGraph, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> _Snapped:
    x, y = graph.network.to_xy(lat, lon)
    s = graph.snap_xy(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    seg_t = graph.time_s[s.segment]
    leg = s.distance_m / graph.walk_speed_mps
    return _Snapped(s.segment, leg + s.fraction * seg_t, leg + (1 - s.fraction) * seg_t, leg, s.fraction)


def _by_key(keys: NDArray[np.int64], n: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """CSR grouping: ``order`` of the items sorted by key and ``start[k]:start[k+1]`` per key."""
    order = np.argsort(keys, kind="stable")
    start = np.searchsorted(keys[order], np.arange(n + 1))
    return order.astype(np.int64), start.astype(np.int64)


def _join(
    left_key: NDArray[np.int64], right_order: NDArray[np.int64], right_start: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every (left item, right item) pair with equal keys, as two index arrays (no Python loop)."""
    counts = right_start[left_key + 1] - right_start[left_key]
    left = np.repeat(np.arange(left_key.size, dtype=np.int64), counts)
    offsets = np.arange(left.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    right = right_order[np.repeat(right_start[left_key], counts) + offsets]
    return left, right


def coverage_matrix(
    graph: WalkGraph,
    demand_lat: NDArray[np.float64],
    demand_lon: NDArray[np.float64],
    site_lat: NDArray[np.float64],
    site_lon: NDArray[np.float64],
    *,
    walk_min: float,
) -> sparse.csr_matrix:
    """Which sites cover which demand points: walking time at most ``walk_min`` minutes.

    Returns
    -------
    scipy.sparse.csr_matrix
        Boolean, ``(n_demand, n_sites)``: entry ``[i, j]`` is true when the ETA from site ``j``
        to demand point ``i`` (site's off-street leg + network time between the snapped points
        + the demand point's off-street leg, at walking speed) is at most ``walk_min * 60`` s.
        Two points on one street segment may also walk straight along it.
    """
    if not (math.isfinite(walk_min) and walk_min > 0):
        msg = f"walk_min must be a positive number of minutes, got {walk_min!r}"
        raise ValueError(msg)
    limit = float(walk_min) * 60.0
    n_d, n_s = int(np.asarray(demand_lat).size), int(np.asarray(site_lat).size)
    if n_d == 0 or n_s == 0:
        nothing = np.zeros(0, dtype=np.int64)
        return sparse.csr_matrix((np.zeros(0, dtype=bool), (nothing, nothing)), shape=(n_d, n_s))
    d = _snap(graph, np.asarray(demand_lat, dtype=np.float64), np.asarray(demand_lon, dtype=np.float64))
    s = _snap(graph, np.asarray(site_lat, dtype=np.float64), np.asarray(site_lon, dtype=np.float64))
    n_nodes = graph.n_nodes
    # One bounded search per site, seeded at both ends of its segment with the time to get there.
    ok = s.leg_s <= limit
    sites = np.flatnonzero(ok)
    seeds = np.concatenate([graph.u[s.segment[sites]], graph.v[s.segment[sites]]])
    seed_t = np.concatenate([s.to_u_s[sites], s.to_v_s[sites]])
    group = np.concatenate([sites, sites])
    grp, node, t = graph.bounded_times(seeds, seed_t=seed_t, group=group, limit_s=limit)
    site_of = grp  # the search's group is its site's index
    # Each demand point is reached through either end of its own segment.
    d_node = np.concatenate([graph.u[d.segment], graph.v[d.segment]])
    d_extra = np.concatenate([d.to_u_s, d.to_v_s])
    d_idx = np.concatenate([np.arange(n_d), np.arange(n_d)])
    order, start = _by_key(d_node, n_nodes)
    left, right = _join(node, order, start)
    total = t[left] + d_extra[right]
    hit = total <= limit
    rows = [d_idx[right[hit]]]
    cols = [site_of[left[hit]]]
    # Straight along a shared segment.
    order_s, start_s = _by_key(s.segment, graph.u.size)
    dl, sr = _join(d.segment, order_s, start_s)
    along = s.leg_s[sr] + np.abs(s.fraction[sr] - d.fraction[dl]) * graph.time_s[d.segment[dl]] + d.leg_s[dl]
    near = along <= limit
    rows.append(dl[near])
    cols.append(sr[near])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    m = sparse.csr_matrix((np.ones(r.size, dtype=bool), (r, c)), shape=(n_d, n_s))
    m.sum_duplicates()
    m.data[:] = True
    return m


# -- walking areas for the map -------------------------------------------------------------------


def walking_areas(
    router_or_graph: Router | WalkGraph,
    sites: Sequence[SiteFeature],
    minutes: Sequence[float],
    *,
    buffer_m: float = 30.0,
) -> dict[float, shapely.Geometry]:
    """The streets within each number of ``minutes``' walk of any of ``sites``, as areas in WGS 84.

    Every walk segment (or the part of it) reachable within the time, with the sites' off-street
    legs counted as in :func:`coverage_matrix`, is buffered by ``buffer_m`` metres and the pieces
    unioned. Keys are the given minutes; an empty geometry when nothing is reachable.
    """
    graph = router_or_graph if isinstance(router_or_graph, WalkGraph) else WalkGraph(router_or_graph)
    net = graph.network
    out: dict[float, shapely.Geometry] = {}
    if not sites or not minutes:
        return {float(m): shapely.GeometryCollection() for m in minutes}
    s = _snap(graph, np.array([p.lat for p in sites]), np.array([p.lon for p in sites]))
    seeds = np.concatenate([graph.u[s.segment], graph.v[s.segment]])
    seed_t = np.concatenate([s.to_u_s, s.to_v_s])
    biggest = max(float(m) for m in minutes) * 60.0
    _, node, t = graph.bounded_times(seeds, seed_t=seed_t, group=np.zeros(seeds.size, dtype=np.int64), limit_s=biggest)
    node_t = np.full(net.n_nodes, np.inf)
    node_t[node] = t

    def to_lonlat(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        lat, lon = net.to_latlon(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    for m in minutes:
        limit = float(m) * 60.0
        seg_t = np.maximum(graph.time_s, 1e-9)
        from_u = np.clip((limit - node_t[graph.u]) / seg_t, 0.0, 1.0)
        from_v = np.clip((limit - node_t[graph.v]) / seg_t, 0.0, 1.0)
        whole = from_u + from_v >= 1.0
        pieces = [
            (np.flatnonzero(whole), np.zeros(int(whole.sum())), np.ones(int(whole.sum()))),
            (
                np.flatnonzero(~whole & (from_u > 0)),
                np.zeros(int((~whole & (from_u > 0)).sum())),
                from_u[~whole & (from_u > 0)],
            ),
            (
                np.flatnonzero(~whole & (from_v > 0)),
                1.0 - from_v[~whole & (from_v > 0)],
                np.ones(int((~whole & (from_v > 0)).sum())),
            ),
        ]
        # A site's own segment, walked straight from the site.
        reach = np.clip((limit - s.leg_s) / seg_t[s.segment], 0.0, None)
        own = reach > 0
        pieces.append(
            (s.segment[own], np.clip(s.fraction[own] - reach[own], 0, 1), np.clip(s.fraction[own] + reach[own], 0, 1))
        )
        seg = np.concatenate([p[0] for p in pieces])
        a = np.concatenate([p[1] for p in pieces])
        b = np.concatenate([p[2] for p in pieces])
        if seg.size == 0:
            out[float(m)] = shapely.GeometryCollection()
            continue
        dx, dy = graph.x1[seg] - graph.x0[seg], graph.y1[seg] - graph.y0[seg]
        coords = np.stack(
            [
                np.column_stack([graph.x0[seg] + a * dx, graph.y0[seg] + a * dy]),
                np.column_stack([graph.x0[seg] + b * dx, graph.y0[seg] + b * dy]),
            ],
            axis=1,
        )
        lines = shapely.linestrings(coords)
        area = shapely.union_all(shapely.buffer(lines, buffer_m, quad_segs=4))
        out[float(m)] = shapely.transform(area, to_lonlat)
    return out
