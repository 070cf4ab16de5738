"""Issue 14, dosage through the service: a plan made by POST /api/plans, walked by synthetic tracks made
from its own routes.geojson and ingested as unit positions, measured by GET /api/plans/{id}/dosage, and
the quarterly report's line by district (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from support import Registry, Running, wait_plan_done

from dispatch import Role, Unit, UnitKind
from dispatch.registry import write_units
from patrol_planner.dosage import PlannedStop, PlanStops, read_plan
from qorgau.cli import main
from web.plan_dosage import patrol_units

ALMATY = ZoneInfo("Asia/Almaty")
STEP = timedelta(seconds=30)
Fix = tuple[datetime, float, float]


def _stops(plan: PlanStops, patrol: str) -> list[PlannedStop]:
    return sorted((s for s in plan.stops if s.patrol == patrol), key=lambda s: s.arrive)


def _on_time(stops: list[PlannedStop]) -> list[Fix]:
    """Every 30 s: straight from stop to stop, standing at each from its arrival to its departure."""
    fixes: list[Fix] = []
    prev: PlannedStop | None = None
    for s in stops:
        if prev is not None:
            span = (s.arrive - prev.depart).total_seconds()
            t = prev.depart + STEP
            while t < s.arrive:
                f = (t - prev.depart).total_seconds() / span
                fixes.append((t, prev.lat + (s.lat - prev.lat) * f, prev.lon + (s.lon - prev.lon) * f))
                t += STEP
        t = s.arrive
        while t <= s.depart:
            fixes.append((t, s.lat, s.lon))
            t += STEP
        prev = s
    return fixes


def _skipping(stops: list[PlannedStop]) -> list[Fix]:
    """On time at every first, third... stop; through the skipped one's time it stays where it was."""
    kept = [
        dataclasses.replace(s, depart=stops[i + 1].depart if i + 1 < len(stops) else s.depart)
        for i, s in enumerate(stops)
        if i % 2 == 0
    ]
    return _on_time(kept)


def _walk_through(stops: list[PlannedStop], start: datetime, speed_mps: float = 1.4) -> list[Fix]:
    """From stop to stop at walking speed from ``start``, never stopping (a fix every 10 s)."""
    fixes: list[Fix] = [(start, stops[0].lat, stops[0].lon)]
    t = start
    for a, b in itertools.pairwise(stops):
        dist = math.hypot((b.lat - a.lat) * 111_320, (b.lon - a.lon) * 111_320 * math.cos(math.radians(a.lat)))
        n = max(1, math.ceil(dist / speed_mps / 10))
        for k in range(1, n + 1):
            fixes.append(
                (t + timedelta(seconds=10 * k), a.lat + (b.lat - a.lat) * k / n, a.lon + (b.lon - a.lon) * k / n)
            )
        t += timedelta(seconds=10 * n)
    return fixes


def _ingest(running: Running, unit_id: str, fixes: list[Fix]) -> None:
    """Through the service, as the MQTT bridge hands it positions: batches of 40."""
    service = running.service.service
    for i in range(0, len(fixes), 40):
        batch = [
            (unit_id, json.dumps({"ts": t.isoformat(), "lat": round(la, 7), "lon": round(lo, 7)}).encode())
            for t, la, lo in fixes[i : i + 40]
        ]
        assert service.update_unit_positions(batch) == [None] * len(batch)


