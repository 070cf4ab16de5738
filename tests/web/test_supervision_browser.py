"""Offline SOS buttons on the dispatcher's live map, in a real browser (Debian's Chromium, Playwright)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page
from support import Probe, Running, add_user, now_rfc3339, screenshot, sign_in_page

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

BUTTON = "sos-1"


def _state(page: Page, device_id: str) -> str | None:
    return page.get_attribute(f'path[data-device-id="{device_id}"]', "data-device-state")


def test_an_offline_button_is_drawn_apart_with_a_label_and_returns_live(
    start_service: Callable[..., Running], probe: Probe, page: Page
) -> None:
    running = start_service(heartbeat_interval_s=30.0)
    probe.publish(probe.topics.sos_status(BUTTON), {"state": "online", "ts": now_rfc3339()})
    sign_in_page(page, running.service.base_url, add_user(running.service, "aigerim", "dispatcher"), lang="kk")
    page.wait_for_selector(f'path[data-device-id="{BUTTON}"][data-device-state="online"]', timeout=5000)
    assert page.locator("path[data-device-id]").count() == len(running.service.supervisor.devices)
    assert page.locator(".q-device-offline").count() == 0

    probe.publish(probe.topics.sos_status(BUTTON), {"state": "offline"})  # the button's last will
    page.wait_for_selector(f'path[data-device-id="{BUTTON}"][data-device-state="offline"]', timeout=3000)
    label = page.locator(".q-device-offline")
    label.wait_for(timeout=3000)
    assert label.inner_text().strip() == f"Түйме байланыста емес · {BUTTON}"
    offline_colour = page.get_attribute(f'path[data-device-id="{BUTTON}"]', "stroke")
    online_colour = page.get_attribute('path[data-device-id="sos-2"]', "stroke")
    assert offline_colour == "#d50000" and online_colour != offline_colour
    screenshot(page, "map-device-offline.png")

    probe.publish(probe.topics.sos_heartbeat(BUTTON), {"ts": now_rfc3339()})  # heard again: no reload needed
    page.wait_for_selector(f'path[data-device-id="{BUTTON}"][data-device-state="online"]', timeout=3000)
    page.wait_for_selector(".q-device-offline", state="detached", timeout=2000)  # the label fades out
    assert page.evaluate("window.__sameDocument") is True
