"""The officer's handheld in a real browser: headless Chromium at phone size (360 x 640, touch), geolocation emulated.

The service runs with the real Mosquitto and SQLite. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from support import PASSWORD, Registry, Running, add_user, page_until, screenshot

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

PHONE = {"width": 360, "height": 640}


def _unit(registry: Registry, kind: str) -> str:
    return next(u.id for u in registry.units if u.kind.value == kind)


@pytest.fixture
def phone(browser: Browser, registry: Registry) -> Iterator[BrowserContext]:
    """A phone: small touch screen, location allowed and somewhere in the city. No CSP bypass."""
    unit = next(u for u in registry.units if u.kind.value == "foot")
    context = browser.new_context(
        viewport=PHONE,
        has_touch=True,
        is_mobile=True,
        geolocation={"latitude": unit.lat, "longitude": unit.lon, "accuracy": 8},
        permissions=["geolocation"],
    )
    yield context
    context.close()


def _sign_in(page: Page, base_url: str, username: str, *, lang: str = "ru") -> None:
    page.goto(f"{base_url}/unit?lang={lang}")
    assert "/login" in page.url  # not signed in yet
    page.fill("#q-username", username)
    page.fill("#q-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/unit?lang=*")
    page_until(page, "window.qorgau !== undefined")


def test_the_handheld_opens_on_a_phone_under_its_csp_with_the_streets_and_a_service_worker(
    running: Running, registry: Registry, phone: BrowserContext
) -> None:
    page = phone.new_page()
    errors: list[str] = []
    blocked: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    unit_id = _unit(registry, "foot")
    _sign_in(page, running.service.base_url, add_user(running.service, "officer", "unit", unit_id=unit_id), lang="en")
    assert page.title() == "Qorgau · officer's handheld"
    page_until(page, "Number(document.body.dataset.streets) > 3000")  # the whole test city's streets, offline
    actions = page.eval_on_selector_all("#u-actions button[data-action]", "els => els.map(e => e.dataset.action)")
    assert actions == ["ack", "en_route", "on_scene", "close", "available", "off_duty"]
    for action in ("available", "off_duty"):  # big enough for a thumb, on a 360 px screen
        box = page.locator(f'button[data-action="{action}"]').bounding_box()
        assert box is not None and box["height"] >= 44 and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert page.locator("#u-none").is_visible()  # no order yet
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing overflows sideways
    page_until(page, "navigator.serviceWorker.controller !== null || undefined", timeout_s=10)
    scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == f"{running.service.base_url}/unit"
    cached = page.evaluate(
        """async () => {
            const keys = await caches.keys();
            const cache = await caches.open(keys.find(k => k.startsWith('qorgau-unit-')));
            return (await cache.keys()).map(r => new URL(r.url).pathname).sort();
        }"""
    )
    assert {"/unit", "/static/handheld.js", "/static/leaflet.js", "/map/streets.geojson"} <= set(cached)
    screenshot(page, "handheld-idle.png")
    assert not blocked, f"the Content-Security-Policy blocked: {blocked}"
    assert not errors, f"script errors on the page: {errors}"


def test_a_dispatcher_opening_the_handheld_is_sent_to_the_map(
    running: Running, registry: Registry, browser: Browser
) -> None:
    context = browser.new_context(viewport=PHONE, has_touch=True, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(f"{running.service.base_url}/unit?lang=ru")
        page.fill("#q-username", add_user(running.service, "aigerim", "dispatcher"))
        page.fill("#q-password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/map?lang=*")
        page.goto(f"{running.service.base_url}/unit")
        assert "/map" in page.url and page.locator("#u-actions").count() == 0
    finally:
        context.close()
