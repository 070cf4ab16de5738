"""Loading street networks: OSM PBF (clipped), OSM XML, GraphML; tag rules for walking and driving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import ALMATY_CLEAN_XML, ALMATY_DRIVE_GRAPHML, ALMATY_PBF, TORONTO_WALK_GRAPHML, TORONTO_XML

from geo import StreetNetwork, generate_city, load_network
from geo.network import drive_allowed, drive_speed_kmh, oneway_direction, utm_crs_for, walk_allowed


def test_clipped_pbf_loads_and_matches_the_repaired_xml() -> None:
    # The raw PBF has ways that reference nodes missing from the file (PROVENANCE.md: 32 ways);
    # the repaired XML kept the longest run of each. Splitting at the missing nodes, as load_network
    # does, keeps every run, so the PBF has at least the XML's streets.
    pbf = load_network(ALMATY_PBF)
    xml = load_network(ALMATY_CLEAN_XML)
    assert pbf.n_segments >= xml.n_segments > 20_000
    assert pbf.seg_length_m.sum() == pytest.approx(xml.seg_length_m.sum(), rel=0.01)
    assert pbf.crs.to_epsg() == 32643  # Almaty is in UTM zone 43N
    lat0, lon0, lat1, lon1 = pbf.bounds
    assert 43.0 < lat0 < lat1 < 43.6 and 76.5 < lon0 < lon1 < 77.3
    # One-way streets exist and are only restricted for cars.
    assert pbf.seg_oneway.any()
    assert not (pbf.seg_oneway & ~pbf.seg_drive).any()


def test_graphml_loads_with_geometry_split_into_segments() -> None:
    net = load_network(TORONTO_WALK_GRAPHML)
    assert net.n_segments > 6644  # edges with curved geometry become several segments
    assert net.seg_walk.all()
    # The walk graph holds footways, which cars may not use.
    assert (~net.seg_drive).sum() > 1000
    assert net.crs.to_epsg() == 32617  # Toronto is in UTM zone 17N
    total_km = net.seg_length_m.sum() / 1000
    assert 200 < total_km < 240  # 110 km of ways, each two-way way stored in both directions


def test_drive_graphml_keeps_direction() -> None:
    net = load_network(ALMATY_DRIVE_GRAPHML)
    assert net.seg_drive.all() and net.seg_oneway.all()  # osmnx stores each direction as an edge


def test_osm_xml_reads_toronto() -> None:
    net = load_network(TORONTO_XML)
    assert net.seg_walk.sum() > 3000 and net.seg_drive.sum() > 500


def test_missing_file_and_unknown_format_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"not found: .*nowhere\.osm"):
        load_network(tmp_path / "nowhere.osm")
    bad = tmp_path / "streets.shp"
    bad.write_text("x")
    with pytest.raises(ValueError, match=r"unrecognised street network format for 'streets\.shp'"):
        load_network(bad)


def test_file_without_streets_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.osm"
    path.write_text(
        "<?xml version='1.0' encoding='UTF-8'?><osm version='0.6'>"
        "<node id='1' lat='43.2' lon='76.9'/><node id='2' lat='43.21' lon='76.9'/>"
        "<way id='5'><nd ref='1'/><nd ref='2'/><tag k='building' v='yes'/></way></osm>"
    )
    with pytest.raises(ValueError, match="holds no walkable or drivable streets"):
        load_network(path)


def test_tag_rules() -> None:
    assert walk_allowed({"highway": "footway"}) and not drive_allowed({"highway": "footway"})
    assert drive_allowed({"highway": "primary"}) and walk_allowed({"highway": "primary"})
    assert not walk_allowed({"highway": "motorway"})
    assert not walk_allowed({"highway": "residential", "foot": "no"})
    assert not drive_allowed({"highway": "service", "access": "private"})
    assert drive_speed_kmh({"highway": "primary", "maxspeed": "80"}) == 80
    assert drive_speed_kmh({"highway": "primary", "maxspeed": "30 mph"}) == pytest.approx(48.28, abs=0.01)
    assert drive_speed_kmh({"highway": "residential", "maxspeed": "RU:urban"}) == 60
    assert drive_speed_kmh({"highway": "residential", "maxspeed": "signals"}) == 30  # the default
    assert oneway_direction({"highway": "residential", "oneway": "yes"}) == 1
    assert oneway_direction({"highway": "residential", "oneway": "-1"}) == -1
    assert oneway_direction({"highway": "primary", "junction": "roundabout"}) == 1
    assert oneway_direction({"highway": "primary"}) == 0
    assert utm_crs_for(51.13, 71.43).to_epsg() == 32642  # Astana is in 42N


def test_reverse_oneway_is_stored_in_travel_direction(tmp_path: Path) -> None:
    path = tmp_path / "one.osm"
    path.write_text(
        "<?xml version='1.0' encoding='UTF-8'?><osm version='0.6'>"
        "<node id='1' lat='43.2' lon='76.9'/><node id='2' lat='43.201' lon='76.9'/>"
        "<way id='5'><nd ref='1'/><nd ref='2'/><tag k='highway' v='residential'/>"
        "<tag k='oneway' v='-1'/></way></osm>"
    )
    net = load_network(path)
    assert net.seg_oneway.tolist() == [True]
    # Cars go from node 2 to node 1: the segment runs from the northern node to the southern one.
    assert net.node_lat[net.seg_u[0]] > net.node_lat[net.seg_v[0]]


def test_generated_city_is_labelled_deterministic_and_has_a_river() -> None:
    a = generate_city(2_500, seed=5)
    b = generate_city(2_500, seed=5)
    assert "generated city" in a.label and "not a real place" in a.label
    assert np.array_equal(a.seg_u, b.seg_u) and np.allclose(a.node_lat, b.node_lat)
    assert isinstance(a, StreetNetwork) and a.n_nodes == 2_500
    assert {"primary", "secondary", "residential", "footway"} <= set(a.seg_highway.tolist())
    with pytest.raises(ValueError, match="at least 16"):
        generate_city(3)


def test_tunnel_and_bridge_flags_come_from_the_osm_tags() -> None:
    from geo.network import is_bridge, is_tunnel

    assert is_tunnel({"tunnel": "yes"}) and is_tunnel({"tunnel": "building_passage"})
    assert not is_tunnel({"tunnel": "no"}) and not is_tunnel({"highway": "primary"})
    assert is_bridge({"bridge": "viaduct"}) and not is_bridge({"bridge": "no"}) and not is_bridge({})
    # The real extracts: Almaty's PBF and Toronto's XML and GraphML mark some of their ways.
    for path in (ALMATY_PBF, TORONTO_XML, TORONTO_WALK_GRAPHML):
        net = load_network(path)
        assert net.seg_tunnel.shape == net.seg_bridge.shape == (net.n_segments,)
        assert 0 < net.seg_tunnel.sum() < net.n_segments / 20, path
        assert 0 < net.seg_bridge.sum() < net.n_segments / 20, path
    # A way's flags go to every one of its segments, and only to them.
    net = StreetNetwork.from_arrays([43.0, 43.001, 43.002], [76.9, 76.9, 76.9], [0, 1], [1, 2], bridge=[True, False])
    assert net.seg_bridge.tolist() == [True, False] and net.seg_tunnel.tolist() == [False, False]
    # The generated city's river is crossed on bridges, and nowhere else is a bridge.
    city = generate_city(900, seed=2, bridge_every=6)
    crossing = np.abs(city.node_lat[city.seg_u] - city.node_lat[city.seg_v]) * 111_320 > 150  # the wide river
    assert city.seg_bridge.sum() > 0 and np.array_equal(city.seg_bridge, crossing)
    with pytest.raises(ValueError, match="seg_tunnel has 1 values for 2 segments"):
        StreetNetwork.from_arrays([43.0, 43.001, 43.002], [76.9, 76.9, 76.9], [0, 1], [1, 2], tunnel=[True])
