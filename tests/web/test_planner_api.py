"""POST /api/plans and GET /api/plans/{id}: commanders plan through the HTTP API (real Toronto data)."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from support import JWT_SECRET, TORONTO_BOOTHS, TORONTO_TZ, TORONTO_XML, toronto_extract, toronto_graph

from dispatch import Role, User
from dispatch.auth import Authenticator
from patrol_planner import read_osm_bounds
from qorgau import QorgauService, Settings
from web import PlanJobs, deps
from web.routes import plans


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, Authenticator, Path]:
    data = tmp_path_factory.mktemp("plans")
    app = FastAPI()
    auth = Authenticator("test-secret-" + "x" * 32, token_ttl=timedelta(hours=1))
    jobs = PlanJobs(graph=toronto_graph(), data_dir=data, booths=TORONTO_BOOTHS, bounds=read_osm_bounds(TORONTO_XML))
    app.include_router(plans.router)  # the plans API alone, with its own tokens and plans
    app.dependency_overrides[deps.authenticator] = lambda: auth
    app.dependency_overrides[deps.plans] = lambda: jobs
    return TestClient(app), auth, data


def _headers(auth: Authenticator, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.issue(User(f'test-{role.value}', role))}"}


def _incidents_csv() -> str:
    inc, _ = toronto_extract()
    rows = ["lat,lon,occurred_at,category"]
    rows += [
        f"{a},{b},{t},{c}"
        for a, b, t, c in zip(inc.lat, inc.lon, inc.occurred_at.astype(str), inc.category, strict=True)
    ]
    return "\n".join(rows) + "\n"


def _wait(client: TestClient, plan_id: str, headers: dict[str, str], timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(f"/api/plans/{plan_id}", headers=headers).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    pytest.fail(f"plan {plan_id} did not finish in {timeout_s} s")


def test_a_commander_plans_and_gets_the_map(api: tuple[TestClient, Authenticator, Path]) -> None:
    client, auth, data = api
    h = _headers(auth, Role.COMMANDER)
    body = {
        "incidents_csv": _incidents_csv(),
        "patrols": 2,
        "shift": "22:00-06:00",
        "date": "2022-01-07",
        "timezone": TORONTO_TZ,
        "lang": "en",
        "iterations": 300,
        "seed": 3,
    }
    r = client.post("/api/plans", json=body, headers=h)
    assert r.status_code == 202, r.text
    plan_id = r.json()["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", plan_id)
    done = _wait(client, plan_id, h)
    assert done["status"] == "done", done.get("error")
    assert done["requested_by"] == "test-commander" and done["request"]["seed"] == 3
    s = done["summary"]
    assert s["patrols"] == 2 and s["timezone"] == TORONTO_TZ and s["incidents"]["kept"] == 1825
    assert 0 < s["risk_covered"] <= s["expected_incidents"]
    page = client.get(done["links"]["map"], headers=h)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//", page.text, re.I)
    gpx = client.get(done["links"]["files"]["patrol_P01.gpx"], headers=h)
    assert gpx.status_code == 200 and "<trkpt" in gpx.text
    md = client.get(f"/api/plans/{plan_id}/files/plan.md", headers=h)
    assert md.text.startswith("# Foot patrol plan")
    assert (data / plan_id / "routes.geojson").is_file()  # kept as files under the data dir
    assert plan_id in [p["id"] for p in client.get("/api/plans", headers=h).json()]


def test_only_commanders_may_plan(api: tuple[TestClient, Authenticator, Path]) -> None:
    client, auth, _ = api
    body = {"incidents_csv": "lat,lon,occurred_at,category\n", "patrols": 1}
    assert client.post("/api/plans", json=body).status_code == 401
    assert client.post("/api/plans", json=body, headers=_headers(auth, Role.DISPATCHER)).status_code == 403
    assert client.get("/api/plans", headers=_headers(auth, Role.DISPATCHER)).status_code == 403


def test_bad_requests_are_refused_or_reported(api: tuple[TestClient, Authenticator, Path]) -> None:
    client, auth, _ = api
    h = _headers(auth, Role.COMMANDER)
    assert client.post("/api/plans", json={"patrols": 1}, headers=h).status_code == 422
    assert client.post("/api/plans", json={"incidents_csv": "x", "estimator": "magic"}, headers=h).status_code == 422
    assert (
        client.post("/api/plans", json={"incidents_csv": "x", "timezone": "Mars/Olympus"}, headers=h).status_code == 422
    )
    assert client.get("/api/plans/../../etc", headers=h).status_code == 404
    assert client.get("/api/plans/" + "0" * 32, headers=h).status_code == 404
    # Unreadable incidents: the plan fails, with the reason, and the API keeps serving.
    r = client.post("/api/plans", json={"incidents_csv": "a,b\n1,2\n", "timezone": TORONTO_TZ}, headers=h)
    failed = _wait(client, r.json()["id"], h)
    assert failed["status"] == "failed" and "latitude/longitude" in failed["error"]
    assert client.get(f"/api/plans/{r.json()['id']}/map", headers=h).status_code == 409
    assert client.get(f"/api/plans/{r.json()['id']}/files/secret.txt", headers=h).status_code == 404


def test_the_service_mounts_the_plans_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QORGAU_PLANS_DIR", str(tmp_path / "plans"))
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'q.sqlite3'}", network=TORONTO_XML, jwt_secret=JWT_SECRET)
    service = QorgauService(settings)
    paths = set(service.app.openapi()["paths"])
    assert {"/api/plans", "/api/plans/{plan_id}", "/api/plans/{plan_id}/map"} <= paths
    assert (tmp_path / "plans").is_dir()
