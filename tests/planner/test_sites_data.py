"""The siting model's data: coverage by walking time (against scipy's Dijkstra), candidates, demand, areas."""

from __future__ import annotations

import json
import math
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from support import ALMATY_PBF

from geo import Router, StreetNetwork, generate_city, load_network
from patrol_planner import WalkGraph
from patrol_planner.incidents import Incidents
from patrol_planner.siting_data import (
    NO_BOOTH_HIGHWAYS,
    coverage_matrix,
    default_candidates,
    demand_from_incidents,
    district_index,
    read_districts,
    read_points,
    walking_areas,
)
from patrol_planner.siting_types import SiteFeature
from patrol_planner.synthetic import self_exciting_incidents

M_PER_DEG_LAT = 111_320.0


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / M_PER_DEG_LAT, lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat)))


@lru_cache(maxsize=1)
def city_graph() -> WalkGraph:
    return WalkGraph(Router(generate_city(900, seed=4, bridge_every=10)))


def brute_eta(graph: WalkGraph, dlat, dlon, slat, slon) -> np.ndarray:
    """ETA (s) of every (demand, site) pair: scipy Dijkstra from both ends of each site's segment."""
    net = graph.network
    n = graph.n_nodes
    adj = coo_matrix((graph.time_s, (graph.u, graph.v)), shape=(n, n)).tocsr()
    dx, dy = net.to_xy(dlat, dlon)
    sx, sy = net.to_xy(slat, slon)
    d, s = graph.snap_xy(dx, dy), graph.snap_xy(sx, sy)
    ends = np.concatenate([graph.u[s.segment], graph.v[s.segment]])
    dist = dijkstra(adj, directed=False, indices=ends)
    k = s.segment.size
    out = np.full((d.segment.size, k), np.inf)
    for j in range(k):
        seg_t = graph.time_s[s.segment[j]]
        leg = s.distance_m[j] / graph.walk_speed_mps
        to_node = np.minimum(dist[j] + leg + s.fraction[j] * seg_t, dist[k + j] + leg + (1 - s.fraction[j]) * seg_t)
        for i in range(d.segment.size):
            st = graph.time_s[d.segment[i]]
            dleg = d.distance_m[i] / graph.walk_speed_mps
            best = min(
                to_node[graph.u[d.segment[i]]] + d.fraction[i] * st,
                to_node[graph.v[d.segment[i]]] + (1 - d.fraction[i]) * st,
            )
            if d.segment[i] == s.segment[j]:
                best = min(best, leg + abs(s.fraction[j] - d.fraction[i]) * seg_t)
            out[i, j] = best + dleg
    return out


def test_coverage_matrix_equals_a_brute_force_dijkstra_of_the_eta() -> None:
    g = city_graph()
    rng = np.random.default_rng(7)
    lat0, lon0, lat1, lon1 = g.network.bounds
    dlat, dlon = rng.uniform(lat0, lat1, 400), rng.uniform(lon0, lon1, 400)
    # Sites on streets, some sharing a segment with a demand point (the straight walk along it).
    slat, slon = rng.uniform(lat0, lat1, 25), rng.uniform(lon0, lon1, 25)
    slat[:5], slon[:5] = dlat[:5] + 1e-5, dlon[:5]
    for minutes in (3.0, 7.5):
        m = coverage_matrix(g, dlat, dlon, slat, slon, walk_min=minutes).toarray()
        eta = brute_eta(g, dlat, dlon, slat, slon)
        clear = np.abs(eta - minutes * 60) > 1e-6
        assert np.array_equal(m[clear], (eta <= minutes * 60)[clear])
        assert 0.005 < m.mean() < 0.6  # a test that could fail either way
    with pytest.raises(ValueError, match="walk_min must be a positive"):
        coverage_matrix(g, dlat, dlon, slat, slon, walk_min=0)


