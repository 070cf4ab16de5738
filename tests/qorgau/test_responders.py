"""Simulated responders (``qorgau simulate --respond``) against the real service and Mosquitto.

Officers hear their orders on the units' MQTT topic and act as the handheld does, through the
units' own API signed in as unit users (ack, en route, positions, on scene, close with an
outcome); a share of orders is missed on purpose and escalates. Every alert must reach a closing
state through moves that dispatch/lifecycle.py allows, every order must be acknowledged or
missed, and the audit trail must name the unit's user as the actor of every step the unit took.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from support import ADMIN_TOKEN, FAR_DEVICE, Probe, Registry, Running, sos_payload, wait_for

from dispatch import AlertStatus, Role, User
from dispatch.lifecycle import CLOSING, TRANSITIONS
from qorgau.responders import (
    ApiClient,
    ResponderPolicy,
    Responders,
    SimulatedDispatcher,
    cumulative_m,
    plan_order,
    point_along,
    sign_in_officers,
)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the lifecycle is the database-independent part (the e2e tests run both)."""
    return f"sqlite:///{tmp_path / 'responders.sqlite3'}"


FAST = ResponderPolicy(
    ack_delay_s=(0.1, 0.5),
    close_after_s=(0.2, 0.6),
    miss_share=0.4,
    false_alarm_share=0.4,
    time_scale=200.0,
    position_every_s=0.3,
)


def _lawful_path(entries: list[dict]) -> list[str]:
    """The alert's states from its audit entries; fails on a move the lifecycle does not allow."""
    states: list[str] = []
    for entry in entries:
        before, after = entry.get("before") or {}, entry.get("after") or {}
        if "status" not in after or entry["action"] == "unit_change":
            continue
        if not states:
            states.append(after["status"])
            continue
        assert before.get("status") == states[-1], (entry, states)
        if after["status"] != before["status"] or entry["action"] in ("assign", "override", "auto_assign"):
            source, target = AlertStatus(before["status"]), AlertStatus(after["status"])
            assert target in TRANSITIONS[source], f"unlawful move {source} -> {target} in {entry}"
            states.append(after["status"])
    return states


def test_every_order_is_acknowledged_or_escalates_and_alerts_close_lawfully(
    start_service: Callable[..., Running], probe: Probe, registry: Registry, topic_root: str, mqtt_url: str
) -> None:
    running = start_service(ack_deadline_s=2.5)
    service = running.service
    token = service.auth.issue(User("sim-dispatcher", Role.DISPATCHER))
    api = ApiClient(service.base_url, token)
    officers = sign_in_officers(service.base_url, registry.units, ADMIN_TOKEN)  # real unit users, signed in
    responders = Responders(
        url=mqtt_url, topic_root=topic_root, units=registry.units, officers=officers, policy=FAST, seed=11
    ).start()
    dispatcher = SimulatedDispatcher(api, poll_s=0.3).start()
    try:
        devices = [d for d in sorted(registry.devices) if d != FAR_DEVICE]
        alert_ids = []
        for device_id in devices:
            probe.sos(device_id, sos_payload())
            ack = probe.next_ack(probe.topics.sos_ack(device_id), timeout_s=5)
            assert ack["status"] == "accepted", ack
            alert_ids.append(ack["alert_id"])
            time.sleep(0.3)

        busy_seen: set[str] = set()  # the officers on an order, as the simulated patrols ask (qorgau.patrols)

        def all_closed() -> list[dict] | None:
            busy_seen.update(u.id for u in registry.units if responders.busy(u.id))
            alerts = [running.http.get(f"/api/alerts/{i}").json() for i in alert_ids]
            return alerts if all(AlertStatus(a["status"]) in CLOSING for a in alerts) else None

        alerts = wait_for(all_closed, timeout_s=90, what="every alert closed by the responders")
    finally:
        dispatcher.stop()
        responders.stop()

    report = responders.report
    orders = [o for a in alerts for o in a["orders"]]
    assert len(orders) == report.orders and report.orders >= len(alert_ids)
    for order in orders:  # every order was acknowledged or missed (escalated), never both, never neither
        assert (order["acknowledged_at"] is None) != (order["missed_at"] is None), order
    missed = sum(o["missed_at"] is not None for o in orders)
    assert missed == report.missed >= 1
    assert sum(a["escalations"] for a in alerts) == missed
    for order in orders:  # the ones the officers meant to miss are exactly the missed ones
        assert responders.plans[order["order_id"]].missed == (order["missed_at"] is not None)

    outcomes = Counter()
    unit_steps = {"ack": "acknowledged", "state_change": None}
    for alert in alerts:
        entries = running.http.get(f"/api/alerts/{alert['id']}/timeline").json()["entries"]
        states = _lawful_path(entries)
        assert states[0] in ("new", "recommended") and states[-1] == "closed", states
        assert "acknowledged" in states and "en_route" in states and "on_scene" in states, states
        outcome = report.outcomes[alert["id"]]
        outcomes[outcome] += 1
        assert alert["status"] == "closed" and alert["outcome"] == outcome and alert["close_note"], alert
        closer = alert["orders"][-1]["unit_id"]
        # every step of the unit was the unit's own user's, through the handheld's API: none the dispatcher's
        steps = [
            e
            for e in entries
            if e["action"] in unit_steps
            and (e.get("after") or {}).get("status") in ("acknowledged", "en_route", "on_scene", "closed")
        ]
        assert {e["after"]["status"] for e in steps} >= {"acknowledged", "en_route", "on_scene", "closed"}, steps
        for e in steps:
            assert e["actor"] == f"sim-officer-{e['unit_id']}", e
        assert next(e for e in steps if e["after"]["status"] == "closed")["actor"] == f"sim-officer-{closer}"
    assert report.closed == len(alert_ids) and report.false_alarms == outcomes["false_alarm"] >= 1
    assert report.positions > 0
    # busy while working on an order, not for one missed on purpose, nobody once all are closed
    read = {o["unit_id"] for o in orders if not responders.plans[o["order_id"]].missed}
    assert busy_seen and busy_seen <= read, (busy_seen, read)
    assert not any(responders.busy(u.id) for u in registry.units)
    moved_by = {u for u in read if responders.last_fix(u) is not None}
    assert moved_by, "the officers' last fixes on their orders are known"
    units = running.http.get("/api/units").json()
    assert all(u["status"] == "available" and u["alert_id"] is None for u in units), units
    moved = {u["id"] for u in units if u["kind"] != "booth"} & {o["unit_id"] for o in orders if o["acknowledged_at"]}
    start = {u.id: (u.lat, u.lon) for u in registry.units}
    assert any((u["lat"], u["lon"]) != start[u["id"]] for u in units if u["id"] in moved)


