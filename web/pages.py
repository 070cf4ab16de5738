"""The live map's pages and what they are made of: options, texts, the street basemap.

:class:`MapOptions` says how the map is served; :func:`map_catalogue` gives its texts in one of
:data:`LANGS` (``web/locales/map.<lang>.json``); :func:`street_layers` draws the city's streets
as the offline basemap. The routes are :mod:`web.routes.live_map`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dispatch.domain import Role
from geo import StreetNetwork

__all__ = [
    "LANGS",
    "MAP_ROLES",
    "Basemap",
    "MapOptions",
    "StreetBasemap",
    "map_catalogue",
    "plans_catalogue",
    "street_layers",
    "unit_catalogue",
    "utc_label",
]

LANGS = ("kk", "ru", "en")
_LOCALES = Path(__file__).with_name("locales")
MAP_ROLES = frozenset({Role.DISPATCHER, Role.COMMANDER, Role.VIEWER})
"""Who may open the live map."""
_MAJOR = frozenset({"motorway", "trunk", "primary", "secondary", "tertiary"})


def map_catalogue(lang: str) -> dict[str, str]:
    """The live map's texts in ``lang`` (``web/locales/map.<lang>.json``)."""
    if lang not in LANGS:
        msg = f"language must be one of {', '.join(LANGS)}, got {lang!r}"
        raise ValueError(msg)
    texts: dict[str, str] = json.loads((_LOCALES / f"map.{lang}.json").read_text(encoding="utf-8"))
    return texts


def unit_catalogue(lang: str) -> dict[str, str]:
    """The officer's handheld's texts in ``lang`` (``web/locales/unit.<lang>.json``)."""
    if lang not in LANGS:
        msg = f"language must be one of {', '.join(LANGS)}, got {lang!r}"
        raise ValueError(msg)
    texts: dict[str, str] = json.loads((_LOCALES / f"unit.{lang}.json").read_text(encoding="utf-8"))
    return texts


def plans_catalogue(lang: str) -> dict[str, str]:
    """The commander's plans console's texts in ``lang`` (``web/locales/plans.<lang>.json``)."""
    if lang not in LANGS:
        msg = f"language must be one of {', '.join(LANGS)}, got {lang!r}"
        raise ValueError(msg)
    texts: dict[str, str] = json.loads((_LOCALES / f"plans.{lang}.json").read_text(encoding="utf-8"))
    return texts


@dataclass(frozen=True, slots=True)
class MapOptions:
    """How the live map is served.

    Parameters
    ----------
    lang
        The page's default language (``?lang=`` overrides it per request).
    tile_url, tile_attribution
        A raster tile URL template (``https://tiles.example/{z}/{x}/{y}.png``) for control rooms
        with a tile server; None draws the city's own streets and needs nothing from outside.
    capacity
        Events kept for clients that reconnect; an older gap is healed with a fresh snapshot.
    heartbeat_s
        A comment line goes out on an idle stream this often, so dead connections are noticed.
    secure_cookie
        Set the cookie's ``Secure`` flag; None: when the request came over HTTPS.
    recent_hours
        Closed alerts received this recently are in the snapshot (for the status filter).
    """

    lang: str = "ru"
    tile_url: str | None = None
    tile_attribution: str = ""
    streets_attribution: str = ""
    """Credit shown with the city's own streets (e.g. "© OpenStreetMap contributors" for OSM data)."""
    capacity: int = 20_000
    heartbeat_s: float = 15.0
    secure_cookie: bool | None = None
    recent_hours: float = 24.0
    minor_streets_from_zoom: int = 14

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            msg = f"the map language must be one of {', '.join(LANGS)}, got {self.lang!r}"
            raise ValueError(msg)
        if self.capacity < 1:
            msg = f"capacity must be at least 1 event, got {self.capacity}"
            raise ValueError(msg)


# -- the street basemap -----------------------------------------------------------------------


def street_layers(network: StreetNetwork, *, decimals: int = 6) -> dict[str, Any]:
    """The streets as at most two MultiLineString features (``class``: ``major`` and ``minor``).

    Each street segment is drawn once (both directions of a two-way street are one), and lines run
    on through junctions, taking the straightest way on, so the basemap is a few long lines rather
    than one per segment.
    """
    u = network.seg_u
    v = network.seg_v
    lo = np.minimum(u, v)
    hi = np.maximum(u, v)
    major = np.isin(np.char.replace(network.seg_highway.astype(str), "_link", ""), list(_MAJOR))
    lat = np.round(network.node_lat, decimals)
    lon = np.round(network.node_lon, decimals)
    x = network.node_lon * math.cos(math.radians(float(np.median(network.node_lat))))
    y = network.node_lat
    features = []
    for cls, mask in (("major", major), ("minor", ~major)):
        if not mask.any():
            continue
        pairs = np.unique(np.stack([lo[mask], hi[mask]], axis=1), axis=0)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        if not len(pairs):
            continue
        free: dict[int, set[int]] = {}
        for a, b in pairs.tolist():
            free.setdefault(a, set()).add(b)
            free.setdefault(b, set()).add(a)

        lines: list[list[list[float]]] = []
        odd = [n for n, nbrs in free.items() if len(nbrs) % 2]
        for n in odd + list(free):  # lines start where streets end; then what is left is loops
            while free[n]:
                lines.append([[float(lon[i]), float(lat[i])] for i in _walk(free, x, y, n)])
        features.append(
            {
                "type": "Feature",
                "properties": {"class": cls, "lines": len(lines)},
                "geometry": {"type": "MultiLineString", "coordinates": lines},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _walk(free: dict[int, set[int]], x: NDArray[np.float64], y: NDArray[np.float64], start: int) -> list[int]:
    """One line from ``start``, taking the straightest way on at each node and using up the pairs it walks."""
    path = [start]
    here, dx, dy = start, 0.0, 0.0
    while free[here]:
        at = here
        best = max(free[at], key=lambda n: _cosine(dx, dy, x[n] - x[at], y[n] - y[at]))
        free[at].discard(best)
        free[best].discard(at)
        dx, dy = x[best] - x[at], y[best] - y[at]
        path.append(best)
        here = best
    return path


def _cosine(ax: float, ay: float, bx: float, by: float) -> float:
    norm = math.hypot(ax, ay) * math.hypot(bx, by)
    return 0.0 if norm == 0 else (ax * bx + ay * by) / norm


@dataclass(frozen=True, slots=True)
class Basemap:
    """The street basemap as sent: the GeoJSON, gzipped, and its ETag."""

    raw: bytes
    gzipped: bytes
    etag: str


class StreetBasemap:
    """The street basemap of one network, built on first use and kept (thread-safe)."""

    def __init__(self, network: StreetNetwork) -> None:
        self._network = network
        self._lock = threading.Lock()
        self._cached: Basemap | None = None

    def get(self) -> Basemap:
        with self._lock:
            if self._cached is None:
                raw = json.dumps(street_layers(self._network), separators=(",", ":")).encode()
                etag = '"' + hashlib.sha256(raw).hexdigest()[:20] + '"'
                self._cached = Basemap(raw, gzip.compress(raw, 6), etag)
            return self._cached


def utc_label(offset: timedelta, zone: str) -> str:
    """``UTC+5, Asia/Almaty``: how the map names the city's time."""
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return f"UTC{sign}{h}" + (f":{m:02d}" if m else "") + f", {zone}"
