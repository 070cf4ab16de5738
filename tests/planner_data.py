"""Shared, cached real data for the planner tests: Toronto incidents and the U of T street extract."""

from __future__ import annotations

from functools import lru_cache

from shared_data import TORONTO_CRIME, TORONTO_XML

from geo import Router, StreetNetwork, load_network
from patrol_planner import Incidents, LoadReport, WalkGraph, read_incidents, read_osm_bounds, within_area

TORONTO_TZ = "America/Toronto"


@lru_cache(maxsize=1)
def toronto_all() -> tuple[Incidents, LoadReport]:
    """All 210,992 Toronto MCI incidents (local Toronto time)."""
    return read_incidents(TORONTO_CRIME, timezone=TORONTO_TZ)


@lru_cache(maxsize=1)
def toronto_network() -> StreetNetwork:
    return load_network(TORONTO_XML)


@lru_cache(maxsize=1)
def toronto_graph() -> WalkGraph:
    return WalkGraph(Router(toronto_network()))


@lru_cache(maxsize=1)
def toronto_extract() -> tuple[Incidents, LoadReport]:
    """The incidents within 100 m of the street extract's <bounds> and near its walkable streets."""
    inc, report = toronto_all()
    return within_area(inc, toronto_graph(), bounds=read_osm_bounds(TORONTO_XML), report=report)
