"""The control room's rules as plain functions: lifecycle, priorities, duplicates, freshness, staffing, audit chain."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta

import pytest

from dispatch import Alert, AlertSource, AlertStatus, DeviceSite, Unit, UnitKind
from dispatch.audit import GENESIS_HASH, AuditEntry, entry_hash, verify_chain
from dispatch.domain import alert_priority
from dispatch.lifecycle import (
    TRANSITIONS,
    DispatchPolicy,
    StalePolicy,
    TransitionRefused,
    check_transition,
    distance_m,
    find_duplicate,
    is_staffed,
    is_stale,
    location_unverified,
    next_proposal,
    rank_units,
    stamp_transition,
)
from geo import Recommendation

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
S = AlertStatus


def _alert(id: int = 1, *, lat: float = 43.2389, lon: float = 76.9455, at: datetime = T0, **kw: object) -> Alert:
    fields: dict = dict(
        id=id,
        source=AlertSource.SOS,
        sender=f"sos-{id}",
        event_id=f"e{id}",
        event_ts=at,
        received_at=at,
        lat=lat,
        lon=lon,
        status=S.RECOMMENDED,
        site=DeviceSite.STREET,
    )
    fields.update(kw)
    return Alert(**fields)


HAPPY_PATH = [S.RECOMMENDED, S.ASSIGNED, S.ACKNOWLEDGED, S.EN_ROUTE, S.ON_SCENE, S.CLOSED]


def test_the_happy_path_is_allowed_and_stamps_each_state_once() -> None:
    alert = _alert(status=S.NEW)
    for i, target in enumerate(HAPPY_PATH, start=1):
        alert = stamp_transition(alert, target, T0 + timedelta(seconds=10 * i))
    assert alert.status is S.CLOSED
    assert alert.recommended_at == T0 + timedelta(seconds=10)
    assert alert.on_scene_at == T0 + timedelta(seconds=50)
    assert alert.closed_at == T0 + timedelta(seconds=60)
    again = stamp_transition(_alert(status=S.ASSIGNED, assigned_at=T0), S.ASSIGNED, T0 + timedelta(minutes=1))
    assert again.assigned_at == T0  # a re-assignment keeps the first time for response times


@pytest.mark.parametrize("closing", [S.CLOSED, S.CANCELLED, S.FALSE_ALARM])
def test_closing_states_are_final(closing: AlertStatus) -> None:
    assert TRANSITIONS[closing] == frozenset()
    with pytest.raises(TransitionRefused, match=f"an alert in state '{closing.value}' cannot move to 'assigned'"):
        check_transition(closing, S.ASSIGNED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.NEW, S.ON_SCENE),
        (S.RECOMMENDED, S.ACKNOWLEDGED),
        (S.ASSIGNED, S.CLOSED),
        (S.EN_ROUTE, S.ASSIGNED),
        (S.TEST, S.ASSIGNED),
    ],
)
def test_moves_the_state_machine_does_not_allow_are_refused_with_the_current_state(
    current: AlertStatus, target: AlertStatus
) -> None:
    with pytest.raises(TransitionRefused) as info:
        check_transition(current, target)
    assert info.value.current is current


@pytest.mark.parametrize("target", [S.CANCELLED, S.FALSE_ALARM])
def test_cancel_and_false_alarm_need_a_reason(target: AlertStatus) -> None:
    with pytest.raises(TransitionRefused, match=f"moving an alert to '{target.value}' needs a reason"):
        check_transition(S.RECOMMENDED, target, reason="  ")
    moved = stamp_transition(_alert(), target, T0, reason=" caller withdrew ")
    assert (moved.status, moved.close_reason, moved.closed_at) == (target, "caller withdrew", T0)


def test_priorities() -> None:
    table = {"assault": 1, "theft": 3, "noise": 5}
    assert alert_priority(AlertSource.SOS, DeviceSite.SCHOOL) == 1
    assert alert_priority(AlertSource.SOS, DeviceSite.HOSPITAL) == 1
    assert alert_priority(AlertSource.SOS, DeviceSite.STREET) == 2
    assert alert_priority(AlertSource.APP102, None, "Assault", categories=table) == 1
    assert alert_priority(AlertSource.APP102, None, "noise", categories=table) == 5
    assert alert_priority(AlertSource.APP102, None, "unknown", categories=table) == 3
    with pytest.raises(ValueError, match=r"integers 1\.\.5, got \{'x': 9\}"):
        DispatchPolicy(priority_by_category={"x": 9})


def test_duplicates_link_to_the_earliest_open_alert_nearby_from_the_same_source() -> None:
    first = _alert(1)
    second = _alert(2, lat=first.lat + 0.0005, at=T0 + timedelta(minutes=3))  # ~56 m north
    far = _alert(3, lat=first.lat + 0.002, at=T0 + timedelta(minutes=1))  # ~220 m
    closed = _alert(4, at=T0 - timedelta(minutes=1), status=S.CLOSED)
    report = _alert(5, source=AlertSource.APP102, sender="app102", site=None, at=T0 - timedelta(minutes=2))
    new = _alert(9, lat=first.lat + 0.0003, at=T0 + timedelta(minutes=8))
    assert distance_m(first.lat, first.lon, second.lat, second.lon) == pytest.approx(55.6, abs=0.5)
    assert find_duplicate(new, [second, far, closed, report, first]) is first
    assert find_duplicate(new, [far, closed, report]) is None
    late = _alert(9, at=T0 + timedelta(minutes=10, seconds=1))
    assert find_duplicate(late, [first]) is None  # outside the 10-minute window
    assert find_duplicate(late, [first], window=timedelta(minutes=11)) is first


def test_location_unverified_only_for_inaccurate_102_reports() -> None:
    assert location_unverified(AlertSource.APP102, 250.0, threshold_m=100)
    assert not location_unverified(AlertSource.APP102, 100.0, threshold_m=100)
    assert not location_unverified(AlertSource.SOS, None, threshold_m=100)


def test_freshness_and_staffing() -> None:
    car = Unit("car-1", UnitKind.CAR, "Car", 43.2, 76.9, position_ts=T0)
    booth = Unit("booth-1", UnitKind.BOOTH, "Booth", 43.2, 76.9, staff_from="20:00", staff_to="08:00")
    assert not is_stale(car, T0 + timedelta(seconds=120), stale_after=timedelta(seconds=120), since=T0)
    assert is_stale(car, T0 + timedelta(seconds=121), stale_after=timedelta(seconds=120), since=T0)
    assert not is_stale(booth, T0 + timedelta(days=1), stale_after=timedelta(seconds=120), since=T0)
    never = dataclasses.replace(car, position_ts=None)
    assert is_stale(
        never, T0 + timedelta(seconds=200), stale_after=timedelta(seconds=120), since=T0 + timedelta(seconds=50)
    )
    assert is_staffed(booth, time(23, 30)) and is_staffed(booth, time(7, 59))
    assert not is_staffed(booth, time(8, 0)) and not is_staffed(booth, time(12, 0))
    assert is_staffed(car, time(12, 0))
    with pytest.raises(ValueError, match="staff_from must be a local time HH:MM, got '8am'"):
        Unit("b", UnitKind.BOOTH, "B", 43.2, 76.9, staff_from="8am", staff_to="20:00")


def test_stale_units_are_penalised_or_excluded() -> None:
    found = [
        Recommendation("car-1", "car", 60.0, 500.0),
        Recommendation("foot-1", "foot", 100.0, 140.0),
        Recommendation("car-2", "car", 200.0, 900.0),
    ]
    penalised = rank_units(found, {"car-1"}, policy=StalePolicy.PENALTY, penalty_s=300, k=3)
    assert [(r.unit_id, r.eta_s) for r in penalised] == [("foot-1", 100.0), ("car-2", 200.0), ("car-1", 360.0)]
    excluded = rank_units(found, {"car-1"}, policy=StalePolicy.EXCLUDE, penalty_s=300, k=2)
    assert [r.unit_id for r in excluded] == ["foot-1", "car-2"]


def test_escalation_proposes_the_best_unit_not_yet_tried() -> None:
    recs = [Recommendation(u, "car", float(i), 1.0) for i, u in enumerate(["a", "b", "c"])]
    assert next_proposal(recs, ["a"]).unit_id == "b"
    assert next_proposal(recs, ["a", "b", "c"]) is None


def _chain(n: int) -> list[AuditEntry]:
    entries, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        fields = dict(
            id=i,
            ts=T0 + timedelta(seconds=i),
            actor="d1",
            action="assign",
            alert_id=7,
            unit_id="car-1",
            before='{"status":"recommended"}',
            after='{"status":"assigned"}',
            prev_hash=prev,
        )
        prev = entry_hash(**fields)
        entries.append(AuditEntry(**fields, hash=prev))
    return entries


def test_audit_chain_detects_edits_and_deletions() -> None:
    chain = _chain(5)
    ok = verify_chain(chain)
    assert (ok.ok, ok.entries, ok.head_hash) == (True, 5, chain[-1].hash)
    edited = [*chain[:2], dataclasses.replace(chain[2], actor="someone else"), *chain[3:]]
    bad = verify_chain(edited)
    assert (bad.ok, bad.broken_at) == (False, 3)
    assert "entry 3 (assign) was edited" in bad.problem
    deleted = verify_chain(chain[:2] + chain[3:])
    assert (deleted.ok, deleted.broken_at) == (False, 4)
    assert "does not follow the entry before it" in deleted.problem
