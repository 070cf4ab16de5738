"""One call from incidents to a plan: area filter, risk for the shift, routes, booth coverage."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from geo import StreetNetwork
from patrol_planner._graph import WalkGraph
from patrol_planner.area import within_area
from patrol_planner.coverage import BoothCoverage, booth_coverage
from patrol_planner.hotspots import DEFAULT_ESTIMATOR
from patrol_planner.incidents import DEFAULT_OFFICER_WEIGHT, Incidents, LoadReport, TrainingNote, training_incidents
from patrol_planner.io import Booth
from patrol_planner.routes import PatrolPlan, SolverSettings, plan_routes
from patrol_planner.shift import RiskMap, Shift, risk_map

__all__ = ["PlanBundle", "default_spot_count", "make_plan"]


@dataclass
class PlanBundle:
    """Everything a commander's outputs are made from."""

    plan: PatrolPlan
    risk: RiskMap
    coverage: BoothCoverage
    report: LoadReport
    incidents: Incidents
    booths: list[Booth]
    network: StreetNetwork
    synthetic: bool = False
    training: TrainingNote | None = None
    """What the risk was trained on (public reports; officer-discovered incidents down-weighted)."""

    @property
    def network_label(self) -> str:
        return self.network.label


def default_spot_count(patrols: int, shift: Shift, settings: SolverSettings) -> int:
    """Candidate hot spots: about twice what the patrols can visit once per block."""
    visits_per_patrol = shift.duration_s / (settings.dwell_s + 300.0)
    blocks = max(1, math.ceil(shift.duration_s / settings.revisit_s))
    return int(min(300, max(20, math.ceil(2 * patrols * visits_per_patrol / blocks))))


def make_plan(
    incidents: Incidents,
    graph: WalkGraph,
    booths: Sequence[Booth],
    shift: Shift,
    *,
    patrols: int,
    report: LoadReport | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
    cell_m: float = 100.0,
    n_spots: int | None = None,
    seed: int | None = None,
    settings: SolverSettings = SolverSettings(),  # noqa: B008 - a frozen dataclass: one shared default is safe
    bounds: tuple[float, float, float, float] | None = None,
    max_distance_m: float = 100.0,
    progress: Callable[[str], None] | None = None,
    officer_weight: float = DEFAULT_OFFICER_WEIGHT,
) -> PlanBundle:
    """Plan ``patrols`` foot patrols for ``shift`` from the incident history.

    Incidents farther than ``max_distance_m`` from a walkable street (or outside ``bounds``
    plus 100 m) are left out and counted in the returned report. The risk is trained on the
    incidents the public reported; officer-discovered ones count with ``officer_weight`` (0 by
    default: left out), the guard against the feedback loop of patrols finding crime where they go.
    """
    if incidents.timezone != shift.timezone:
        msg = f"incidents are in {incidents.timezone!r} local time but the shift is in {shift.timezone!r}"
        raise ValueError(msg)
    say = progress or (lambda _m: None)
    say("limiting incidents to the network's area")
    inc, rep = within_area(incidents, graph, bounds=bounds, max_distance_m=max_distance_m, report=report)
    if not len(inc):
        msg = f"no incidents within {max_distance_m:.0f} m of the network's streets ({rep.summary()})"
        raise ValueError(msg)
    train, note = training_incidents(inc, officer_weight=officer_weight)
    if not len(train):
        msg = (
            f"no incidents reported by the public to train on: all {note.officer:,} are officer-discovered "
            f"(flagged by {note.flagged_by}) and officer_weight is {officer_weight:g}; raise it to train on them"
        )
        raise ValueError(msg)
    say(f"estimating risk for {shift.label} ({estimator})")
    spots = n_spots or default_spot_count(patrols, shift, settings)
    risk = risk_map(
        train, graph, shift, estimator=estimator, cell_m=cell_m, n_spots=spots, revisit_s=settings.revisit_s
    )
    plan = plan_routes(
        graph,
        booths,
        risk.hotspots,
        shift,
        patrols=patrols,
        total_risk=risk.total_risk,
        seed=seed,
        settings=settings,
        progress=say,
    )
    say("booth coverage")
    cov = booth_coverage(graph, booths, inc, risk)
    return PlanBundle(plan, risk, cov, rep, inc, list(booths), graph.network, incidents.synthetic, note)