def test_the_dose_a_plan_delivered_measured_from_the_positions_the_service_received(
    start_service: Callable[..., Running], registry: Registry, tmp_path: Path, db_url: str
) -> None:
    # A registry of its own: foot units named as the plan's patrols, one more unit, two booths.
    first = registry.units[0]
    units = [Unit(u, UnitKind.FOOT, u, first.lat, first.lon) for u in ("P01", "P02", "P03", "X09")]
    units += [Unit(b.id, UnitKind.BOOTH, b.name, b.lat, b.lon) for b in registry.units if b.kind is UnitKind.BOOTH][:2]
    running = start_service(plans_dir=tmp_path / "plans", units=write_units(tmp_path / "units.geojson", units))
    net = running.service.network

    # Incidents around six places far apart, in the shift's hours over the last 60 days.
    rng = np.random.default_rng(14)
    centres: list[int] = []
    for node in rng.permutation(net.n_nodes):
        la, lo = float(net.node_lat[node]), float(net.node_lon[node])
        if all(math.hypot((la - net.node_lat[c]) * 111_000, (lo - net.node_lon[c]) * 81_000) > 400 for c in centres):
            centres.append(int(node))
        if len(centres) == 6:
            break
    today = datetime.now(ALMATY).date()
    rows = ["lat,lon,occurred_at,category"]
    for k, c in enumerate(centres):
        for _j in range(40 - 4 * k):
            day = today - timedelta(days=int(rng.integers(1, 60)))
            when = datetime(day.year, day.month, day.day, 10, tzinfo=ALMATY) + timedelta(
                minutes=int(rng.integers(0, 240))
            )
            la, lo = net.node_lat[c] + rng.normal(0, 0.0002), net.node_lon[c] + rng.normal(0, 0.0002)
            rows.append(f"{la:.6f},{lo:.6f},{when.isoformat()},theft")
    commander = running.client(Role.COMMANDER)
    body = {
        "incidents_csv": "\n".join(rows) + "\n",
        "patrols": 3,
        "shift": "10:00-14:00",
        "date": (today - timedelta(days=1)).isoformat(),  # the shift is over
        "iterations": 200,
        "time_limit_s": 10,
        # The tracks' expectations below (the skipper delivers about half, some hot spot gets
        # nothing) need a plan whose P02 does not revisit its kept hot spots or pass close to the
        # skipped ones: dosage counts minutes per hot spot (within 50 m), so the skipping track's
        # long stays also deliver a kept hot spot's later visit. Seed 2 gave such a plan before
        # issue 14's areas' start (most seeds now revisit); seed 1 does now.
        "seed": 1,
        "lang": "en",
    }
    r = commander.post("/api/plans", json=body)
    assert r.status_code == 202, r.text
    plan_id = r.json()["id"]
    done = wait_plan_done(commander, plan_id, timeout_s=240.0)
    assert done["status"] == "done", done
    folder = tmp_path / "plans" / plan_id
    plan = read_plan(folder)
    assert plan.patrols == ["P01", "P02", "P03"]
    by = {p: _stops(plan, p) for p in plan.patrols}
    assert all(len(s) >= 2 for s in by.values()), {p: len(s) for p, s in by.items()}
    planned = {p: sum(s.planned_s for s in st) / 60 for p, st in by.items()}

    # P01 walks its plan on time; P02 skips every second stop; P03 walks through without stopping;
    # X09 (no patrol of the plan) walks P02's skipped stops on time.
    _ingest(running, "P01", _on_time(by["P01"]))
    _ingest(running, "P02", _skipping(by["P02"]))
    _ingest(running, "P03", _walk_through(by["P03"], by["P03"][0].arrive))
    _ingest(running, "X09", _on_time(by["P02"][1::2]))

    assert running.client(Role.DISPATCHER).get(f"/api/plans/{plan_id}/dosage").status_code == 403
    r = commander.get(f"/api/plans/{plan_id}/dosage")
    assert r.status_code == 200, r.text
    d = r.json()
    p1, p2, p3 = (d["patrols"][p] for p in ("P01", "P02", "P03"))
    assert p1["planned_min"] == pytest.approx(planned["P01"], abs=0.1)
    assert p1["delivered_min"] >= 0.95 * p1["planned_min"]
    assert p1["koper_visits"] == len(by["P01"])  # 15 minutes at each stop: in the Koper window
    kept = sum(s.planned_s for s in by["P02"][::2]) / 60
    assert kept / planned["P02"] == pytest.approx(0.5, abs=0.2)  # every second stop: about half
    # walking past a skipped stop adds a few minutes; X09 walking them all would add the other half
    assert 0.95 * kept <= p2["delivered_min"] <= kept + 0.1 * planned["P02"]
    assert p3["visits"] >= len({s.hot_spot for s in by["P03"]}) and p3["koper_visits"] == 0
    assert p3["delivered_min"] < 0.2 * p3["planned_min"]
    assert d["unmatched_units"] == [] and set(d["patrol_units"].values()) == {"P01", "P02", "P03"}
    skipped = {s.hot_spot for s in by["P02"][1::2]} - {s.hot_spot for s in by["P02"][::2]}
    skipped -= {s.hot_spot for p in ("P01", "P03") for s in by[p]}
    nothing = set(d["hot_spots_with_nothing"])
    assert nothing and nothing <= skipped  # walking past a skipped one may give it a minute or two
    assert all(d["hot_spots"][h]["delivered_min"] < 0.2 * d["hot_spots"][h]["planned_min"] for h in skipped)
    assert all(d["hot_spots"][h]["delivered_min"] == 0 and d["hot_spots"][h]["planned_min"] > 0 for h in nothing)
    assert 0 < d["in_hot_spots_share"] < 1 and d["tracked_min"] > 0
    assert d["shift_start_local"].startswith(f"{today - timedelta(days=1)}T10:00:00+05:00")

    md = commander.get(f"/api/plans/{plan_id}/dosage", params={"format": "md", "lang": "kk"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("# ") and "10:00" in md.text and "P02" in md.text
    ru = commander.get(f"/api/plans/{plan_id}/dosage", params={"format": "csv", "lang": "ru"})
    table = list(csv.reader(io.StringIO(ru.text)))
    assert ru.status_code == 200 and len(table) == 1 + 3 + len(d["hot_spots"]) + 1
    assert float(table[1][3]) == pytest.approx(p1["delivered_min"])
    assert table[0] != next(
        iter(csv.reader(io.StringIO(commander.get(f"/api/plans/{plan_id}/dosage?format=csv&lang=en").text)))
    )
    assert (folder / "dosage.json").is_file()  # the shift is over: kept for the quarterly report

    # Issued with X09 for P02, the plan names X09 as P02's unit: X09 walked P02's other half.
    r = commander.post(f"/api/plans/{plan_id}/issue", json={"units": {"P01": "P01", "P02": "X09", "P03": "P03"}})
    assert r.status_code == 200, r.text
    status = json.loads((folder / "status.json").read_text())
    assert patrol_units(plan.patrols, status) == {"P01": "P01", "P02": "X09", "P03": "P03"}
    again = commander.get(f"/api/plans/{plan_id}/dosage").json()
    assert again["patrol_units"]["P02"] == "X09"
    x = again["patrols"]["P02"]
    other = sum(s.planned_s for s in by["P02"][1::2]) / 60
    assert 0.95 * other <= x["delivered_min"] <= other + 0.1 * planned["P02"]
    assert again["patrols"]["P01"] == p1
    d = again  # the report below measures the plan as issued

    # The quarterly public report: a line by district, planned and delivered minutes, no unit or patrol.
    lats, lons = [s.lat for s in plan.stops], [s.lon for s in plan.stops]
    mid = float(np.median(lons))
    lo_lat, hi_lat = min(lats) - 0.01, max(lats) + 0.01

    def box(name: str, west: float, east: float) -> dict:
        ring = [[west, lo_lat], [east, lo_lat], [east, hi_lat], [west, hi_lat], [west, lo_lat]]
        return {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}

    districts = tmp_path / "districts.geojson"
    districts.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [box("West", min(lons) - 0.01, mid), box("East", mid, max(lons) + 0.01)],
            }
        )
    )
    start = plan.shift_start.astimezone(ALMATY)
    quarter = f"{start.year}Q{(start.month - 1) // 3 + 1}"
    out = tmp_path / "report.md"
    argv = ["report", "--quarter", quarter, "--db", db_url, "--format", "md", "--lang", "en",
            "--districts", str(districts), "--plans-dir", str(tmp_path / "plans"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = out.read_text()
    section = text.split("## Patrol minutes at hot spots by district", 1)[1].split("\n## ", 1)[0]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in section.splitlines() if ln.startswith("| ")]
    assert [c[0] for c in cells[1:]] == ["East", "West"], section
    assert sum(float(c[2]) for c in cells[1:]) == pytest.approx(d["planned_min"], abs=1.0)
    assert sum(float(c[3]) for c in cells[1:]) == pytest.approx(d["delivered_min"], abs=1.0)
    for secret in ("P01", "P02", "P03", "X09"):
        assert secret not in text
    before = (start - timedelta(days=100)).astimezone(ALMATY)
    other_q = f"{before.year}Q{(before.month - 1) // 3 + 1}"
    assert main([*argv[:2], other_q, *argv[3:]]) == 0
    assert "Patrol minutes at hot spots by district" not in out.read_text()  # no plan in that quarter
