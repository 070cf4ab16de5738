"""The commander's plans console (/plans) in a real browser: headless Chromium, the real Mosquitto and SQLite.

A commander makes a plan from Qorgau's own alert history on the page and sees its map; a
dispatcher is refused. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page
from support import (
    PASSWORD,
    Running,
    add_user,
    page_until,
    report_payload,
    screenshot,
    sign_in,
    sign_in_page,
    wait_plan_done,
)

from dispatch import Role

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def history_reports(running: Running, n: int = 16, seed: int = 5) -> list[int]:
    """``n`` 102 reports now, at nodes far apart (no duplicate links); their alert ids."""
    service = running.service.service
    net = running.service.network
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for node in rng.permutation(net.n_nodes):
        lat, lon = float(net.node_lat[node]), float(net.node_lon[node])
        if all(abs(lat - net.node_lat[p]) * 111_000 > 150 or abs(lon - net.node_lon[p]) * 81_000 > 150 for p in picked):
            picked.append(int(node))
        if len(picked) == n:
            break
    ids = []
    for node in picked:
        payload = report_payload(float(net.node_lat[node]), float(net.node_lon[node]))
        ack = service.ingest_app102(json.dumps(payload).encode())
        assert ack.accepted, ack
        ids.append(int(ack.alert_id))
    return ids


def shift_now() -> str:
    """A two-hour shift from this local hour: the hours the reports came in."""
    hour = datetime.now(ZoneInfo("Asia/Almaty")).hour
    return f"{hour:02d}:00-{(hour + 2) % 24:02d}:00"


def small_plan(running: Running, *, patrols: int = 2) -> str:
    """A done plan from the alert history for tomorrow's shift at this hour; its id."""
    history_reports(running)
    tomorrow = datetime.now(ZoneInfo("Asia/Almaty")).date() + timedelta(days=1)
    body = {
        "history": {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        "patrols": patrols,
        "shift": shift_now(),
        "date": tomorrow.isoformat(),
        "iterations": 50,
        "time_limit_s": 5,
        "seed": 1,
        "lang": "en",
    }
    commander = running.client(Role.COMMANDER)
    r = commander.post("/api/plans", json=body)
    assert r.status_code == 202, r.text
    done = wait_plan_done(commander, r.json()["id"])
    assert done["status"] == "done", done
    return str(done["id"])


def open_console(page: Page, base_url: str, username: str, *, lang: str = "en") -> None:
    page.goto(f"{base_url}/plans?lang={lang}")
    assert "/login" in page.url  # not signed in yet
    page.fill("#q-username", username)
    page.fill("#q-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/plans?lang=*")


def make_plan_on_page(page: Page, *, patrols: int = 1, timeout_s: float = 180.0) -> str:
    """Fill the form for a small plan from the alert history, submit it and wait; the plan's id."""
    tomorrow = datetime.now(ZoneInfo("Asia/Almaty")).date() + timedelta(days=1)  # the plan learns from before its shift
    page.fill("#p-date", tomorrow.isoformat())
    page.fill("#p-shift", shift_now())
    page.fill("#p-patrols", str(patrols))
    page.fill("#p-time_limit", "5")
    page.fill("#p-seed", "3")
    page.click("#p-make")
    page_until(
        page,
        "document.body.dataset.plan || document.querySelector('#p-status').dataset.state === 'failed'",
        timeout_s=timeout_s,
    )
    assert page.locator("#p-status").get_attribute("data-state") == "done", page.locator("#p-error").inner_text()
    return str(page.evaluate("document.body.dataset.plan"))


def test_a_commander_makes_a_plan_from_the_alert_history_on_the_page_and_sees_its_map(
    start_service: Callable[..., Running], browser: Browser, tmp_path: Path
) -> None:
    running = start_service(plans_dir=tmp_path / "plans")
    ids = history_reports(running)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # no CSP bypass: the page as served
    page = context.new_page()
    errors: list[str] = []
    blocked: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        open_console(page, running.service.base_url, add_user(running.service, "dana", "commander"))
        page_until(page, "document.body.dataset.streets === '1'")
        booths = [u for u in running.service.service.units() if u.kind.value == "booth"]
        assert page.locator("path[data-booth-id]").count() == len(booths)
        # Leave one booth out on the map: the plan starts from the others only.
        left_out = booths[0].id
        page.locator(f'path[data-booth-id="{left_out}"]').click()
        assert page.locator("#p-booth-count").get_attribute("data-selected") == str(len(booths) - 1)

        plan_id = make_plan_on_page(page, patrols=2)
        record = running.client("commander").get(f"/api/plans/{plan_id}").json()
        assert record["summary"]["incidents"]["kept"] == len(ids)
        assert left_out not in {b["id"] for b in record["booths"]}
        assert record["request"]["history"] is None  # the history became the plan's own incident file
        assert "2 patrols" in page.locator("#p-summary").inner_text()

        # The plan's own map, inside the page.
        frame = page.frame_locator("#p-map")
        frame.locator(".leaflet-container").wait_for(timeout=20_000)
        assert frame.locator(".leaflet-interactive").count() > 0  # routes, stops, hot spots drawn
        # Downloads: GPX per patrol, GeoJSON, md, csv, each served.
        files = sorted(a.get_attribute("data-file") or "" for a in page.locator("#p-downloads a").all())
        assert files == sorted(["plan.csv", "plan.md", "routes.geojson", "patrol_P01.gpx", "patrol_P02.gpx"])
        commander = running.client("commander")
        for name in files:
            href = page.locator(f'#p-downloads a[data-file="{name}"]').get_attribute("href")
            assert commander.get(str(href)).status_code == 200
        # The list of plans has it, done.
        row = page.locator(f'#p-list tr[data-plan-id="{plan_id}"]')
        row.wait_for()
        assert row.get_attribute("data-status") == "done" and "dana" in row.inner_text()
        screenshot(page, "plans-console.png")

        # Issue it, with a dispatcher's map and a unit's handheld open: both hear it live.
        foot = sorted(u.id for u in running.service.service.units() if u.kind.value == "foot")
        dispatcher = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
        phone = browser.new_context(viewport={"width": 360, "height": 640}, has_touch=True, is_mobile=True)
        try:
            map_page = dispatcher.new_page()
            sign_in_page(map_page, running.service.base_url, add_user(running.service, "aigerim", "dispatcher"))
            page_until(map_page, "window.qorgau.plan.id === null")
            unit_page = phone.new_page()
            unit_page.goto(f"{running.service.base_url}/unit?lang=en")
            unit_page.fill("#q-username", add_user(running.service, "officer", "unit", unit_id=foot[0]))
            unit_page.fill("#q-password", PASSWORD)
            unit_page.click("button[type=submit]")
            unit_page.wait_for_url("**/unit?lang=*")
            page_until(unit_page, "window.qorgau && window.qorgau.connection === 'live'")
            assert unit_page.locator("#u-plan").is_hidden()

            page.click("#p-issue-button")
            page.wait_for_selector("#p-issued[data-issued]")
            assert f"P01 → {foot[0]}" in page.locator("#p-issued").inner_text()
            page.wait_for_selector(f'#p-list tr[data-plan-id="{plan_id}"] .p-state[data-state="issued"]')

            # The dispatcher's map gains the plan layer without a reload.
            page_until(map_page, f"window.qorgau.plan.id === '{plan_id}'", timeout_s=10)
            map_page.wait_for_selector(f'path[data-plan-route="P01"][data-plan-unit="{foot[0]}"]', state="attached")
            assert map_page.locator("path[data-plan-route]").count() == 2
            assert map_page.locator("path[data-plan-stop]").count() == sum(
                r["stops"] for r in record["summary"]["routes"]
            )
            assert map_page.locator("path[data-plan-hot-spot]").count() == record["summary"]["hotspots"]
            assert map_page.evaluate("window.__sameDocument") is True
            screenshot(map_page, "map-patrol-plan.png")
            # ... and it can be turned off.
            map_page.locator(".leaflet-control-layers").hover()
            map_page.get_by_label("План патрулирования").uncheck()
            assert map_page.evaluate("window.qorgau.planShown") is False
            assert map_page.locator("path[data-plan-route]").count() == 0

            # The unit's handheld shows its plan: stops with their times, the route on its map.
            unit_page.wait_for_selector("#u-plan:not([hidden])", timeout=10_000)
            mine = running.client(Role.UNIT, unit_id=foot[0]).get(f"/api/units/{foot[0]}/plan").json()["plan"]
            items = unit_page.locator("#u-plan-stops li")
            assert items.count() == len(mine["stops"]) > 0
            first = mine["stops"][0]
            arrive = (datetime.fromisoformat(first["arrive"]).astimezone(UTC) + timedelta(hours=5)).strftime("%H:%M")
            assert items.first.inner_text().startswith(f"1. {arrive}")
            assert "P01" in unit_page.locator("#u-plan-title").inner_text()
            assert unit_page.evaluate("window.qorgau.plan.plan_id") == plan_id
            screenshot(unit_page, "handheld-plan.png")
            # A reload shows it again (from the API).
            unit_page.reload()
            unit_page.wait_for_selector("#u-plan:not([hidden])")
            assert unit_page.locator("#u-plan-stops li").count() == len(mine["stops"])
        finally:
            dispatcher.close()
            phone.close()

        # A period without alerts: a clear message, no plan.
        page.fill("#p-since", "2020-01-01T00:00")
        page.fill("#p-until", "2020-02-01T00:00")
        page.click("#p-make")
        page.locator("#p-error").wait_for(state="visible")
        assert "nothing to plan from" in page.locator("#p-error").inner_text()
        assert "too few incidents" in page.locator("#p-error").inner_text()
    finally:
        context.close()
    assert not blocked, f"the Content-Security-Policy blocked: {blocked}"
    assert not errors, f"script errors on the page: {errors}"


def test_a_plan_from_an_uploaded_file_in_kazakh(
    start_service: Callable[..., Running], page: Page, tmp_path: Path
) -> None:
    running = start_service(plans_dir=tmp_path / "plans")
    net = running.service.network
    rng = np.random.default_rng(2)
    nodes = rng.choice(net.n_nodes, 60, replace=False)
    day = datetime.now(ZoneInfo("Asia/Almaty")).date()
    lines = ["lat,lon,occurred_at"]
    for k, node in enumerate(nodes):
        lines.append(
            f"{net.node_lat[node]:.6f},{net.node_lon[node]:.6f},{day.replace(day=1).isoformat()}T{k % 24:02d}:30:00+05:00"
        )
    path = tmp_path / "incidents.csv"
    path.write_text("\n".join(lines) + "\n")
    open_console(page, running.service.base_url, add_user(running.service, "dana", "commander"), lang="kk")
    assert "Патрульдер саны" in page.locator("#p-form").inner_text()
    page.check('input[name="source"][value="file"]')
    page.set_input_files("#p-file", str(path))
    page.fill("#p-shift", "00:00-23:00")
    page.fill("#p-patrols", "1")
    page.fill("#p-time_limit", "5")
    page.click("#p-make")
    page_until(
        page,
        "document.body.dataset.plan || document.querySelector('#p-status').dataset.state === 'failed'",
        timeout_s=180,
    )
    assert page.locator("#p-status").get_attribute("data-state") == "done", page.locator("#p-error").inner_text()
    assert "дайын" in page.locator("#p-status").inner_text()


def test_a_dispatcher_cannot_open_the_plans_console(
    start_service: Callable[..., Running], page: Page, tmp_path: Path
) -> None:
    running = start_service(plans_dir=tmp_path / "plans")
    username = add_user(running.service, "aigerim", "dispatcher")
    page.goto(f"{running.service.base_url}/plans?lang=en")
    page.fill("#q-username", username)
    page.fill("#q-password", PASSWORD)
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/plans")) as refused:
        page.click("button[type=submit]")
    assert refused.value.status == 403
    assert "Only a commander" in page.content()
    assert page.locator("#p-form").count() == 0
    client: httpx.Client = sign_in(running.service.base_url, username)
    try:
        assert client.get("/plans").status_code == 403
        assert client.get("/api/plans").status_code == 403
    finally:
        client.close()
