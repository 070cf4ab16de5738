"""File adapters of the planner: incidents and booths in; GeoJSON, GPX, CSV and Markdown out.

Everything that touches a file lives here; the algorithms take and return arrays and dataclasses.

Incident layouts recognised without flags (column names are matched case-insensitively):

========================  ==========================  =================================
layout                    coordinates                 time, category
========================  ==========================  =================================
police.uk street-level    ``Latitude``, ``Longitude`` ``Month`` (``YYYY-MM``), ``Crime type``
plain table               ``lat``, ``lon``            ``occurred_at``, ``category``
Toronto Police MCI        ``Lat``, ``Long``           ``occurred_at_local``, ``MCI``
GeoJSON                   Point geometry              the same property names
========================  ==========================  =================================

Other layouts: name the columns (``lat_col``, ``lon_col``, ``time_col``, ``category_col``).
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from patrol_planner.incidents import Incidents, LoadReport

__all__ = [
    "Booth",
    "read_booths",
    "read_incidents",
    "read_osm_bounds",
    "write_booths",
    "write_csv",
    "write_geojson",
    "write_gpx",
]

_LAT = ("lat", "latitude", "y")
_LON = ("lon", "lng", "long", "longitude", "x")
_TIME = ("occurred_at", "occurred_at_local", "occurredat", "datetime", "timestamp", "time", "date", "month")
#: A column saying who initiated each incident (the feedback-loop guard reads it).
_ORIGIN = ("initiated_by", "reported_by", "origin", "discovered_by", "initiation")
_OFFICER_VALUES = frozenset({"officer", "police", "proactive", "on-view", "on_view", "self-initiated", "patrol"})
_PUBLIC_VALUES = frozenset({"public", "citizen", "call", "report", "reported", "sos", "app102", "102", "victim"})
_CATEGORY = ("category", "crime type", "crime_type", "mci", "offence", "offense", "type")


@dataclass(frozen=True, slots=True)
class Booth:
    """A police booth (post): where foot patrols start and end their shift."""

    id: str
    lat: float
    lon: float
    name: str = ""


def _pick(columns: Sequence[str], wanted: str | None, choices: tuple[str, ...], what: str, source: str) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    if wanted is not None:
        if wanted in columns:
            return wanted
        if wanted.strip().lower() in lower:
            return lower[wanted.strip().lower()]
        msg = f"{source}: no column {wanted!r} for the {what}; columns are {list(columns)}"
        raise ValueError(msg)
    for name in choices:
        if name in lower:
            return lower[name]
    return None


def _layout(columns: Sequence[str]) -> str:
    lower = {c.strip().lower() for c in columns}
    if {"month", "longitude", "latitude", "crime type"} <= lower:
        return "police.uk street-level"
    if {"lat", "long", "occurred_at_local", "mci"} <= lower:
        return "Toronto Police MCI"
    if {"lat", "lon", "occurred_at"} <= lower:
        return "plain"
    return "columns"


_MONTH = re.compile(r"^\s*\d{4}-\d{2}\s*$")


def _to_datetime(text: pd.Series) -> NDArray[np.datetime64]:
    """ISO 8601 fast, then any other layout pandas recognises for what is left."""
    out: NDArray[np.datetime64] = pd.to_datetime(text, errors="coerce", format="ISO8601").to_numpy(
        dtype="datetime64[s]"
    )
    bad = np.isnat(out)
    if bad.any():
        out[bad] = pd.to_datetime(text[bad], errors="coerce", format="mixed").to_numpy(dtype="datetime64[s]")
    return out


def _parse_times(raw: pd.Series, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Local naive datetime64[s] (NaT where unusable) and whether the hour is known."""
    text = raw.astype("string").str.strip()
    text = text.where(text != "", pd.NA)
    month_only = text.str.match(_MONTH.pattern).fillna(False).to_numpy(dtype=bool)
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[s]")
    if month_only.any():
        out[month_only] = pd.to_datetime(text[month_only] + "-01", format="%Y-%m-%d", errors="coerce").to_numpy(
            dtype="datetime64[s]"
        )
    rest = ~month_only & text.notna().to_numpy(dtype=bool)
    if rest.any():
        sub = text[rest]
        has_offset = sub.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True).fillna(False)
        parsed = np.full(len(sub), np.datetime64("NaT"), dtype="datetime64[s]")
        naive = ~has_offset.to_numpy(dtype=bool)
        if naive.any():
            parsed[naive] = _to_datetime(sub[naive])
        if (~naive).any():
            aware = pd.to_datetime(sub[~naive], errors="coerce", utc=True, format="mixed")
            parsed[~naive] = aware.dt.tz_convert(timezone).dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
        out[rest] = parsed
    return out, ~month_only


