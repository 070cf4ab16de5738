"""API hardening over real HTTP: body size limits, login throttle, CORS, security headers, secrets."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from support import ADMIN_TOKEN, JWT_SECRET, PASSWORD, Registry, Running, add_user

from geo import StreetNetwork
from qorgau import QorgauService, Settings
from qorgau.cli import main
from qorgau.settings import WeakSecret, check_jwt_secret
from web.hardening import LoginThrottle, content_security_policy


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """HTTP behaviour does not depend on the database: SQLite only."""
    return f"sqlite:///{tmp_path / 'qorgau.sqlite3'}"


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _admin(running: Running) -> httpx.Client:
    return httpx.Client(
        base_url=running.service.base_url, timeout=10, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )


def _csp(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in policy.split(";")) if d}


# -- security headers ---------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(running: Running) -> None:
    base = running.service.base_url
    responses = [
        running.http.get("/api/alerts"),
        httpx.get(f"{base}/healthz"),
        httpx.get(f"{base}/api/alerts"),  # 401
        running.http.get("/api/alerts/999999"),  # 404
        running.http.get("/api/alerts/0"),  # 422
        httpx.get(f"{base}/login"),
        httpx.get(f"{base}/static/leaflet.js"),
        httpx.get(f"{base}/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 401, 404, 422, 200, 200, 200]
    for r in responses:
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, f"{r.request.url}: {name} = {r.headers.get(name)!r}"
        csp = _csp(r)
        assert csp["frame-ancestors"] == ["'none'"], r.request.url
    api = _csp(responses[0])
    assert api["default-src"] == ["'none'"]  # JSON needs nothing


def test_the_map_page_csp_admits_exactly_its_own_inline_scripts(running: Running) -> None:
    add_user(running.service, "aigerim", "dispatcher")
    with httpx.Client(base_url=running.service.base_url, timeout=10) as browser:
        signed_in = browser.post("/login", data={"username": "aigerim", "password": PASSWORD})
        assert signed_in.status_code == 303
        page = browser.get("/map")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = _csp(page)
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page.text, re.DOTALL)
    assert inline, "the live map has inline set-up scripts"
    expected = {"'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in inline}
    assert set(csp["script-src"]) == {"'self'"} | expected
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert csp["connect-src"] == ["'self'"] and csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert page.headers["x-frame-options"] == "DENY"


def test_a_configured_tile_server_is_the_only_extra_image_origin() -> None:
    csp = content_security_policy(
        b"<script>a()</script><script src=/x.js></script>", tile_origins=("https://*.tiles.example",)
    )
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    digest = base64.b64encode(hashlib.sha256(b"a()").digest()).decode()
    assert directives["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert directives["img-src"] == ["'self'", "data:", "https://*.tiles.example"]
    assert Settings(map_tiles="https://{s}.tiles.example/{z}/{x}/{y}.png").http_hardening().tile_origins == (
        "https://*.tiles.example",
    )


# -- CORS ---------------------------------------------------------------------------------------


def test_cors_is_closed_by_default(running: Running) -> None:
    evil = {"Origin": "https://evil.example"}
    get = running.http.get("/api/alerts", headers=evil)
    assert get.status_code == 200 and "access-control-allow-origin" not in get.headers
    preflight = httpx.options(
        f"{running.service.base_url}/api/alerts/1/assign",
        headers={**evil, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code >= 400


def test_cors_admits_only_the_listed_origins(start_service: Callable[..., Running]) -> None:
    running = start_service(cors_origins="https://console.police.example, https://ops.example:8443")
    ok = running.http.get("/api/alerts", headers={"Origin": "https://ops.example:8443"})
    assert ok.headers["access-control-allow-origin"] == "https://ops.example:8443"
    other = running.http.get("/api/alerts", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = httpx.options(
        f"{running.service.base_url}/api/alerts",
        headers={
            "Origin": "https://console.police.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://console.police.example"


def test_a_cors_origin_with_a_path_is_refused() -> None:
    with pytest.raises(ValidationError, match="a CORS origin is scheme://host"):
        Settings(cors_origins="https://console.example/app")


# -- request body size --------------------------------------------------------------------------


def test_a_body_over_the_limit_gets_413_with_a_json_reason(
    start_service: Callable[..., Running], registry: Registry
) -> None:
    running = start_service(max_request_bytes=4096, max_plan_request_bytes=64 * 1024)
    commander = running.client("commander")
    unit = registry.units[0]
    small = commander.patch(f"/api/units/{unit.id}", json={"name": "Booth at the park"})
    assert small.status_code == 200
    body = b'{"name": "' + b"x" * 5000 + b'"}'
    big = commander.patch(f"/api/units/{unit.id}", content=body, headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    assert big.json()["detail"] == f"request body too large: {len(body)} bytes, the limit is 4096"
    assert big.headers["x-content-type-options"] == "nosniff"

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    streamed = commander.patch(f"/api/units/{unit.id}", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert "the limit is 4096" in streamed.json()["detail"]
    assert commander.get(f"/api/units/{unit.id}").json()["name"] == "Booth at the park"  # nothing applied
    # the plans API has its own, larger limit (incidents come inline)
    plan = commander.post("/api/plans", json={"incidents_csv": "lat,lon,occurred_at,category\n" + "x" * 20_000})
    assert plan.status_code != 413
    huge = commander.post("/api/plans", json={"incidents_csv": "x" * 70_000})
    assert huge.status_code == 413
    assert running.http.get("/api/alerts").status_code == 200  # the service goes on


# -- login throttle -----------------------------------------------------------------------------


def test_failed_logins_are_throttled_per_address_and_username(start_service: Callable[..., Running]) -> None:
    running = start_service(login_max_failures=3, login_window_s=60)
    add_user(running.service, "aigerim", "dispatcher")
    add_user(running.service, "nurlan", "viewer")
    url = f"{running.service.base_url}/api/token"

    def login(username: str, password: str) -> httpx.Response:
        return httpx.post(url, data={"username": username, "password": password})

    assert login("aigerim", PASSWORD).status_code == 200
    assert [login("aigerim", "wrong-password").status_code for _ in range(3)] == [401, 401, 401]
    blocked = login("aigerim", PASSWORD)  # even the right password waits: no oracle for the guesser
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert "too many failed sign-ins" in blocked.json()["detail"]
    assert login("nurlan", PASSWORD).status_code == 200  # another user from the same address
    # the map's sign-in form shares the throttle, with the message in the page's language
    form = httpx.post(
        f"{running.service.base_url}/login", data={"username": "aigerim", "password": PASSWORD, "lang": "en"}
    )
    assert form.status_code == 429 and "Too many failed sign-ins" in form.text and form.headers["retry-after"]
    entries = running.service.store.audit_entries()
    assert sum(e.action == "login_failed" and e.actor == "aigerim" for e in entries) == 3  # refused ones never checked


def test_a_password_spray_across_usernames_is_throttled_per_address() -> None:
    now = [0.0]
    throttle = LoginThrottle(2, 60, clock=lambda: now[0])
    for i in range(8):  # 4 x max_failures across usernames
        throttle.check("10.0.0.9", f"user{i}")
        throttle.failed("10.0.0.9", f"user{i}")
    assert throttle.retry_after_s("10.0.0.9", "someone-else") == 60
    assert throttle.retry_after_s("10.0.0.10", "user1") is None  # other addresses are not affected
    now[0] = 61.0
    assert throttle.retry_after_s("10.0.0.9", "someone-else") is None  # the window slid past


def test_a_successful_login_clears_that_users_failures() -> None:
    throttle = LoginThrottle(2, 60, clock=lambda: 0.0)
    throttle.failed("a", "u")
    throttle.succeeded("a", "u")
    throttle.failed("a", "u")
    assert throttle.retry_after_s("a", "u") is None


# -- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "QORGAU_JWT_SECRET is not set"),
        ("short-secret-0123456789", "has 23 characters, at least 32"),
        ("changemechangemechangemechangeme", "well-known example value"),
        ("your-256-bit-secret-000000000000000", "well-known example value"),
        ("SECRET" * 6, "well-known example value"),
        ("ab" * 20, "only 2 distinct characters"),
    ],
)
def test_weak_jwt_secrets_are_refused(secret: str | None, message: str) -> None:
    with pytest.raises(WeakSecret, match=message):
        check_jwt_secret(secret)


def test_a_random_secret_is_accepted() -> None:
    assert check_jwt_secret(JWT_SECRET) == JWT_SECRET
    assert Settings(jwt_secret="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c").jwt_secret is not None
    with pytest.raises(ValidationError, match="well-known example value"):
        Settings(jwt_secret="changeme" * 4)


def test_the_service_refuses_to_start_without_a_secret(city: StreetNetwork, registry: Registry, tmp_path: Path) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'q.sqlite3'}", units=registry.units_path, devices=registry.devices_path
    )
    with pytest.raises(WeakSecret, match="QORGAU_JWT_SECRET is not set"):
        QorgauService(settings, network=city)
    assert not (tmp_path / "q.sqlite3").exists()  # refused before touching anything


def test_serve_refuses_to_start_with_a_missing_or_default_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("QORGAU_NETWORK", str(tmp_path / "does-not-matter.osm"))
    monkeypatch.delenv("QORGAU_JWT_SECRET", raising=False)
    assert main(["serve", "--port", str(port)]) == 1
    assert "QORGAU_JWT_SECRET is not set" in capsys.readouterr().err
    monkeypatch.setenv("QORGAU_JWT_SECRET", "changeme" * 5)
    assert main(["serve", "--port", str(port)]) == 1
    assert "well-known example value" in capsys.readouterr().err
