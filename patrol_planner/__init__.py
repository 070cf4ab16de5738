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

    # Where new booths should go (MCLP with the existing booths kept; ``qorgau sites``):
    result = run_siting(SitingRequest(network=..., existing=..., add=170, walk_min=10, incidents=...))
    cov = coverage_matrix(graph, d_lat, d_lon, s_lat, s_lon, walk_min=10)   # sparse (demand, sites)
    sol = solve_mclp(weights, cov, existing_idx, add=170, time_limit_s=60)  # .added, .status, .gap
    areas = walking_areas(router, sites, [5, 10])                           # {minutes: geometry}
"""

from __future__ import annotations

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
from patrol_planner.siting import MCLPSolution, best_moves, build_order, covered_weight, greedy, run_siting, solve_mclp
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