def _from_frame(
    df: pd.DataFrame,
    *,
    source: str,
    lat_col: str | None,
    lon_col: str | None,
    time_col: str | None,
    category_col: str | None,
    timezone: str,
    lat: np.ndarray | None = None,
    lon: np.ndarray | None = None,
    layout: str | None = None,
) -> tuple[Incidents, LoadReport]:
    columns = [str(c) for c in df.columns]
    df.columns = columns
    if lat is None or lon is None:
        la = _pick(columns, lat_col, _LAT, "latitude", source)
        lo = _pick(columns, lon_col, _LON, "longitude", source)
        if la is None or lo is None:
            msg = f"{source}: cannot find latitude/longitude columns (give lat_col and lon_col); columns are {columns}"
            raise ValueError(msg)
        lat = pd.to_numeric(df[la], errors="coerce").to_numpy(dtype=np.float64)
        lon = pd.to_numeric(df[lo], errors="coerce").to_numpy(dtype=np.float64)
    tc = _pick(columns, time_col, _TIME, "time", source)
    if tc is None:
        msg = f"{source}: cannot find a time column (give time_col); columns are {columns}"
        raise ValueError(msg)
    cc = _pick(columns, category_col, _CATEGORY, "category", source)
    times, hour_known = _parse_times(df[tc], timezone)
    category = (
        df[cc].astype("string").str.strip().fillna("").to_numpy(dtype=object)
        if cc is not None
        else np.full(len(df), "incident", dtype=object)
    )
    oc = _pick(columns, None, _ORIGIN, "origin", source)
    officer = None
    if oc is not None:
        values = df[oc].astype("string").str.strip().str.lower().fillna("")
        known = values.isin(_OFFICER_VALUES | _PUBLIC_VALUES) | (values == "")
        if not bool(known.all()):
            odd = sorted(set(values[~known].tolist()))[:5]
            msg = (
                f"{source}: column {oc!r} says who initiated each incident, but {odd} are neither officer "
                f"({sorted(_OFFICER_VALUES)}) nor public ({sorted(_PUBLIC_VALUES)})"
            )
            raise ValueError(msg)
        officer = values.isin(_OFFICER_VALUES).to_numpy(dtype=bool)
    no_xy = ~(np.isfinite(lat) & np.isfinite(lon))
    bad_xy = ~no_xy & ((np.abs(lat) > 90) | (np.abs(lon) > 180) | ((lat == 0) & (lon == 0)))
    no_time = ~no_xy & ~bad_xy & np.isnat(times)
    keep = ~(no_xy | bad_xy | no_time)
    inc = Incidents(
        lat[keep],
        lon[keep],
        times[keep],
        category[keep],
        hour_known[keep],
        timezone=timezone,
        label=Path(source).name,
        officer=None if officer is None else officer[keep],
    )
    report = LoadReport(
        source=source,
        rows=len(df),
        kept=int(keep.sum()),
        missing_coordinates=int(no_xy.sum()),
        missing_time=int(no_time.sum()),
        invalid_coordinates=int(bad_xy.sum()),
        month_only=int((~hour_known[keep]).sum()),
        layout=layout or _layout(columns),
    )
    return inc, report


