"""Street networks as flat arrays: nodes in WGS 84 and a metric UTM plane, segments with tags.

A :class:`StreetNetwork` keeps every street as straight two-node *segments* (the pieces between
consecutive OSM way nodes), so a point can be snapped onto a street and split exactly, and a
segment's length is its metric length. Which segments a pedestrian or a car may use, and how fast,
is decided here from OSM tags (:func:`walk_allowed`, :func:`drive_allowed`, :func:`drive_speed_kmh`).
Files are read by :func:`geo.load.load_network`; this module imports nothing else of geo.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import CRS, Transformer

__all__ = [
    "DEFAULT_SPEEDS_KMH",
    "StreetNetwork",
    "drive_allowed",
    "drive_speed_kmh",
    "is_bridge",
    "is_tunnel",
    "utm_crs_for",
    "walk_allowed",
]

#: Driving speed by ``highway`` type when a way has no usable ``maxspeed`` (km/h). The urban
#: limit in Kazakhstan is 60 km/h; these are typical free-flow speeds below it for lesser roads.
DEFAULT_SPEEDS_KMH: dict[str, float] = {
    "motorway": 90.0,
    "motorway_link": 60.0,
    "trunk": 70.0,
    "trunk_link": 50.0,
    "primary": 60.0,
    "primary_link": 45.0,
    "secondary": 50.0,
    "secondary_link": 40.0,
    "tertiary": 40.0,
    "tertiary_link": 35.0,
    "unclassified": 35.0,
    "road": 35.0,
    "residential": 30.0,
    "living_street": 20.0,
    "service": 20.0,
}

_NOT_WALKABLE = frozenset(
    {
        "motorway",
        "motorway_link",
        "construction",
        "proposed",
        "abandoned",
        "razed",
        "raceway",
        "bus_guideway",
        "busway",
        "escape",
        "platform",
        "elevator",
        "corridor",
        "no",
    }
)
_NO = frozenset({"no", "private"})

# Named limits seen in OSM for Kazakhstan and Russia ("RU:urban", "KZ:rural", ...).
_ZONE_SPEEDS_KMH = {"urban": 60.0, "rural": 90.0, "living_street": 20.0, "motorway": 110.0}


def walk_allowed(tags: dict[str, str]) -> bool:
    """Whether a pedestrian (a foot patrol) may use a way with these OSM tags."""
    highway = tags.get("highway")
    if not highway or highway in _NOT_WALKABLE:
        return False
    if tags.get("foot") in _NO:
        return False
    if tags.get("access") in _NO and tags.get("foot") not in {"yes", "designated", "permissive"}:
        return False
    return tags.get("area") != "yes"


def drive_allowed(tags: dict[str, str]) -> bool:
    """Whether a patrol car may use a way with these OSM tags."""
    if tags.get("highway") not in DEFAULT_SPEEDS_KMH:
        return False
    if tags.get("motor_vehicle") in _NO or tags.get("motorcar") in _NO:
        return False
    if tags.get("access") in _NO and tags.get("motor_vehicle") not in {"yes", "designated"}:
        return False
    return tags.get("area") != "yes"


def drive_speed_kmh(tags: dict[str, str]) -> float:
    """Driving speed from ``maxspeed`` ("60", "30 mph", "RU:urban") or the road type's default."""
    default = DEFAULT_SPEEDS_KMH.get(tags.get("highway", ""), 30.0)
    raw = (tags.get("maxspeed") or "").strip().lower()
    if not raw:
        return default
    for zone, speed in _ZONE_SPEEDS_KMH.items():
        if raw.endswith(":" + zone):
            return speed
    match = re.match(r"^(\d+(?:\.\d+)?)\s*(mph|km/h|kmh|kph)?", raw.split(";")[0])
    if not match:
        return default
    value = float(match.group(1)) * (1.609344 if match.group(2) == "mph" else 1.0)
    return value if 5.0 <= value <= 150.0 else default


def is_tunnel(tags: dict[str, str]) -> bool:
    """Whether a way runs underground or through a building (``tunnel=yes``, ``building_passage``, ...)."""
    return tags.get("tunnel", "no").strip().lower() not in {"", "no"}


def is_bridge(tags: dict[str, str]) -> bool:
    """Whether a way is on a bridge (``bridge=yes``, ``viaduct``, ...)."""
    return tags.get("bridge", "no").strip().lower() not in {"", "no"}


def oneway_direction(tags: dict[str, str]) -> int:
    """+1 one-way along the way's node order, -1 against it, 0 two-way (for cars)."""
    value = tags.get("oneway", "").lower()
    if value in {"yes", "true", "1"}:
        return 1
    if value in {"-1", "reverse"}:
        return -1
    if value in {"no", "false", "0"}:
        return 0
    if tags.get("junction") in {"roundabout", "circular"} or tags.get("highway") == "motorway":
        return 1
    return 0