def river_town() -> StreetNetwork:
    """Two banks 120 m apart joined by one bridge 1 km east (as in tests/geo/test_geo_routing.py)."""
    lat0, lon0 = 43.25, 76.95
    pts = [offset(lat0, lon0, n, e) for n, e in [(0, 0), (0, 500), (0, 1000), (120, 0), (120, 500), (120, 1000)]]
    lat, lon = zip(*pts, strict=True)
    return StreetNetwork.from_arrays(lat, lon, [0, 1, 3, 4, 2], [1, 2, 4, 5, 5], "residential", bridge=[0, 0, 0, 0, 1])


def test_across_the_river_is_not_covered_though_close_in_a_straight_line() -> None:
    g = WalkGraph(Router(river_town()))
    lat0, lon0 = 43.25, 76.95
    booth = offset(lat0, lon0, 125, 100)  # north bank
    across = offset(lat0, lon0, -5, 100)  # 130 m away in a straight line, 2 km on foot
    along = offset(lat0, lon0, 125, 600)  # 500 m along the north bank
    m = coverage_matrix(
        g,
        np.array([across[0], along[0]]),
        np.array([across[1], along[1]]),
        np.array([booth[0]]),
        np.array([booth[1]]),
        walk_min=10.0,
    ).toarray()
    assert m[:, 0].tolist() == [False, True]
    # The same 2 km walk is within 25 minutes.
    m25 = coverage_matrix(
        g, np.array([across[0]]), np.array([across[1]]), np.array([booth[0]]), np.array([booth[1]]), walk_min=25.0
    )
    assert m25.toarray()[0, 0]
    # No candidate on the bridge.
    cands = default_candidates(g, spacing_m=50.0)
    x, y = g.network.to_xy(np.array([c.lat for c in cands]), np.array([c.lon for c in cands]))
    assert len(cands) >= 38 and not np.any((x > g.x0.min() + 990) & (np.abs(y - y.mean()) < 50))


@lru_cache(maxsize=1)
def almaty_graph() -> WalkGraph:
    return WalkGraph(Router(load_network(ALMATY_PBF)))


def test_candidates_leave_out_tunnels_bridges_motorways_and_trunk_roads_on_almaty() -> None:
    g = almaty_graph()
    net = g.network
    seg = g.graph.segments
    banned = np.isin(net.seg_highway[seg], sorted(NO_BOOTH_HIGHWAYS)) | net.seg_tunnel[seg] | net.seg_bridge[seg]
    assert banned.sum() > 100  # the extract has such streets to leave out
    cands = default_candidates(g)
    x, y = net.to_xy(np.array([c.lat for c in cands]), np.array([c.lon for c in cands]))
    allowed_km = g.length_m[~banned].sum() / 1000
    assert 0.5 * allowed_km * 10 < len(cands) <= allowed_km * 10  # about one per 100 m of street
    pts = shapely.points(x, y)
    bad_lines = shapely.linestrings(
        np.stack([np.column_stack([g.x0[banned], g.y0[banned]]), np.column_stack([g.x1[banned], g.y1[banned]])], axis=1)
    )
    good_lines = shapely.linestrings(
        np.stack(
            [np.column_stack([g.x0[~banned], g.y0[~banned]]), np.column_stack([g.x1[~banned], g.y1[~banned]])], axis=1
        )
    )
    tree_bad, tree_good = shapely.STRtree(bad_lines), shapely.STRtree(good_lines)
    _, d_good = tree_good.query_nearest(pts, return_distance=True, all_matches=False)
    assert np.all(d_good < 1e-6)  # every candidate stands on an allowed street
    # ... and never on a banned one (a candidate at a crossing where a bridge begins is within a metre).
    _, d_bad = tree_bad.query_nearest(pts, return_distance=True, all_matches=False)
    assert np.mean(d_bad > 1.0) > 0.995
    ids = [c.id for c in cands]
    assert len(set(ids)) == len(ids) and ids[0] == "c00001"