def read_incidents(
    path: str | Path,
    *,
    lat_col: str | None = None,
    lon_col: str | None = None,
    time_col: str | None = None,
    category_col: str | None = None,
    timezone: str = "Asia/Almaty",
) -> tuple[Incidents, LoadReport]:
    """Read incidents from CSV (optionally gzip'd), GeoJSON or Parquet.

    Naive times are taken as local time in ``timezone``; times with an offset are converted to it.
    Rows without coordinates or time are counted in the :class:`LoadReport`, never silently
    dropped; the area filter (:func:`patrol_planner.within_area`) adds ``outside_area``.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the format or the columns cannot be recognised.
    """
    p = Path(path)
    if not p.is_file():
        msg = f"incidents file not found: {str(p)!r}"
        raise FileNotFoundError(msg)
    name = p.name.lower()
    common: dict[str, Any] = dict(
        source=str(p), lat_col=lat_col, lon_col=lon_col, time_col=time_col, category_col=category_col, timezone=timezone
    )
    if name.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        sep = "\t" if name.endswith(".tsv") else ","
        df = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False)
        return _from_frame(df, **common)
    if name.endswith((".geojson", ".json", ".geojson.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(p, "rt", encoding="utf-8") as f:
            doc = json.load(f)
        features = doc.get("features") if isinstance(doc, dict) else None
        if features is None:
            msg = f"{p.name}: not a GeoJSON FeatureCollection"
            raise ValueError(msg)
        lat = np.full(len(features), np.nan)
        lon = np.full(len(features), np.nan)
        rows = []
        for i, feat in enumerate(features):
            geom = feat.get("geometry") or {}
            if geom.get("type") == "Point" and len(geom.get("coordinates") or []) >= 2:
                c = geom["coordinates"]
                with suppress(TypeError, ValueError):
                    lon[i], lat[i] = float(c[0]), float(c[1])
            rows.append({k: ("" if v is None else str(v)) for k, v in (feat.get("properties") or {}).items()})
        df = pd.DataFrame(rows)
        if df.empty:
            df = pd.DataFrame(index=range(len(features)))
        if lat_col or lon_col:
            return _from_frame(df, **common)
        return _from_frame(df, lat=lat, lon=lon, layout="GeoJSON", **common)
    if name.endswith((".parquet", ".geoparquet", ".pq")):
        import pyarrow.parquet as pq

        table = pq.read_table(p)
        meta = table.schema.metadata or {}
        if b"geo" in meta and not (lat_col or lon_col):
            import geopandas as gpd

            gdf = gpd.read_parquet(p).to_crs(4326)
            geom = gdf.geometry
            ok = geom.notna() & (geom.geom_type == "Point")
            lat = np.where(ok, geom.y.where(ok), np.nan).astype(np.float64)
            lon = np.where(ok, geom.x.where(ok), np.nan).astype(np.float64)
            df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name)).astype(str)
            return _from_frame(df, lat=lat, lon=lon, layout="GeoParquet", **common)
        df = table.to_pandas()
        for c in df.columns:
            if pd.api.types.is_datetime64_any_dtype(df[c]):
                if getattr(df[c].dt, "tz", None) is not None:
                    df[c] = df[c].dt.tz_convert(timezone).dt.tz_localize(None)
                df[c] = df[c].dt.strftime("%Y-%m-%dT%H:%M:%S")
        return _from_frame(df, **common)
    msg = f"unrecognised incidents format for {p.name!r}: expected .csv(.gz), .geojson or .parquet"
    raise ValueError(msg)


