"""The global change stream on one replica, SQLite and PostgreSQL: every commit in seq order, replayable."""

from __future__ import annotations

import json

import pytest
from support import Clock, Registry, device_of, ingest_press

from dispatch import Alert, AlertStatus, DispatchService, Unit, UnitKind
from dispatch.ports import Change


class Recorder:
    """A listener of the change stream."""

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def alert_changed(self, alert: Alert) -> None:
        raise AssertionError("a change-stream listener must not hear alert_changed")

    def unit_changed(self, unit: Unit) -> None:
        raise AssertionError("a change-stream listener must not hear unit_changed")

    def change_committed(self, change: Change) -> None:
        self.changes.append(change)


class Legacy:
    """A listener from before the change stream."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.units: list[Unit] = []

    def alert_changed(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def unit_changed(self, unit: Unit) -> None:
        self.units.append(unit)


def test_every_commit_is_a_change_in_seq_order_with_its_origin(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    recorder, legacy = Recorder(), Legacy()
    service.add_listener(recorder)
    service.add_listener(legacy)
    alert_id = ingest_press(service, device_of(registry), clock, "e-1")
    alert = service.get_alert(alert_id)
    unit_id = alert.recommendations[0].unit_id
    service.assign(alert_id, unit_id, actor="dispatcher-1")
    car = next(u for u in registry.units if u.kind is UnitKind.CAR)
    clock.tick(1)
    payload = json.dumps({"ts": clock.now.isoformat(), "lat": car.lat + 0.0005, "lon": car.lon}).encode()
    assert service.update_unit_position(car.id, payload) is None

    seqs = [c.seq for c in recorder.changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert {c.origin for c in recorder.changes} == {"replica-a"}
    assert all(c.at.utcoffset() is not None and c.at.utcoffset().total_seconds() == 0 for c in recorder.changes)
    alerts = [a for c in recorder.changes for a in c.alerts]
    assert [a.id for a in alerts] == [alert_id, alert_id]
    assert [a.status for a in alerts] == [AlertStatus.RECOMMENDED, AlertStatus.ASSIGNED]
    units = [u for c in recorder.changes for u in c.units]
    assert (unit_id, alert_id) in {(u.id, u.alert_id) for u in units}
    assert units[-1].id == car.id and units[-1].lat == pytest.approx(car.lat + 0.0005)
    # the legacy listener still hears the same alerts and units through its own two methods
    assert [a.status for a in legacy.alerts] == [AlertStatus.RECOMMENDED, AlertStatus.ASSIGNED]
    assert legacy.units[-1].id == car.id
    assert service.last_change_seq == seqs[-1]


def test_changes_since_replays_the_current_state_from_the_table(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    recorder = Recorder()
    service.add_listener(recorder)
    start = service.last_change_seq
    first = ingest_press(service, device_of(registry, 0), clock, "e-1")
    second = ingest_press(service, device_of(registry, 1), clock, "e-2")
    service.transition(first, AlertStatus.CANCELLED, actor="dispatcher-1", reason="a test")

    replay = service.changes_since(start, limit=100)
    assert [c.seq for c in replay] == [c.seq for c in recorder.changes]
    assert [a.id for c in replay for a in c.alerts] == [first, second, first]
    # the current state of each object, not the state at the time
    assert [a.status for c in replay for a in c.alerts if a.id == first] == [AlertStatus.CANCELLED] * 2
    assert service.changes_since(replay[0].seq, limit=1) == replay[1:2]
    assert service.changes_since(replay[-1].seq) == []


def test_a_replayed_alert_is_the_stored_alert_whole_with_its_recommendations_in_rank_order(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    """The stream reads alerts as Core rows (every replica reads every change): nothing may be lost."""
    start = service.last_change_seq
    ids = [ingest_press(service, device_of(registry, i), clock, f"whole-{i}") for i in range(3)]
    service.assign(ids[0], service.get_alert(ids[0]).recommendations[0].unit_id, actor="dispatcher-1")
    replayed = {a.id: a for c in service.changes_since(start, limit=100) for a in c.alerts}
    assert set(replayed) == set(ids)
    for alert_id in ids:
        stored = service.get_alert(alert_id)
        assert replayed[alert_id] == stored
        assert len(stored.recommendations) > 1
        assert [r.eta_s for r in replayed[alert_id].recommendations] == sorted(r.eta_s for r in stored.recommendations)
    assert replayed[ids[0]].assigned_unit_id is not None and replayed[ids[0]].status is AlertStatus.ASSIGNED
