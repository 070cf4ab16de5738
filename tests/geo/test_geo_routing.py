"""Ranking units by travel time: equal to a brute-force Dijkstra, on real and hand-made streets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support import ALMATY_PBF, BruteForce

from geo import OutsideServiceArea, Router, StreetNetwork, generate_city, load_network

M_PER_DEG_LAT = 111_320.0


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (
        lat + north_m / M_PER_DEG_LAT,
        lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))),
    )


def river_town() -> StreetNetwork:
    """Two river banks 120 m apart joined by a single bridge 1 km east.

    South bank: a street along the river from x=0 to x=1000 m; north bank likewise; the bridge at
    x=1000 m. A booth on the north bank straight across from the alert is close as the crow flies
    but must walk 2 km; a patrol 600 m along the south bank is the nearest by streets.
    """
    lat0, lon0 = 43.25, 76.95
    pts = [
        offset(lat0, lon0, north, east)
        for north, east in [(0, 0), (0, 500), (0, 1000), (120, 0), (120, 500), (120, 1000)]
    ]
    lat, lon = zip(*pts, strict=True)
    u = [0, 1, 3, 4, 2]
    v = [1, 2, 4, 5, 5]
    return StreetNetwork.from_arrays(lat, lon, u, v, "residential", label="river town")


def test_across_the_river_is_not_near() -> None:
    net = river_town()
    router = Router(net)
    lat0, lon0 = 43.25, 76.95
    alert = offset(lat0, lon0, -10, 100)  # on the south bank, 10 m off the street
    across = offset(lat0, lon0, 125, 100)  # north bank, 135 m straight across
    along = offset(lat0, lon0, -5, 700)  # south bank, 600 m east
    router.place_unit("booth-north", "booth", *across)
    router.place_unit("foot-south", "foot", *along)
    ranked = router.recommend(*alert, k=None)
    assert [r.unit_id for r in ranked] == ["foot-south", "booth-north"]
    # 600 m along the bank plus two short off-street legs, at 1.4 m/s.
    # (The hand-made offsets are equirectangular; the router measures in UTM: 0.5 % apart.)
    assert ranked[0].distance_m == pytest.approx(600 + 10 + 5, rel=0.005)
    assert ranked[0].eta_s == pytest.approx(615 / 1.4, rel=0.005)
    # The booth walks west-to-east: 900 m to the bridge, 120 m over it, 900 m back, plus legs.
    assert ranked[1].distance_m == pytest.approx(900 + 120 + 900 + 5 + 10, rel=0.005)
    reference = BruteForce(net).etas({"booth-north": ("booth", *across), "foot-south": ("foot", *along)}, *alert)
    for rec in ranked:
        assert rec.eta_s == pytest.approx(reference[rec.unit_id][0], abs=1e-6)
        assert rec.distance_m == pytest.approx(reference[rec.unit_id][1], abs=1e-6)


def test_cars_respect_one_way_streets() -> None:
    # A square block: the southern street is one-way eastwards. A car just east of the alert on it
    # must drive around the block (400 m... at 30 km/h) rather than 100 m back westwards.
    lat0, lon0 = 43.25, 76.95
    pts = [offset(lat0, lon0, n, e) for n, e in [(0, 0), (0, 300), (200, 300), (200, 0)]]
    lat, lon = zip(*pts, strict=True)
    net = StreetNetwork.from_arrays(
        lat, lon, [0, 1, 2, 3], [1, 2, 3, 0], "residential", oneway=[True, False, False, False]
    )
    router = Router(net)
    alert = offset(lat0, lon0, 0, 100)
    router.place_unit("car-1", "car", *offset(lat0, lon0, 0, 200))
    router.place_unit("foot-1", "foot", *offset(lat0, lon0, 0, 200))
    car, foot = sorted(router.recommend(*alert, k=None), key=lambda r: r.unit_id)
    assert foot.distance_m == pytest.approx(100, rel=0.005)
    assert car.distance_m == pytest.approx(100 + 200 + 300 + 200 + 100, rel=0.005)
    assert car.eta_s == pytest.approx(900 / (30 / 3.6), rel=0.005)


def _random_points(
    net: StreetNetwork, n: int, rng: np.random.Generator, brute: BruteForce, mode: str = "walk"
) -> list[tuple[float, float]]:
    """Points near the connected streets of a mode: a random place on a segment, up to 60 m off it."""
    edges = brute.edges[mode]
    pick = rng.integers(len(edges), size=n)
    u = np.array([edges[i][0] for i in pick])
    v = np.array([edges[i][1] for i in pick])
    t = rng.random(n)
    x = net.node_x[u] * (1 - t) + net.node_x[v] * t + rng.uniform(-60, 60, n)
    y = net.node_y[u] * (1 - t) + net.node_y[v] * t + rng.uniform(-60, 60, n)
    lat, lon = net.to_latlon(x, y)
    return list(zip(lat.tolist(), lon.tolist(), strict=True))


def _check_against_brute_force(net: StreetNetwork, n_units: int, n_alerts: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    router = Router(net)
    brute = BruteForce(net)
    kinds = ["booth", "foot", "car"]
    units = {}
    walkers = _random_points(net, n_units, rng, brute, "walk")
    drivers = _random_points(net, n_units, rng, brute, "drive")
    for i in range(n_units):
        kind = kinds[i % 3]
        lat, lon = drivers[i] if kind == "car" else walkers[i]
        units[f"unit-{i:03d}"] = (kind, lat, lon)
        router.place_unit(f"unit-{i:03d}", kind, lat, lon)
    for lat, lon in _random_points(net, n_alerts, rng, brute):
        reference = brute.etas(units, lat, lon)
        ranked = router.recommend(lat, lon, k=None)
        assert {r.unit_id for r in ranked} == set(reference)
        for rec in ranked:
            assert rec.eta_s == pytest.approx(reference[rec.unit_id][0], abs=1e-6), rec
            assert rec.distance_m == pytest.approx(reference[rec.unit_id][1], abs=1e-6), rec
        expected = sorted(reference.values())
        top = router.recommend(lat, lon, k=3)
        assert [r.eta_s for r in top] == pytest.approx([e[0] for e in expected[:3]], abs=1e-6)
        assert [r.eta_s for r in ranked] == sorted(r.eta_s for r in ranked)
        # Excluded units (e.g. unstaffed booths) are passed over: the next ones take their place.
        exclude = {r.unit_id for r in ranked[: len(ranked) // 2 : 2]} | {"no-such-unit"}
        rest = sorted((eta, uid) for uid, (eta, _) in reference.items() if uid not in exclude)
        without = router.recommend(lat, lon, k=3, exclude=exclude)
        assert [r.unit_id for r in without] == [uid for _, uid in rest[:3]]
        assert [r.eta_s for r in without] == pytest.approx([eta for eta, _ in rest[:3]], abs=1e-6)
        assert router.recommend(lat, lon, k=3) == top  # the exclusion does not stick


def test_equals_brute_force_on_almaty() -> None:
    _check_against_brute_force(load_network(ALMATY_PBF), n_units=45, n_alerts=8, seed=11)


def test_equals_brute_force_on_a_generated_city() -> None:
    _check_against_brute_force(generate_city(1_600, seed=4), n_units=60, n_alerts=25, seed=12)


def test_units_move_and_leave() -> None:
    net = generate_city(900, seed=2)
    router = Router(net)
    lat, lon = net.center
    router.place_unit("a", "foot", *offset(lat, lon, 0, 600))
    router.place_unit("b", "foot", *offset(lat, lon, 0, 1200))
    assert router.recommend(lat, lon, k=1)[0].unit_id == "a"
    router.place_unit("a", "foot", *offset(lat, lon, 0, 2000))  # a walks away
    assert router.recommend(lat, lon, k=1)[0].unit_id == "b"
    router.remove_unit("b")  # b is assigned elsewhere
    assert [r.unit_id for r in router.recommend(lat, lon, k=3)] == ["a"]
    router.remove_unit("b")  # removing twice is harmless
    for i in range(200):  # slots are reused and grow past the initial capacity
        router.place_unit(f"u{i}", "car", *offset(lat, lon, (i % 20) * 50, (i // 20) * 50))
    assert len(router.recommend(lat, lon, k=None)) == 201
    assert router.unit_ids[:2] == ["a", "u0"]


def test_outside_service_area_and_bad_input() -> None:
    net = generate_city(400, seed=1)
    router = Router(net, max_snap_m=300)
    lat, lon = net.center
    far = offset(net.bounds[2], lon, 800, 0)  # 800 m north of the northernmost street
    with pytest.raises(OutsideServiceArea, match="beyond the service-area limit of 300 m") as info:
        router.recommend(*far)
    assert info.value.distance_m == pytest.approx(800, abs=30)
    assert not router.in_service_area(*far) and router.in_service_area(lat, lon)
    with pytest.raises(ValueError, match="not a WGS 84 coordinate"):
        router.snap(float("nan"), lon)
    with pytest.raises(ValueError, match="unknown unit kind 'horse'"):
        router.place_unit("h", "horse", lat, lon)
    with pytest.raises(ValueError, match="k must be a positive number"):
        router.recommend(lat, lon, k=0)
    assert router.recommend(lat, lon) == []  # no units yet


def test_snap_uses_the_nearest_segment() -> None:
    net = generate_city(900, seed=3)
    router = Router(net)
    brute = BruteForce(net)
    rng = np.random.default_rng(5)
    for lat, lon in _random_points(net, 50, rng, brute):
        snap = router.snap(lat, lon)
        _, _, dist = brute.snap(lat, lon, "walk")
        assert snap.distance_m == pytest.approx(dist, abs=1e-6)


def test_route_follows_the_streets_and_matches_the_eta() -> None:
    net = river_town()
    router = Router(net)
    lat0, lon0 = 43.25, 76.95
    alert = offset(lat0, lon0, -10, 100)
    across = offset(lat0, lon0, 125, 100)
    router.place_unit("booth-north", "booth", *across)
    path = router.route("booth-north", *alert)
    assert path[0] == pytest.approx(across) and path[-1] == pytest.approx(alert)
    # Over the bridge: the path passes both ends of the bridge (nodes 5 and 2).
    vertices = [(round(a, 7), round(b, 7)) for a, b in path]
    for node in (5, 2):
        assert (round(net.node_lat[node], 7), round(net.node_lon[node], 7)) in vertices
    x, y = net.to_xy([p[0] for p in path], [p[1] for p in path])
    length = float(np.hypot(np.diff(x), np.diff(y)).sum())
    (rec,) = router.recommend(*alert, k=1)
    assert length == pytest.approx(rec.distance_m, rel=1e-6)
    with pytest.raises(KeyError, match="'nobody' is not on the map"):
        router.route("nobody", *alert)


def test_route_on_the_same_street_goes_straight() -> None:
    net = river_town()
    router = Router(net)
    lat0, lon0 = 43.25, 76.95
    router.place_unit("foot", "foot", *offset(lat0, lon0, 0, 300))
    path = router.route("foot", *offset(lat0, lon0, 0, 100))
    assert len(path) == 4  # position, snapped position, snapped alert, alert: no node between


def test_routes_on_almaty_have_the_length_of_the_recommendation() -> None:
    net = load_network(ALMATY_PBF)
    router = Router(net)
    brute = BruteForce(net)
    rng = np.random.default_rng(3)
    units = _random_points(net, 12, rng, brute, "walk") + _random_points(net, 6, rng, brute, "drive")
    for i, (lat, lon) in enumerate(units):
        router.place_unit(f"u{i}", "car" if i >= 12 else "foot", lat, lon)
    for lat, lon in _random_points(net, 5, rng, brute):
        for rec in router.recommend(lat, lon, k=4):
            path = router.route(rec.unit_id, lat, lon)
            x, y = net.to_xy([p[0] for p in path], [p[1] for p in path])
            assert float(np.hypot(np.diff(x), np.diff(y)).sum()) == pytest.approx(rec.distance_m, rel=1e-6)


def test_grid_snapping_equals_a_scan_on_almaty_near_and_far() -> None:
    # Almaty has segments of over a kilometre and points far outside the streets: the grid search
    # must still find the same nearest distance as a scan over every segment.
    net = load_network(ALMATY_PBF)
    router = Router(net, max_snap_m=1e9)
    brute = BruteForce(net)
    rng = np.random.default_rng(8)
    near = _random_points(net, 40, rng, brute, "drive")
    lat0, lon0, lat1, lon1 = net.bounds
    far = [(lat1 + 0.05, lon0 - 0.05), (lat0 - 0.02, lon1 + 0.1), (43.25, 77.5)]
    for lat, lon in near + far:
        for mode in ("walk", "drive"):
            assert router.snap(lat, lon, mode).distance_m == pytest.approx(brute.snap(lat, lon, mode)[2], abs=1e-6)


def test_a_point_across_the_planet_is_outside_the_service_area_at_once() -> None:
    router = Router(generate_city(900, seed=2))
    for lat, lon in ((-89.9, -179.9), (89.9, 179.9), (0.0, 0.0)):
        assert not router.in_service_area(lat, lon)
        with pytest.raises(OutsideServiceArea) as info:
            router.recommend(lat, lon)
        assert info.value.distance_m > 1_000_000
