#!/usr/bin/env python3
"""Screenshots of a running demo: the dispatcher map and one officer's handheld on a phone.

Start the demo (``make demo`` or ``qorgau demo > demo.out``), then::

    python scripts/demo-screenshots.py --demo-output demo.out            # reads the addresses and passwords
    python scripts/demo-screenshots.py --url http://127.0.0.1:8000 --dispatcher-password P --officer officer-car-1 \\
        --officer-password Q

It signs in on the map (1280 x 800) and writes ``docs/img/map.png``, then signs the officer in on
a 360 x 640 phone viewport, waits (up to ``--wait-order`` s) until an order is on the handheld
(``[data-order-id]``) and writes ``docs/img/handheld.png``. Playwright drives Debian's Chromium
(``/usr/bin/chromium``, never ``playwright install``); nothing is fetched from outside the machine.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
OUT = Path(__file__).resolve().parents[1] / "docs" / "img"


def _from_demo_output(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    if m := re.search(r"Dispatcher map: (\S+)/map  \(sign in as 'dispatcher', password (\S+)\)", text):
        found["url"], found["dispatcher_password"] = m.group(1), m.group(2)
    if m := re.search(r"Handheld .*: \S+/unit  \(sign in as '(\S+)', password (\S+):", text):
        found["officer"], found["officer_password"] = m.group(1), m.group(2)
    return found


def _sign_in(page: Page, url: str, path: str, username: str, password: str) -> None:
    page.goto(f"{url}{path}")
    if "/login" in page.url:
        page.fill("#q-username", username)
        page.fill("#q-password", password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-output", type=Path, help="the demo's printed output (addresses and passwords)")
    parser.add_argument("--url", help="the demo's base URL")
    parser.add_argument("--dispatcher-password")
    parser.add_argument("--officer", default="officer-car-1")
    parser.add_argument("--officer-password")
    parser.add_argument("--lang", default="en", choices=("kk", "ru", "en"))
    parser.add_argument("--wait-order", type=float, default=600.0, help="seconds to wait for an order [600]")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    given = _from_demo_output(args.demo_output) if args.demo_output else {}
    url = args.url or given.get("url")
    dispatcher_password = args.dispatcher_password or given.get("dispatcher_password")
    officer = given.get("officer", args.officer)
    officer_password = args.officer_password or given.get("officer_password")
    if not (url and dispatcher_password):
        parser.error("give --demo-output, or --url and --dispatcher-password")
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        desk = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)  # for wait_for_function
        page = desk.new_page()
        _sign_in(page, url, f"/map?lang={args.lang}", "dispatcher", dispatcher_password)
        page.wait_for_function("window.qorgau && window.qorgau.connection === 'live'", timeout=20_000)
        page.wait_for_selector("[data-alert-id]", timeout=120_000)
        page.wait_for_timeout(1500)  # the streets' canvas and the markers settle
        page.screenshot(path=str(args.out / "map.png"))
        print(f"wrote {args.out / 'map.png'}")
        if not officer_password:
            print("no officer password: no handheld screenshot", file=sys.stderr)
            return 1
        phone = browser.new_context(
            viewport={"width": 360, "height": 640}, is_mobile=True, has_touch=True, bypass_csp=True
        )
        hand = phone.new_page()
        _sign_in(hand, url, f"/unit?lang={args.lang}", officer, officer_password)
        response = hand.goto(f"{url}/unit?lang={args.lang}")
        if response is None or response.status != 200 or "/unit" not in hand.url.split("?")[0]:
            status = None if response is None else response.status
            print(f"the handheld page is not served here ({hand.url}: HTTP {status})", file=sys.stderr)
            return 1
        hand.wait_for_selector("[data-order-id]", timeout=args.wait_order * 1000)
        hand.wait_for_timeout(1500)
        hand.screenshot(path=str(args.out / "handheld.png"))
        print(f"wrote {args.out / 'handheld.png'}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
