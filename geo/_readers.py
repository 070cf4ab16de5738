"""File readers for street networks: OSM XML/PBF through pyosmium, GraphML through osmnx.

Used by :func:`geo.load.load_network`; it imports :mod:`geo.network`, never the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np

from geo.network import StreetNetwork, drive_allowed, drive_speed_kmh, oneway_direction, walk_allowed

__all__ = ["read_graphml", "read_osm"]


def read_osm(path: Path, *, label: str) -> StreetNetwork:
    """Read highway ways from OSM XML (plain, gz, bz2) or PBF with pyosmium.

    Node locations come from pyosmium's location cache; a way node whose location is missing
    (a clipped extract) yields ``None`` and breaks the way there.
    """
    import osmium

    ways = []
    processor = (
        osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
        .with_locations()
        .with_filter(osmium.filter.KeyFilter("highway"))
    )
    for obj in processor:
        if not isinstance(obj, osmium.osm.Way):  # what obj.is_way() tests, in a form mypy narrows on
            continue
        nodes: list[tuple[int, float, float] | None] = []
        for ref in obj.nodes:
            loc = ref.location
            nodes.append((ref.ref, loc.lat, loc.lon) if loc.valid() else None)
        ways.append((dict(obj.tags), nodes))
    return _segments_from_ways(ways, label=label)


def read_graphml(path: Path, *, label: str) -> StreetNetwork:
    """Read an osmnx GraphML file (plain or gzip) into straight segments.

    Each directed edge becomes a chain of segments along its geometry (or a straight one). A car
    may use a segment only in the edge's direction: osmnx stores a two-way street as two edges.
    Walking ignores direction, so a two-way street appears twice for pedestrians, which changes
    no travel time.
    """
    import osmnx as ox

    graph = ox.load_graphml(path)
    node_id = {n: i for i, n in enumerate(graph.nodes)}
    lat = [float(d["y"]) for _, d in graph.nodes(data=True)]
    lon = [float(d["x"]) for _, d in graph.nodes(data=True)]
    osm_ids = [int(n) if str(n).lstrip("-").isdigit() else -1 for n in graph.nodes]
    u: list[int] = []
    v: list[int] = []
    hw: list[str] = []
    speed: list[float] = []
    walk: list[bool] = []
    drive: list[bool] = []
    names: list[str] = []
    for a, b, data in graph.edges(data=True):
        raw_name = data.get("name") or ""
        street = str(raw_name[0] if isinstance(raw_name, list) else raw_name)
        highway = data.get("highway", "road")
        if isinstance(highway, list):
            # osmnx merged ways of several types into one edge: it is drivable if any part is.
            highway = next((h for h in highway if drive_allowed({"highway": h})), highway[0])
        tags = {"highway": str(highway)}
        if data.get("maxspeed"):
            ms = data["maxspeed"]
            tags["maxspeed"] = str(ms[0] if isinstance(ms, list) else ms)
        kmh = drive_speed_kmh(tags)
        chain = [node_id[a]]
        geom = data.get("geometry")
        if geom is not None:
            coords = list(geom.coords)[1:-1]
            for x, y in coords:
                chain.append(len(lat))
                lat.append(float(y))
                lon.append(float(x))
                osm_ids.append(-1)
        chain.append(node_id[b])
        for p, q in pairwise(chain):
            if p == q:
                continue
            u.append(p)
            v.append(q)
            hw.append(str(highway))
            speed.append(kmh)
            walk.append(walk_allowed(tags) or not drive_allowed(tags))
            drive.append(drive_allowed(tags))
            names.append(street)
    return StreetNetwork.from_arrays(
        lat,
        lon,
        u,
        v,
        np.array(hw, dtype=object),
        oneway=np.ones(len(u), dtype=bool),
        maxspeed_kmh=speed,
        walk=walk,
        drive=drive,
        label=label,
        node_osm_id=osm_ids,
        name=np.array(names, dtype=object),
    )


def _segments_from_ways(
    ways: Sequence[tuple[dict[str, str], list[tuple[int, float, float] | None]]],
    *,
    label: str,
) -> StreetNetwork:
    """Assemble a network from ways given as (tags, [(node_id, lat, lon) or None if missing]).

    Runs of existing nodes become segments; a missing node (a clipped extract) breaks the run.
    Ways neither walkable nor drivable are skipped.
    """
    node_index: dict[int, int] = {}
    lats: list[float] = []
    lons: list[float] = []
    ids: list[int] = []
    u: list[int] = []
    v: list[int] = []
    hw: list[str] = []
    walk: list[bool] = []
    drive: list[bool] = []
    oneway: list[bool] = []
    speed: list[float] = []
    names: list[str] = []
    for tags, nodes in ways:
        can_walk, can_drive = walk_allowed(tags), drive_allowed(tags)
        if not (can_walk or can_drive):
            continue
        direction = oneway_direction(tags) if can_drive else 0
        kmh = drive_speed_kmh(tags)
        highway = tags.get("highway", "")
        street = tags.get("name", "")
        prev: int | None = None
        for node in nodes:
            if node is None:
                prev = None
                continue
            osm_id, lat, lon = node
            idx = node_index.get(osm_id)
            if idx is None:
                idx = len(lats)
                node_index[osm_id] = idx
                lats.append(lat)
                lons.append(lon)
                ids.append(osm_id)
            if prev is not None and prev != idx:
                a, b = (idx, prev) if direction < 0 else (prev, idx)
                u.append(a)
                v.append(b)
                hw.append(highway)
                walk.append(can_walk)
                drive.append(can_drive)
                oneway.append(direction != 0)
                speed.append(kmh)
                names.append(street)
            prev = idx
    if not u:
        msg = f"{label!r} holds no walkable or drivable streets"
        raise ValueError(msg)
    return StreetNetwork.from_arrays(
        lats,
        lons,
        u,
        v,
        np.array(hw, dtype=object),
        oneway=oneway,
        maxspeed_kmh=speed,
        walk=walk,
        drive=drive,
        label=label,
        node_osm_id=ids,
        name=np.array(names, dtype=object),
    )
