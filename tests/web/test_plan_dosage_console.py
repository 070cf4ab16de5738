"""The commander's loop in the browser (issue 14): on /plans a commander makes a plan from an uploaded
file and issues it, simulated patrols walk it on a clock shared with the service, and the console
shows the dose delivered, refreshed while the shift runs, under the page's own Content-Security-Policy
(headless Chromium, the real Mosquitto and SQLite)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page
from support import (
    PASSWORD,
    WALK_SHIFT,
    Registry,
    Running,
    add_user,
    clear_retained,
    clustered_incidents_csv,
    page_until,
    screenshot,
    wait_for,
    walk_until,
)

from dispatch import Role
from patrol_planner.dosage import read_plan
from qorgau.patrols import ManualClock, PatrolWalkers
from web.pages import plans_catalogue


def dose(page: Page) -> dict[str, str]:
    return dict(page.evaluate("Object.assign({}, document.querySelector('#p-dosage').dataset)"))


def cell(page: Page, row: str, key: str) -> float:
    return float(page.locator(f'{row} td[data-k="{key}"]').get_attribute("data-value") or "nan")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_console_shows_what_the_patrols_of_an_issued_plan_delivered(
    start_service: Callable[..., Running],
    browser: Browser,
    registry: Registry,
    mqtt_url: str,
    topic_root: str,
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    running = start_service(plans_dir=tmp_path / "plans", clock=clock)
    tomorrow = datetime.now(ZoneInfo("Asia/Almaty")).date() + timedelta(days=1)
    incidents = tmp_path / "incidents.csv"
    incidents.write_text(clustered_incidents_csv(running.service.network, tomorrow))
    walkers = PatrolWalkers(
        url=mqtt_url, topic_root=topic_root, units=registry.units, clock=clock, told={"P01": "on_time", "P02": "skip"}
    ).start()
    context = browser.new_context(viewport={"width": 1400, "height": 1200})  # no CSP bypass: the page as served
    page = context.new_page()
    errors: list[str] = []
    blocked: list[str] = []
    dosage_requests: list[str] = []
    page.on("request", lambda r: dosage_requests.append(r.url) if "/dosage?" in r.url else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        # The commander makes the plan on the page, from a file, and issues it.
        page.goto(f"{running.service.base_url}/plans?lang=en&refresh=2")
        page.fill("#q-username", add_user(running.service, "dana", "commander"))
        page.fill("#q-password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/plans?*")
        page.goto(f"{running.service.base_url}/plans?lang=en&refresh=2")  # the dose asked for every 2 s
        page.check('input[name="source"][value="file"]')
        page.set_input_files("#p-file", str(incidents))
        page.fill("#p-date", tomorrow.isoformat())
        page.fill("#p-shift", WALK_SHIFT)
        page.fill("#p-patrols", "2")
        page.fill("#p-time_limit", "5")
        page.fill("#p-seed", "4")
        page.click("#p-make")
        page_until(page, "document.body.dataset.plan || document.querySelector('#p-status').dataset.state === 'failed'",
             timeout_s=180)  # fmt: skip
        assert page.locator("#p-status").get_attribute("data-state") == "done", page.locator("#p-error").inner_text()
        plan_id = str(page.evaluate("document.body.dataset.plan"))
        assert page.locator("#p-dosage").is_hidden()  # not issued: nothing walks it
        page.click("#p-issue-button")
        page.wait_for_selector("#p-issued[data-issued]")
        page_until(page, "document.querySelector('#p-dosage').dataset.state === 'before'")
        assert "has not begun" in page.locator("#p-dosage-state").inner_text()
        assert wait_for(lambda: len(walkers.walking()) == 2, timeout_s=5, what="both patrols walking")

        plan = read_plan(tmp_path / "plans" / plan_id)
        units = sorted(walkers.walking())
        commander = running.client(Role.COMMANDER)

        def stored() -> list:
            return running.service.store.positions_between(
                plan.shift_start - timedelta(minutes=10), plan.shift_end + timedelta(minutes=10), units=units
            )

        # An hour into the shift: the dose so far, without a reload.
        for minutes in (-1, 20, 40, 60):
            rows = walk_until(clock, walkers, plan.shift_start + timedelta(minutes=minutes), stored)
        page_until(page, f"document.querySelector('#p-dosage').dataset.fixes === '{len(rows)}'")
        so_far = commander.get(f"/api/plans/{plan_id}/dosage").json()
        assert dose(page)["state"] == "running" and so_far["state"] == "running"
        assert 0 < cell(page, 'tr[data-patrol="P01"]', "delivered") < cell(page, 'tr[data-patrol="P01"]', "planned")
        state = page.locator("#p-dosage-state").inner_text()
        local = (plan.shift_start.astimezone(UTC) + timedelta(hours=5)).strftime("%H:%M")
        now_local = (clock.now() + timedelta(hours=5)).strftime("%H:%M")
        assert "under way" in state and local in state and now_local in state, state  # times in UTC+5
        assert page.evaluate("window.__sameDocument = true")

        # The shift is over, but fixes sent late still count for five minutes: the page goes on asking,
        # so the last fixes, stored after the clock passed the end, are in the dose it shows.
        over = plan.shift_end + timedelta(minutes=4)
        t = plan.shift_start + timedelta(minutes=60)
        while t < over:
            t = min(over, t + timedelta(minutes=20))
            rows = walk_until(clock, walkers, t, stored)
        page_until(page, f"document.querySelector('#p-dosage').dataset.fixes === '{len(rows)}'")
        assert dose(page)["state"] == "over" and dose(page)["final"] == "0"
        # Then the dose is final, and the page stops asking.
        rows = walk_until(clock, walkers, plan.shift_end + timedelta(minutes=6), stored)
        page_until(page, "document.querySelector('#p-dosage').dataset.final === '1'")
        d = commander.get(f"/api/plans/{plan_id}/dosage").json()
        assert d["final"] is True
        assert dose(page)["fixes"] == str(d["fixes"]) == str(len(rows))
        asked = len(dosage_requests)
        time.sleep(3.0)  # longer than the page's refresh (2 s)
        assert len(dosage_requests) == asked
        assert page.evaluate("window.__sameDocument") is True  # refreshed in place
        p1, p2 = 'tr[data-patrol="P01"]', 'tr[data-patrol="P02"]'
        assert cell(page, p1, "share") >= 0.95 and cell(page, p1, "koper") == d["patrols"]["P01"]["koper_visits"] > 0
        assert cell(page, p2, "share") < 0.85  # P02 skipped every second stop
        for p in ("P01", "P02"):
            row = page.locator(f'tr[data-patrol="{p}"]')
            assert row.get_attribute("data-unit") == d["patrol_units"][p]
            assert cell(page, f'tr[data-patrol="{p}"]', "delivered") == d["patrols"][p]["delivered_min"]
        assert page.locator("#p-dosage-spots tbody tr").count() == len(d["hot_spots"])
        nothing = d["hot_spots_with_nothing"]
        assert page.locator("#p-dosage-nothing").get_attribute("data-spots") == ",".join(nothing)
        assert page.locator('#p-dosage-spots tr[data-nothing="1"]').count() == len(nothing)
        total = page.locator("#p-dosage-total").inner_text()
        said = re.match(
            r"Delivered ([\d.]+) of ([\d.]+) planned minutes \(([\d.]+) %\); (\d+) visits, (\d+) in the Koper", total
        )
        assert said, total
        assert [float(x) for x in said.groups()] == pytest.approx(
            [d["delivered_min"], d["planned_min"], 100 * d["delivered_share"], d["visits"], d["koper_visits"]], abs=0.1
        )
        inside = re.search(r"\(([\d.]+) %\)", page.locator("#p-dosage-inside").inner_text())
        assert inside and float(inside.group(1)) == pytest.approx(100 * d["in_hot_spots_share"], abs=0.1)
        assert "over" in page.locator("#p-dosage-state").inner_text()
        md = commander.get(str(page.locator("#p-dosage-md").get_attribute("href")))
        assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown") and "P02" in md.text
        screenshot(page, "plans-dosage.png")
    finally:
        context.close()
        clear_retained(mqtt_url, [walkers.topics.unit_plan(u) for u in walkers.foot])
        walkers.stop()
    assert not blocked, f"the Content-Security-Policy blocked: {blocked}"
    assert not errors, f"script errors on the page: {errors}"


def test_the_consoles_texts_exist_in_kazakh_russian_and_english_for_every_key_the_script_asks() -> None:
    script = (Path(__file__).resolve().parents[2] / "maps" / "static" / "plans.js").read_text(encoding="utf-8")
    asked = set(re.findall(r"\bt\('(dose_[a-z_]*[a-z])'", script)) | {
        f"dose_state_{s}" for s in ("before", "running", "over")
    }
    catalogues = {lang: plans_catalogue(lang) for lang in ("kk", "ru", "en")}
    assert len({frozenset(c) for c in catalogues.values()}) == 1  # the same keys in each
    for lang, texts in catalogues.items():
        assert asked <= set(texts), (lang, asked - set(texts))
        assert all("{start}" in texts[f"dose_state_{s}"] for s in ("before", "running", "over")), lang
    assert len({catalogues[lang]["dose_title"] for lang in catalogues}) == 3  # translated, not copied
