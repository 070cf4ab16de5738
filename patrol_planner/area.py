"""The study area: incidents near the network's streets (and inside its extract's bounds)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from patrol_planner._graph import WalkGraph
from patrol_planner.incidents import Incidents, LoadReport

__all__ = ["within_area"]


def within_area(
    incidents: Incidents,
    graph: WalkGraph,
    *,
    max_distance_m: float = 100.0,
    bounds: tuple[float, float, float, float] | None = None,
    margin_m: float = 100.0,
    report: LoadReport | None = None,
) -> tuple[Incidents, LoadReport]:
    """Keep the incidents within ``max_distance_m`` of a walkable street of ``graph``.

    ``bounds`` (``min_lat, min_lon, max_lat, max_lon``, e.g. an OSM extract's ``<bounds>``)
    further limits them to that box plus ``margin_m``: outside the box an extract holds only the
    ways that cross it, so incidents there would sit on a network that is not really there.
    The returned report counts the others as ``outside_area``.
    """
    keep = np.ones(len(incidents), dtype=bool)
    if bounds is not None:
        min_lat, min_lon, max_lat, max_lon = bounds
        dlat = margin_m / 111_320.0
        dlon = margin_m / (111_320.0 * math.cos(math.radians((min_lat + max_lat) / 2)))
        keep &= (incidents.lat >= min_lat - dlat) & (incidents.lat <= max_lat + dlat)
        keep &= (incidents.lon >= min_lon - dlon) & (incidents.lon <= max_lon + dlon)
    idx = np.flatnonzero(keep)
    if idx.size:
        x, y = graph.network.to_xy(incidents.lat[idx], incidents.lon[idx])
        near = graph.snap_xy(x, y).distance_m <= max_distance_m
        keep[idx[~near]] = False
    kept = incidents.subset(keep)
    base = report or LoadReport(source=incidents.label, rows=len(incidents), kept=len(incidents))
    outside = int((~keep).sum())
    new = replace(
        base,
        kept=base.kept - outside,
        outside_area=base.outside_area + outside,
        month_only=int((~kept.hour_known).sum()),
    )
    return kept, new
