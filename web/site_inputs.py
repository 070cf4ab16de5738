"""Checks of a booth-siting question before the model runs: files there, GeoJSON sound, numbers sane.

``qorgau sites`` and ``POST /api/sites`` both call :func:`check_siting_request`, so a bad input gets
the same clear reason from either (exit 2, or a failed job with the reason) and the model only ever
sees readable files. Each problem names the option and the value.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from patrol_planner.siting_types import SitingRequest

__all__ = ["SitingInputError", "check_siting_request", "read_feature_collection"]

_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class SitingInputError(ValueError):
    """A siting input is missing or unreadable, or an option is out of range."""


def read_feature_collection(path: Path, *, option: str) -> dict[str, Any]:
    """A GeoJSON FeatureCollection from ``path``, or :class:`SitingInputError` saying why not."""
    if not path.is_file():
        msg = f"{option}: no such file {str(path)!r}"
        raise SitingInputError(msg)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        msg = f"{option}: {str(path)!r} is not GeoJSON ({e})"
        raise SitingInputError(msg) from e
    if (
        not isinstance(data, dict)
        or data.get("type") != "FeatureCollection"
        or not isinstance(data.get("features"), list)
    ):
        msg = f"{option}: {str(path)!r} is not a GeoJSON FeatureCollection"
        raise SitingInputError(msg)
    for i, f in enumerate(data["features"]):
        if not isinstance(f, dict) or f.get("type") != "Feature" or not isinstance(f.get("geometry"), dict):
            msg = f"{option}: feature {i} of {str(path)!r} is not a GeoJSON Feature with a geometry"
            raise SitingInputError(msg)
        if f.get("properties") is None:
            f["properties"] = {}
        elif not isinstance(f["properties"], dict):
            msg = f"{option}: feature {i} of {str(path)!r} has properties that are not an object"
            raise SitingInputError(msg)
    return data


def _lonlat(f: dict[str, Any], i: int, where: str) -> tuple[float, float]:
    g = f["geometry"]
    c = g.get("coordinates")
    if g.get("type") != "Point" or not isinstance(c, list) or len(c) < 2:
        msg = f"{where}: feature {i} is a {g.get('type')!r}, not a Point"
        raise SitingInputError(msg)
    try:
        lon, lat = float(c[0]), float(c[1])
    except (TypeError, ValueError) as e:
        msg = f"{where}: feature {i} has coordinates {c[:2]!r} that are not numbers"
        raise SitingInputError(msg) from e
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        msg = f"{where}: feature {i} has impossible coordinates lon={c[0]!r}, lat={c[1]!r}"
        raise SitingInputError(msg)
    return lon, lat


def _points(path: Path, option: str, *, need_id: bool = False, need_weight: bool = False) -> int:
    data = read_feature_collection(path, option=option)
    where = f"{option} {str(path)!r}"
    seen: set[str] = set()
    for i, f in enumerate(data["features"]):
        _lonlat(f, i, where)
        p = f["properties"]
        if need_id:
            fid = p.get("id")
            if fid is None or (isinstance(fid, str) and not fid.strip()) or isinstance(fid, (bool, dict, list)):
                msg = f"{where}: feature {i} has no 'id'"
                raise SitingInputError(msg)
            if str(fid) in seen:
                msg = f"{where}: the id {str(fid)!r} appears twice"
                raise SitingInputError(msg)
            seen.add(str(fid))
        if need_weight:
            w = p.get("weight")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                msg = f"{where}: feature {i} needs a numeric 'weight' >= 0, got {w!r}"
                raise SitingInputError(msg)
    return len(data["features"])


def _booths(path: Path) -> int:
    """How many booths the model takes from ``path``: as the planner reads booths
    (:func:`patrol_planner.io.read_booths`: in a units file only ``kind=booth``, in an OSM amenity
    extract only ``amenity=police``, ids from ``id`` or ``osm_id``)."""
    data = read_feature_collection(path, option="--existing")
    where = f"--existing {str(path)!r}"
    features = data["features"]
    has_kind = any("kind" in f["properties"] for f in features)
    has_amenity = any("amenity" in f["properties"] for f in features)
    seen: set[str] = set()
    n = 0
    for i, f in enumerate(features):
        p = f["properties"]
        if (has_kind and p.get("kind") != "booth") or (not has_kind and has_amenity and p.get("amenity") != "police"):
            continue
        _lonlat(f, i, where)
        fid = p.get("id")
        if fid is not None:
            if str(fid) in seen:
                msg = f"{where}: the id {str(fid)!r} appears twice"
                raise SitingInputError(msg)
            seen.add(str(fid))
        n += 1
    if n == 0:
        what = "kind='booth'" if has_kind else "amenity='police'" if has_amenity else "Points"
        msg = f"{where} has no booths (features with {what})"
        raise SitingInputError(msg)
    return n


def _districts(path: Path) -> int:
    data = read_feature_collection(path, option="--districts")
    where = f"--districts {str(path)!r}"
    for i, f in enumerate(data["features"]):
        kind = f["geometry"].get("type")
        if kind not in ("Polygon", "MultiPolygon"):
            msg = f"{where}: feature {i} is a {kind!r}, not a Polygon or MultiPolygon"
            raise SitingInputError(msg)
        p = f["properties"]
        if not str(p.get("name") or p.get("id") or "").strip():
            msg = f"{where}: feature {i} has neither 'name' nor 'id'"
            raise SitingInputError(msg)
    return len(data["features"])


def check_siting_request(request: SitingRequest, *, network: bool = True) -> None:
    """Refuse a question the model cannot answer, saying which option is wrong and why.

    ``network=False`` skips the network file (the service answers on the network it has loaded).

    Raises
    ------
    SitingInputError
        For a missing file, a file that is not the GeoJSON asked for, or an option out of range.
    """
    if isinstance(request.add, bool) or request.add < 0:
        msg = f"--add must be a whole number >= 0, got {request.add!r}"
        raise SitingInputError(msg)
    if not (math.isfinite(request.walk_min) and 0 < request.walk_min <= 120):
        msg = f"--walk-min must be more than 0 and at most 120 minutes, got {request.walk_min:g}"
        raise SitingInputError(msg)
    if not (math.isfinite(request.time_limit_s) and request.time_limit_s > 0):
        msg = f"--time-limit must be more than 0 seconds, got {request.time_limit_s:g}"
        raise SitingInputError(msg)
    if request.move < 0:
        msg = f"--move must be >= 0, got {request.move}"
        raise SitingInputError(msg)
    if (request.incidents is None) == (request.demand is None):
        msg = "give exactly one of --incidents FILE (the risk surface) or --demand points.geojson"
        raise SitingInputError(msg)
    if request.hours is not None:
        if request.incidents is None:
            msg = "--hours selects incidents by the hour: it needs --incidents, not --demand"
            raise SitingInputError(msg)
        if not _HOURS.match(request.hours):
            msg = f"--hours must be HH:MM-HH:MM in local time, e.g. 20:00-08:00; got {request.hours!r}"
            raise SitingInputError(msg)
    if request.district_floor is not None:
        if request.districts is None:
            msg = "--district-floor needs --districts"
            raise SitingInputError(msg)
        if not 0 <= request.district_floor <= 1:
            msg = f"--district-floor is a share, 0 to 1; got {request.district_floor:g}"
            raise SitingInputError(msg)
    if network and not request.network.is_file():
        msg = f"--network: no such file {str(request.network)!r}"
        raise SitingInputError(msg)
    existing = _booths(request.existing)
    if request.move > existing:
        msg = f"--move {request.move}: there are only {existing} existing booths to move"
        raise SitingInputError(msg)
    if request.incidents is not None and not request.incidents.is_file():
        msg = f"--incidents: no such file {str(request.incidents)!r}"
        raise SitingInputError(msg)
    if request.demand is not None and _points(request.demand, "--demand", need_weight=True) == 0:
        msg = f"--demand {str(request.demand)!r} has no points"
        raise SitingInputError(msg)
    if request.candidates is not None:
        n = _points(request.candidates, "--candidates", need_id=True)
        if n < request.add:
            msg = f"--add {request.add} new booths but --candidates has only {n} sites"
            raise SitingInputError(msg)
    if request.districts is not None and _districts(request.districts) == 0:
        msg = f"--districts {str(request.districts)!r} has no districts"
        raise SitingInputError(msg)
    if request.backup_sites is not None:
        _points(request.backup_sites, "--backup-sites")
