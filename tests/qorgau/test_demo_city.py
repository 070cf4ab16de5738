"""The demo's real city: the packaged Almaty extract, its schools, hospitals and police points."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

import pytest
from support import shared

from dispatch import DeviceSite, UnitKind, load_devices, load_units
from geo import Router, load_network
from qorgau.demo_city import ALMATY_CENTRE_BBOX, almaty_extract, almaty_registry, find_pois, write_registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pois() -> list:
    return find_pois(almaty_extract())


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(load_network(almaty_extract()))


def test_the_packaged_extract_is_the_shared_one_and_package_data() -> None:
    packaged = almaty_extract()
    assert packaged.read_bytes() == shared("osm/almaty_2012-03.osm.pbf").read_bytes()
    assert hashlib.sha256(packaged.read_bytes()).hexdigest().startswith("9582e95712cf1ab3")
    provenance = (packaged.parent / "PROVENANCE.md").read_text(encoding="utf-8")
    assert "© OpenStreetMap contributors" in provenance and "ODbL" in provenance
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["qorgau"]
    for name in ("data/almaty_2012-03.osm.pbf", "data/PROVENANCE.md"):
        assert any(fnmatch(name, p) for p in patterns), (name, patterns)


def test_pois_come_from_the_extracts_amenity_tags(pois: list) -> None:
    counts = Counter(p.amenity for p in pois)
    assert counts == {"school": 69, "hospital": 51, "police": 40}  # as PROVENANCE.md counts them
    # an independent reading of the same PBF (made with another tool for the shared data)
    other = json.loads(shared("osm/almaty_2012-03_police_fire_hospital.geojson").read_text(encoding="utf-8"))
    theirs = {
        (f["properties"]["osm_type"], f["properties"]["osm_id"]): f
        for f in other["features"]
        if f["properties"]["amenity"] in ("police", "hospital")
    }
    ours = {(p.osm_type, p.osm_id): p for p in pois if p.amenity in ("police", "hospital")}
    assert set(ours) == set(theirs)
    for key, poi in ours.items():
        lon, lat = theirs[key]["geometry"]["coordinates"]
        assert (poi.lat, poi.lon) == pytest.approx((lat, lon), abs=2e-4), key
    named = next(p for p in pois if p.name == "РУВД Алмалинского района")
    assert named.amenity == "police" and named.label == "Police point: РУВД Алмалинского района"
    unnamed = next(p for p in pois if p.name is None and p.amenity == "school")
    assert unnamed.label == f"School (OSM {unnamed.osm_type} {unnamed.osm_id})"


def test_booths_at_police_points_buttons_at_schools_and_hospitals(router: Router, pois: list, tmp_path: Path) -> None:
    units, devices, placed = almaty_registry(router, pois, seed=3)
    assert almaty_registry(router, pois, seed=3) == (units, devices, placed)  # deterministic
    by_osm = {(round(p.lat, 7), round(p.lon, 7)): p for p in pois}
    booths = [u for u in units if u.kind is UnitKind.BOOTH]
    assert len(booths) == 8 and Counter(u.kind for u in units) == {
        UnitKind.BOOTH: 8,
        UnitKind.FOOT: 12,
        UnitKind.CAR: 6,
    }
    for booth in booths:  # central Almaty has enough police points: every booth is at one
        poi = by_osm[(round(booth.lat, 7), round(booth.lon, 7))]
        assert poi.amenity == "police" and booth.name == poi.label and placed[booth.id].place == "police"
    min_lat, min_lon, max_lat, max_lon = ALMATY_CENTRE_BBOX
    assert all(min_lat <= u.lat <= max_lat and min_lon <= u.lon <= max_lon for u in booths)
    sites = Counter(d.site for d in devices)
    assert sites[DeviceSite.STREET] == 6 and sites[DeviceSite.SCHOOL] + sites[DeviceSite.HOSPITAL] == 18
    assert sites[DeviceSite.SCHOOL] > 0 and sites[DeviceSite.HOSPITAL] > 0
    for device in devices:
        if device.site is DeviceSite.STREET:
            assert placed[device.id].place == "street" and placed[device.id].label.startswith("Street button")
        else:
            poi = by_osm[(round(device.lat, 7), round(device.lon, 7))]
            assert poi.amenity == device.site.value and placed[device.id].label == poi.label
    units_path, devices_path = write_registry(tmp_path, units, devices, placed)
    assert [u.id for u in load_units(units_path)] == [u.id for u in units]
    assert {d.id: d.site for d in load_devices(devices_path).values()} == {d.id: d.site for d in devices}
    written = json.loads(devices_path.read_text(encoding="utf-8"))["features"]
    assert {f["properties"]["id"]: f["properties"]["name"] for f in written} == {
        d.id: placed[d.id].label for d in devices
    }


def test_street_points_fill_in_where_the_area_has_too_few(router: Router, pois: list) -> None:
    # a small box in the centre: fewer police points, schools and hospitals than asked for
    box = (43.236, 76.93, 43.246, 76.945)
    inside = [p for p in pois if box[0] <= p.lat <= box[2] and box[1] <= p.lon <= box[3]]
    police = sum(p.amenity == "police" for p in inside)
    sites = sum(p.amenity in ("school", "hospital") for p in inside)
    assert police < 8 and sites < 18
    units, devices, placed = almaty_registry(router, pois, bbox=box, seed=2)
    booths = [u for u in units if u.kind is UnitKind.BOOTH]
    fallback = [u for u in booths if placed[u.id].place == "street"]
    assert len(booths) == 8 and len(fallback) >= 8 - police
    assert all(u.name and "street point" in u.name for u in fallback)
    for unit in fallback:  # a street point of the box's streets
        snap = router.snap(unit.lat, unit.lon, "walk")
        assert snap.distance_m < 1.0
    streets = [d for d in devices if d.site is DeviceSite.STREET]
    assert len(streets) >= 24 - sites and all(placed[d.id].place == "street" for d in streets)