def _names(name: ArrayLike | None, m: int) -> NDArray[np.str_] | None:
    if name is None:
        return None
    names = np.asarray(["" if n is None else str(n).strip() for n in np.asarray(name, dtype=object)], dtype=str)
    if names.size != m:
        msg = f"name must give one street name per segment: {m} segments, {names.size} names"
        raise ValueError(msg)
    return names


def utm_crs_for(lat: float, lon: float) -> CRS:
    """The UTM zone CRS (WGS 84) that holds a point: Almaty is 43N (EPSG:32643)."""
    zone = math.floor((lon + 180.0) / 6.0) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


@dataclass(eq=False)
class StreetNetwork:
    """Streets as nodes and straight segments, in WGS 84 and in the city's UTM zone.

    Segment ``i`` joins ``seg_u[i]`` to ``seg_v[i]``; for cars it is one-way from ``u`` to ``v``
    where ``seg_oneway[i]`` is true; ``seg_tunnel``/``seg_bridge`` mark segments of ways tagged as
    tunnels or bridges (all false when the source does not say). Build one with :meth:`from_arrays`, :func:`geo.load_network` or
    :func:`geo.generate_city`.
    """

    label: str
    node_lat: NDArray[np.float64]
    node_lon: NDArray[np.float64]
    node_x: NDArray[np.float64]
    node_y: NDArray[np.float64]
    crs: CRS
    seg_u: NDArray[np.int64]
    seg_v: NDArray[np.int64]
    seg_length_m: NDArray[np.float64]
    seg_highway: NDArray[np.str_]
    seg_walk: NDArray[np.bool_]
    seg_drive: NDArray[np.bool_]
    seg_oneway: NDArray[np.bool_]
    seg_speed_kmh: NDArray[np.float64]
    node_osm_id: NDArray[np.int64] | None = None
    seg_tunnel: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    seg_bridge: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    seg_name: NDArray[np.str_] | None = None
    """Each segment's street name (its way's OSM ``name`` tag, ``""`` where it has none); None: unknown."""
    mode_components: dict[str, NDArray[np.int32]] = field(default_factory=dict, repr=False)
    """Derived from the arrays above: per mode, :meth:`components` as already computed (the network cache
    keeps them, so a replica's start needs no scipy); a mode not here is computed when asked."""
    _to_xy: Transformer = field(init=False, repr=False)
    _to_lonlat: Transformer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("seg_tunnel", "seg_bridge"):
            flags = np.asarray(getattr(self, name), dtype=bool)
            if flags.size == 0:
                flags = np.zeros(self.seg_u.size, dtype=bool)
            elif flags.size != self.seg_u.size:
                msg = f"{name} has {flags.size} values for {self.seg_u.size} segments"
                raise ValueError(msg)
            setattr(self, name, flags)
        self._to_xy = Transformer.from_crs(4326, self.crs, always_xy=True)
        self._to_lonlat = Transformer.from_crs(self.crs, 4326, always_xy=True)

    @classmethod
    def from_arrays(
        cls,
        lat: ArrayLike,
        lon: ArrayLike,
        u: ArrayLike,
        v: ArrayLike,
        highway: ArrayLike | str = "residential",
        *,
        oneway: ArrayLike | None = None,
        maxspeed_kmh: ArrayLike | None = None,
        walk: ArrayLike | None = None,
        drive: ArrayLike | None = None,
        label: str = "street network",
        node_osm_id: ArrayLike | None = None,
        tunnel: ArrayLike | None = None,
        bridge: ArrayLike | None = None,
        name: ArrayLike | None = None,
    ) -> StreetNetwork:
        """Build a network from node coordinates and segment endpoints (indices into the nodes).

        ``walk``/``drive``/``maxspeed_kmh`` default to what the ``highway`` type implies;
        ``tunnel``/``bridge`` (one flag per segment) to false; ``name`` is each segment's street
        name (``""`` for none).
        """
        lat_a = np.asarray(lat, dtype=np.float64)
        lon_a = np.asarray(lon, dtype=np.float64)
        if lat_a.shape != lon_a.shape or lat_a.ndim != 1 or lat_a.size == 0:
            msg = f"lat and lon must be equal-length non-empty 1-d arrays, got {lat_a.shape} and {lon_a.shape}"
            raise ValueError(msg)
        u_a = np.asarray(u, dtype=np.int64)
        v_a = np.asarray(v, dtype=np.int64)
        m = u_a.size
        if v_a.size != m or m == 0:
            msg = f"u and v must be equal-length and non-empty, got {u_a.size} and {v_a.size}"
            raise ValueError(msg)
        if u_a.min() < 0 or max(u_a.max(), v_a.max()) >= lat_a.size:
            msg = f"segment endpoints must index the {lat_a.size} nodes"
            raise ValueError(msg)
        hw = np.full(m, highway, dtype=object) if isinstance(highway, str) else np.asarray(highway, dtype=object)
        tags = [{"highway": h} for h in hw]
        walk_a = np.array([walk_allowed(t) for t in tags]) if walk is None else np.asarray(walk, dtype=bool)
        drive_a = np.array([drive_allowed(t) for t in tags]) if drive is None else np.asarray(drive, dtype=bool)
        speed = (
            np.array([drive_speed_kmh(t) for t in tags])
            if maxspeed_kmh is None
            else np.asarray(maxspeed_kmh, dtype=np.float64)
        )
        one = np.zeros(m, dtype=bool) if oneway is None else np.asarray(oneway, dtype=bool)
        crs = utm_crs_for(float(np.median(lat_a)), float(np.median(lon_a)))
        x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(lon_a, lat_a)
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        length = np.hypot(x[u_a] - x[v_a], y[u_a] - y[v_a])
        return cls(
            label=label,
            node_lat=lat_a,
            node_lon=lon_a,
            node_x=x,
            node_y=y,
            crs=crs,
            seg_u=u_a,
            seg_v=v_a,
            seg_length_m=length,
            seg_highway=hw.astype(str),
            seg_walk=walk_a,
            seg_drive=drive_a,
            seg_oneway=one,
            seg_speed_kmh=speed,
            node_osm_id=None if node_osm_id is None else np.asarray(node_osm_id, dtype=np.int64),
            seg_tunnel=np.zeros(m, dtype=bool) if tunnel is None else np.asarray(tunnel, dtype=bool),
            seg_bridge=np.zeros(m, dtype=bool) if bridge is None else np.asarray(bridge, dtype=bool),
            seg_name=_names(name, m),
        )

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self.node_lat.size)

    @property
    def n_segments(self) -> int:
        """Number of straight segments."""
        return int(self.seg_u.size)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(min_lat, min_lon, max_lat, max_lon)`` of the nodes."""
        return (
            float(self.node_lat.min()),
            float(self.node_lon.min()),
            float(self.node_lat.max()),
            float(self.node_lon.max()),
        )

    @property
    def center(self) -> tuple[float, float]:
        """``(lat, lon)`` of the median node: a sensible map centre."""
        return float(np.median(self.node_lat)), float(np.median(self.node_lon))

    def components(self, mode: str) -> NDArray[np.int32]:
        """Each node's connected component over the segments ``mode`` (``walk``/``drive``) may use.

        Weakly connected for ``walk`` (every segment both ways), strongly for ``drive`` (one-ways
        respected): the labels of scipy's ``connected_components``, from :attr:`mode_components`
        when known (scipy is imported only to compute them).
        """
        if mode not in ("walk", "drive"):
            msg = f"unknown mode {mode!r}; expected 'walk' or 'drive'"
            raise ValueError(msg)
        known = self.mode_components.get(mode)
        if known is not None and known.shape == (self.n_nodes,):
            return known
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        usable = self.seg_walk if mode == "walk" else self.seg_drive
        u, v = self.seg_u[usable], self.seg_v[usable]
        back = np.ones(u.size, dtype=bool) if mode == "walk" else ~self.seg_oneway[usable]
        src = np.concatenate([u, v[back]])
        dst = np.concatenate([v, u[back]])
        n = self.n_nodes
        adjacency = coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n)).tocsr()
        _, labels = connected_components(adjacency, directed=True, connection="weak" if mode == "walk" else "strong")
        return np.asarray(labels, dtype=np.int32)

    def to_xy(self, lat: ArrayLike, lon: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Project WGS 84 lat/lon to the network's metric plane."""
        x, y = self._to_xy.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        return np.asarray(x), np.asarray(y)

    def project_point(self, lat: float, lon: float) -> tuple[float, float]:
        """Project one WGS 84 point to ``(x, y)`` metres (the scalar fast path of :meth:`to_xy`)."""
        return self._to_xy.transform(lon, lat)

    def unproject_point(self, x: float, y: float) -> tuple[float, float]:
        """Project one metric point back to ``(lat, lon)``."""
        lon, lat = self._to_lonlat.transform(x, y)
        return lat, lon

    def to_latlon(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Project metric coordinates back to WGS 84 ``(lat, lon)``."""
        lon, lat = self._to_lonlat.transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        return np.asarray(lat), np.asarray(lon)

    def segments_geojson(self, *, mode: str | None = None) -> dict[str, Any]:
        """The segments as a GeoJSON FeatureCollection of LineStrings (for maps)."""
        mask = np.ones(self.n_segments, dtype=bool)
        if mode == "walk":
            mask = self.seg_walk
        elif mode == "drive":
            mask = self.seg_drive
        features = []
        for i in np.flatnonzero(mask):
            u, v = int(self.seg_u[i]), int(self.seg_v[i])
            features.append(
                {
                    "type": "Feature",
                    "geometry": {
                        "type": "LineString",
                        "coordinates": [
                            [float(self.node_lon[u]), float(self.node_lat[u])],
                            [float(self.node_lon[v]), float(self.node_lat[v])],
                        ],
                    },
                    "properties": {"highway": str(self.seg_highway[i])},
                }
            )
        return {"type": "FeatureCollection", "features": features}
