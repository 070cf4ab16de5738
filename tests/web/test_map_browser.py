"""The dispatcher's live map in a real browser: headless Chromium (Debian's) driven by Playwright.

The service runs with the real Mosquitto and SQLite; SOS presses go over MQTT as from a button.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page
from support import (
    PASSWORD,
    Probe,
    Registry,
    Running,
    add_user,
    page_until,
    report_payload,
    screenshot,
    sign_in_page,
    sos_payload,
)

# The browser tests need one database, not both: the server side runs on both in test_map_live.py.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

JWT_SECRET = "map-browser-tests-secret-0123456789abcdef"


def _device(registry: Registry, site: str) -> str:
    return next(d for d, dev in sorted(registry.devices.items()) if dev.site.value == site)


def _local_hms(utc_iso: str) -> str:
    return (datetime.fromisoformat(utc_iso) + timedelta(hours=5)).strftime("%H:%M:%S")


def test_sos_appears_live_and_the_dispatcher_assigns_the_top_unit(
    running: Running, probe: Probe, registry: Registry, page: Page
) -> None:
    sign_in_page(page, running.service.base_url, add_user(running.service, "aigerim", "dispatcher"))
    hospital = _device(registry, "hospital")

    published = time.monotonic()
    probe.sos(hospital, sos_payload())
    alert_id = probe.next_ack(probe.topics.sos_ack(hospital))["alert_id"]
    page.wait_for_selector(f'path[data-alert-id="{alert_id}"]', state="attached", timeout=2000)
    page.wait_for_selector(f'#q-alerts li[data-alert-id="{alert_id}"]', timeout=2000)
    assert time.monotonic() - published < 2.0
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    alert = running.http.get(f"/api/alerts/{alert_id}").json()
    item = page.locator(f'#q-alerts li[data-alert-id="{alert_id}"]')
    assert "P1" in item.inner_text() and _local_hms(alert["received_at"]) in item.inner_text()  # local time, UTC+5
    marker = page.locator(f'path[data-alert-id="{alert_id}"]')
    assert (marker.get_attribute("data-priority"), marker.get_attribute("data-status")) == ("1", "recommended")
    assert marker.get_attribute("data-flash") == "1" and page.locator("#q-banner").is_visible()  # a new P1 flashes

    # More traffic around it: a street press and a 102 report, so the screenshot shows a working shift.
    probe.sos(_device(registry, "street"), sos_payload())
    near = registry.devices[_device(registry, "other")]
    lat, lon = near.lat + 0.0015, near.lon - 0.002
    probe.publish(probe.topics.app102_report, report_payload(lat, lon, category="assault"))
    page.wait_for_function("window.qorgau.alerts.size === 3", timeout=2000)
    item.click()
    top = alert["recommendations"][0]
    details = page.locator("#q-details")
    details.locator(f'.q-recs li[data-unit-id="{top["unit_id"]}"]').wait_for()
    minutes, seconds = divmod(round(top["eta_s"]), 60)
    assert f"{minutes}:{seconds:02d}" in details.inner_text()
    page.wait_for_selector(
        f'path[data-route-alert-id="{alert_id}"][data-route-unit-id="{top["unit_id"]}"]', state="attached"
    )
    screenshot(page, "map-alert-selected.png")

    details.locator(f'button.q-assign[data-unit-id="{top["unit_id"]}"]').click()
    page.wait_for_selector(
        f'path[data-unit-id="{top["unit_id"]}"][data-unit-status="assigned"]', state="attached", timeout=2000
    )
    page.wait_for_selector(f'path[data-alert-id="{alert_id}"][data-status="assigned"]', state="attached", timeout=2000)
    unit = running.http.get(f"/api/units/{top['unit_id']}").json()
    assert (unit["status"], unit["alert_id"]) == ("assigned", alert_id)
    assert running.http.get(f"/api/alerts/{alert_id}").json()["assigned_unit_id"] == top["unit_id"]
    trail = running.http.get(f"/api/alerts/{alert_id}/timeline").json()["entries"]
    assert ("aigerim", "assign") in [(e["actor"], e["action"]) for e in trail]  # the same audit trail as the API
    screenshot(page, "map-assigned.png")


def test_no_alert_is_missing_after_the_stream_drops(
    running: Running, probe: Probe, registry: Registry, page: Page
) -> None:
    sign_in_page(page, running.service.base_url, add_user(running.service, "aigerim", "dispatcher"))
    street = _device(registry, "street")
    page.route("**/map/events**", lambda route: route.abort("connectionreset"))  # the network goes away ...
    running.service.live_feed.drop_streams()
    page.wait_for_function("window.qorgau.connection !== 'live'", timeout=3000)
    missed = []
    for _ in range(3):
        probe.sos(street, sos_payload())
        missed.append(probe.next_ack(probe.topics.sos_ack(street))["alert_id"])
    time.sleep(0.3)
    assert page.locator("#q-alerts li[data-alert-id]").count() == 0  # nothing came through meanwhile
    page.unroute("**/map/events**")  # ... and comes back: the browser reconnects with Last-Event-ID
    for alert_id in missed:
        page.wait_for_selector(f'#q-alerts li[data-alert-id="{alert_id}"]', timeout=5000)
        page.wait_for_selector(f'path[data-alert-id="{alert_id}"]', state="attached", timeout=1000)
    stats = page.evaluate("window.qorgau.stats")
    assert (stats["snapshots"], stats["resets"]) == (1, 0), "caught up by replay, not by reloading everything"
    assert page.evaluate("window.qorgau.connection") == "live"
    assert page.evaluate("window.__sameDocument") is True


def test_service_restart_the_page_catches_up_by_itself(
    start_service: Callable[..., Running], probe: Probe, registry: Registry, page: Page
) -> None:
    first = start_service(jwt_secret=JWT_SECRET)
    port, base_url = first.service.port, first.service.base_url
    sign_in_page(page, base_url, add_user(first.service, "aigerim", "dispatcher"))
    first.service.stop()
    page.wait_for_function("window.qorgau.connection !== 'live'", timeout=5000)
    street = _device(registry, "street")
    probe.sos(street, sos_payload())  # the broker keeps it for the service's persistent session
    second = start_service(jwt_secret=JWT_SECRET, port=port)
    alert_id = probe.next_ack(probe.topics.sos_ack(street), timeout_s=5)["alert_id"]
    page.wait_for_selector(f'#q-alerts li[data-alert-id="{alert_id}"]', timeout=8000)
    page.wait_for_function("window.qorgau.connection === 'live'", timeout=5000)
    # Another run of the service: its memory is new, but the ids are the database's change seq, so
    # the page is replayed what it missed (from the table) instead of reloading a snapshot.
    stats = page.evaluate("window.qorgau.stats")
    assert (stats["snapshots"], stats["resets"]) == (1, 0)
    assert page.evaluate("window.__sameDocument") is True
    assert second.service.base_url == base_url == page.url.split("/map")[0]


def test_offline_the_page_renders_streets_with_no_request_leaving_the_machine(
    running: Running, probe: Probe, registry: Registry, browser: Browser
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)  # see page()
    outside: list[str] = []
    local: list[str] = []

    def only_local(route):  # type: ignore[no-untyped-def]
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost", "::1"):
            local.append(route.request.url)
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_local)
    page = context.new_page()
    try:
        sign_in_page(page, running.service.base_url, add_user(running.service, "aigerim", "dispatcher"))
        probe.sos(_device(registry, "street"), sos_payload())
        page.wait_for_selector("path[data-alert-id]", state="attached", timeout=2000)
        page.wait_for_function("Number(document.body.dataset.streets) > 0", timeout=5000)
        assert page.evaluate("window.qorgau.streets.points") > 3000  # the whole test city's streets
        inked = page.evaluate(
            """() => {
                const canvas = document.querySelector('.leaflet-q-streets-pane canvas');
                const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                let n = 0;
                for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
                return n;
            }"""
        )
        assert inked > 20_000, f"the street canvas has only {inked} drawn pixels"
        screenshot(page, "map-offline.png")
        # The blocking is real: a request to another host from the page is stopped and seen.
        page.evaluate("fetch('https://tile.example.invalid/0/0/0.png').catch(() => null)")
        page.wait_for_timeout(200)
    finally:
        context.close()
    assert outside == ["https://tile.example.invalid/0/0/0.png"], f"requests left the machine: {outside}"
    assert any(url.endswith("/static/leaflet.js") for url in local)
    assert any("/map/streets.geojson" in url for url in local)


def test_viewer_sees_p1_flash_filters_in_kazakh_but_cannot_act(
    running: Running, probe: Probe, registry: Registry, page: Page
) -> None:
    hospital, street = _device(registry, "hospital"), _device(registry, "street")
    probe.sos(street, sos_payload())
    p2 = probe.next_ack(probe.topics.sos_ack(street))["alert_id"]  # before the page opens: in the snapshot
    sign_in_page(page, running.service.base_url, add_user(running.service, "vika", "viewer"), lang="kk")
    assert page.title() == "Qorgau · кезекшінің картасы"
    page.wait_for_selector(f'#q-alerts li[data-alert-id="{p2}"]')
    assert page.locator(f'path[data-alert-id="{p2}"]').get_attribute("data-flash") is None  # not new to this page
    probe.sos(hospital, sos_payload())
    p1 = probe.next_ack(probe.topics.sos_ack(hospital))["alert_id"]
    page.wait_for_selector(f'path[data-alert-id="{p1}"][data-flash="1"]', state="attached", timeout=2000)
    banner = page.locator("#q-banner")
    assert banner.is_visible() and f"#{p1}" in banner.inner_text() and "P1" in banner.inner_text()
    ids = page.eval_on_selector_all("#q-alerts li[data-alert-id]", "els => els.map(e => Number(e.dataset.alertId))")
    assert ids == [p1, p2]  # by priority, then age

    page.uncheck('input[data-filter="priority"][value="1"]')
    page.wait_for_selector(f'path[data-alert-id="{p1}"]', state="detached", timeout=1000)
    assert page.locator(f'#q-alerts li[data-alert-id="{p1}"]').count() == 0
    page.check('input[data-filter="priority"][value="1"]')
    page.uncheck('input[data-filter="source"][value="sos"]')
    assert page.locator("#q-alerts li[data-alert-id]").count() == 0
    page.check('input[data-filter="source"][value="sos"]')
    page.select_option("#q-window", "1")
    assert page.locator("#q-alerts li[data-alert-id]").count() == 2  # both came in the last hour
    page.uncheck('input[data-filter="status"][value="recommended"]')
    assert page.locator("#q-alerts li[data-alert-id]").count() == 0
    page.check('input[data-filter="status"][value="recommended"]')

    page.click(f'#q-alerts li[data-alert-id="{p1}"]')
    page.locator("#q-details .q-recs li").first.wait_for()
    assert page.locator("#q-details button.q-assign").count() == 0
    assert page.locator("#q-details [data-action]").count() == 0
    assert "Тек қарау" in page.locator("#q-details").inner_text()  # read-only, in Kazakh


def test_the_page_works_under_its_content_security_policy(
    running: Running, probe: Probe, registry: Registry, browser: Browser
) -> None:
    """No bypass here: the page's inline set-up runs by hash, Leaflet, the stream and the streets load."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    blocked: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        username = add_user(running.service, "aigerim", "dispatcher")
        response = page.goto(f"{running.service.base_url}/map")
        assert response is not None and "/login" in page.url
        page.fill("#q-username", username)
        page.fill("#q-password", PASSWORD)
        with page.expect_response(lambda r: r.url.split("?")[0].endswith("/map")) as map_response:
            page.click("button[type=submit]")
        csp = map_response.value.headers["content-security-policy"]
        assert "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        page_until(page, "window.qorgau && window.qorgau.connection === 'live'")
        page_until(page, "Number(document.body.dataset.streets) > 0")
        street = _device(registry, "street")
        probe.sos(street, sos_payload())
        alert_id = probe.next_ack(probe.topics.sos_ack(street))["alert_id"]
        page.wait_for_selector(f'#q-alerts li[data-alert-id="{alert_id}"]', timeout=3000)
        page.click(f'#q-alerts li[data-alert-id="{alert_id}"]')
        page.wait_for_selector("#q-details li[data-unit-id]", timeout=3000)
    finally:
        context.close()
    assert not blocked, f"the Content-Security-Policy blocked: {blocked}"
    assert not errors, f"script errors on the page: {errors}"
