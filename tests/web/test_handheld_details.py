"""The handheld's details in headless Chromium at phone size (issue 12), with the real API and Mosquitto.

A new order vibrates and beeps; its acknowledgement deadline counts down; the alert's time is the
city's local time; a fix worse than ``QORGAU_LOCATION_ACCURACY_MAX_M`` is shown to the officer as
flagged and does not move the unit; the officer closes the order with an outcome and a note
(the dialog), and the Off duty and Available buttons set the unit's status.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page
from support import PASSWORD, Registry, Running, add_user, report_payload, wait_for

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

# Records every navigator.vibrate() call (then does what the browser does): headless Chromium has no vibrator.
RECORD_VIBRATIONS = """
(() => {
  const real = navigator.vibrate ? navigator.vibrate.bind(navigator) : null;
  window.__vibrations = [];
  navigator.vibrate = (pattern) => { window.__vibrations.push(pattern); return real ? real(pattern) : false; };
})();
"""


_poll = partial(wait_for, timeout_s=5.0)  # the page and the service answer within 5 s


def test_an_order_alarms_counts_down_and_closes_with_an_outcome_and_a_bad_fix_is_flagged(
    running: Running, registry: Registry, browser: Browser
) -> None:
    unit = next(u for u in registry.units if u.kind.value == "foot")
    limit = running.service.settings.location_accuracy_max_m
    context = browser.new_context(
        viewport={"width": 360, "height": 640},
        has_touch=True,
        is_mobile=True,
        geolocation={"latitude": unit.lat, "longitude": unit.lon, "accuracy": 8},
        permissions=["geolocation"],
    )
    context.add_init_script(RECORD_VIBRATIONS)
    errors: list[str] = []
    try:
        phone: Page = context.new_page()
        phone.on("pageerror", lambda e: errors.append(str(e)))
        officer = add_user(running.service, "officer-e", "unit", unit_id=unit.id)
        phone.goto(f"{running.service.base_url}/unit?lang=en")
        phone.fill("#q-username", officer)
        phone.fill("#q-password", PASSWORD)
        phone.click("button[type=submit]")  # the tap that also lets the page make sound later
        phone.wait_for_url("**/unit?lang=*")
        _poll(lambda: phone.evaluate("document.body.dataset.conn === 'live'"), what="live")
        _poll(lambda: phone.get_attribute("#u-fix", "data-kind") == "ok", timeout_s=10, what="the first fix sent")

        # A fix worse than the limit: shown to the officer as flagged, and the unit stays where it was.
        phone.context.set_geolocation({"latitude": unit.lat + 0.004, "longitude": unit.lon, "accuracy": limit + 40})
        _poll(lambda: phone.get_attribute("#u-fix", "data-kind") == "flagged", timeout_s=15, what="the flagged fix")
        shown = phone.inner_text("#u-fix")
        assert f"{round(limit + 40)}" in shown and f"{round(limit)}" in shown, shown
        assert running.http.get(f"/api/units/{unit.id}").json()["lat"] == pytest.approx(unit.lat, abs=1e-6)
        phone.context.set_geolocation({"latitude": unit.lat, "longitude": unit.lon, "accuracy": 8})

        ack = running.service.service.ingest_app102(json.dumps(report_payload(unit.lat + 0.002, unit.lon)).encode())
        alert = int(ack.alert_id)
        assert running.http.post(f"/api/alerts/{alert}/assign", json={"unit_id": unit.id}).status_code == 200
        _poll(lambda: phone.get_attribute("#u-order", "data-alert-id") == str(alert), what="the order")

        # It alarms: a vibration pattern and a beep (the Web Audio API's oscillators).
        _poll(lambda: phone.evaluate("window.__vibrations.length") >= 1, what="a vibration")
        assert phone.evaluate("window.__vibrations[0]") == [400, 150, 400, 150, 800]
        stats = phone.evaluate("window.qorgau.stats")
        assert stats["alarms"] >= 1 and stats["beeps"] >= 1, stats

        # Its deadline counts down, second by second, to the API's ack_deadline.
        first = phone.inner_text("#u-deadline")
        _poll(lambda: phone.inner_text("#u-deadline") != first, timeout_s=3, what="the countdown ticking")
        order = running.http.get(f"/api/alerts/{alert}").json()
        due = datetime.fromisoformat(
            running.client("dispatcher").get(f"/api/units/{unit.id}/order").json()["order"]["ack_deadline"]
        )
        left = (due - datetime.now(due.tzinfo)).total_seconds()
        m = re.search(r"(\d+):(\d\d)", phone.inner_text("#u-deadline"))
        assert m, phone.inner_text("#u-deadline")
        assert abs(int(m.group(1)) * 60 + int(m.group(2)) - left) <= 3

        # The alert's time is the city's local time (Asia/Almaty), not UTC.
        received = datetime.fromisoformat(order["received_at"]).astimezone(ZoneInfo(running.service.settings.timezone))
        assert received.strftime("%H:%M:%S") in phone.inner_text("#u-since")

        for action, status in (("ack", "acknowledged"), ("en_route", "en_route"), ("on_scene", "on_scene")):
            phone.click(f'button[data-action="{action}"]')
            _poll(lambda s=status: running.http.get(f"/api/alerts/{alert}").json()["status"] == s, what=status)

        # Close: the dialog asks for the outcome and a note.
        phone.click('button[data-action="close"]')
        assert phone.locator("#u-close-dialog").is_visible()
        phone.check('input[name="outcome"][value="false_alarm"]')
        phone.fill("#u-note", "pressed by a child playing")
        phone.click("#u-close-confirm")
        closed = _poll(
            lambda: (a := running.http.get(f"/api/alerts/{alert}").json())["status"] == "closed" and a,
            what="closed",
        )
        assert (closed["outcome"], closed["close_note"]) == ("false_alarm", "pressed by a child playing")
        entries = running.http.get(f"/api/alerts/{alert}/timeline").json()["entries"]
        assert next(e["actor"] for e in entries if (e.get("after") or {}).get("status") == "closed") == officer
        _poll(lambda: not phone.locator("#u-order").is_visible(), what="the order leaving the phone")
        assert running.http.get(f"/api/units/{unit.id}").json()["status"] == "available"

        phone.click('button[data-action="off_duty"]')
        _poll(lambda: running.http.get(f"/api/units/{unit.id}").json()["status"] == "off_duty", what="off duty")
        phone.click('button[data-action="available"]')
        _poll(lambda: running.http.get(f"/api/units/{unit.id}").json()["status"] == "available", what="available")
    finally:
        context.close()
    assert not errors, errors