def test_plans_are_deterministic_for_a_seed_and_follow_the_shares() -> None:
    policy = ResponderPolicy(miss_share=0.25, false_alarm_share=0.3)
    plans = [plan_order(policy, 7, order_id=i, alert_id=i, unit_id="car-1") for i in range(1, 2001)]
    again = [plan_order(policy, 7, order_id=i, alert_id=i, unit_id="car-1") for i in range(1, 2001)]
    other = [plan_order(policy, 8, order_id=i, alert_id=i, unit_id="car-1") for i in range(1, 2001)]
    assert plans == again and plans != other
    assert 0.21 < sum(p.missed for p in plans) / len(plans) < 0.29
    # spread evenly: any 20 consecutive orders hold exactly 5 missed ones (a short demo shows its escalations)
    assert {sum(p.missed for p in plans[i : i + 20]) for i in range(len(plans) - 20)} == {5}
    unseeded = [plan_order(policy, None, order_id=i, alert_id=i, unit_id="car-1") for i in range(1, 2001)]
    assert 0.21 < sum(p.missed for p in unseeded) / len(unseeded) < 0.29
    assert 0.26 < sum(p.outcome == "false_alarm" for p in plans) / len(plans) < 0.34
    assert all(5.0 <= p.ack_delay_s <= 25.0 and 120.0 <= p.close_after_s <= 300.0 for p in plans)
    assert {p.outcome for p in plans} == {"resolved", "nobody_found", "handed_over", "false_alarm"}


def test_policy_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="miss_share must lie in"):
        ResponderPolicy(miss_share=1.5)
    with pytest.raises(ValueError, match="ack_delay_s must be a range"):
        ResponderPolicy(ack_delay_s=(25.0, 5.0))


def test_point_along_a_route() -> None:
    route = [(43.0, 76.0), (43.0, 76.01), (43.01, 76.01)]
    cumulative = cumulative_m(route)
    assert point_along(route, cumulative, -1) == route[0]
    assert point_along(route, cumulative, cumulative[-1] + 5) == route[-1]
    lat, lon = point_along(route, cumulative, cumulative[1] / 2)
    assert lat == pytest.approx(43.0) and lon == pytest.approx(76.005)


def test_simulate_respond_needs_units_and_an_admin_token(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qorgau.cli import main

    monkeypatch.delenv("QORGAU_API_TOKEN", raising=False)
    monkeypatch.delenv("QORGAU_ADMIN_TOKEN", raising=False)
    argv = ["simulate", "--devices", str(registry.devices_path), "--units", str(registry.units_path), "--respond"]
    assert main(argv) == 2
    assert "--respond needs --units and the service's admin token in QORGAU_ADMIN_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("QORGAU_ADMIN_TOKEN", ADMIN_TOKEN)
    assert main([*argv, "--dispatch"]) == 2
    assert "--dispatch needs a dispatcher token in QORGAU_API_TOKEN" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses a range that runs backwards
        main([*argv, "--ack-delay", "25-5"])
    assert "expected 0 <= LOW <= HIGH, got '25-5'" in capsys.readouterr().err
