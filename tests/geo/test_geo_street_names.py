"""Street names from the OSM ``name`` tags of the real Almaty extract, and ``Router.street_name``.

The oracle reads the extract again with pyosmium and measures, with shapely in the city's UTM
zone, the distance from a point to every named way: the nearest one's name must be what the
router says.
"""

from __future__ import annotations

import osmium
import pytest
from pyproj import Transformer
from shapely.geometry import LineString, Point
from shapely.strtree import STRtree
from support import ALMATY_PBF

from geo import Router, StreetNetwork, generate_city, load_network


@pytest.fixture(scope="module")
def almaty() -> StreetNetwork:
    return load_network(ALMATY_PBF)


@pytest.fixture(scope="module")
def router(almaty: StreetNetwork) -> Router:
    return Router(almaty)


@pytest.fixture(scope="module")
def named_ways(almaty: StreetNetwork) -> tuple[list[str], list[LineString]]:
    """Every named highway of the extract as a metric line (an independent read of the file)."""
    to_xy = Transformer.from_crs(4326, almaty.crs, always_xy=True)
    names: list[str] = []
    lines: list[LineString] = []
    processor = (
        osmium.FileProcessor(str(ALMATY_PBF), osmium.osm.NODE | osmium.osm.WAY)
        .with_locations()
        .with_filter(osmium.filter.KeyFilter("highway"))
    )
    for obj in processor:
        if not isinstance(obj, osmium.osm.Way) or not obj.tags.get("name"):
            continue
        if obj.tags.get("highway") in {"construction", "proposed", "platform"}:
            continue
        run: list[tuple[float, float]] = []
        for ref in [*obj.nodes, None]:
            if ref is not None and ref.location.valid():
                run.append(to_xy.transform(ref.location.lon, ref.location.lat))
                continue
            if len(run) >= 2:
                names.append(obj.tags["name"])
                lines.append(LineString(run))
            run = []
    return names, lines


def test_names_are_kept_per_segment(almaty: StreetNetwork) -> None:
    assert almaty.seg_name is not None and almaty.seg_name.shape == (almaty.n_segments,)
    named = almaty.seg_name[almaty.seg_name != ""]
    assert 0.15 < named.size / almaty.n_segments < 0.5  # a quarter of the 2012 extract's segments
    assert {"Абая прс.", "Аль-Фараби прс.", "пр. Райымбека"} <= set(named.tolist())


def test_nearest_named_street_matches_an_independent_oracle(
    almaty: StreetNetwork, router: Router, named_ways: tuple[list[str], list[LineString]]
) -> None:
    names, lines = named_ways
    tree = STRtree(lines)
    to_latlon = Transformer.from_crs(almaty.crs, 4326, always_xy=True)
    # Points spread over the city: every 37th node, moved 25 m north-east off the street.
    checked = 0
    for node in range(0, almaty.n_nodes, 37):
        x, y = float(almaty.node_x[node]) + 18.0, float(almaty.node_y[node]) + 18.0
        lon, lat = to_latlon.transform(x, y)
        point = Point(x, y)
        nearest = int(tree.nearest(point))
        distance = lines[nearest].distance(point)
        if distance > 400:  # the router answers within max_snap_m (500 m); keep a clear margin
            continue
        # Ties (a point equally near two differently named streets, e.g. at a crossing) are either's.
        tied = {
            names[i] for i in tree.query(point.buffer(distance + 0.05)) if lines[i].distance(point) <= distance + 0.05
        }
        assert router.street_name(lat, lon) in tied, (lat, lon, tied)
        checked += 1
    assert checked > 300


def test_a_point_on_an_avenue_is_told_its_name(
    almaty: StreetNetwork, router: Router, named_ways: tuple[list[str], list[LineString]]
) -> None:
    names, lines = named_ways
    to_latlon = Transformer.from_crs(almaty.crs, 4326, always_xy=True)
    abay = max((line for name, line in zip(names, lines, strict=True) if name == "Абая прс."), key=lambda g: g.length)
    middle = abay.interpolate(0.5, normalized=True)
    lon, lat = to_latlon.transform(middle.x, middle.y)
    assert router.street_name(lat, lon) == "Абая прс."
    assert router.street_name(lat, lon, max_m=1.0) == "Абая прс."


def test_far_from_every_named_street_there_is_no_name(router: Router, almaty: StreetNetwork) -> None:
    min_lat, min_lon, _, _ = almaty.bounds
    assert router.street_name(min_lat - 0.05, min_lon - 0.05) is None
    _, lon = almaty.center
    with pytest.raises(ValueError, match="not a WGS 84 coordinate"):
        router.street_name(91.0, lon)


def test_a_generated_city_has_no_names() -> None:
    city = generate_city(n_nodes=300, seed=3)
    lat, lon = city.center
    assert Router(city).street_name(lat, lon) is None
