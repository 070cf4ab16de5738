"""The simulated patrols' walk of a plan (qorgau/patrols.py), without a broker: where a patrol is at
each moment, how long it stands at each stop, and what the dosage measure makes of its fixes."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from support import Registry

from geo import great_circle_m
from patrol_planner.dosage import PlannedStop as DosageStop
from patrol_planner.dosage import PlanStops, Positions, measure_dosage
from qorgau.patrols import Behaviour, IssuedRoute, ManualClock, WalkPolicy, behaviour_of, plan_walk

LAT, LON = 43.25, 76.90
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(LAT))
START = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)  # 10:00 in Almaty


def east(m: float) -> tuple[float, float]:
    return (LAT, LON + m / M_PER_DEG_LON)


def payload(stops_at_m: list[float], *, leg_s: float = 420.0, dwell_s: float = 900.0, speed: float = 1.4) -> dict:
    """A route due east from a booth at 0 m, a vertex every 50 m, out to the last stop and back,
    standing ``dwell_s`` at each stop; each leg is given ``leg_s`` (more than enough at ``speed``)."""
    far = max(stops_at_m)
    out = [east(x) for x in np.arange(0.0, far + 1, 50.0)]
    coords = [[lon, lat] for lat, lon in out + out[-2::-1]]
    t = START
    stops = []
    for seq, x in enumerate(stops_at_m, start=1):
        t += timedelta(seconds=leg_s)
        lat, lon = east(x)
        stops.append({"seq": seq, "hot_spot": 10 + seq, "lat": lat, "lon": lon,
                      "arrive": t.isoformat(), "depart": (t + timedelta(seconds=dwell_s)).isoformat(),
                      "dwell_min": dwell_s / 60})  # fmt: skip
        t += timedelta(seconds=dwell_s)
    return {
        "plan_id": "p" * 32,
        "patrol": "P01",
        "unit_id": "foot-1",
        "issued_at": START.isoformat(),
        "shift_start": START.isoformat(),
        "shift_end": (t + timedelta(seconds=far / speed + 600)).isoformat(),
        "stops": stops,
        "route": {"type": "LineString", "coordinates": coords},
        "walk_speed_mps": speed,
    }


def at_m(point: tuple[float, float] | None) -> float:
    assert point is not None
    return float(great_circle_m(LAT, LON, *point))


def test_an_on_time_patrol_walks_the_route_and_stands_at_each_stop_for_its_planned_minutes() -> None:
    plan = IssuedRoute.from_payload(payload([300.0, 600.0]))
    assert [s.index for s in plan.stops] == [6, 12]  # the stops found on the route's vertices
    walk = plan_walk(plan, speed_mps=1.4)
    s1, s2 = plan.stops
    t0 = plan.shift_start_s
    assert walk.start_s == t0 and walk.at(t0 - 1) is None
    assert at_m(walk.at(t0)) == pytest.approx(0.0, abs=0.5)  # at the booth
    # 300 m in the 420 s the plan gives: at the pace that arrives on time (0.71 m/s), never early
    assert at_m(walk.at(t0 + 210)) == pytest.approx(150.0, abs=1.0)
    assert at_m(walk.at(s1.arrive_s - 1)) < 300.0
    assert walk.dwells() == [("11", s1.arrive_s, s1.depart_s), ("12", s2.arrive_s, s2.depart_s)]
    for t in np.arange(s1.arrive_s, s1.depart_s, 60.0):
        assert at_m(walk.at(float(t))) == pytest.approx(300.0, abs=0.5)
    # back at the booth at the plan's speed, then nothing more
    assert walk.end_s == pytest.approx(s2.depart_s + 600.0 / 1.4)
    assert at_m(walk.at(walk.end_s)) == pytest.approx(0.0, abs=0.5)
    assert at_m(walk.at(s2.depart_s + 300.0 / 1.4)) == pytest.approx(300.0, abs=1.0)  # walking home
    assert walk.at(walk.end_s + 1) is None


def test_a_leg_too_long_for_its_time_arrives_late_and_keeps_the_planned_departure() -> None:
    plan = IssuedRoute.from_payload(payload([600.0], leg_s=300.0))  # 600 m in 300 s: 2 m/s needed
    walk = plan_walk(plan, speed_mps=1.4)
    (stop,) = plan.stops
    [(_, stood_from, stood_to)] = walk.dwells()
    assert stood_from == pytest.approx(plan.shift_start_s + 600 / 1.4)
    assert stood_to == stop.depart_s


def test_a_late_patrol_is_late_everywhere_and_loses_what_falls_after_the_shift() -> None:
    plan = IssuedRoute.from_payload(payload([300.0, 600.0]))
    walk = plan_walk(plan, speed_mps=1.4, behaviour=Behaviour.LATE, delay_s=1200.0)
    s1, s2 = plan.stops
    assert walk.dwells()[0] == ("11", s1.arrive_s + 1200, s1.depart_s + 1200)
    assert walk.end_s == plan.shift_end_s  # the shift ends before it is back
    assert walk.dwells()[1] == ("12", s2.arrive_s + 1200, plan.shift_end_s)  # cut short by the shift's end
    assert at_m(walk.at(plan.shift_end_s)) > 0 and walk.at(plan.shift_end_s + 1) is None


def test_a_skipping_patrol_stays_on_at_the_stop_before_and_walks_past_the_skipped_one() -> None:
    plan = IssuedRoute.from_payload(payload([300.0, 600.0, 900.0]))
    walk = plan_walk(plan, speed_mps=1.4, behaviour=Behaviour.SKIP)
    s1, _s2, s3 = plan.stops
    assert [d[0] for d in walk.dwells()] == ["11", "13"]
    # at stop 1 through the skipped stop's minutes, then on past stop 2 to stop 3, on time
    assert at_m(walk.at(s1.depart_s + 600)) == pytest.approx(300.0, abs=0.5)
    assert walk.dwells()[1] == ("13", s3.arrive_s, s3.depart_s)
    passing = [t for t in np.arange(s1.depart_s, s3.arrive_s, 5.0) if abs(at_m(walk.at(float(t))) - 600) < 50]
    # walked past, no stand: 100 m at the pace that reaches stop 3 on time (600 m in the 840 s left)
    assert len(passing) * 5 == pytest.approx(100 / (600 / 840), abs=10)


def test_taking_the_plan_up_during_the_shift_goes_straight_to_the_next_reachable_stop() -> None:
    plan = IssuedRoute.from_payload(payload([300.0, 600.0]))
    s1, s2 = plan.stops
    elsewhere = (LAT + 200 / 111_320.0, LON + 450 / M_PER_DEG_LON)  # 200 m north of the route
    since = s1.depart_s - 60  # too late for stop 1 (200+ m away, a minute left): stop 2 next
    walk = plan_walk(plan, speed_mps=1.4, since_s=since, start_at=elsewhere)
    assert walk.start_s == since and walk.at(since) == pytest.approx(elsewhere)
    assert [d[0] for d in walk.dwells()] == ["12"] and walk.dwells()[0][1:] == (s2.arrive_s, s2.depart_s)
    assert at_m(walk.at(walk.end_s)) == pytest.approx(0.0, abs=0.5)


def test_the_dosage_of_the_walk_delivers_the_plan_on_time_and_about_half_when_skipping() -> None:
    body = payload([300.0, 600.0, 900.0, 1200.0], leg_s=225.0)  # 300 m at 1.4 m/s, 11 s to spare
    plan = IssuedRoute.from_payload(body)
    stops = PlanStops(
        [DosageStop("P01", s.hot_spot, s.lat, s.lon, *(datetime.fromtimestamp(x, UTC) for x in (s.arrive_s, s.depart_s)))
         for s in plan.stops],
        datetime.fromtimestamp(plan.shift_start_s, UTC),
        datetime.fromtimestamp(plan.shift_end_s, UTC),
        ["P01"],
    )  # fmt: skip

    def delivered(behaviour: Behaviour) -> dict:
        walk = plan_walk(plan, speed_mps=1.4, behaviour=behaviour)
        ts = np.arange(walk.start_s, walk.end_s, 5.0)
        pts = [walk.at(float(t)) for t in ts]
        fixes = Positions(np.array(["P01"] * len(ts), dtype=object), ts, np.array([p[0] for p in pts]),
                          np.array([p[1] for p in pts]))  # fmt: skip
        return measure_dosage(stops, fixes).as_dict()["patrols"]["P01"]

    on_time, skipping = delivered(Behaviour.ON_TIME), delivered(Behaviour.SKIP)
    assert on_time["planned_min"] == pytest.approx(60.0)
    assert on_time["delivered_min"] >= 0.95 * on_time["planned_min"]
    assert on_time["koper_visits"] == 4  # 15 minutes at each: in the Koper window (and a little past it)
    # about half: walking past a skipped stop adds a minute there
    assert skipping["delivered_min"] / skipping["planned_min"] == pytest.approx(0.5, abs=0.06)
    assert skipping["visits"] >= 4 and skipping["koper_visits"] == 2  # stops 2 and 4 only walked past


def test_behaviours_are_spread_over_the_patrols_the_same_for_a_seed() -> None:
    policy = WalkPolicy(late_share=0.25, skip_share=0.25)
    draw = [behaviour_of(policy, 7, plan_id="abc", patrol=f"P{k:02d}") for k in range(1, 41)]
    assert draw == [behaviour_of(policy, 7, plan_id="abc", patrol=f"P{k:02d}") for k in range(1, 41)]
    counts = Counter(draw)
    assert counts[Behaviour.SKIP] == 10  # every fourth patrol skips
    assert counts[Behaviour.LATE] == 10  # and every fourth is late, spread over those that do not skip
    for k in range(1, 37):  # any four consecutive patrols: one skips
        assert draw[k - 1 : k + 3].count(Behaviour.SKIP) == 1
    seeds = {
        tuple(behaviour_of(policy, seed, plan_id="abc", patrol=f"P{k:02d}") for k in range(1, 9)) for seed in range(8)
    }
    assert len(seeds) > 1  # another seed, other patrols
    assert behaviour_of(WalkPolicy(late_share=0, skip_share=0), 7, plan_id="abc", patrol="P03") is Behaviour.ON_TIME
    with pytest.raises(ValueError, match="skip_share must lie in"):
        WalkPolicy(skip_share=1.5)


def test_a_manual_clock_only_goes_forward() -> None:
    clock = ManualClock(START)
    assert clock() == START and clock.advance(30) == START + timedelta(seconds=30)
    with pytest.raises(ValueError, match="does not go back"):
        clock.set(START)


def test_simulate_walk_plans_needs_units_and_shares_between_0_and_1(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    from qorgau.cli import main

    assert main(["simulate", "--devices", str(registry.devices_path), "--walk-plans"]) == 2
    assert "--walk-plans needs --units" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--units", str(registry.units_path), "--walk-plans", "--skip-share", "1.5"])
    assert "expected a share between 0 and 1, got '1.5'" in capsys.readouterr().err
