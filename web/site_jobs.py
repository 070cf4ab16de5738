"""Booth sitings of the HTTP API (``POST /api/sites``): each runs in a background thread, kept as files.

A siting is a folder ``<QORGAU_SITES_DIR>/<id>/`` with its inputs (inline GeoJSON or CSV written
out as files), the files ``qorgau sites`` writes (:mod:`web.site_outputs`) and ``status.json``
(:class:`web.jobs.JobStore`). Inputs come inline or as server-side paths under the one directory
the service allows (``QORGAU_SITES_INPUTS_DIR``); the network is the service's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import HTTPException
from pydantic import Field, field_validator

from geo import Router
from patrol_planner.siting_types import SitingRequest
from web.hardening import RequestBody
from web.jobs import JobStore, new_job_id, start_job
from web.site_inputs import SitingInputError, check_siting_request
from web.site_outputs import SiteSolver, WalkingAreas, make_sites

__all__ = ["SiteJobs", "SitesIn"]

_INPUTS = ("existing", "demand", "candidates", "districts", "backup_sites")
"""GeoJSON inputs: each as ``<name>_geojson`` (inline) or ``<name>_path`` (on the server)."""


class SitesIn(RequestBody):
    """Where ``add`` new booths should go. Each input comes inline or as a path on the server."""

    add: int = Field(ge=0, le=5000, description="new booths to place (N)")
    walk_min: float = Field(10.0, gt=0, le=120, description="walking minutes that count as covered")
    existing_geojson: dict[str, Any] | None = Field(None, description="Points with 'id' [the registered booths]")
    existing_path: str | None = None
    incidents_csv: str | None = Field(None, description="incidents as CSV text in a layout `qorgau plan` reads")
    incidents_geojson: dict[str, Any] | None = None
    incidents_path: str | None = None
    demand_geojson: dict[str, Any] | None = Field(None, description="Points with a numeric 'weight'")
    demand_path: str | None = None
    candidates_geojson: dict[str, Any] | None = Field(None, description="Points with 'id' [every ~100 m of street]")
    candidates_path: str | None = None
    districts_geojson: dict[str, Any] | None = Field(None, description="Polygons with 'name'")
    districts_path: str | None = None
    district_floor: float | None = Field(None, ge=0, le=1)
    hours: str | None = Field(None, pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$", description="local staffed hours")
    backup_sites_geojson: dict[str, Any] | None = None
    backup_sites_path: str | None = None
    move: int = Field(0, ge=0, le=1000)
    time_limit_s: float = Field(60.0, gt=0, le=600)
    timezone: str = "Asia/Almaty"
    lang: Literal["kk", "ru", "en"] = "ru"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception as e:  # zoneinfo raises several kinds
            msg = f"unknown time zone {v!r}"
            raise ValueError(msg) from e
        return v


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(422, detail=detail)


def _links(site_id: str, files: list[str]) -> dict[str, Any]:
    base = f"/api/sites/{site_id}"
    return {"self": base, "map": f"{base}/map", "files": {name: f"{base}/files/{name}" for name in files}}


class SiteJobs:
    """Starts sitings and keeps them.

    Parameters
    ----------
    router
        The service's router (or a function that gives it, built lazily): its walking network.
    network
        The network's file, named in the sheet's provenance (None for a generated city).
    data_dir
        Where sitings are kept, one folder each (``QORGAU_SITES_DIR``).
    inputs_dir
        The one directory whose files a request may name by path (``QORGAU_SITES_INPUTS_DIR``);
        None: inputs come inline only.
    booths
        The existing booths when a request gives none (the service's registered booths), as
        ``(id, lat, lon, name)``.
    solve, walking_areas
        The model (default: :mod:`patrol_planner.siting`'s ``run_siting`` and ``walking_areas``).
    """

    def __init__(
        self,
        *,
        router: Callable[[], Router] | Router,
        data_dir: str | Path,
        network: Path | None = None,
        inputs_dir: str | Path | None = None,
        booths: Callable[[], list[tuple[str, float, float, str]]] | None = None,
        solve: SiteSolver | None = None,
        walking_areas: WalkingAreas | None = None,
    ) -> None:
        self.store = JobStore(data_dir, what="siting")
        self._router = router
        self._cached: Router | None = None
        self.network = network
        self.inputs_dir = Path(inputs_dir).resolve() if inputs_dir is not None else None
        self._booths = booths
        self._solve = solve
        self._walking_areas = walking_areas
        self.rejected = 0
        """Requests refused with 422 (bad inputs), since the service started."""

    def router(self) -> Router:
        if isinstance(self._router, Router):
            return self._router
        if self._cached is None:
            self._cached = self._router()
        return self._cached

    def _server_path(self, name: str, value: str) -> Path:
        if self.inputs_dir is None:
            msg = f"{name}_path: this service takes no server-side paths (QORGAU_SITES_INPUTS_DIR is unset); send {name} inline"
            raise _unprocessable(msg)
        path = (self.inputs_dir / value).resolve()
        if not path.is_relative_to(self.inputs_dir):
            raise _unprocessable(f"{name}_path {value!r} is outside the allowed directory")
        if not path.is_file():
            raise _unprocessable(f"{name}_path: no such file {value!r} in the allowed directory")
        return path

    def _inputs(self, req: SitesIn, folder: Path) -> dict[str, Path | None]:
        paths: dict[str, Path | None] = {}
        for name in _INPUTS:
            inline = getattr(req, f"{name}_geojson")
            given = getattr(req, f"{name}_path")
            if inline is not None and given is not None:
                raise _unprocessable(f"give {name}_geojson or {name}_path, not both")
            if inline is not None:
                path = folder / f"{name}.geojson"
                path.write_text(json.dumps(inline, ensure_ascii=False), encoding="utf-8")
                paths[name] = path
            else:
                paths[name] = self._server_path(name, given) if given is not None else None
        incidents = [x for x in ("incidents_csv", "incidents_geojson", "incidents_path") if getattr(req, x) is not None]
        if len(incidents) > 1:
            raise _unprocessable("give one of incidents_csv, incidents_geojson or incidents_path")
        paths["incidents"] = None
        if req.incidents_csv is not None:
            paths["incidents"] = folder / "incidents.csv"
            (folder / "incidents.csv").write_text(req.incidents_csv, encoding="utf-8")
        elif req.incidents_geojson is not None:
            paths["incidents"] = folder / "incidents.geojson"
            text = json.dumps(req.incidents_geojson, ensure_ascii=False)
            (folder / "incidents.geojson").write_text(text, encoding="utf-8")
        elif req.incidents_path is not None:
            paths["incidents"] = self._server_path("incidents", req.incidents_path)
        if paths["existing"] is None:
            booths = self._booths() if self._booths is not None else []
            features = [
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [lon, lat]},
                    "properties": {"id": bid, "name": name},
                }
                for bid, lat, lon, name in booths
            ]
            paths["existing"] = folder / "existing.geojson"
            text = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False)
            (folder / "existing.geojson").write_text(text, encoding="utf-8")
        return paths

    def start(self, req: SitesIn, *, requested_by: str) -> str:
        """Check the inputs (422 with the reason), keep them and site in a background thread; the id."""
        site_id = new_job_id()
        folder = self.store.folder(site_id)
        folder.mkdir(parents=True)
        try:
            paths = self._inputs(req, folder)
            existing = paths["existing"] or folder / "existing.geojson"  # _inputs always gives one
            request = SitingRequest(
                network=self.network or Path("(the service's network)"),
                existing=existing,
                add=req.add,
                walk_min=req.walk_min,
                incidents=paths["incidents"],
                demand=paths["demand"],
                candidates=paths["candidates"],
                districts=paths["districts"],
                district_floor=req.district_floor,
                hours=req.hours,
                backup_sites=paths["backup_sites"],
                move=req.move,
                time_limit_s=req.time_limit_s,
                timezone=req.timezone,
            )
            check_siting_request(request, network=False)
        except (HTTPException, SitingInputError) as e:
            self.rejected += 1
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()
            if isinstance(e, HTTPException):
                raise
            raise _unprocessable(str(e)) from e
        self.store.write_status(
            site_id,
            id=site_id,
            status="queued",
            requested_by=requested_by,
            requested_at=datetime.now(UTC).isoformat(),
            request=req.model_dump(mode="json", exclude={f"{n}_geojson" for n in _INPUTS} | {"incidents_csv"}),
        )
        router, solve, walking, lang = self.router(), self._solve, self._walking_areas, req.lang

        def work() -> dict[str, Any]:
            result, files = make_sites(request, folder, lang=lang, router=router, solve=solve, walking_areas=walking)
            return {"summary": result.summary(), "links": _links(site_id, sorted(files))}

        start_job(self.store, site_id, work)
        return site_id
