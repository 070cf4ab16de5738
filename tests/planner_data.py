"""Shared, cached real data for the planner tests: Toronto incidents and the U of T street extract."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from shared_data import TORONTO_CRIME, TORONTO_XML

from geo import Router, StreetNetwork, load_network
from patrol_planner import Booth, Incidents, LoadReport, WalkGraph, read_incidents, read_osm_bounds, within_area
from patrol_planner.shift import RiskMap, Shift, risk_map

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


TORONTO_BOOTHS = [
    # amenity=police in the extract (osm/PROVENANCE.md): 40 College St and 21 Sussex Ave.
    Booth("tps-hq", 43.6616, -79.3866, "Toronto Police Headquarters"),
    Booth("uoft-campus", 43.66487, -79.40098, "University of Toronto Campus Police"),
]

NIGHT = "22:00-06:00"


def toronto_night(on: date = date(2022, 1, 7)) -> Shift:
    return Shift.parse(NIGHT, on=on, timezone=TORONTO_TZ)


@lru_cache(maxsize=4)
def toronto_risk(shift_text: str = NIGHT, n_spots: int = 40) -> RiskMap:
    inc, _ = toronto_extract()
    shift = Shift.parse(shift_text, on=date(2022, 1, 7), timezone=TORONTO_TZ)
    return risk_map(inc, toronto_graph(), shift, n_spots=n_spots)
