"""The dispatch service under concurrent requests, on SQLite and PostgreSQL: one unit, one alert."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from support import FAR_DEVICE, Registry, together

from dispatch import Conflict, DispatchService, Store, UnitKind, UnitStatus
from geo import Router, StreetNetwork

T0 = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # 09:00 in Almaty


@pytest.fixture
def service(store: Store, city: StreetNetwork, registry: Registry) -> DispatchService:
    return DispatchService(store, Router(city), devices=registry.devices, units=registry.units, clock=lambda: T0).open()


def _alerts(service: DispatchService, registry: Registry, n: int) -> list[int]:
    devices = [d for d in sorted(registry.devices) if d != FAR_DEVICE][:n]
    ids = []
    for i, device in enumerate(devices):
        payload = json.dumps({"event_id": f"e{i}", "ts": T0.isoformat(), "kind": "press"}).encode()
        ack = service.ingest_sos(device, payload)
        assert ack.accepted, ack
        ids.append(int(ack.alert_id))
    return ids


def test_one_unit_ordered_to_several_alerts_at_once_takes_exactly_one(
    service: DispatchService, store: Store, registry: Registry
) -> None:
    alert_ids = _alerts(service, registry, 4)
    unit_id = next(u.id for u in service.units() if u.kind is UnitKind.CAR and u.status is UnitStatus.AVAILABLE)
    results = together([lambda a=a: service.assign(a, unit_id, actor="disp-1") for a in alert_ids])
    won = [a for a, r in zip(alert_ids, results, strict=True) if not isinstance(r, Exception)]
    assert len(won) == 1, results
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception)), results
    unit = service.get_unit(unit_id)
    assert (unit.status, unit.alert_id) == (UnitStatus.ASSIGNED, won[0])
    stored = store.get_unit(unit_id)
    assert stored is not None and (stored.status, stored.alert_id) == (UnitStatus.ASSIGNED, won[0])
    assert unit_id not in service.router.unit_ids
    assert [service.get_alert(a).assigned_unit_id for a in alert_ids].count(unit_id) == 1
    assert store.verify_audit().ok


def test_positions_racing_an_assignment_never_undo_it(
    service: DispatchService, store: Store, registry: Registry
) -> None:
    (alert_id,) = _alerts(service, registry, 1)
    car = next(u for u in service.units() if u.kind is UnitKind.CAR and u.status is UnitStatus.AVAILABLE)

    def position(k: int) -> object:
        ts = (T0 - timedelta(seconds=60) + timedelta(seconds=k)).isoformat()
        return service.update_unit_position(car.id, json.dumps({"ts": ts, "lat": car.lat, "lon": car.lon}).encode())

    results = together(
        [lambda: service.assign(alert_id, car.id, actor="disp-1"), *(lambda k=k: position(k) for k in range(6))]
    )
    assert not isinstance(results[0], Exception), results[0]
    unit = service.get_unit(car.id)
    stored = store.get_unit(car.id)
    assert (unit.status, unit.alert_id) == (UnitStatus.ASSIGNED, alert_id)
    assert stored is not None and (stored.status, stored.alert_id) == (UnitStatus.ASSIGNED, alert_id)
    assert car.id not in service.router.unit_ids


def test_alerts_ingested_while_units_are_assigned_are_all_committed_and_counted(
    service: DispatchService, store: Store, registry: Registry
) -> None:
    alert_ids = _alerts(service, registry, 3)
    cars = [u.id for u in service.units() if u.kind is UnitKind.CAR and u.status is UnitStatus.AVAILABLE][:3]
    devices = [d for d in sorted(registry.devices) if d != FAR_DEVICE]

    def press(k: int) -> object:
        payload = json.dumps({"event_id": f"late-{k}", "ts": T0.isoformat(), "kind": "press"}).encode()
        return service.ingest_sos(devices[k % len(devices)], payload)

    calls: list[Callable[[], object]] = [
        lambda a=a, c=c: service.assign(a, c, actor="disp-1") for a, c in zip(alert_ids, cars, strict=True)
    ]
    calls += [lambda k=k: press(k) for k in range(6)]
    results = together(calls)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert all(r.accepted for r in results[len(cars) :])  # type: ignore[union-attr]
    assert service.metrics()["accepted"] == {"sos": 3 + 6}
    assert store.count_alerts() == 9
    assert {service.get_unit(c).alert_id for c in cars} == set(alert_ids)
