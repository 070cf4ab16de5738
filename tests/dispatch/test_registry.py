"""Unit and device registries as GeoJSON: round trips and errors that name the feature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatch import Device, DeviceSite, Unit, UnitKind, load_devices, load_units, write_devices, write_units


def _write(path: Path, features: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _point(lon: float, lat: float, **props: object) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def test_units_round_trip(tmp_path: Path) -> None:
    units = [
        Unit(id="booth-1", kind=UnitKind.BOOTH, name="Booth 1, Abay Ave", lat=43.2389, lon=76.9455),
        Unit(id="car-1", kind=UnitKind.CAR, name="Car 1", lat=43.25, lon=76.95),
    ]
    loaded = load_units(write_units(tmp_path / "u.geojson", units))
    assert loaded == units


def test_devices_round_trip(tmp_path: Path) -> None:
    devices = [Device(id="sos-1", site=DeviceSite.SCHOOL, lat=43.24, lon=76.94)]
    assert load_devices(write_devices(tmp_path / "d.geojson", devices)) == {"sos-1": devices[0]}


def test_unit_name_defaults_to_id(tmp_path: Path) -> None:
    (unit,) = load_units(_write(tmp_path / "u.geojson", [_point(76.9, 43.2, id="f-1", kind="foot")]))
    assert unit.name == "f-1"


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (_point(76.9, 43.2, id="x", kind="tank"), r"property 'kind' must be one of booth \| foot \| car, got 'tank'"),
        (_point(76.9, 43.2, kind="car"), "needs a non-empty string property 'id'"),
        (_point(76.9, 43.2, id="a/b", kind="car"), "without '/'"),
        (_point(200.0, 43.2, id="x", kind="car"), "outside WGS 84 range"),
        (
            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": []}, "properties": {}},
            "must be a Point, got geometry type 'LineString'",
        ),
    ],
)
def test_bad_unit_features(tmp_path: Path, feature: dict, message: str) -> None:
    path = _write(tmp_path / "u.geojson", [feature])
    with pytest.raises(ValueError, match=message):
        load_units(path)


def test_duplicate_ids_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.geojson", [_point(76.9, 43.2, id="s1", site="street")] * 2)
    with pytest.raises(ValueError, match=r"ids must be unique, repeated: \['s1'\]"):
        load_devices(path)


def test_bad_site_names_feature(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.geojson", [_point(76.9, 43.2, id="s1", site="mall")])
    with pytest.raises(ValueError, match=r"feature 0 \(id 's1'\): property 'site' must be one of .*got 'mall'"):
        load_devices(path)


def test_not_a_feature_collection(tmp_path: Path) -> None:
    path = tmp_path / "x.geojson"
    path.write_text('{"type": "Feature"}')
    with pytest.raises(ValueError, match="must be a GeoJSON FeatureCollection, got type 'Feature'"):
        load_units(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_units(tmp_path / "nope.geojson")


def test_booth_staffing_hours_round_trip_and_are_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dispatch import Unit, UnitKind, load_units, write_units

    booth = Unit("booth-9", UnitKind.BOOTH, "Booth 9", 43.25, 76.95, staff_from="08:00", staff_to="20:00")
    path = write_units(tmp_path / "units.geojson", [booth, Unit("car-1", UnitKind.CAR, "Car", 43.2, 76.9)])
    loaded = {u.id: u for u in load_units(path)}
    assert (loaded["booth-9"].staff_from, loaded["booth-9"].staff_to) == ("08:00", "20:00")
    assert loaded["car-1"].staff_from is None
    text = path.read_text().replace('"20:00"', '"8pm"')
    path.write_text(text)
    with pytest.raises(
        ValueError, match=r"feature 0 \(id 'booth-9'\): unit 'booth-9' staff_to must be a local time HH:MM, got '8pm'"
    ):
        load_units(path)