def read_booths(path: str | Path) -> list[Booth]:
    """Read booths from GeoJSON Point features (``id``, ``name``).

    In a units registry (features with ``kind``) only ``kind=booth`` is taken; in an OSM amenity
    extract (features with ``amenity``) only ``amenity=police``, named by ``name_ru``/``name``
    or ``osm_id``.
    """
    p = Path(path)
    if not p.is_file():
        msg = f"booths file not found: {str(p)!r}"
        raise FileNotFoundError(msg)
    doc = json.loads(p.read_text(encoding="utf-8"))
    features = doc.get("features") if isinstance(doc, dict) else None
    if not features:
        msg = f"{p.name}: no GeoJSON features"
        raise ValueError(msg)
    has_kind = any("kind" in (f.get("properties") or {}) for f in features)
    has_amenity = any("amenity" in (f.get("properties") or {}) for f in features)
    out = []
    for i, f in enumerate(features):
        props = f.get("properties") or {}
        if has_kind and props.get("kind") != "booth":
            continue
        if not has_kind and has_amenity and props.get("amenity") != "police":
            continue
        geom = f.get("geometry") or {}
        if geom.get("type") != "Point":
            msg = f"{p.name}: feature {i} is a {geom.get('type')!r}, booths must be Points"
            raise ValueError(msg)
        lon, lat = geom["coordinates"][:2]
        ident = props.get("id") or (
            f"osm-{props['osm_type']}-{props['osm_id']}" if "osm_id" in props else f"booth-{i + 1}"
        )
        name = props.get("name") or props.get("name_ru") or props.get("name_kk") or ""
        out.append(Booth(str(ident), float(lat), float(lon), str(name)))
    if not out:
        msg = f"{p.name}: no booths (features with kind='booth')"
        raise ValueError(msg)
    return out


def write_booths(path: str | Path, booths: Iterable[Booth]) -> Path:
    """Write booths as GeoJSON Point features."""
    p = Path(path)
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [round(b.lon, 7), round(b.lat, 7)]},
            "properties": {"id": b.id, "kind": "booth", "name": b.name},
        }
        for b in booths
    ]
    p.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, indent=1))
    return p


_BOUNDS = re.compile(rb"<bounds\s+([^>]*)/?>")
_ATTR = re.compile(rb'(\w+)="([^"]*)"')


def read_osm_bounds(path: str | Path) -> tuple[float, float, float, float] | None:
    """``(min_lat, min_lon, max_lat, max_lon)`` of an OSM XML file's ``<bounds>``, if it has one."""
    p = Path(path)
    name = p.name.lower()
    if not name.endswith((".osm", ".osm.gz", ".xml", ".xml.gz")):
        return None
    opener = gzip.open if name.endswith(".gz") else open
    with opener(p, "rb") as f:
        head = f.read(65536)
    m = _BOUNDS.search(head)
    if not m:
        return None
    attrs = {
        k.decode(): float(v) for k, v in _ATTR.findall(m.group(1)) if k in (b"minlat", b"minlon", b"maxlat", b"maxlon")
    }
    if len(attrs) != 4:
        return None
    return attrs["minlat"], attrs["minlon"], attrs["maxlat"], attrs["maxlon"]


def write_geojson(path: str | Path, collection: dict[str, Any]) -> Path:
    """Write a GeoJSON FeatureCollection (UTF-8, Kazakh and Russian text kept as is)."""
    p = Path(path)
    p.write_text(json.dumps(collection, ensure_ascii=False), encoding="utf-8")
    return p


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file with a header row (UTF-8 with BOM, so spreadsheet programs read Cyrillic)."""
    p = Path(path)
    with p.open("w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return p


def write_gpx(
    path: str | Path,
    *,
    name: str,
    track: Sequence[tuple[float, float]],
    waypoints: Sequence[tuple[float, float, str, str, str]],
) -> Path:
    """Write a GPX 1.1 file: one track (``(lat, lon)`` points) and waypoints.

    ``waypoints`` are ``(lat, lon, name, description, time)`` with ``time`` in UTC ISO 8601
    (``2026-01-01T17:00:00Z``) or empty.
    """
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<gpx version="1.1" creator="Qorgau patrol planner" xmlns="http://www.topografix.com/GPX/1/1">',
        f"<metadata><name>{escape(name)}</name></metadata>",
    ]
    for lat, lon, wname, desc, time in waypoints:
        t = f"<time>{escape(time)}</time>" if time else ""
        out.append(
            f'<wpt lat="{lat:.7f}" lon="{lon:.7f}">{t}<name>{escape(wname)}</name><desc>{escape(desc)}</desc></wpt>'
        )
    out.append(f"<trk><name>{escape(name)}</name><trkseg>")
    out.extend(f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}"/>' for lat, lon in track)
    out.append("</trkseg></trk></gpx>")
    p = Path(path)
    p.write_text("\n".join(out) + "\n", encoding="utf-8")
    return p