def test_demand_from_incidents_keeps_the_risk_of_the_hours_asked() -> None:
    g = city_graph()
    inc = self_exciting_incidents(g.network, 3000, seed=3, start=datetime(2025, 1, 1), days=365)
    all_day = demand_from_incidents(inc, g)
    night = demand_from_incidents(inc, g, hours=(20, 8))
    in_night = np.count_nonzero((inc.hour >= 20) | (inc.hour < 8))
    assert night.sources["incidents_in_hours"] == in_night < len(inc)
    # Weights are expected incidents per day in those hours (a year of history).
    assert all_day.total_weight == pytest.approx(len(inc) / 365, rel=0.02)
    assert night.total_weight == pytest.approx(in_night / 365, rel=0.02)
    # Negligible cells are dropped: a looser threshold keeps fewer points and nearly all the weight.
    coarse = demand_from_incidents(inc, g, min_share=1e-4)
    assert len(coarse) < len(all_day) and coarse.total_weight > 0.9 * all_day.total_weight
    assert np.all(all_day.weight >= 1e-12 * all_day.total_weight)
    with pytest.raises(ValueError, match="no incidents in the hours 03-04"):
        demand_from_incidents(Incidents.from_arrays([43.25], [76.95], ["2025-01-01T12:00"]), g, hours=(3, 4))


def _write(path: Path, features: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _pt(lon: float, lat: float, **props: object) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def test_reading_points_and_districts_says_what_is_wrong(tmp_path: Path) -> None:
    ok = read_points(
        _write(tmp_path / "d.geojson", [_pt(76.9, 43.2, id="a", weight=2), _pt(76.91, 43.2, weight=0.5)]), weight=True
    )
    assert [(p.id, p.weight) for p in ok] == [("a", 2.0), ("d2", 0.5)]
    for features, match in (
        ([_pt(76.9, 43.2, weight="x")], "needs a numeric weight >= 0, got 'x'"),
        ([_pt(76.9, 43.2, weight=-1)], "numeric weight >= 0, got -1"),
        ([_pt(76.9, 143.2, weight=1)], "outside WGS 84"),
        ([_pt(76.9, 43.2, id="a", weight=1), _pt(76.9, 43.2, id="a", weight=1)], "id 'a' appears twice"),
        (
            [{"type": "Feature", "geometry": {"type": "LineString", "coordinates": []}, "properties": {}}],
            "must be Points",
        ),
    ):
        with pytest.raises(ValueError, match=match):
            read_points(_write(tmp_path / "bad.geojson", features), weight=True)
    with pytest.raises(ValueError, match="has no 'id'"):
        read_points(_write(tmp_path / "c.geojson", [_pt(76.9, 43.2)]), what="candidates")
    square = {
        "type": "Polygon",
        "coordinates": [[[76.0, 43.0], [77.0, 43.0], [77.0, 44.0], [76.0, 44.0], [76.0, 43.0]]],
    }
    path = _write(
        tmp_path / "districts.geojson", [{"type": "Feature", "geometry": square, "properties": {"name": "Алмалы"}}]
    )
    (d,) = read_districts(path)
    assert d.name == "Алмалы"
    assert district_index([d], np.array([43.5, 45.0]), np.array([76.5, 76.5])).tolist() == [0, -1]


def test_walking_areas_grow_with_the_minutes_and_follow_the_streets() -> None:
    g = WalkGraph(Router(river_town()))
    lat0, lon0 = 43.25, 76.95
    booth = SiteFeature("b", *offset(lat0, lon0, 125, 100))
    areas = walking_areas(g, [booth], [5.0, 10.0])
    five, ten = areas[5.0], areas[10.0]
    assert five.area > 0 and five.difference(ten).area < 1e-3 * five.area and ten.area > 1.5 * five.area
    here = shapely.Point(booth.lon, booth.lat)
    assert five.distance(here) < 1e-4  # the booth's own street (5 m off it)
    across = offset(lat0, lon0, -5, 100)  # across the river: not within 10 minutes' walk
    assert not ten.contains(shapely.Point(across[1], across[0]))
    # 5 min = 420 m along the bank: 350 m east of the booth is in, 550 m is not.
    assert five.contains(shapely.Point(*reversed(offset(lat0, lon0, 120, 450))))
    assert not five.contains(shapely.Point(*reversed(offset(lat0, lon0, 120, 650))))
    # The Router itself works too, and no sites give empty areas.
    assert walking_areas(Router(river_town()), [booth], [5.0])[5.0].equals(five)
    assert walking_areas(g, [], [5.0])[5.0].is_empty
