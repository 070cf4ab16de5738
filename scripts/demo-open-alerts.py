#!/usr/bin/env python3
"""Open alerts of a running demo, minute by minute: is the number bounded?

Start the demo (``qorgau demo > demo.out``), then::

    python scripts/demo-open-alerts.py --demo-output demo.out --minutes 12

It signs in as the demo's ``dispatcher`` (the password the demo printed), and every ``--every``
seconds prints the minutes since the demo's first alert was received (the demo's own clock, from
``GET /api/alerts``), the open alerts, all alerts and the open ones by state. The last line sums
the run: the open count of each minute, ready for the README's table.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

OPEN = ("new", "recommended", "assigned", "acknowledged", "en_route", "on_scene")


def _from_demo_output(path: Path) -> tuple[str, str]:
    text = path.read_text(encoding="utf-8")
    m = re.search(r"Dispatcher map: (\S+)/map  \(sign in as 'dispatcher', password (\S+)\)", text)
    if not m:
        msg = f"{path}: no 'Dispatcher map: ... password ...' line (a later run of the same database prints none)"
        raise SystemExit(msg)
    return m.group(1), m.group(2)


def _alerts(client: httpx.Client) -> list[dict]:
    out: list[dict] = []
    while True:
        page = client.get("/api/alerts", params={"limit": 500, "offset": len(out)}).raise_for_status().json()
        out.extend(page)
        if len(page) < 500:
            return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-output", type=Path, required=True, help="the demo's printed output")
    parser.add_argument("--minutes", type=float, default=12.0, help="how long to watch [12]")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between two looks [60]")
    args = parser.parse_args(argv)
    url, password = _from_demo_output(args.demo_output)
    token = httpx.post(f"{url}/api/token", data={"username": "dispatcher", "password": password}, timeout=30)
    token.raise_for_status()
    client = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    series: list[tuple[float, int]] = []
    first: datetime | None = None
    end = time.monotonic() + args.minutes * 60
    while time.monotonic() < end:
        alerts = _alerts(client)
        now = datetime.now(UTC)
        if alerts and first is None:
            first = min(datetime.fromisoformat(a["received_at"]) for a in alerts)
        states = Counter(a["status"] for a in alerts)
        open_ = sum(states[s] for s in OPEN)
        minute = 0.0 if first is None else (now - first).total_seconds() / 60
        series.append((minute, open_))
        by_state = ", ".join(f"{s} {states[s]}" for s in OPEN if states[s])
        closed = len(alerts) - open_
        print(f"min {minute:5.1f}  open {open_:3d}  all {len(alerts):3d}  closed {closed:3d}  ({by_state})", flush=True)
        time.sleep(max(0.0, min(args.every, end - time.monotonic())))
    print("series (min: open): " + ", ".join(f"{m:.1f}: {n}" for m, n in series), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
