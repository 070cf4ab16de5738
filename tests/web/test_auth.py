"""Who may do what: 401 without credentials and 403 for a wrong role on every route; the login flow."""

from __future__ import annotations

from datetime import UTC

import httpx
import pytest
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from support import ADMIN_TOKEN, Registry, Running, route_guard

from dispatch import Role
from dispatch.auth import Authenticator, hash_password, verify_password
from dispatch.domain import User

OPEN_ROUTES = {
    "/healthz",
    "/metrics",
    "/api/token",
    "/login",
    "/logout",
    "/map",
    "/unit",
    "/unit/manifest.webmanifest",
    "/unit/sw.js",
    "/unit/icon.svg",
    "/static/{name}",
    "/plans",
}
"""Routes without a role guard: health, the logins, the map, handheld and plans pages (which send strangers
to /login: tests/web/test_map_live.py, tests/web/test_handheld_page.py, tests/web/test_plans_console.py), the handheld's manifest,
service worker and icon (no data in them) and Leaflet's files."""


def _api_routes(running: Running) -> list[tuple[RouteContext, str]]:
    out = []
    for route in iter_route_contexts(running.service.app.routes):  # through the included routers
        if isinstance(route.original_route, APIRoute) and route.path not in OPEN_ROUTES:
            out += [(route, method) for method in sorted(route.methods)]
    return out


def _path(route: RouteContext, registry: Registry) -> str:
    return route.path.replace("{alert_id}", "1").replace("{unit_id}", registry.units[0].id)


def test_every_route_but_healthz_needs_a_token_and_the_right_role(running: Running, registry: Registry) -> None:
    routes = _api_routes(running)
    assert len(routes) >= 20
    anonymous = httpx.Client(base_url=running.service.base_url, timeout=5)
    checked = 0
    try:
        for route, method in routes:
            guard = route_guard(route)
            assert guard is not None, f"{method} {route.path} has no require_role"
            path = _path(route, registry)
            response = anonymous.request(method, path, json={})
            assert response.status_code == 401, f"{method} {path} without a token: {response.status_code}"
            assert response.headers["www-authenticate"] == "Bearer"
            bad = anonymous.request(method, path, json={}, headers={"Authorization": "Bearer not-a-token"})
            assert bad.status_code == 401, f"{method} {path} with a forged token: {bad.status_code}"
            wrong_roles = [r for r in Role if r not in guard.roles]
            assert wrong_roles, f"{method} {route.path} admits every role"
            for role in wrong_roles:
                response = running.client(role, unit_id="x" if role is Role.UNIT else None).request(
                    method, path, json={}
                )
                assert response.status_code == 403, f"{method} {path} as {role.value}: {response.status_code}"
                checked += 1
            right = sorted(guard.roles)[0]
            unit = registry.units[0].id if right is Role.UNIT else None
            # streamed: an event stream (/unit/events) answers its status and then stays open
            with running.client(right, unit_id=unit).stream(method, path, json={}) as response:
                status = response.status_code
            assert status not in (401, 403), f"{method} {path} as {right.value}: {status}"
    finally:
        anonymous.close()
    assert checked >= 40
    assert httpx.get(f"{running.service.base_url}/healthz", timeout=30).status_code == 200


def test_a_unit_login_acts_only_for_its_own_unit(running: Running, registry: Registry) -> None:
    mine, other = registry.units[0].id, registry.units[1].id
    unit = running.client("unit", unit_id=mine)
    assert unit.get(f"/api/units/{mine}/orders").status_code == 200
    assert unit.get(f"/api/units/{other}/orders").status_code == 403
    refused = unit.put(f"/api/units/{other}/status", json={"status": "off_duty"})
    assert refused.status_code == 403 and "its own unit" in refused.json()["detail"]
    assert unit.put(f"/api/units/{mine}/status", json={"status": "off_duty"}).json()["status"] == "off_duty"
    assert unit.get("/api/alerts").status_code == 403


