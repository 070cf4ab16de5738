"""Unit and SOS-device registries as GeoJSON files.

Both are FeatureCollections of Point features (coordinates ``[lon, lat]``, WGS 84):

- units: properties ``id``, ``kind`` (booth | foot | car), ``name``, and for booths optionally
  ``staff_from`` and ``staff_to`` (local ``HH:MM``; outside those hours the booth is not recommended);
- devices: properties ``id``, ``site`` (street | school | hospital | other).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from dispatch.domain import Device, DeviceSite, Unit, UnitKind

_E = TypeVar("_E", bound=Enum)

__all__ = ["load_devices", "load_units", "write_devices", "write_units"]


def _features(path: Path) -> list[tuple[str, dict[str, Any], float, float]]:
    """Read ``path`` and return ``(where, properties, lat, lon)`` per Point feature."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        msg = f"GeoJSON file {str(path)!r} does not exist"
        raise FileNotFoundError(msg) from e
    except json.JSONDecodeError as e:
        msg = f"{str(path)!r} is not valid JSON: {e}"
        raise ValueError(msg) from e
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        got = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        msg = f"{str(path)!r} must be a GeoJSON FeatureCollection, got type {got!r}"
        raise ValueError(msg)
    out = []
    for i, feature in enumerate(doc.get("features") or []):
        where = f"{path}: feature {i}"
        geometry = (feature or {}).get("geometry") or {}
        if geometry.get("type") != "Point":
            msg = f"{where} must be a Point, got geometry type {geometry.get('type')!r}"
            raise ValueError(msg)
        coords = geometry.get("coordinates")
        if (
            not isinstance(coords, list)
            or len(coords) < 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coords[:2])
        ):
            msg = f"{where} has coordinates {coords!r}, expected [lon, lat] numbers"
            raise ValueError(msg)
        lon, lat = float(coords[0]), float(coords[1])
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            msg = f"{where} has coordinates [lon={lon}, lat={lat}] outside WGS 84 range"
            raise ValueError(msg)
        props = feature.get("properties") or {}
        fid = props.get("id")
        if not isinstance(fid, str) or not fid or "/" in fid or "+" in fid or "#" in fid:
            msg = f"{where} needs a non-empty string property 'id' without '/', '+', '#', got {fid!r}"
            raise ValueError(msg)
        out.append((f"{where} (id {fid!r})", props, lat, lon))
    ids = [props["id"] for _, props, _, _ in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        msg = f"{path}: ids must be unique, repeated: {dupes}"
        raise ValueError(msg)
    return out


def _enum(enum: type[_E], value: Any, *, where: str, prop: str) -> _E:
    try:
        return enum(value)
    except ValueError as e:
        allowed = " | ".join(m.value for m in enum)
        msg = f"{where}: property {prop!r} must be one of {allowed}, got {value!r}"
        raise ValueError(msg) from e


def load_units(path: str | Path) -> list[Unit]:
    """Read units from a GeoJSON file; all start ``available`` at their seed position.

    Raises
    ------
    ValueError
        Naming the feature and property that is wrong.
    """
    units = []
    for where, props, lat, lon in _features(Path(path)):
        kind = _enum(UnitKind, props.get("kind"), where=where, prop="kind")
        name = props.get("name") or props["id"]
        if not isinstance(name, str):
            msg = f"{where}: property 'name' must be a string, got {name!r}"
            raise ValueError(msg)
        hours: dict[str, Any] = {k: props.get(k) for k in ("staff_from", "staff_to") if props.get(k) is not None}
        try:
            units.append(Unit(id=props["id"], kind=kind, name=name, lat=lat, lon=lon, **hours))
        except ValueError as e:
            msg = f"{where}: {e}"
            raise ValueError(msg) from e
    return units


def load_devices(path: str | Path) -> dict[str, Device]:
    """Read SOS devices from a GeoJSON file, keyed by id.

    Raises
    ------
    ValueError
        Naming the feature and property that is wrong.
    """
    devices = {}
    for where, props, lat, lon in _features(Path(path)):
        site = _enum(DeviceSite, props.get("site"), where=where, prop="site")
        devices[props["id"]] = Device(id=props["id"], site=site, lat=lat, lon=lon)
    return devices


def _write(path: str | Path, features: list[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"type": "FeatureCollection", "features": features}
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _point(lat: float, lon: float, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]},
        "properties": properties,
    }


def write_units(path: str | Path, units: Iterable[Unit]) -> Path:
    """Write units as a GeoJSON FeatureCollection that :func:`load_units` reads back."""

    def props(u: Unit) -> dict[str, Any]:
        out: dict[str, Any] = {"id": u.id, "kind": u.kind.value, "name": u.name}
        if u.staff_from is not None:
            out.update(staff_from=u.staff_from, staff_to=u.staff_to)
        return out

    return _write(path, [_point(u.lat, u.lon, props(u)) for u in units])


def write_devices(path: str | Path, devices: Iterable[Device]) -> Path:
    """Write SOS devices as a GeoJSON FeatureCollection that :func:`load_devices` reads back."""
    return _write(path, [_point(d.lat, d.lon, {"id": d.id, "site": d.site.value}) for d in devices])
