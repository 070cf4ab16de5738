"""The commander's loop end to end (issue 14): a plan made through the API and issued, the simulated
patrols hear it on the real Mosquitto and walk it on a clock shared with the service, and
GET /api/plans/{id}/dosage says what they delivered, during the shift and after it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support import (
    WALK_SHIFT,
    Registry,
    Running,
    clear_retained,
    clustered_incidents_csv,
    wait_for,
    wait_plan_done,
    walk_until,
)

from dispatch import Role
from geo import great_circle_m
from patrol_planner.dosage import read_plan
from qorgau.patrols import Behaviour, ManualClock, PatrolWalkers

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

STEP = timedelta(minutes=10)


class OnOrder:
    """Stands in for the simulated responders' side (qorgau.patrols.OrderDuty): the test says which
    unit's officer works on an order, and where its last order left the unit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.on_order: set[str] = set()
        self.left_at: dict[str, tuple[float, float]] = {}

    def busy(self, unit_id: str) -> bool:
        with self._lock:
            return unit_id in self.on_order

    def last_fix(self, unit_id: str) -> tuple[float, float] | None:
        with self._lock:
            return self.left_at.get(unit_id)


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def test_issued_plans_are_walked_and_the_dosage_says_what_each_patrol_delivered(
    start_service: Callable[..., Running], registry: Registry, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    clock = ManualClock()  # now, until the test moves it: the service's clock and the patrols'
    running = start_service(plans_dir=tmp_path / "plans", clock=clock)
    service = running.service
    tomorrow = datetime.now(ZoneInfo("Asia/Almaty")).date() + timedelta(days=1)
    commander = running.client(Role.COMMANDER)
    body = {
        "incidents_csv": clustered_incidents_csv(service.network, tomorrow),
        "patrols": 3,
        "shift": WALK_SHIFT,
        "date": tomorrow.isoformat(),
        "iterations": 100,
        "time_limit_s": 30,  # 100 iterations bind, not the clock: the same plan on a loaded machine
        "seed": 2,
        "lang": "en",
    }
    r = commander.post("/api/plans", json=body)
    assert r.status_code == 202, r.text
    plan_id = r.json()["id"]
    assert wait_plan_done(commander, plan_id)["status"] == "done"
    plan = read_plan(tmp_path / "plans" / plan_id)
    stops = {p: sorted((s for s in plan.stops if s.patrol == p), key=lambda s: s.arrive) for p in plan.patrols}
    assert len(stops["P02"]) >= 2 and len(stops["P03"]) >= 2, {p: len(s) for p, s in stops.items()}

    duty = OnOrder()
    walkers = PatrolWalkers(
        url=mqtt_url,
        topic_root=topic_root,
        units=registry.units,
        clock=clock,
        seed=1,
        told={"P01": "on_time", "P02": "skip", "P03": "on_time"},
        duty=duty,
    ).start()
    try:
        r = commander.post(f"/api/plans/{plan_id}/issue")  # the default: P01..P03 to the foot units by id
        assert r.status_code == 200, r.text
        units = r.json()["units"]
        assert units == {"P01": "foot-1", "P02": "foot-2", "P03": "foot-3"}
        walking = wait_for(lambda: walkers.walking() if len(walkers.walking()) == 3 else None, timeout_s=5)
        assert walking == {"foot-1": Behaviour.ON_TIME, "foot-2": Behaviour.SKIP, "foot-3": Behaviour.ON_TIME}
        assert walkers.report.not_walked == 0  # the issue went to foot units only
        store = service.store
        mine = list(units.values())

        def stored() -> list[tuple[str, datetime, float, float]]:
            return store.positions_between(plan.shift_start - STEP, plan.shift_end + STEP, units=mine)

        def walk_to(when: datetime) -> list[tuple[str, datetime, float, float]]:
            return walk_until(clock, walkers, when, stored)

        # Before the shift: nobody reports.
        assert walk_to(plan.shift_start - timedelta(minutes=1)) == []
        before = commander.get(f"/api/plans/{plan_id}/dosage").json()
        assert before["state"] == "before" and before["fixes"] == 0 and before["delivered_min"] == 0

        # Halfway through the shift, foot-3's officer is sent to an alert for ten minutes, during its second stop.
        order_at = stops["P03"][1].arrive + timedelta(minutes=2)
        order_end = order_at + STEP
        far = (stops["P03"][1].lat + 0.002, stops["P03"][1].lon)  # the order leaves it 220 m north
        end = plan.shift_end + timedelta(minutes=6)
        steps = int((end - plan.shift_start) / STEP) + 1
        checkpoints = sorted(
            {*(min(end, plan.shift_start + k * STEP) for k in range(1, steps + 1)), order_at, order_end}
        )
        so_far = None
        for t in checkpoints:
            rows = walk_to(t)
            if t == order_at:
                duty.on_order.add("foot-3")  # on its order from now on: no plan positions
            elif t == order_end:
                duty.left_at["foot-3"] = far  # closed, 220 m from its stop
                duty.on_order.clear()
            if so_far is None and t >= plan.shift_start + timedelta(minutes=60):
                so_far = commander.get(f"/api/plans/{plan_id}/dosage").json()
                assert so_far["fixes"] == len(rows) and so_far["state"] == "running"
        assert walkers.walking() == {}  # every patrol is back at its booth
        assert walkers.report.finished == 3 and walkers.report.resumed == 1 and walkers.report.held_back > 0

        # What the service kept: every fix of the shift, none during the order, each unit going forward in time.
        assert len(rows) == walkers.report.positions
        by_unit: dict[str, list[tuple[datetime, float, float]]] = {u: [] for u in mine}
        for unit, ts, lat, lon in rows:
            by_unit[unit].append((_utc(ts), lat, lon))
        for unit, fixes in by_unit.items():
            assert fixes[0][0] == plan.shift_start, unit
            gaps = {round((b[0] - a[0]).total_seconds()) for a, b in itertools.pairwise(fixes)}
            assert max(gaps) <= 5 or unit == "foot-3", (unit, gaps)
        third = by_unit["foot-3"]
        assert not [f for f in third if order_at < f[0] <= order_end]
        after = next(f for f in third if f[0] > order_end)
        assert great_circle_m(after[1], after[2], *far) < 10  # taken up where the order left it
        assert rejected(running) == 0

        # The dose so far, an hour into the shift, and at its end.
        assert 0 < so_far["patrols"]["P01"]["delivered_min"] < so_far["patrols"]["P01"]["planned_min"]
        d = commander.get(f"/api/plans/{plan_id}/dosage").json()
        p1, p2, p3 = (d["patrols"][p] for p in ("P01", "P02", "P03"))
        assert d["patrol_units"] == units and d["unmatched_units"] == [] and d["state"] == "over"
        assert p1["delivered_min"] >= 0.95 * p1["planned_min"]
        assert p1["koper_visits"] == len(stops["P01"])
        kept = sum((s.depart - s.arrive).total_seconds() for s in stops["P02"][::2]) / 60
        assert 0.95 * kept <= p2["delivered_min"] < 0.85 * p2["planned_min"]  # skipped: walked past, no stand
        assert p2["koper_visits"] == len(stops["P02"][::2])
        for skipped in stops["P02"][1::2]:
            spot = d["hot_spots"][skipped.hot_spot]
            assert spot["koper_visits"] == 0 and spot["delivered_min"] < 0.6 * spot["planned_min"], spot
        # foot-3 lost the rest of the stop it was called away from (it came back for its last seconds);
        # the minutes walking in and out of the 50 m count as presence
        lost = (stops["P03"][1].depart - order_at).total_seconds() / 60
        assert p3["planned_min"] - lost - 1 <= p3["delivered_min"] <= p3["planned_min"] - lost + 3
        assert d["delivered_min"] < d["planned_min"] and 0 < d["in_hot_spots_share"] < 1
        assert (tmp_path / "plans" / plan_id / "dosage.json").is_file()  # the shift is over: kept

        # The plans withdrawn at the broker (and this test's retained messages gone).
        clear_retained(mqtt_url, [walkers.topics.unit_plan(u) for u in mine])
        wait_for(lambda: walkers.report.withdrawn == 3, timeout_s=5, what="the plans withdrawn")
    finally:
        walkers.stop()


def rejected(running: Running) -> int:
    """Unit messages the service refused (stale, in the future, off the streets...)."""
    return sum(running.service.service.metrics()["rejected"].values())
