"""geo: street networks, snapping, and every graph search and distance of Qorgau.

The room that answers "how long does it take this unit to get there, on real streets?" and "what
is within ten minutes' walk of here?". It reads street networks from files the caller names (OSM
XML, OSM PBF, osmnx GraphML) or generates a synthetic city, snaps WGS 84 points onto the streets,
ranks units by ETA, and answers the planner's many-to-many travel times and paths. Every shortest
path search, every snapper and the one great-circle formula live here and nowhere else. It performs
no other I/O and imports nothing else of Qorgau.

Public names::

    net = load_network("almaty.osm.pbf")          # or .osm / .osm.gz / .graphml(.gz)
    net = generate_city(n_nodes=10_000, seed=1)   # synthetic, net.label says so
    router = Router(net, max_snap_m=500.0, walk_speed_mps=1.4)
    router.place_unit("booth-1", "booth", lat, lon)   # add or move a unit
    router.remove_unit("booth-1")                     # no longer recommendable
    router.recommend(lat, lon, k=3)  # -> [Recommendation(unit_id, unit_kind, eta_s, distance_m)]
    g = router.graph("walk")                          # a ModeGraph: CSR arrays, segments, grid
    g.snap_many(x, y)                                 # -> SegmentSnaps(segment, fraction, distance_m)
    travel_times(g, sources, targets, cutoff_s=900)   # (S, T) seconds, inf beyond the cutoff
    reachable(g, sources, cutoff_s=600)               # (group, node, time_s) within the cutoff
    shortest_paths(g, [(a, b)])                       # [[a, ..., b]]
    great_circle_m(lat1, lon1, lat2, lon2)            # metres, scalars or arrays
"""

from __future__ import annotations

from geo.distance import great_circle_m
from geo.graph import Mode, ModeGraph, SegmentSnaps
from geo.load import load_network
from geo.network import StreetNetwork
from geo.routing import OutsideServiceArea, Recommendation, Router, Snap
from geo.synthetic import generate_city
from geo.travel import reachable, shortest_paths, travel_times

__all__ = [
    "Mode",
    "ModeGraph",
    "OutsideServiceArea",
    "Recommendation",
    "Router",
    "SegmentSnaps",
    "Snap",
    "StreetNetwork",
    "generate_city",
    "great_circle_m",
    "load_network",
    "reachable",
    "shortest_paths",
    "travel_times",
]
