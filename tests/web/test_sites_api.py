"""POST /api/sites and GET /api/sites/{id}: commanders site new booths through the HTTP API."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import shapely
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dispatch import Role, User
from dispatch.auth import Authenticator
from geo import Router, StreetNetwork
from patrol_planner.siting_types import AddedSite, SiteFeature, SitingRequest, SitingResult
from web import SiteJobs, deps
from web.routes import sites
from web.site_outputs import SITE_FILES

CALLS: list[SitingRequest] = []


def _points(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["features"]


def _solve(request: SitingRequest, *, router: Router | None = None) -> SitingResult:
    """Stands in for the model: the heaviest demand points become the new booths, in weight order.

    What is under test here is the API around the model (roles, jobs, files), not the siting.
    """
    assert router is not None  # the service answers on its own network
    CALLS.append(request)
    existing = [
        SiteFeature(str(f["properties"]["id"]), f["geometry"]["coordinates"][1], f["geometry"]["coordinates"][0])
        for f in _points(request.existing)
    ]
    assert request.demand is not None
    demand = sorted(_points(request.demand), key=lambda f: -f["properties"]["weight"])
    total = sum(f["properties"]["weight"] for f in demand)
    added, run = [], 0.0
    for i, f in enumerate(demand[: request.add]):
        run += f["properties"]["weight"]
        lon, lat = f["geometry"]["coordinates"]
        added.append(AddedSite(f"new-{i + 1}", lat, lon, f["properties"]["weight"], run / total))
    return SitingResult(
        existing=existing,
        added=added,
        covered_weight=run,
        total_weight=total,
        covered_share=run / total,
        covered_share_existing=0.0,
        optimality_gap=0.0,
        solver_status="optimal",
        greedy_covered_share=run / total,
        walk_min=request.walk_min,
        solve_s=0.01,
        demand_points=len(demand),
        sources={"demand": request.demand.name},
    )


def _areas(router: Any, booths: list[SiteFeature], minutes: list[float]) -> dict[float, Any]:
    return {m: shapely.union_all([shapely.Point(s.lon, s.lat).buffer(m * 1e-4) for s in booths]) for m in minutes}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, city: StreetNetwork) -> tuple[TestClient, Authenticator, SiteJobs]:
    data = tmp_path_factory.mktemp("sites")
    inputs = tmp_path_factory.mktemp("site-inputs")
    lat, lon = city.center
    booths = {"type": "FeatureCollection", "features": [_feature(lon, lat, id="booth-1")]}
    (inputs / "booths.geojson").write_text(json.dumps(booths), encoding="utf-8")
    app = FastAPI()
    auth = Authenticator("test-secret-" + "y" * 32, token_ttl=timedelta(hours=1))
    jobs = SiteJobs(
        router=Router(city),
        data_dir=data,
        inputs_dir=inputs,
        booths=lambda: [("reg-1", lat, lon, "registered booth")],
        solve=_solve,
        walking_areas=_areas,
    )
    app.include_router(sites.router)  # the sitings API alone, with its own tokens and sitings
    app.dependency_overrides[deps.authenticator] = lambda: auth
    app.dependency_overrides[deps.sites] = lambda: jobs
    return TestClient(app), auth, jobs


def _feature(lon: float, lat: float, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def _demand(city: StreetNetwork, n: int = 12) -> dict[str, Any]:
    lat, lon = city.center
    return {
        "type": "FeatureCollection",
        "features": [_feature(lon + 0.002 * i, lat + 0.001 * (i % 3), weight=float(n - i)) for i in range(n)],
    }


def _headers(auth: Authenticator, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.issue(User(f'test-{role.value}', role))}"}


def _wait(client: TestClient, site_id: str, headers: dict[str, str], timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/api/sites/{site_id}", headers=headers).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    pytest.fail(f"siting {site_id} did not finish in {timeout_s} s")


def test_a_commanders_siting_completes_and_its_files_are_served(
    api: tuple[TestClient, Authenticator, SiteJobs], city: StreetNetwork
) -> None:
    client, auth, jobs = api
    h = _headers(auth, Role.COMMANDER)
    body = {"add": 3, "walk_min": 8, "demand_geojson": _demand(city), "existing_path": "booths.geojson", "lang": "en"}
    r = client.post("/api/sites", json=body, headers=h)
    assert r.status_code == 202, r.text
    site_id = r.json()["id"]
    done = _wait(client, site_id, h)
    assert done["status"] == "done", done.get("error")
    assert done["requested_by"] == "test-commander" and done["request"]["add"] == 3
    assert "demand_geojson" not in done["request"]  # inputs are kept as files, not in the status
    s = done["summary"]
    assert s["existing"] == ["booth-1"]  # the server-side file, not the registry
    assert [a["id"] for a in s["added"]] == ["new-1", "new-2", "new-3"] and s["walk_min"] == 8
    assert sorted(done["links"]["files"]) == sorted(SITE_FILES)
    page = client.get(done["links"]["map"], headers=h)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    md = client.get(done["links"]["files"]["sites.md"], headers=h)
    assert md.status_code == 200 and md.text.startswith("# Where the new booths should go")
    csv = client.get(done["links"]["files"]["sites.csv"], headers=h)
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.count("\nadded,") == 3
    geo = client.get(f"/api/sites/{site_id}/files/sites.geojson", headers=h).json()
    kinds = {f["properties"]["kind"] for f in geo["features"]}
    assert {"existing", "added", "walking_area"} <= kinds
    assert json.loads(client.get(done["links"]["files"]["summary.json"], headers=h).text) == s
    assert (jobs.store.root / site_id / "demand.geojson").is_file()  # the inline input, kept beside the answer
    assert site_id in [x["id"] for x in client.get("/api/sites", headers=h).json()]


def test_the_registered_booths_stand_when_none_are_given(
    api: tuple[TestClient, Authenticator, SiteJobs], city: StreetNetwork
) -> None:
    client, auth, _ = api
    h = _headers(auth, Role.COMMANDER)
    r = client.post("/api/sites", json={"add": 1, "demand_geojson": _demand(city)}, headers=h)
    assert r.status_code == 202, r.text
    assert _wait(client, r.json()["id"], h)["summary"]["existing"] == ["reg-1"]


def test_only_commanders_may_site(api: tuple[TestClient, Authenticator, SiteJobs], city: StreetNetwork) -> None:
    client, auth, _ = api
    body = {"add": 1, "demand_geojson": _demand(city)}
    assert client.post("/api/sites", json=body).status_code == 401
    assert client.post("/api/sites", json=body, headers=_headers(auth, Role.DISPATCHER)).status_code == 403
    assert client.get("/api/sites", headers=_headers(auth, Role.DISPATCHER)).status_code == 403
    assert client.get("/api/sites/" + "0" * 32, headers=_headers(auth, Role.VIEWER)).status_code == 403


def test_bad_inputs_get_422_with_the_reason_and_are_counted(
    api: tuple[TestClient, Authenticator, SiteJobs], city: StreetNetwork
) -> None:
    client, auth, jobs = api
    h = _headers(auth, Role.COMMANDER)
    before, calls, folders = jobs.rejected, len(CALLS), len(list(jobs.store.root.iterdir()))
    cases = [
        ({"add": -1, "demand_geojson": _demand(city)}, "greater than or equal"),
        ({"add": 1}, "exactly one of --incidents"),
        ({"add": 1, "demand_geojson": {"type": "FeatureCollection", "features": [_feature(0, 0)]}}, "'weight'"),
        ({"add": 1, "demand_geojson": {"type": "Point"}}, "not a GeoJSON FeatureCollection"),
        ({"add": 1, "demand_geojson": _demand(city), "existing_path": "../../etc/passwd"}, "outside the allowed"),
        ({"add": 1, "demand_geojson": _demand(city), "existing_path": "nope.geojson"}, "no such file"),
        ({"add": 20, "demand_geojson": _demand(city), "candidates_geojson": _demand(city, 3)}, "'id'"),
        ({"add": 1, "demand_geojson": _demand(city), "hours": "20:00-08:00"}, "needs --incidents"),
        ({"add": 1, "demand_geojson": _demand(city), "move": 5}, "only 1 existing booths"),
    ]
    for body, reason in cases:
        r = client.post("/api/sites", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert reason in r.text, (reason, r.text)
    assert jobs.rejected - before == len(cases) - 1  # the pydantic 422 (add < 0) never reaches the jobs
    assert len(CALLS) == calls  # the model never ran on a bad input
    assert len(list(jobs.store.root.iterdir())) == folders  # and no folder is left behind
    assert client.get("/api/sites/../../etc", headers=h).status_code == 404
    assert client.get(f"/api/sites/{'0' * 32}/files/secret.txt", headers=h).status_code == 404


def test_the_real_model_answers_through_the_api(tmp_path: Path, city: StreetNetwork) -> None:
    """No stand-in: run_siting and walking_areas on the generated city, through the same route."""
    app = FastAPI()
    auth = Authenticator("test-secret-" + "z" * 32, token_ttl=timedelta(hours=1))
    jobs = SiteJobs(router=Router(city), data_dir=tmp_path / "sites")
    app.include_router(sites.router)
    app.dependency_overrides[deps.authenticator] = lambda: auth
    app.dependency_overrides[deps.sites] = lambda: jobs
    client, h = TestClient(app), _headers(auth, Role.COMMANDER)
    lat, lon = city.center
    candidates = {
        "type": "FeatureCollection",
        "features": [_feature(lon - 0.004 + 0.001 * i, lat + 0.0005 * (i % 4), id=f"c{i}") for i in range(10)],
    }
    body = {
        "add": 2,
        "walk_min": 5,
        "existing_geojson": {"type": "FeatureCollection", "features": [_feature(lon, lat, id="b1")]},
        "demand_geojson": _demand(city, 30),
        "candidates_geojson": candidates,
        "time_limit_s": 10,
    }
    r = client.post("/api/sites", json=body, headers=h)
    assert r.status_code == 202, r.text
    done = _wait(client, r.json()["id"], h, timeout_s=300)
    assert done["status"] == "done", done.get("error")
    s = done["summary"]
    assert (
        s["existing"] == ["b1"]
        and len(s["added"]) == 2
        and {a["id"] for a in s["added"]} <= {f"c{i}" for i in range(10)}
    )
    assert s["covered_share_existing"] <= s["covered_share"] and s["greedy_covered_share"] <= s["covered_share"] + 1e-9
    md = client.get(done["links"]["files"]["sites.md"], headers=h).text
    assert md.startswith("# Где поставить новые посты")  # Russian by default
