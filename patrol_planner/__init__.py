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
from patrol_planner.synthetic import self_exciting_incidents

__all__ = [
    "COVERAGES",
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "Booth",
    "BoothCoverage",
    "Evaluation",
    "Grid",
    "HotSpot",
    "Incidents",
    "LoadReport",
    "PatrolPlan",
    "PatrolRoute",
    "PlanBundle",
    "RiskMap",
    "Shift",
    "SolverSettings",
    "Stop",
    "Surface",
    "WalkGraph",
    "booth_coverage",
    "evaluate",
    "greedy_routes",
    "hours_mask",
    "make_estimator",
    "make_plan",
    "parse_hours",
    "plan_routes",
    "read_booths",
    "read_incidents",
    "read_osm_bounds",
    "risk_map",
    "self_exciting_incidents",
    "within_area",
    "write_booths",
]
