"""patrol_planner: from crime history to foot-patrol routes (hotspots, evaluation, routes, coverage).

The commander's room. It reads incidents, estimates where and when crime concentrates, checks
the estimators against history, and plans walking routes for foot patrols on the street graphs
of :mod:`geo`. The algorithms do no I/O; :mod:`patrol_planner.io` reads and writes files.

Public names::

    incidents, report = read_incidents("incidents.csv", timezone="Asia/Almaty")
    graph = WalkGraph(Router(network))
    incidents, report = within_area(incidents, graph, report=report)
    evaluation = evaluate(incidents, graph=graph, n_windows=12)   # .as_dict(), .table()
    shift = Shift.parse("22:00-06:00", on=date(2026, 3, 9), timezone="Asia/Almaty")
    bundle = make_plan(incidents, graph, read_booths("booths.geojson"), shift, patrols=6, seed=17)
    bundle.plan.routes    # -> [PatrolRoute(patrol_id, booth, stops=[Stop(...)], length_m, walking_s, path)]
    bundle.coverage       # -> BoothCoverage(risk_share, incident_share, uncovered)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patrol_planner._graph import WalkGraph
    from patrol_planner.area import within_area
    from patrol_planner.coverage import BoothCoverage, booth_coverage
    from patrol_planner.evaluation import COVERAGES, Evaluation, evaluate
    from patrol_planner.hotspots import DEFAULT_ESTIMATOR, ESTIMATORS, Grid, Surface, make_estimator
    from patrol_planner.incidents import Incidents, LoadReport, hours_mask, parse_hours
    from patrol_planner.io import Booth, read_booths, read_incidents, read_osm_bounds, write_booths
    from patrol_planner.planner import PlanBundle, make_plan
    from patrol_planner.routes import PatrolPlan, PatrolRoute, SolverSettings, Stop, greedy_routes, plan_routes
    from patrol_planner.shift import HotSpot, RiskMap, Shift, risk_map
    from patrol_planner.siting import (
        MCLPSolution,
        best_moves,
        build_order,
        covered_weight,
        greedy,
        run_siting,
        solve_mclp,
    )
    from patrol_planner.siting_data import (
        Demand,
        District,
        coverage_matrix,
        default_candidates,
        demand_from_incidents,
        demand_from_points,
        district_index,
        read_districts,
        read_points,
        walking_areas,
    )
    from patrol_planner.siting_types import AddedSite, DistrictCoverage, Move, SiteFeature, SitingRequest, SitingResult
    from patrol_planner.synthetic import self_exciting_incidents

__all__ = [
    "COVERAGES",
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "AddedSite",
    "Booth",
    "BoothCoverage",
    "Demand",
    "District",
    "DistrictCoverage",
    "Evaluation",
    "Grid",
    "HotSpot",
    "Incidents",
    "LoadReport",
    "MCLPSolution",
    "Move",
    "PatrolPlan",
    "PatrolRoute",
    "PlanBundle",
    "RiskMap",
    "Shift",
    "SiteFeature",
    "SitingRequest",
    "SitingResult",
    "SolverSettings",
    "Stop",
    "Surface",
    "WalkGraph",
    "best_moves",
    "booth_coverage",
    "build_order",
    "coverage_matrix",
    "covered_weight",
    "default_candidates",
    "demand_from_incidents",
    "demand_from_points",
    "district_index",
    "evaluate",
    "greedy",
    "greedy_routes",
    "hours_mask",
    "make_estimator",
    "make_plan",
    "parse_hours",
    "plan_routes",
    "read_booths",
    "read_districts",
    "read_incidents",
    "read_osm_bounds",
    "read_points",
    "risk_map",
    "run_siting",
    "self_exciting_incidents",
    "solve_mclp",
    "walking_areas",
    "within_area",
    "write_booths",
]

_HOMES = {
    "Booth": "patrol_planner.io",
    "BoothCoverage": "patrol_planner.coverage",
    "COVERAGES": "patrol_planner.evaluation",
    "DEFAULT_ESTIMATOR": "patrol_planner.hotspots",
    "ESTIMATORS": "patrol_planner.hotspots",
    "Evaluation": "patrol_planner.evaluation",
    "Grid": "patrol_planner.hotspots",
    "HotSpot": "patrol_planner.shift",
    "Incidents": "patrol_planner.incidents",
    "LoadReport": "patrol_planner.incidents",
    "PatrolPlan": "patrol_planner.routes",
    "PatrolRoute": "patrol_planner.routes",
    "PlanBundle": "patrol_planner.planner",
    "RiskMap": "patrol_planner.shift",
    "Shift": "patrol_planner.shift",
    "SolverSettings": "patrol_planner.routes",
    "Stop": "patrol_planner.routes",
    "Surface": "patrol_planner.hotspots",
    "WalkGraph": "patrol_planner._graph",
    "booth_coverage": "patrol_planner.coverage",
    "evaluate": "patrol_planner.evaluation",
    "greedy_routes": "patrol_planner.routes",
    "hours_mask": "patrol_planner.incidents",
    "make_estimator": "patrol_planner.hotspots",
    "make_plan": "patrol_planner.planner",
    "parse_hours": "patrol_planner.incidents",
    "plan_routes": "patrol_planner.routes",
    "read_booths": "patrol_planner.io",
    "read_incidents": "patrol_planner.io",
    "read_osm_bounds": "patrol_planner.io",
    "risk_map": "patrol_planner.shift",
    "self_exciting_incidents": "patrol_planner.synthetic",
    "within_area": "patrol_planner.area",
    "write_booths": "patrol_planner.io",
    "MCLPSolution": "patrol_planner.siting",
    "best_moves": "patrol_planner.siting",
    "build_order": "patrol_planner.siting",
    "covered_weight": "patrol_planner.siting",
    "greedy": "patrol_planner.siting",
    "run_siting": "patrol_planner.siting",
    "solve_mclp": "patrol_planner.siting",
    "Demand": "patrol_planner.siting_data",
    "District": "patrol_planner.siting_data",
    "coverage_matrix": "patrol_planner.siting_data",
    "default_candidates": "patrol_planner.siting_data",
    "demand_from_incidents": "patrol_planner.siting_data",
    "demand_from_points": "patrol_planner.siting_data",
    "district_index": "patrol_planner.siting_data",
    "read_districts": "patrol_planner.siting_data",
    "read_points": "patrol_planner.siting_data",
    "walking_areas": "patrol_planner.siting_data",
    "AddedSite": "patrol_planner.siting_types",
    "DistrictCoverage": "patrol_planner.siting_types",
    "Move": "patrol_planner.siting_types",
    "SiteFeature": "patrol_planner.siting_types",
    "SitingRequest": "patrol_planner.siting_types",
    "SitingResult": "patrol_planner.siting_types",
}


def __getattr__(name: str) -> Any:
    """Import the public names on first use: ``qorgau serve`` reaches the planner's small modules
    (the walk graph, the estimators' names) without loading pandas and scipy's signal stack,
    which only a plan needs."""
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'patrol_planner' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
