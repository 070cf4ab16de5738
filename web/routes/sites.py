"""``POST /api/sites`` and ``GET /api/sites/{id}``: where new booths should go, through the API (commander).

A siting runs in a background thread and is kept as files (:class:`~web.site_jobs.SiteJobs`), the
same files ``qorgau sites`` writes. The app includes this router when the wiring gives it sitings
(:func:`web.create_app`, ``sites=``); a test app may override :func:`web.deps.sites`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse

from web.deps import Commander, SitesDep
from web.site_jobs import SitesIn
from web.site_outputs import SITE_FILES

__all__ = ["router"]

_FILE = re.compile(r"^(" + "|".join(re.escape(n) for n in SITE_FILES) + r")$")
_MEDIA = {
    ".geojson": "application/geo+json",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
}

router = APIRouter(prefix="/api/sites", tags=["sites"])


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def create_siting(req: SitesIn, jobs: SitesDep, who: Commander) -> dict[str, Any]:
    """Start a siting (422 with the reason for a bad input); poll ``GET /api/sites/{id}`` until
    ``status`` is ``done`` or ``failed``."""
    site_id = jobs.start(req, requested_by=who.actor)
    return {"id": site_id, "status": "queued", "links": {"self": f"/api/sites/{site_id}"}}


@router.get("")
def list_sitings(jobs: SitesDep, _: Commander, limit: int = 50) -> list[dict[str, Any]]:
    """Sitings, newest first (their status without the summary)."""
    out = []
    for site_id in jobs.store.ids()[: max(1, min(limit, 500))]:
        s = jobs.store.status(site_id)
        out.append({k: s.get(k) for k in ("id", "status", "requested_at", "requested_by", "request")})
    return out


@router.get("/{site_id}")
def get_siting(site_id: str, jobs: SitesDep, _: Commander) -> dict[str, Any]:
    """A siting's status, and when done its summary and links to the map and files."""
    return jobs.store.status(site_id)


@router.get(
    "/{site_id}/map",
    response_model=None,
    responses={200: {"content": {"text/html": {}}, "description": "the map page"}},
)
def get_map(site_id: str, jobs: SitesDep, _: Commander) -> HTMLResponse:
    """The siting's map: a self-contained page that works offline."""
    path = jobs.store.folder(site_id) / "sites.html"
    if not path.is_file():
        s = jobs.store.status(site_id)
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"siting {site_id} is {s.get('status')}, it has no map yet"
        )
    return HTMLResponse(path.read_text(encoding="utf-8"))


@router.get(
    "/{site_id}/files/{name}",
    response_model=None,
    responses={200: {"description": "the file", "content": {m.split(";")[0]: {} for m in _MEDIA.values()}}},
)
def get_file(site_id: str, name: str, jobs: SitesDep, _: Commander) -> FileResponse:
    """One of the siting's files: sites.html, sites.geojson, sites.md, sites.csv, summary.json."""
    if not _FILE.match(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no file {name!r}")
    path = jobs.store.folder(site_id) / name
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"siting {site_id} has no file {name!r}")
    return FileResponse(path, media_type=_MEDIA[path.suffix], filename=name)
