"""Patrol plans of the HTTP API: each runs in a background thread and is kept as files.

A plan is a folder ``<data dir>/<id>/`` holding the same files ``qorgau plan`` writes
(:mod:`web.plan_outputs`) plus ``status.json``, so plans survive a restart of the service. The
routes are :mod:`web.routes.plans`; the wiring builds one :class:`PlanJobs` per service.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from web.jobs import JobStore, new_job_id, run_job
from web.schemas import PlanRequest

if TYPE_CHECKING:  # the planner loads when a plan is made, not when the service starts
    from patrol_planner import Booth, WalkGraph

__all__ = ["PlanJobs", "PlanStore"]

log = logging.getLogger(__name__)


class PlanStore(JobStore):
    """Plans as folders of files; ``status.json`` says where each one is."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root, what="plan")


def _links(plan_id: str, files: list[str]) -> dict[str, Any]:
    base = f"/api/plans/{plan_id}"
    return {"self": base, "map": f"{base}/map", "files": {name: f"{base}/files/{name}" for name in files}}


def _run(
    store: PlanStore,
    plan_id: str,
    req: PlanRequest,
    graph: WalkGraph,
    booths: list[Booth],
    bounds: tuple[float, float, float, float] | None,
) -> None:
    from patrol_planner.io import read_incidents
    from patrol_planner.planner import make_plan
    from patrol_planner.routes import SolverSettings
    from patrol_planner.shift import Shift
    from web.plan_outputs import plan_summary, write_plan_outputs

    folder = store.folder(plan_id)

    def work() -> dict[str, Any]:
        path = folder / ("incidents.csv" if req.incidents_csv is not None else "incidents.geojson")
        incidents, report = read_incidents(path, timezone=req.timezone)
        on = req.date or datetime.now(ZoneInfo(req.timezone)).date()
        shift = Shift.parse(req.shift, on=on, timezone=req.timezone)
        settings = SolverSettings(iterations=req.iterations, time_limit_s=req.time_limit_s, dwell_s=req.dwell_min * 60)
        bundle = make_plan(
            incidents,
            graph,
            booths,
            shift,
            patrols=req.patrols,
            report=report,
            estimator=req.estimator,
            seed=req.seed,
            officer_weight=req.officer_weight,
            settings=settings,
            bounds=bounds,
        )
        files = write_plan_outputs(bundle, folder, lang=req.lang)
        window = {"start": shift.utc(0).isoformat(), "end": shift.utc(shift.duration_s).isoformat()}
        return {"summary": plan_summary(bundle), "links": _links(plan_id, sorted(files)), "shift_window": window}

    run_job(store, plan_id, work)


class PlanJobs:
    """Starts plans and keeps them.

    Parameters
    ----------
    graph
        The walking graph of the service's network (or a function that gives it, built lazily).
    data_dir
        Where plans are kept, one folder per plan (``QORGAU_PLANS_DIR``).
    booths
        Booths used when a request names none (the service's registry).
    bounds
        The network extract's ``<bounds>``, to keep incidents to where the network really is; or a
        function giving them, called once, when the first plan is made.
    """

    def __init__(
        self,
        *,
        graph: Callable[[], WalkGraph] | WalkGraph,
        data_dir: str | Path,
        booths: Callable[[], list[Booth]] | list[Booth] | None = None,
        bounds: tuple[float, float, float, float]
        | Callable[[], tuple[float, float, float, float] | None]
        | None = None,
    ) -> None:
        self.store = PlanStore(data_dir)
        self._graph = graph
        self._booths = booths
        self._bounds = bounds
        self._cached: WalkGraph | None = None
        self._by_speed: dict[float, WalkGraph] = {}
        self._lock = threading.Lock()

    def graph(self) -> WalkGraph:
        from patrol_planner import WalkGraph

        if isinstance(self._graph, WalkGraph):
            return self._graph
        with self._lock:
            if self._cached is None:
                self._cached = self._graph()
            return self._cached

    def graph_for(self, walk_speed_mps: float | None) -> WalkGraph:
        """The walking graph at ``walk_speed_mps`` (None: the service's own); the last two other speeds are kept."""
        base = self.graph()
        if walk_speed_mps is None or abs(walk_speed_mps - base.walk_speed_mps) < 1e-9:
            return base
        from geo import Router
        from patrol_planner import WalkGraph

        speed = round(float(walk_speed_mps), 3)
        with self._lock:
            graph = self._by_speed.get(speed)
            if graph is None:
                router = Router(base.network, max_snap_m=base.router.max_snap_m, walk_speed_mps=speed)
                graph = WalkGraph(router)
                self._by_speed = {**dict(list(self._by_speed.items())[-1:]), speed: graph}
            return graph

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        if callable(self._bounds):
            with self._lock:
                if callable(self._bounds):
                    self._bounds = self._bounds()
        return self._bounds

    def default_booths(self) -> list[Booth]:
        if self._booths is None:
            return []
        return list(self._booths() if callable(self._booths) else self._booths)

    def start(self, req: PlanRequest, booths: list[Booth], text: str, *, requested_by: str) -> str:
        """Keep the request and plan in a background thread; returns the plan's id."""
        plan_id = new_job_id()
        folder = self.store.folder(plan_id)
        folder.mkdir(parents=True)
        (folder / ("incidents.csv" if req.incidents_csv is not None else "incidents.geojson")).write_text(
            text, encoding="utf-8"
        )
        self.store.write_status(
            plan_id,
            id=plan_id,
            status="queued",
            requested_by=requested_by,
            requested_at=datetime.now(UTC).isoformat(),
            request=req.model_dump(mode="json", exclude={"incidents_csv", "incidents_geojson"}),
            booths=[{"id": b.id, "lat": b.lat, "lon": b.lon, "name": b.name} for b in booths],
        )
        threading.Thread(
            target=_run,
            args=(self.store, plan_id, req, self.graph_for(req.walk_speed_mps), booths, self.bounds),
            name=f"plan-{plan_id[:8]}",
            daemon=True,
        ).start()
        return plan_id