def test_bootstrap_admin_creates_users_who_log_in_with_hashed_passwords(running: Running, registry: Registry) -> None:
    admin = httpx.Client(
        base_url=running.service.base_url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    try:
        created = admin.post(
            "/api/users", json={"username": "aigerim", "password": "correct horse 1", "role": "dispatcher"}
        )
        assert created.status_code == 201, created.text
        bad = admin.post("/api/users", json={"username": "u1", "password": "long enough", "role": "unit"})
        assert bad.status_code == 422
        assert (
            admin.post(
                "/api/users",
                json={"username": "u1", "password": "long enough", "role": "unit", "unit_id": registry.units[0].id},
            ).status_code
            == 201
        )
        assert {u["username"] for u in admin.get("/api/users").json()} == {"aigerim", "u1"}
        assert admin.get("/api/settings").json()["ack_deadline_s"] == 30.0
        assert "admin_token" not in admin.get("/api/settings").json()
    finally:
        admin.close()
    _, stored_hash = running.service.store.get_user("aigerim")
    assert stored_hash.startswith("$argon2id$") and "correct horse" not in stored_hash

    base = running.service.base_url
    wrong = httpx.post(f"{base}/api/token", timeout=30, data={"username": "aigerim", "password": "wrong password"})
    assert wrong.status_code == 401
    token = httpx.post(f"{base}/api/token", timeout=30, data={"username": "aigerim", "password": "correct horse 1"})
    assert token.status_code == 200 and token.json()["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert httpx.get(f"{base}/api/alerts", timeout=30, headers=headers).status_code == 200
    assert httpx.get(f"{base}/api/users", timeout=30, headers=headers).status_code == 403  # a dispatcher is no admin
    logins = [(e.action, e.actor) for e in running.service.store.audit_entries() if e.action.startswith("login")]
    assert logins == [("login_failed", "aigerim"), ("login", "aigerim")]
    user_changes = [e for e in running.service.store.audit_entries() if e.action == "user_change"]
    assert [e.actor for e in user_changes] == ["bootstrap-admin", "bootstrap-admin"]
    assert all("argon2" not in (e.after or "") for e in user_changes)


def test_tokens_expire_and_are_bound_to_their_key() -> None:
    from datetime import datetime, timedelta

    auth = Authenticator("k" * 32, token_ttl=timedelta(minutes=5))
    user = User("d1", Role.DISPATCHER)
    assert auth.principal(auth.issue(user)).role is Role.DISPATCHER
    old = auth.issue(user, now=datetime.now(UTC) - timedelta(minutes=6))
    assert auth.principal(old) is None
    assert Authenticator("x" * 32).principal(auth.issue(user)) is None
    with pytest.raises(ValueError, match="at least 32 characters"):
        Authenticator("short")
    with pytest.raises(ValueError, match="at least 8 characters"):
        hash_password("short")
    assert verify_password(hash_password("long enough"), "long enough")
    assert not verify_password(hash_password("long enough"), "long enougH")


def test_users_add_command_stores_an_argon2_hash(db_url: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import io

    from dispatch import Store
    from qorgau.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-passphrase\n"))
    assert main(["users", "add", "--db", db_url, "--username", "cmdr", "--role", "commander"]) == 0
    assert "user 'cmdr' (commander) saved" in capsys.readouterr().out
    store = Store(db_url)
    user, stored = store.get_user("cmdr")
    assert user.role is Role.COMMANDER and verify_password(stored, "s3cret-passphrase")
    assert [(e.action, e.actor) for e in store.audit_entries()] == [("user_change", "cli")]
    store.close()
    assert main(["users", "add", "--db", db_url, "--username", "u", "--role", "unit"]) == 2
    assert "needs --unit-id" in capsys.readouterr().err


def test_a_disabled_user_is_refused_at_once_with_the_token_it_holds(running: Running) -> None:
    base = running.service.base_url
    admin = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        for username, role in (("dana", "dispatcher"), ("ruslan", "dispatcher")):
            made = admin.post("/api/users", json={"username": username, "password": "correct horse 1", "role": role})
            assert made.status_code == 201, made.text
        tokens = {
            u: httpx.post(f"{base}/api/token", timeout=30, data={"username": u, "password": "correct horse 1"}).json()[
                "access_token"
            ]
            for u in ("dana", "ruslan")
        }
        headers = {u: {"Authorization": f"Bearer {t}"} for u, t in tokens.items()}
        assert httpx.get(f"{base}/api/alerts", timeout=30, headers=headers["dana"]).status_code == 200

        patched = admin.patch("/api/users/dana", json={"disabled": True})
        assert patched.status_code == 200 and patched.json()["disabled"] is True
        refused = httpx.get(f"{base}/api/alerts", timeout=30, headers=headers["dana"])
        assert refused.status_code == 401 and "disabled" in refused.json()["detail"]
        page = httpx.get(f"{base}/map", headers=headers["dana"], timeout=30, follow_redirects=False)
        assert page.status_code in (302, 303, 307) and "/login" in page.headers["location"]  # sent to sign in
        again = httpx.post(f"{base}/api/token", timeout=30, data={"username": "dana", "password": "correct horse 1"})
        assert again.status_code == 401
        assert httpx.get(f"{base}/api/alerts", timeout=30, headers=headers["ruslan"]).status_code == 200  # others stand

        # a changed role: the old token says dispatcher, the user is now a commander: sign in again
        admin.post("/api/users", json={"username": "ruslan", "password": "correct horse 1", "role": "commander"})
        assert httpx.get(f"{base}/api/alerts", timeout=30, headers=headers["ruslan"]).status_code == 401

        assert admin.patch("/api/users/dana", json={"disabled": False}).json()["disabled"] is False
        assert httpx.get(f"{base}/api/alerts", timeout=30, headers=headers["dana"]).status_code == 200
        assert admin.patch("/api/users/nobody", json={"disabled": True}).status_code == 404
        assert (
            httpx.patch(
                f"{base}/api/users/dana", timeout=30, json={"disabled": True}, headers=headers["dana"]
            ).status_code
            == 403
        )
    finally:
        admin.close()
    changes = [e for e in running.service.store.audit_entries() if e.action == "user_change"]
    assert [e.actor for e in changes] == ["bootstrap-admin"] * 5


def test_users_disable_and_enable_commands(db_url: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import io

    from dispatch import Store
    from qorgau.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-passphrase\n"))
    assert main(["users", "add", "--db", db_url, "--username", "cmdr", "--role", "commander"]) == 0
    assert main(["users", "disable", "--db", db_url, "--username", "cmdr"]) == 0
    assert "user 'cmdr' disabled" in capsys.readouterr().out
    store = Store(db_url)
    assert store.get_user("cmdr")[0].disabled
    store.close()
    assert main(["users", "enable", "--db", db_url, "--username", "cmdr"]) == 0
    store = Store(db_url)
    assert not store.get_user("cmdr")[0].disabled
    store.close()
    assert main(["users", "disable", "--db", db_url, "--username", "ghost"]) == 1
    assert "no user 'ghost'" in capsys.readouterr().err
