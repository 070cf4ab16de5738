"""``POST /api/plans`` and ``GET /api/plans/{id}``: patrol plans through the HTTP API (commander role).

A plan runs in a background thread and is kept as files under ``<data dir>/<id>/`` (the same
files ``qorgau plan`` writes, plus ``status.json``), so plans survive a restart of the service.
The service mounts the router (:mod:`qorgau.runtime`); the role check is a dependency, so a test
or another app can pass its own.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
import datetime as dt
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field, field_validator

from dispatch.hardening import RequestBody
from patrol_planner import Booth, WalkGraph
from patrol_planner.hotspots import DEFAULT_ESTIMATOR, ESTIMATORS

__all__ = ["BoothIn", "PlanRequest", "PlanStore", "create_plans_router", "mount_plans"]

log = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{32}$")
_FILE = re.compile(r"^(plan\.(html|md|csv)|routes\.geojson|summary\.json|patrol_P\d{2,3}\.gpx)$")
MAX_INCIDENTS_BYTES = 50 * 1024 * 1024


class BoothIn(RequestBody):
    id: str = Field(min_length=1, max_length=100)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    name: str = ""


class PlanRequest(RequestBody):
    """What to plan. Incidents come inline, as CSV text or a GeoJSON FeatureCollection."""

    incidents_csv: str | None = Field(None, description="CSV text in a layout `qorgau plan` recognises")
    incidents_geojson: dict[str, Any] | None = Field(None, description="a FeatureCollection of incident Points")
    booths: list[BoothIn] | None = Field(None, description="default: the service's registered booths")
    patrols: int = Field(2, ge=1, le=200)
    shift: str = Field("22:00-06:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    date: dt.date | None = Field(None, description="day the shift starts [today, local]")
    timezone: str = "Asia/Almaty"
    lang: Literal["kk", "ru", "en"] = "ru"
    seed: int | None = None
    estimator: str = DEFAULT_ESTIMATOR
    dwell_min: float = Field(15.0, ge=10, le=16)
    iterations: int = Field(3000, ge=10, le=100_000)
    time_limit_s: float = Field(30.0, gt=0, le=600)

    @field_validator("estimator")
    @classmethod
    def _known_estimator(cls, v: str) -> str:
        if v not in ESTIMATORS:
            msg = f"unknown estimator {v!r}; expected one of {sorted(ESTIMATORS)}"
            raise ValueError(msg)
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception as e:  # zoneinfo raises several kinds
            msg = f"unknown time zone {v!r}"
            raise ValueError(msg) from e
        return v


class PlanStore:
    """Plans as folders of files; ``status.json`` says where each one is."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def folder(self, plan_id: str) -> Path:
        if not _ID.match(plan_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no plan {plan_id!r}")
        return self.root / plan_id

    def status(self, plan_id: str) -> dict[str, Any]:
        path = self.folder(plan_id) / "status.json"
        if not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no plan {plan_id!r}")
        return json.loads(path.read_text(encoding="utf-8"))

    def write_status(self, plan_id: str, **fields: Any) -> dict[str, Any]:
        folder = self.folder(plan_id)
        with self._lock:
            path = folder / "status.json"
            current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            current.update(fields)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(current, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
            tmp.replace(path)
        return current

    def ids(self) -> list[str]:
        return sorted((p.name for p in self.root.iterdir() if _ID.match(p.name) and (p / "status.json").is_file()), reverse=True)


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
    from qorgau.plan_outputs import plan_summary, write_plan_outputs

    folder = store.folder(plan_id)
    try:
        store.write_status(plan_id, status="running", started_at=datetime.now(timezone.utc).isoformat())
        path = folder / ("incidents.csv" if req.incidents_csv is not None else "incidents.geojson")
        incidents, report = read_incidents(path, timezone=req.timezone)
        on = req.date or datetime.now(ZoneInfo(req.timezone)).date()
        shift = Shift.parse(req.shift, on=on, timezone=req.timezone)
        settings = SolverSettings(iterations=req.iterations, time_limit_s=req.time_limit_s, dwell_s=req.dwell_min * 60)
        bundle = make_plan(
            incidents, graph, booths, shift, patrols=req.patrols, report=report, estimator=req.estimator,
            seed=req.seed, settings=settings, bounds=bounds,
        )  # fmt: skip
        files = write_plan_outputs(bundle, folder, lang=req.lang)
        store.write_status(
            plan_id,
            status="done",
            finished_at=datetime.now(timezone.utc).isoformat(),
            summary=plan_summary(bundle),
            links=_links(plan_id, sorted(files)),
        )
    except Exception as e:  # a failed plan is reported, never kills the service
        log.exception("plan %s failed", plan_id)
        store.write_status(plan_id, status="failed", error=f"{type(e).__name__}: {e}")


def create_plans_router(
    *,
    graph: Callable[[], WalkGraph] | WalkGraph,
    data_dir: str | Path,
    guard: Callable[..., Any],
    booths: Callable[[], list[Booth]] | list[Booth] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
) -> APIRouter:
    """The plans API.

    Parameters
    ----------
    graph
        The walking graph of the service's network (or a function that gives it, built lazily).
    data_dir
        Where plans are kept, one folder per plan.
    guard
        The dependency that admits commanders, e.g. ``dispatch.auth.require_role("commander")``.
    booths
        Booths used when a request names none (the service's registry).
    bounds
        The network extract's ``<bounds>``, to keep incidents to where the network really is.
    """
    store = PlanStore(data_dir)
    router = APIRouter(prefix="/api/plans", tags=["plans"])
    commander = Depends(guard)
    cached: dict[str, WalkGraph] = {}

    def get_graph() -> WalkGraph:
        if isinstance(graph, WalkGraph):
            return graph
        if "g" not in cached:
            cached["g"] = graph()
        return cached["g"]

    def default_booths() -> list[Booth]:
        if booths is None:
            return []
        return list(booths() if callable(booths) else booths)

    @router.post("", status_code=status.HTTP_202_ACCEPTED)
    def create_plan(req: PlanRequest, who: Any = commander) -> dict[str, Any]:
        """Start planning; poll ``GET /api/plans/{id}`` until ``status`` is ``done`` or ``failed``."""
        if (req.incidents_csv is None) == (req.incidents_geojson is None):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="give exactly one of incidents_csv or incidents_geojson")
        chosen = [Booth(b.id, b.lat, b.lon, b.name) for b in req.booths] if req.booths else default_booths()
        if not chosen:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="no booths: give booths or register some with the service")
        text = req.incidents_csv if req.incidents_csv is not None else json.dumps(req.incidents_geojson)
        if len(text.encode()) > MAX_INCIDENTS_BYTES:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=f"incidents over {MAX_INCIDENTS_BYTES} bytes")
        plan_id = uuid.uuid4().hex
        folder = store.folder(plan_id)
        folder.mkdir(parents=True)
        (folder / ("incidents.csv" if req.incidents_csv is not None else "incidents.geojson")).write_text(text, encoding="utf-8")
        actor = getattr(who, "actor", None)
        store.write_status(
            plan_id,
            id=plan_id,
            status="queued",
            requested_by=actor() if callable(actor) else str(actor or ""),
            requested_at=datetime.now(timezone.utc).isoformat(),
            request=req.model_dump(mode="json", exclude={"incidents_csv", "incidents_geojson"}),
            booths=[{"id": b.id, "lat": b.lat, "lon": b.lon, "name": b.name} for b in chosen],
        )
        threading.Thread(
            target=_run, args=(store, plan_id, req, get_graph(), chosen, bounds), name=f"plan-{plan_id[:8]}", daemon=True
        ).start()
        return {"id": plan_id, "status": "queued", "links": {"self": f"/api/plans/{plan_id}"}}

    @router.get("")
    def list_plans(limit: int = 50, _: Any = commander) -> list[dict[str, Any]]:
        """Plans, newest first (their status without the summary)."""
        out = []
        for plan_id in store.ids()[: max(1, min(limit, 500))]:
            s = store.status(plan_id)
            out.append({k: s.get(k) for k in ("id", "status", "requested_at", "requested_by", "request")})
        return out

    @router.get("/{plan_id}")
    def get_plan(plan_id: str, _: Any = commander) -> dict[str, Any]:
        """A plan's status, and when done its summary and links to the map and files."""
        return store.status(plan_id)

    @router.get("/{plan_id}/map", response_model=None, responses={200: {"content": {"text/html": {}}, "description": "the map page"}})
    def get_map(plan_id: str, _: Any = commander) -> HTMLResponse:
        """The plan's map: a self-contained page that works offline."""
        path = store.folder(plan_id) / "plan.html"
        if not path.is_file():
            s = store.status(plan_id)
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"plan {plan_id} is {s.get('status')}, it has no map yet")
        return HTMLResponse(path.read_text(encoding="utf-8"))

    @router.get("/{plan_id}/files/{name}", response_model=None, responses={200: {"description": "the file", "content": {
        m: {} for m in ("application/gpx+xml", "application/geo+json", "text/markdown", "text/csv", "application/json", "text/html")}}})
    def get_file(plan_id: str, name: str, _: Any = commander) -> FileResponse:
        """One of the plan's files: routes.geojson, patrol_PNN.gpx, plan.md, plan.csv, summary.json."""
        if not _FILE.match(name):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no file {name!r}")
        path = store.folder(plan_id) / name
        if not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"plan {plan_id} has no file {name!r}")
        media = {".gpx": "application/gpx+xml", ".geojson": "application/geo+json", ".md": "text/markdown; charset=utf-8",
                 ".csv": "text/csv; charset=utf-8", ".json": "application/json", ".html": "text/html; charset=utf-8"}  # fmt: skip
        return FileResponse(path, media_type=media[path.suffix], filename=name)

    return router


def mount_plans(service: Any, *, data_dir: str | Path | None = None) -> None:
    """Mount the plans API on a :class:`qorgau.QorgauService`'s app (commander role).

    Plans are kept under ``data_dir`` (``QORGAU_PLANS_DIR``, default ``var/plans``); the default
    booths are the service's registered units of kind ``booth``.
    """
    import os

    from dispatch import UnitKind
    from dispatch.auth import require_role
    from patrol_planner.io import read_osm_bounds

    folder = Path(data_dir or os.environ.get("QORGAU_PLANS_DIR", "var/plans"))

    def booths() -> list[Booth]:
        return [Booth(u.id, u.lat, u.lon, getattr(u, "name", "") or "") for u in service.service.units() if u.kind is UnitKind.BOOTH]

    network = service.settings.network
    router = create_plans_router(
        graph=lambda: WalkGraph(service.router),
        data_dir=folder,
        guard=require_role("commander"),
        booths=booths,
        bounds=read_osm_bounds(network) if network else None,
    )
    service.app.include_router(router)
