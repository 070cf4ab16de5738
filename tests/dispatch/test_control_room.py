"""The dispatch service as a control room runs it, on SQLite and PostgreSQL: lifecycle, duplicates,
units, assignment, acknowledgement, escalation, audit trail and response times (clock pinned)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text
from support import FAR_DEVICE, T0, Clock, Registry, ingest_press, ingest_report

from dispatch import AlertStatus, Conflict, DispatchPolicy, DispatchService, Store, Unit, UnitKind, UnitStatus
from dispatch.reports import summarize
from geo import Router, StreetNetwork


def _service(store: Store, city: StreetNetwork, registry: Registry, clock: Clock, **policy: object) -> DispatchService:
    return DispatchService(
        store,
        Router(city),
        devices=registry.devices,
        units=registry.units,
        clock=clock,
        policy=DispatchPolicy(**policy),
    ).open()


def _devices(registry: Registry) -> list[str]:
    return [d for d in sorted(registry.devices) if d != FAR_DEVICE]


def test_full_lifecycle_with_response_times_and_timeline(
    store: Store, city: StreetNetwork, registry: Registry, clock: Clock
) -> None:
    service = _service(store, city, registry, clock)
    alert_id = ingest_press(service, _devices(registry)[0], clock, "e1")
    alert = service.get_alert(alert_id)
    assert alert.status is AlertStatus.RECOMMENDED and alert.recommended_at == T0
    top = alert.recommendations[0].unit_id

    clock.tick(20)
    service.assign(alert_id, top, actor="disp-1")
    assert service.get_unit(top).status is UnitStatus.ASSIGNED
    assert top not in service.router.unit_ids  # busy units are not recommended
    clock.tick(5)
    service.acknowledge(alert_id, top, actor=f"unit:{top}")
    clock.tick(10)
    service.set_unit_status(top, UnitStatus.EN_ROUTE, actor=f"unit:{top}")
    clock.tick(100)
    service.set_unit_status(top, UnitStatus.ON_SCENE, actor=f"unit:{top}", alert_id=alert_id)
    clock.tick(600)
    closed = service.transition(alert_id, AlertStatus.CLOSED, actor="disp-1", reason="handled")
    assert service.get_unit(top).status is UnitStatus.AVAILABLE and top in service.router.unit_ids

    assert closed.status is AlertStatus.CLOSED
    stats = summarize([closed], "priority")[0].stats
    assert {m: s["median_s"] for m, s in stats.items()} == {
        "to_recommend": 0.0,
        "to_assign": 20.0,
        "to_acknowledge": 25.0,
        "to_arrive": 135.0,
        "to_close": 735.0,
    }
    actions = [e.action for e in store.audit_entries(alert_id=alert_id)]
    assert actions == [
        "ingest",
        "recommend",
        "assign",
        "unit_change",
        "ack",
        "state_change",
        "unit_change",
        "state_change",
        "unit_change",
        "state_change",
        "unit_change",
    ]
    assign = next(e for e in store.audit_entries(alert_id=alert_id) if e.action == "assign")
    assert assign.actor == "disp-1"
    assert json.loads(assign.before)["status"] == "recommended" and json.loads(assign.after)["status"] == "assigned"
    assert store.verify_audit().ok

    with pytest.raises(Conflict, match="cannot move to 'en_route'") as info:
        service.transition(alert_id, AlertStatus.EN_ROUTE, actor="disp-1")
    assert info.value.current == "closed"
    assert store.get_alert(alert_id).status is AlertStatus.CLOSED  # nothing changed, nothing deleted


def test_priorities_sort_lists_and_duplicates_are_linked_not_merged(
    store: Store, city: StreetNetwork, registry: Registry, clock: Clock
) -> None:
    service = _service(store, city, registry, clock, priority_by_category={"assault": 1, "noise": 5})
    school = next(d for d in _devices(registry) if registry.devices[d].site.value in ("school", "hospital"))
    street = next(d for d in _devices(registry) if registry.devices[d].site.value == "street")
    lat, lon = city.center
    noise = ingest_report(service, lat, lon, clock, "r-noise", category="noise")
    clock.tick(1)
    p2 = ingest_press(service, street, clock, "s1")
    clock.tick(1)
    assault = ingest_report(service, lat + 0.01, lon, clock, "r-assault", category="assault", accuracy_m=450.0)
    clock.tick(1)
    p1 = ingest_press(service, school, clock, "s2")
    clock.tick(60)
    dup = ingest_press(service, street, clock, "s3")  # same button a minute later: linked to the first press

    order = [a.id for a in store.list_alerts(order="priority")]
    assert order == [assault, p1, p2, dup, noise]  # priority, then age
    assert [service.get_alert(i).priority for i in order] == [1, 1, 2, 2, 5]
    assert service.get_alert(assault).location_unverified
    assert not service.get_alert(noise).location_unverified
    assert service.get_alert(dup).duplicate_of == p2
    assert service.get_alert(p2).duplicate_of is None
    service.unlink_duplicate(dup, actor="disp-1")
    assert service.get_alert(dup).duplicate_of is None
    assert [e.action for e in store.audit_entries(alert_id=dup)] == [
        "ingest",
        "recommend",
        "link_duplicate",
        "unlink_duplicate",
    ]
    clock.tick(601)
    assert service.get_alert(ingest_press(service, street, clock, "s4")).duplicate_of is None  # > 10 min after the last


def test_override_is_recorded_and_busy_or_off_duty_units_are_refused(
    store: Store, city: StreetNetwork, registry: Registry, clock: Clock
) -> None:
    service = _service(store, city, registry, clock)
    a = ingest_press(service, _devices(registry)[0], clock, "e1")
    b = ingest_press(service, _devices(registry)[3], clock, "e2")
    recommended = {r.unit_id for r in service.get_alert(a).recommendations}
    other = next(u.id for u in registry.units if u.id not in recommended)
    service.assign(a, other, actor="disp-1", reason="knows the school")
    order = service.assignments(a)[0]
    assert (order.override, order.reason, order.assigned_by) == (True, "knows the school", "disp-1")
    assert [e.action for e in store.audit_entries(alert_id=a)][2] == "override"
    with pytest.raises(Conflict, match=f"unit '{other}' is busy with alert {a}"):
        service.assign(b, other, actor="disp-1")
    off = next(u.id for u in registry.units if u.id not in (other,) and u.kind is UnitKind.FOOT)
    service.set_unit_status(off, UnitStatus.OFF_DUTY, actor="cmd-1")
    assert off not in service.router.unit_ids
    assert off not in {r.unit_id for r in service.recommend_again(b, actor="disp-1").recommendations}
    with pytest.raises(Conflict, match="is off_duty and cannot be assigned"):
        service.assign(b, off, actor="disp-1")


def test_missed_acknowledgement_escalates_to_the_next_unit(
    store: Store, city: StreetNetwork, registry: Registry, clock: Clock
) -> None:
    service = _service(store, city, registry, clock, ack_deadline=timedelta(seconds=30))
    alert_id = ingest_press(service, _devices(registry)[0], clock, "e1")
    first, second = [r.unit_id for r in service.get_alert(alert_id).recommendations[:2]]
    service.assign(alert_id, first, actor="disp-1")
    clock.tick(29)
    assert service.escalate_overdue() == []
    clock.tick(2)
    assert service.escalate_overdue() == [alert_id]
    alert = service.get_alert(alert_id)
    assert (alert.status, alert.escalations, alert.proposed_unit_id) == (AlertStatus.RECOMMENDED, 1, second)
    assert service.assignments(alert_id)[0].missed_at == T0 + timedelta(seconds=31)
    with pytest.raises(Conflict, match="no order of unit"):
        service.acknowledge(alert_id, first, actor=f"unit:{first}")  # too late
    assert service.escalate_overdue() == []  # escalated once
    escalation = next(e for e in store.audit_entries(alert_id=alert_id) if e.action == "escalation")
    assert (escalation.actor, escalation.unit_id, json.loads(escalation.after)["missed_unit_id"]) == (
        "system",
        first,
        first,
    )


def test_p1_is_auto_assigned_and_auto_reassigned_after_a_miss(
    store: Store, city: StreetNetwork, registry: Registry, clock: Clock
) -> None:
    service = _service(store, city, registry, clock, auto_assign_p1=True, ack_deadline=timedelta(seconds=30))
    school = next(d for d in _devices(registry) if registry.devices[d].site.value in ("school", "hospital"))
    alert_id = ingest_press(service, school, clock, "e1")
    alert = service.get_alert(alert_id)
    first = alert.recommendations[0].unit_id
    assert (alert.status, alert.assigned_unit_id) == (AlertStatus.ASSIGNED, first)
    assert service.assignments(alert_id)[0].auto and service.assignments(alert_id)[0].assigned_by == "system"
    clock.tick(31)
    service.escalate_overdue()
    alert = service.get_alert(alert_id)
    assert alert.status is AlertStatus.ASSIGNED and alert.assigned_unit_id not in (None, first)
    assert alert.escalations == 1
    assert service.assignments(alert_id)[0].unit_id == first
    assert service.get_unit(first).status is UnitStatus.AVAILABLE


def test_unit_registry_and_stale_patrols(store: Store, city: StreetNetwork, registry: Registry, clock: Clock) -> None:
    service = _service(store, city, registry, clock, stale_after=timedelta(seconds=120), stale_policy="exclude")
    lat, lon = city.center
    car = service.create_unit(Unit("car-new", UnitKind.CAR, "Car N", lat, lon), actor="cmd-1")
    booth = service.create_unit(
        Unit("booth-new", UnitKind.BOOTH, "Booth N", lat, lon, staff_from="20:00", staff_to="08:00"), actor="cmd-1"
    )
    with pytest.raises(Conflict, match="unit 'car-new' already exists"):
        service.create_unit(car, actor="cmd-1")
    with pytest.raises(ValueError, match="outside the service area"):
        service.create_unit(Unit("far", UnitKind.CAR, "Far", 0.0, 0.0), actor="cmd-1")
    recs = {
        r.unit_id
        for r in service.recommend_again(ingest_report(service, lat, lon, clock, "r1"), actor="d").recommendations
    }
    assert "car-new" in recs and "booth-new" not in recs  # 09:00 local: the booth is not staffed
    assert not service.unit_view(booth)["recommendable"]

    clock.tick(121)  # nobody reported: every patrol is stale and excluded; booths never go stale
    view = service.unit_view(service.get_unit("car-new"))
    assert view["stale"] and not view["recommendable"]
    recs = service.recommend_again(ingest_report(service, lat + 0.003, lon, clock, "r2"), actor="d").recommendations
    assert recs and {r.unit_kind for r in recs} == {"booth"}

    service.update_unit("booth-new", actor="cmd-1", staff_from="08:00", staff_to="20:00", name="Booth North")
    assert service.get_unit("booth-new").name == "Booth North"
    retired = service.retire_unit("car-new", actor="cmd-1")
    assert retired.retired and "car-new" not in service.router.unit_ids
    with pytest.raises(Conflict, match="retired"):
        service.set_unit_status("car-new", UnitStatus.AVAILABLE, actor="cmd-1")
    assert [e.action for e in store.audit_entries(unit_id="car-new")] == ["unit_create", "unit_retire"]
    restarted = _service(store, city, registry, clock)  # API-made units survive a restart
    assert restarted.get_unit("booth-new").name == "Booth North" and restarted.get_unit("car-new").retired


def test_audit_verify_detects_an_edited_and_a_deleted_row(
    store: Store, city: StreetNetwork, registry: Registry, clock: Clock
) -> None:
    service = _service(store, city, registry, clock)
    alert_id = ingest_press(service, _devices(registry)[0], clock, "e1")
    service.assign(alert_id, service.get_alert(alert_id).recommendations[0].unit_id, actor="disp-1")
    assert store.verify_audit().ok
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'someone-else' WHERE action = 'assign'"))
    report = store.verify_audit()
    assert not report.ok and "was edited" in report.problem
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'disp-1' WHERE action = 'assign'"))
    assert store.verify_audit().ok
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE action = 'recommend'"))
    report = store.verify_audit()
    assert not report.ok and "does not follow" in report.problem


def test_every_accepted_position_is_kept_for_dosage_and_pruned_after_the_retention(
    store: Store, city: StreetNetwork, registry: Registry, clock: Clock
) -> None:
    """Issue 14: the position history keeps a batch's superseded positions too, not stale or refused ones."""
    service = _service(store, city, registry, clock, position_retention=timedelta(days=2))
    patrol = next(u for u in registry.units if u.kind is not UnitKind.BOOTH)
    booth = next(u for u in registry.units if u.kind is UnitKind.BOOTH)

    def fix(seconds: float, dlat: float = 0.0) -> bytes:
        ts = (clock.now + timedelta(seconds=seconds)).isoformat()
        return json.dumps({"ts": ts, "lat": patrol.lat + dlat, "lon": patrol.lon}).encode()

    batch = [(patrol.id, fix(-30)), (patrol.id, fix(-20, 0.0001)), (patrol.id, fix(-25)), (patrol.id, fix(-10, 0.0002))]
    batch.append((booth.id, json.dumps({"ts": clock.now.isoformat(), "lat": booth.lat, "lon": booth.lon}).encode()))
    results = service.update_unit_positions(batch)
    assert results[:2] == [None, None] and results[2] is not None and results[3] is None  # -25 s came after -20 s
    assert results[4] is not None  # a booth's position is fixed: not kept either
    kept = store.positions_between(clock.now - timedelta(hours=1), clock.now + timedelta(hours=1))
    assert [(u, round((ts - clock.now).total_seconds())) for u, ts, _, _ in kept] == [
        (patrol.id, -30),
        (patrol.id, -20),
        (patrol.id, -10),
    ]
    assert kept[-1][2] == pytest.approx(patrol.lat + 0.0002)
    assert service.get_unit(patrol.id).position_ts == clock.now - timedelta(seconds=10)  # ranking: the newest
    assert service.update_unit_position(patrol.id, fix(-15)) is not None  # older than the known one: not kept
    assert len(store.positions_between(clock.now - timedelta(hours=1), clock.now + timedelta(hours=1))) == 3
    assert store.positions_between(clock.now - timedelta(hours=1), clock.now, units=["nobody"]) == []

    clock.tick(3 * 86400)  # past the retention: the next position prunes the old ones (at most hourly)
    assert service.update_unit_position(patrol.id, fix(0)) is None
    assert [
        ts for _, ts, _, _ in store.positions_between(clock.now - timedelta(days=10), clock.now + timedelta(1))
    ] == [clock.now]
