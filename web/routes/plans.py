"""``POST /api/plans`` and ``GET /api/plans/{id}``: patrol plans through the HTTP API (commander role).

A plan runs in a background thread and is kept as files (:class:`~web.plan_jobs.PlanJobs`), so
plans survive a restart of the service. The app includes this router when the wiring gives it
plans (:func:`web.create_app`, ``plans=``); a test app may override :func:`web.deps.plans`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse

from dispatch.domain import Alert
from web.deps import Commander, MaybeServiceDep, PlansDep, ServiceDep
from web.plan_issue import issue_plan
from web.schemas import PlanIssueIn, PlanRequest

__all__ = ["MAX_INCIDENTS_BYTES", "router"]

_FILE = re.compile(r"^(plan\.(html|md|csv)|routes\.geojson|summary\.json|patrol_P\d{2,3}\.gpx)$")
MAX_INCIDENTS_BYTES = 50 * 1024 * 1024

router = APIRouter(prefix="/api/plans", tags=["plans"])


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def create_plan(req: PlanRequest, jobs: PlansDep, service: MaybeServiceDep, who: Commander) -> dict[str, Any]:
    """Start planning; poll ``GET /api/plans/{id}`` until ``status`` is ``done`` or ``failed``."""
    given = [x is not None for x in (req.incidents_csv, req.incidents_geojson, req.history)]
    if sum(given) != 1:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail="give exactly one of incidents_csv, incidents_geojson or history",
        )
    from patrol_planner import Booth  # the planner loads with the first plan, not with the service

    if req.history is not None:
        if service is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail="no dispatch service here to plan from its history"
            )
        since, until = req.history.since, req.history.until or datetime.now(UTC)
        if until <= since:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="history: until must be after since")
        alerts = service.incident_history(since, until)
        if not alerts:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                detail=f"no SOS presses or 102 reports from {since.isoformat()} to {until.isoformat()} "
                "(tests, false alarms and duplicates left out): nothing to plan from",
            )
        req = req.model_copy(update={"incidents_csv": history_csv(alerts), "history": None})
    chosen = [Booth(b.id, b.lat, b.lon, b.name) for b in req.booths] if req.booths else jobs.default_booths()
    if not chosen:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, detail="no booths: give booths or register some with the service"
        )
    text = req.incidents_csv if req.incidents_csv is not None else json.dumps(req.incidents_geojson)
    if len(text.encode()) > MAX_INCIDENTS_BYTES:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=f"incidents over {MAX_INCIDENTS_BYTES} bytes"
        )
    plan_id = jobs.start(req, chosen, text, requested_by=who.actor)
    return {"id": plan_id, "status": "queued", "links": {"self": f"/api/plans/{plan_id}"}}


@router.get("")
def list_plans(jobs: PlansDep, _: Commander, limit: int = 50) -> list[dict[str, Any]]:
    """Plans, newest first (their status without the summary; ``issued`` once issued)."""
    records = [jobs.store.status(plan_id) for plan_id in jobs.store.ids()]
    records.sort(key=lambda s: str(s.get("requested_at") or ""), reverse=True)
    keys = ("id", "status", "requested_at", "requested_by", "request", "issued")
    return [{k: s.get(k) for k in keys} for s in records[: max(1, min(limit, 500))]]


@router.post("/{plan_id}/issue")
def issue(
    plan_id: str, jobs: PlansDep, service: ServiceDep, who: Commander, body: PlanIssueIn | None = None
) -> dict[str, Any]:
    """Issue a done plan to the patrols: each patrol's route goes to its unit (MQTT
    ``{root}/units/{unit_id}/plan``, the handheld), the live map shows it; audited as ``plan_issued``.

    ``units`` maps patrols to units; without it the patrols go to the registered foot units in
    order of their ids. 409 for a plan not done; 422 for a mapping that does not fit.
    """
    # Every replica's streams hear the issue from the change stream: each unit's handheld and the live map reload it.
    issued, _ = issue_plan(jobs.store, plan_id, service, units=body.units if body else None, actor=who.actor)
    return issued


@router.get("/{plan_id}")
def get_plan(plan_id: str, jobs: PlansDep, _: Commander) -> dict[str, Any]:
    """A plan's status, and when done its summary and links to the map and files."""
    return jobs.store.status(plan_id)


@router.get(
    "/{plan_id}/map",
    response_model=None,
    responses={200: {"content": {"text/html": {}}, "description": "the map page"}},
)
def get_map(plan_id: str, jobs: PlansDep, _: Commander) -> HTMLResponse:
    """The plan's map: a self-contained page that works offline."""
    path = jobs.store.folder(plan_id) / "plan.html"
    if not path.is_file():
        s = jobs.store.status(plan_id)
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"plan {plan_id} is {s.get('status')}, it has no map yet")
    # The console (/plans) shows the map in a frame: this service's own pages may frame it, no other.
    return HTMLResponse(path.read_text(encoding="utf-8"), headers={"X-Frame-Options": "SAMEORIGIN"})


@router.get(
    "/{plan_id}/files/{name}",
    response_model=None,
    responses={
        200: {
            "description": "the file",
            "content": {
                m: {}
                for m in (
                    "application/gpx+xml",
                    "application/geo+json",
                    "text/markdown",
                    "text/csv",
                    "application/json",
                    "text/html",
                )
            },
        }
    },
)
def get_file(plan_id: str, name: str, jobs: PlansDep, _: Commander) -> FileResponse:
    """One of the plan's files: routes.geojson, patrol_PNN.gpx, plan.md, plan.csv, summary.json."""
    if not _FILE.match(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no file {name!r}")
    path = jobs.store.folder(plan_id) / name
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"plan {plan_id} has no file {name!r}")
    media = {
        ".gpx": "application/gpx+xml",
        ".geojson": "application/geo+json",
        ".md": "text/markdown; charset=utf-8",
        ".csv": "text/csv; charset=utf-8",
        ".json": "application/json",
        ".html": "text/html; charset=utf-8",
    }
    return FileResponse(path, media_type=media[path.suffix], filename=name)


def history_csv(alerts: list[Alert]) -> str:
    """Alerts as the planner's plain incident table; every one was initiated by the public."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["lat", "lon", "occurred_at", "category", "initiated_by", "alert_id"])
    for a in alerts:
        kind = f"{a.source.value}:{a.site.value}" if a.site is not None else f"{a.source.value}:{a.category or '-'}"
        w.writerow([f"{a.lat:.7f}", f"{a.lon:.7f}", a.event_ts.astimezone(UTC).isoformat(), kind, "public", a.id])
    return out.getvalue()
