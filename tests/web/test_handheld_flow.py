"""An order's life on the officer's handheld, in headless Chromium at phone size, with the real API and Mosquitto.

Assign through the API and the order is on the phone; the officer's taps move the alert (and the
dispatcher's map sees it); the phone's emulated position moves the unit; a tap made offline is
delivered once on reconnect; a re-assigned order leaves the first phone; nobody sees another
unit's order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from playwright.sync_api import APIResponse, Browser, BrowserContext, Page, Route
from support import PASSWORD, Registry, Running, add_user, report_payload, sign_in_page, wait_for

from dispatch import Role

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

PHONE = {"width": 360, "height": 640}


_poll = partial(wait_for, timeout_s=5.0)  # the page and the service answer within 5 s


@pytest.fixture
def phones(browser: Browser) -> Iterator[Callable[[float, float], BrowserContext]]:
    made: list[BrowserContext] = []

    def make(lat: float, lon: float) -> BrowserContext:
        context = browser.new_context(
            viewport=PHONE,
            has_touch=True,
            is_mobile=True,
            geolocation={"latitude": lat, "longitude": lon, "accuracy": 8},
            permissions=["geolocation"],
        )
        made.append(context)
        return context

    yield make
    for c in made:
        c.close()


def _open(context: BrowserContext, base_url: str, username: str) -> Page:
    page = context.new_page()
    page.goto(f"{base_url}/unit?lang=en")
    page.fill("#q-username", username)
    page.fill("#q-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/unit?lang=*")
    _poll(lambda: page.evaluate("window.qorgau !== undefined && document.body.dataset.conn === 'live'"), what="live")
    return page


def _alert_near(running: Running, lat: float, lon: float) -> int:
    ack = running.service.service.ingest_app102(json.dumps(report_payload(lat + 0.002, lon + 0.002)).encode())
    assert ack.accepted, ack
    return int(ack.alert_id)


def _on_phone(page: Page) -> str | None:
    return page.get_attribute("#u-order", "data-alert-id") if page.locator("#u-order").is_visible() else None


def test_an_order_reaches_the_phone_and_the_officers_taps_move_it(
    running: Running, registry: Registry, phones: Callable[[float, float], BrowserContext], page: Page
) -> None:
    unit = next(u for u in registry.units if u.kind.value == "foot")
    base = running.service.base_url
    phone = _open(phones(unit.lat, unit.lon), base, add_user(running.service, "officer-a", "unit", unit_id=unit.id))
    sign_in_page(page, base, add_user(running.service, "aigerim", "dispatcher"))  # the dispatcher's map, beside it
    alert = _alert_near(running, unit.lat, unit.lon)

    started = time.monotonic()
    assert running.http.post(f"/api/alerts/{alert}/assign", json={"unit_id": unit.id}).status_code == 200
    _poll(lambda: _on_phone(phone) == str(alert), timeout_s=2.0, what="the order on the handheld")
    delivered_s = time.monotonic() - started
    assert phone.get_attribute("#u-order", "data-order-id")
    assert phone.locator("#u-deadline").is_visible()  # not acknowledged yet: its deadline counts down

    phone.click('button[data-action="ack"]')
    _poll(lambda: running.http.get(f"/api/alerts/{alert}").json()["status"] == "acknowledged", what="acknowledged")
    _poll(
        lambda: page.get_attribute(f'#q-alerts li[data-alert-id="{alert}"]', "data-status") == "acknowledged",
        what="the dispatcher's map showing the acknowledgement",
    )
    assert not phone.locator("#u-deadline").is_visible()

    # The phone moves: the unit moves in the API (the page sends a fix after 10 m).
    phone.context.set_geolocation({"latitude": unit.lat + 0.003, "longitude": unit.lon, "accuracy": 6})
    _poll(
        lambda: abs(running.http.get(f"/api/units/{unit.id}").json()["lat"] - (unit.lat + 0.003)) < 1e-5,
        timeout_s=15.0,
        what="the unit's new position in the API",
    )

    # Offline: En route is queued, shown as pending, and delivered once on reconnect.
    phone.context.set_offline(True)
    phone.click('button[data-action="en_route"]')
    _poll(lambda: phone.locator("#u-pending").is_visible(), what="the pending tap")
    time.sleep(1.0)
    assert running.http.get(f"/api/alerts/{alert}").json()["status"] == "acknowledged"  # nothing reached it
    phone.context.set_offline(False)
    phone.evaluate("window.dispatchEvent(new Event('online'))")
    _poll(
        lambda: running.http.get(f"/api/alerts/{alert}").json()["status"] == "en_route", timeout_s=10, what="en route"
    )
    _poll(lambda: not phone.locator("#u-pending").is_visible(), what="the queue emptied")
    entries = running.http.get(f"/api/alerts/{alert}/timeline").json()["entries"]
    assert _en_route_moves(entries) == 1, [(e["action"], e["unit_id"]) for e in entries if _to(e)]
    assert all(e["actor"] == "officer-a" for e in entries if _to(e) in ("acknowledged", "en_route"))
    print(f"order on the handheld {delivered_s:.2f} s after the assignment")


def _to(entry: dict) -> str | None:
    """The alert status an audit entry moved to (None when it did not change it)."""
    before, after = entry.get("before") or {}, entry.get("after") or {}
    status = after.get("status") if isinstance(after, dict) else None
    return status if status != (before.get("status") if isinstance(before, dict) else None) else None


def _en_route_moves(entries: list[dict]) -> int:
    """How many audit entries moved the alert (not the unit, which moves with it) to en_route."""
    return sum(1 for e in entries if e["action"] == "state_change" and _to(e) == "en_route")


def test_a_reassigned_order_leaves_the_first_phone_and_no_one_sees_anothers_order(
    running: Running, registry: Registry, phones: Callable[[float, float], BrowserContext]
) -> None:
    foot = [u for u in registry.units if u.kind.value == "foot"][:2]
    base = running.service.base_url
    first = _open(
        phones(foot[0].lat, foot[0].lon), base, add_user(running.service, "officer-b", "unit", unit_id=foot[0].id)
    )
    second = _open(
        phones(foot[1].lat, foot[1].lon), base, add_user(running.service, "officer-c", "unit", unit_id=foot[1].id)
    )
    alert = _alert_near(running, foot[0].lat, foot[0].lon)
    assert running.http.post(f"/api/alerts/{alert}/assign", json={"unit_id": foot[0].id}).status_code == 200
    _poll(lambda: _on_phone(first) == str(alert), what="the order on the first phone")
    assert _on_phone(second) is None  # the other unit's phone shows nothing of it
    other = running.client(Role.UNIT, unit_id=foot[1].id)
    assert other.get(f"/api/units/{foot[0].id}/order").status_code == 403
    r = other.post(f"/api/units/{foot[0].id}/order/status", json={"alert_id": alert, "status": "acknowledged"})
    assert r.status_code == 403

    r = running.http.post(f"/api/alerts/{alert}/assign", json={"unit_id": foot[1].id, "reason": "closer"})
    assert r.status_code == 200, r.text
    _poll(lambda: _on_phone(first) is None, what="the order leaving the first phone")
    assert first.locator("#u-msg").is_visible()  # and it says why
    _poll(lambda: _on_phone(second) == str(alert), what="the order on the second phone")


def test_a_refresh_answered_after_the_order_event_does_not_take_the_order_away(
    running: Running, registry: Registry, phones: Callable[[float, float], BrowserContext]
) -> None:
    """The page asks for its order on every connect; an answer from before an order event that
    arrives after it is stale: dropped and asked again (CI once saw the order vanish so)."""
    unit = [u for u in registry.units if u.kind.value == "foot"][3]
    context = phones(unit.lat, unit.lon)
    phone = _open(context, running.service.base_url, add_user(running.service, "officer-e", "unit", unit_id=unit.id))
    phone.evaluate("window.qorgau.refresh()")  # the ask of the stream's opening, if still on its way, is answered
    held: list[tuple[Route, APIResponse]] = []
    path = f"**/api/units/{unit.id}/order"
    context.route(path, lambda route: held.append((route, route.fetch())))  # the answer as of now: no order
    phone.evaluate("window.qorgau.refresh(); null")
    _poll(lambda: phone.wait_for_timeout(20) or held, what="the refresh asked and held")
    alert = _alert_near(running, unit.lat, unit.lon)
    assert running.http.post(f"/api/alerts/{alert}/assign", json={"unit_id": unit.id}).status_code == 200
    _poll(lambda: _on_phone(phone) == str(alert), what="the order event on the phone")
    route, before_the_order = held[0]
    assert len(held) == 1 and before_the_order.json()["order"] is None
    route.fulfill(response=before_the_order)  # the old answer arrives after the event
    context.unroute(path)
    phone.wait_for_timeout(500)  # the page has taken the old answer in
    assert _on_phone(phone) == str(alert)  # the order stays
    assert phone.evaluate("window.qorgau.stats.staleRefreshes") == 1  # the old answer was dropped ...
    _poll(
        lambda: phone.evaluate("window.qorgau.stats.refreshes") >= 3, what="the order asked again"
    )  # ... and asked anew
    assert _on_phone(phone) == str(alert)


def test_the_current_order_and_its_route_stay_on_the_phone_offline(
    running: Running, registry: Registry, phones: Callable[[float, float], BrowserContext]
) -> None:
    unit = [u for u in registry.units if u.kind.value == "foot"][2]
    base = running.service.base_url
    context = phones(unit.lat, unit.lon)
    phone = _open(context, base, add_user(running.service, "officer-d", "unit", unit_id=unit.id))
    alert = _alert_near(running, unit.lat, unit.lon)
    assert running.http.post(f"/api/alerts/{alert}/assign", json={"unit_id": unit.id}).status_code == 200
    _poll(lambda: _on_phone(phone) == str(alert), what="the order on the phone")
    _poll(lambda: phone.evaluate("navigator.serviceWorker.controller !== null"), timeout_s=10, what="the worker")
    phone.reload()  # now through the service worker, which keeps the page, the streets and the order
    _poll(lambda: _on_phone(phone) == str(alert), what="the order after a reload")
    _poll(lambda: phone.evaluate("Number(document.body.dataset.streets) > 3000"), what="the streets")

    context.set_offline(True)
    phone.reload()
    _poll(lambda: _on_phone(phone) == str(alert), what="the order, offline")
    _poll(lambda: phone.evaluate("Number(document.body.dataset.streets) > 3000"), what="the streets, offline")
    assert phone.locator("#u-street").inner_text().strip()  # the order's details, not an empty shell
    # Its route (drawn on the canvas), as the service gave it while online.
    route = running.client(Role.UNIT, unit_id=unit.id).get(f"/api/units/{unit.id}/order").json()["order"]["route"]
    assert len(route) >= 2 and phone.evaluate("window.qorgau.order.route") == route
