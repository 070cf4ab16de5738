"""The unit's terminal and the idempotency ledger, on SQLite and PostgreSQL (clock pinned)."""

from __future__ import annotations

import json

import pytest
from support import FAR_DEVICE, Clock, Registry, ingest_press

from dispatch import AlertStatus, Conflict, DispatchPolicy, DispatchService, Store, UnitKind
from dispatch.domain import CloseOutcome
from dispatch.idempotency import IdempotencyLedger, KeyReused, StoredAnswer, fingerprint
from dispatch.terminal import NotYourOrder
from geo import Router, StreetNetwork


@pytest.fixture
def service(store: Store, city: StreetNetwork, registry: Registry, clock: Clock) -> DispatchService:
    return DispatchService(
        store,
        Router(city),
        devices=registry.devices,
        units=registry.units,
        clock=clock,
        policy=DispatchPolicy(location_accuracy_max_m=30.0),
    ).open()


def _patrols(service: DispatchService, alert_id: int) -> list[str]:
    kinds = {u.id: u.kind for u in service.units()}
    return [
        r.unit_id for r in service.get_alert(alert_id).recommendations if kinds[r.unit_id] is not UnitKind.BOOTH
    ] + [u for u, k in sorted(kinds.items()) if k is not UnitKind.BOOTH]


def _device(registry: Registry) -> str:
    return next(d for d in sorted(registry.devices) if d != FAR_DEVICE)


def test_a_unit_closes_its_order_with_an_outcome(service: DispatchService, registry: Registry, clock: Clock) -> None:
    alert_id = ingest_press(service, _device(registry), clock, "t1")
    unit_id = _patrols(service, alert_id)[0]
    assert service.current_order(unit_id).alert is None
    service.assign(alert_id, unit_id, actor="disp")
    current = service.current_order(unit_id)
    assert current.alert is not None and current.alert.id == alert_id
    assert current.assignment is not None and current.assignment.unit_id == unit_id
    actor = f"officer-{unit_id}"
    with pytest.raises(ValueError, match="closing needs an outcome"):
        service.move_order(unit_id, alert_id, AlertStatus.CLOSED, actor=actor)
    with pytest.raises(Conflict, match="cannot move to 'closed'"):
        service.move_order(unit_id, alert_id, AlertStatus.CLOSED, actor=actor, outcome=CloseOutcome.RESOLVED)
    for status in (AlertStatus.ACKNOWLEDGED, AlertStatus.EN_ROUTE, AlertStatus.ON_SCENE):
        clock.tick(30)
        assert service.move_order(unit_id, alert_id, status, actor=actor, note="ok").status is status
    clock.tick(300)
    closed = service.move_order(
        unit_id, alert_id, AlertStatus.CLOSED, actor=actor, outcome=CloseOutcome.NOBODY_FOUND, note=" gone "
    )
    assert (closed.status, closed.outcome, closed.close_note) == (AlertStatus.CLOSED, CloseOutcome.NOBODY_FOUND, "gone")
    stored = service.store.get_alert(alert_id)
    assert stored is not None and (stored.outcome, stored.close_note) == (CloseOutcome.NOBODY_FOUND, "gone")
    entries = service.store.audit_entries(alert_id=alert_id)
    assert [e.action for e in entries].count("unit_note") == 3
    assert {e.actor for e in entries if e.action in {"ack", "state_change", "unit_note"}} == {actor}
    assert service.store.verify_audit().ok
    assert service.current_order(unit_id).alert is None
    with pytest.raises(NotYourOrder):
        service.move_order(unit_id, alert_id, AlertStatus.ON_SCENE, actor=actor)


def test_a_re_assigned_order_is_not_the_first_units_any_more(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    alert_id = ingest_press(service, _device(registry), clock, "t2")
    first, second = _patrols(service, alert_id)[:2]
    service.assign(alert_id, first, actor="disp")
    service.assign(alert_id, second, actor="disp")
    with pytest.raises(NotYourOrder, match="no longer an order") as info:
        service.move_order(first, alert_id, AlertStatus.ACKNOWLEDGED, actor="officer")
    assert info.value.current == "assigned"
    assert service.get_alert(alert_id).assigned_unit_id == second


def test_fixes_are_flagged_beyond_the_accuracy_limit(service: DispatchService, registry: Registry) -> None:
    car = next(u for u in registry.units if u.kind is UnitKind.CAR)
    booth = next(u for u in registry.units if u.kind is UnitKind.BOOTH)
    flagged = service.report_fix(car.id, car.lat + 0.002, car.lon, 30.5, actor="officer")
    assert (flagged.accepted, flagged.flagged, flagged.accuracy_max_m) == (False, True, 30.0)
    assert service.get_unit(car.id).lat == car.lat
    assert service.metrics()["positions_flagged"] == 1
    audited = [e for e in service.store.audit_entries(unit_id=car.id) if e.action == "position_flagged"]
    assert len(audited) == 1 and json.loads(audited[0].after)["accuracy_m"] == 30.5
    good = service.report_fix(car.id, car.lat + 0.002, car.lon, 30.0, actor="officer")  # at the limit: used
    assert (good.accepted, good.flagged, good.reason) == (True, False, None)
    assert service.get_unit(car.id).lat == pytest.approx(car.lat + 0.002)
    with pytest.raises(Conflict, match="booth"):
        service.report_fix(booth.id, booth.lat, booth.lon, 1.0, actor="officer")


def test_the_ledger_answers_repeats_refuses_reuse_and_prunes_after_a_day(store: Store, clock: Clock) -> None:
    ledger = IdempotencyLedger(store, clock=clock)
    request = fingerprint("POST", "/x", '{"a": 1}')
    assert ledger.claim("u1", "key-00001", request) is None
    with pytest.raises(Conflict, match="still being applied"):
        ledger.claim("u1", "key-00001", request)
    ledger.answer("u1", "key-00001", StoredAnswer(200, '{"ok": true}'))
    assert ledger.claim("u1", "key-00001", request) == StoredAnswer(200, '{"ok": true}')
    with pytest.raises(KeyReused, match="different request"):
        ledger.claim("u1", "key-00001", fingerprint("POST", "/x", '{"a": 2}'))
    assert ledger.claim("u2", "key-00001", request) is None  # keys are per user
    ledger.release("u2", "key-00001")
    assert ledger.claim("u2", "key-00001", request) is None  # a released claim is applied afresh
    assert ledger.count() == 2

    clock.tick(23 * 3600)
    assert ledger.claim("u1", "key-00002", request) is None
    assert ledger.count() == 3
    clock.tick(2 * 3600)  # the first two are now older than a day
    assert ledger.prune() == 2
    assert ledger.count() == 1
    assert ledger.claim("u1", "key-00001", request) is None  # forgotten: a new request
