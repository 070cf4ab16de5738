"""Dispatch's shared state across replicas: two or three DispatchService instances, each with its own
engine and replica name, on one PostgreSQL database (and a real subprocess for the leader)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from support import FAR_DEVICE, Registry, together, wait_for

from dispatch import (
    AlertSource,
    AlertStatus,
    Conflict,
    DeviceKey,
    DispatchPolicy,
    DispatchService,
    Inbound,
    PressVerifier,
    Store,
    UnitKind,
    sign_press,
)
from dispatch.leader import Leadership
from geo import Router, StreetNetwork

ROOT = Path(__file__).resolve().parents[2]


def _now() -> str:
    return datetime.now(UTC).isoformat()


@pytest.fixture
def pg(pg_url: str) -> str:
    """The session's PostgreSQL database, emptied and migrated."""
    store = Store(pg_url)
    store.drop_schema()
    store.upgrade_schema()
    store.close()
    return pg_url


@pytest.fixture
def replicas(pg: str, city: StreetNetwork, registry: Registry) -> Iterator[Callable[..., DispatchService]]:
    """Make a replica: its own Store (engine), router and name, the change stream running."""
    made: list[DispatchService] = []

    def make(name: str, **kw: object) -> DispatchService:
        svc = DispatchService(
            Store(pg, replica=name), Router(city), devices=registry.devices, units=registry.units, **kw
        ).open()
        svc.start_change_stream()
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()
        svc.store.close()


def _devices(registry: Registry) -> list[str]:
    return [d for d in sorted(registry.devices) if d != FAR_DEVICE]


def _press(service: DispatchService, device: str, event: str) -> int:
    ack = service.ingest_sos(device, json.dumps({"event_id": event, "ts": _now(), "kind": "press"}).encode())
    assert ack.accepted, ack
    return int(ack.alert_id)


def test_a_position_ingested_by_a_is_used_by_bs_ranking_within_1_s(
    replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    a, b = replicas("a"), replicas("b")
    car = next(u for u in registry.units if u.kind is UnitKind.CAR)
    device = registry.devices[_devices(registry)[0]]
    before = {r.unit_id: r.eta_s for r in b.get_alert(_press(b, device.id, "before")).recommendations}
    assert before.get(car.id, float("inf")) > 30, "pick a device the car is not already at"

    payload = json.dumps({"ts": _now(), "lat": device.lat, "lon": device.lon}).encode()
    sent = time.monotonic()
    assert a.update_unit_position(car.id, payload) is None
    wait_for(lambda: b.get_unit(car.id).lat == device.lat or None, timeout_s=1.0, what="B hears A's position")
    took = time.monotonic() - sent
    # B ranks a 102 report at that spot with the car where A put it (the report is no duplicate of the press)
    body = {"event_id": "after", "ts": _now(), "lat": device.lat, "lon": device.lon, "accuracy_m": 5.0}
    ack = b.ingest_app102(json.dumps({**body, "category": "theft", "text": "bag"}).encode())
    after = {r.unit_id: r.eta_s for r in b.get_alert(int(ack.alert_id)).recommendations}
    assert after[car.id] < 30, after
    assert took < 1.0
    assert a.get_unit(car.id).status is b.get_unit(car.id).status  # a position never writes a status back


def test_two_dispatchers_on_two_replicas_take_one_unit_one_wins_the_other_conflicts(
    replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    a, b = replicas("a"), replicas("b")
    devices = _devices(registry)
    unit = next(u for u in registry.units if u.kind is UnitKind.FOOT).id
    wins = {"a": 0, "b": 0}
    for round_ in range(8):
        first = _press(a, devices[0], f"r{round_}-a")
        second = _press(b, devices[3], f"r{round_}-b")
        results = together(
            [
                lambda f=first: a.assign(f, unit, actor="dispatcher-a", reason="race"),
                lambda s=second: b.assign(s, unit, actor="dispatcher-b", reason="race"),
            ]
        )
        conflicts = [r for r in results if isinstance(r, Conflict)]
        assigned = [r for r in results if not isinstance(r, Exception)]
        assert len(assigned) == 1 and len(conflicts) == 1, results
        won = assigned[0].id
        assert f"busy with alert {won}" in str(conflicts[0])
        wins["a" if won == first else "b"] += 1
        lost = second if won == first else first
        assert a.get_alert(lost).assigned_unit_id is None
        assert a.store.get_unit(unit).alert_id == won
        # both replicas learn who holds the unit; closing on the other replica frees it
        wait_for(lambda w=won: b.get_unit(unit).alert_id == w or None, timeout_s=2, what="B hears who holds it")
        (b if won == first else a).transition(won, AlertStatus.CANCELLED, actor="dispatcher", reason="race done")
        a.transition(lost, AlertStatus.CANCELLED, actor="dispatcher", reason="race done")
        wait_for(lambda: all(s.get_unit(unit).alert_id is None for s in (a, b)) or None, timeout_s=2, what="freed")
    assert len(a.store.assignments_of_unit(unit)) == 8  # one order per round, never two
    assert wins["a"] + wins["b"] == 8
    assert a.store.verify_audit().ok


def test_the_same_event_through_a_and_b_is_stored_once_and_presses_link_across_replicas(
    replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    a, b = replicas("a"), replicas("b")
    device = _devices(registry)[1]
    for i in range(10):
        payload = json.dumps({"event_id": f"same-{i}", "ts": _now(), "kind": "press"}).encode()
        acks = together([lambda p=payload: a.ingest_sos(device, p), lambda p=payload: b.ingest_sos(device, p)])
        assert all(not isinstance(x, Exception) and x.accepted for x in acks), acks
        assert len({x.alert_id for x in acks}) == 1, acks
    alerts = a.store.list_alerts(limit=100)
    assert sorted(x.event_id for x in alerts) == sorted(f"same-{i}" for i in range(10))
    # every later press of that button is linked to the first one, whichever replica took it
    original = min(x.id for x in alerts)
    assert all(x.duplicate_of == original for x in alerts if x.id != original)
    again = _press(b, device, "again-on-b")
    assert b.get_alert(again).duplicate_of == original


def test_two_replicas_ingesting_overlapping_batches_at_once_commit_each_press_once_with_one_alert_id(
    replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    """Fan-out: both replicas get (partly) the same presses in one batch each, at the same moment."""
    policy = DispatchPolicy(auto_assign_p1=True)
    a, b = replicas("a", policy=policy), replicas("b", policy=policy)
    devices = _devices(registry)

    def inbound(event: str, i: int) -> Inbound:
        body = {"event_id": event, "ts": _now(), "kind": "press"}
        return Inbound(AlertSource.SOS, devices[i % len(devices)], json.dumps(body).encode())

    events: set[str] = set()
    for r in range(3):
        presses = [inbound(f"fan{r}-{i}", i) for i in range(36)]
        events |= {f"fan{r}-{i}" for i in range(36)}
        acks = together([lambda p=presses: a.ingest_many(p[:24]), lambda p=presses: b.ingest_many(p[12:])])
        assert all(isinstance(x, list) for x in acks), acks
        on_a, on_b = ({ack.event_id: ack for ack in x} for x in acks)  # type: ignore[attr-defined]
        assert len(on_a) == len(on_b) == 24 and all(x.accepted for x in [*on_a.values(), *on_b.values()])
        for event in set(on_a) & set(on_b):  # the loser answered with the winner's alert
            assert on_a[event].alert_id == on_b[event].alert_id
    stored = a.store.list_alerts(limit=1000)
    assert sorted(x.event_id for x in stored) == sorted(events)  # nothing lost, nothing doubled
    ma, mb = a.metrics(), b.metrics()
    created = ma["accepted"].get("sos", 0) + mb["accepted"].get("sos", 0)
    assert created == len(events)
    # every shared press was created by one replica and answered by the other from the stored alert:
    # found before ranking, or lost at the insert to the other's commit a moment earlier
    others = ma["ingest_found_stored"] + ma["ingest_lost_races"] + mb["ingest_found_stored"] + mb["ingest_lost_races"]
    assert others == 3 * 12
    assert ma["duplicates"].get("sos", 0) + mb["duplicates"].get("sos", 0) == 3 * 12
    assert a.store.batch_fallbacks == b.store.batch_fallbacks == 0  # no alert stored one by one
    orders = [o for x in stored for o in a.store.assignments(x.id)]
    assert len({o.alert_id for o in orders}) == len(orders)  # an alert ordered at most once
    entries = a.store.audit_entries()
    assert sorted(e.alert_id for e in entries if e.action == "ingest") == sorted(x.id for x in stored)
    assert orders, "P1 presses are auto-assigned: the once-check needs some"
    assert sum(e.action == "auto_assign" for e in entries) == len(orders)
    with a.store.session("origins") as session:
        noted = session.execute(text("SELECT count(*) FROM changes WHERE kind = 'alert'")).scalar_one()
    assert noted == created + len(orders)  # a change per alert created (and order), by its creator only
    assert a.store.verify_audit().ok


def test_a_replica_behind_answers_presses_another_committed_from_the_store_without_ranking(
    replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    """A restarted (or slow) replica meets a backlog the others committed: one look-up, no ranking."""
    a, b = replicas("a"), replicas("b")
    devices = _devices(registry)
    presses = [
        Inbound(
            AlertSource.SOS,
            devices[i % 4],
            json.dumps({"event_id": f"old-{i}", "ts": _now(), "kind": "press"}).encode(),
        )
        for i in range(20)
    ]
    first = {ack.event_id: ack.alert_id for ack in a.ingest_many(presses)}
    late = {ack.event_id: ack.alert_id for ack in b.ingest_many(presses)}
    assert late == first
    assert b.metrics()["ingest_found_stored"] == 20 and b.metrics()["ingest_lost_races"] == 0
    assert b.metrics()["accepted"] == {}
    assert a.store.count_alerts() == 20


def test_a_follower_waits_for_the_leaders_commit_instead_of_ranking_and_ranks_itself_when_none_comes(
    replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    """``follower_hold``: the replica that is not the leader answers with the leader's alert, not its own ranking."""
    a = replicas("a", policy=DispatchPolicy(follower_hold=timedelta(seconds=10)))
    a.leadership.start()
    assert a.is_leader
    b = replicas("b", policy=DispatchPolicy(follower_hold=timedelta(seconds=10)))
    b.leadership.start()
    assert b.leadership.another_leads and not b.is_leader
    devices = _devices(registry)

    def batch(prefix: str) -> list[Inbound]:
        body = lambda i: json.dumps({"event_id": f"{prefix}-{i}", "ts": _now(), "kind": "press"}).encode()  # noqa: E731
        return [Inbound(AlertSource.SOS, devices[i % 5], body(i), time.monotonic()) for i in range(20)]

    for r in range(3):  # fan-out: both take the same batch at the same moment
        presses = batch(f"hold{r}")
        on_a, on_b = together([lambda p=presses: a.ingest_many(p), lambda p=presses: b.ingest_many(p)])
        assert [x.alert_id for x in on_a] == [x.alert_id for x in on_b]  # type: ignore[attr-defined]
    assert b.metrics()["ingest_lost_races"] == 0 and b.metrics()["accepted"] == {}  # b ranked nothing
    assert b.metrics()["ingest_found_stored"] == 60 and a.metrics()["accepted"] == {"sos": 60}

    b.policy = replace(b.policy, follower_hold=timedelta(seconds=0.2))
    alone = [ack.alert_id for ack in b.ingest_many(batch("leader-silent"))]  # a never takes these
    assert all(alone) and b.metrics()["accepted"] == {"sos": 20}
    assert a.store.batch_fallbacks == b.store.batch_fallbacks == 0
    assert a.store.verify_audit().ok


def test_a_replica_starting_while_another_holds_a_units_row_to_commit_waits_instead_of_deadlocking(
    pg: str, city: StreetNetwork, registry: Registry, replicas: Callable[..., DispatchService]
) -> None:
    """An assignment holds its unit's row until it takes the commit lock; the start-up merge takes
    the rows before that lock (before, it held the lock and waited for the row: deadlock)."""
    a = replicas("a")
    unit = registry.units[0].id
    started: list[object] = []
    with a.store.transaction("hold a unit's row, then commit with an audit entry") as tx:
        assert tx.unit(unit) is not None  # FOR UPDATE: held until commit
        tx.audit("test_hold", actor="test", unit_id=unit)
        opener = threading.Thread(target=lambda: started.append(replicas("b")))
        opener.start()
        with a.store.session("watch the locks") as session:
            wait_for(
                lambda: (
                    session.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one() > 0 or None
                ),
                timeout_s=20,
                what="B's start waits for the row",
            )
    opener.join(timeout=30)  # the commit above took the commit lock while B waited for the row
    assert len(started) == 1 and isinstance(started[0], DispatchService), started
    assert a.store.verify_audit().ok


def test_a_signed_press_replayed_on_b_after_a_accepted_it_is_rejected(
    pg: str, city: StreetNetwork, registry: Registry, replicas: Callable[..., DispatchService]
) -> None:
    device = _devices(registry)[2]
    key = DeviceKey(bytes(range(32)))
    a = replicas("a", press_verifier=PressVerifier({device: key}))
    b = replicas("b", press_verifier=PressVerifier({device: key}))

    def signed(event: str, ctr: int) -> bytes:
        return json.dumps(sign_press({"event_id": event, "ts": _now(), "kind": "press", "ctr": ctr}, key)).encode()

    assert a.ingest_sos(device, signed("s-1", 500)).accepted
    replay = b.ingest_sos(device, signed("s-2", 500))  # the counter again, on the other replica, at once
    assert not replay.accepted and replay.reason is not None and replay.reason.value == "replayed", replay
    old = b.ingest_sos(device, signed("s-3", 500 - 64))
    assert old.reason is not None and old.reason.value == "counter_too_old", old
    assert b.ingest_sos(device, signed("s-4", 501)).accepted
    assert a.ingest_sos(device, signed("s-5", 501)).reason.value == "replayed"  # type: ignore[union-attr]


def test_one_counter_pressed_through_a_and_b_at_the_same_moment_is_stored_once(
    replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    device = _devices(registry)[2]
    key = DeviceKey(bytes(range(32)))
    a = replicas("a", press_verifier=PressVerifier({device: key}))
    b = replicas("b", press_verifier=PressVerifier({device: key}))
    for ctr in range(1000, 1010):
        bodies = [
            json.dumps(sign_press({"event_id": f"{r}-{ctr}", "ts": _now(), "kind": "press", "ctr": ctr}, key)).encode()
            for r in ("a", "b")
        ]
        acks = together([lambda x=bodies[0]: a.ingest_sos(device, x), lambda y=bodies[1]: b.ingest_sos(device, y)])
        reasons = sorted("accepted" if x.accepted else x.reason.value for x in acks)  # type: ignore[union-attr]
        assert reasons == ["accepted", "replayed"], acks
    counters = [x.device_counter for x in a.store.list_alerts(limit=100)]
    assert sorted(counters) == list(range(1000, 1010))  # type: ignore[type-var]


def test_the_audit_chain_stays_unbroken_with_three_concurrent_writers(
    replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    services = [replicas(name) for name in ("a", "b", "c")]
    devices = _devices(registry)

    def writer(i: int, svc: DispatchService) -> Callable[[], object]:
        def run() -> object:
            for n in range(12):
                alert = _press(svc, devices[(i + n) % len(devices)], f"w{i}-{n}")
                svc.transition(alert, AlertStatus.CANCELLED, actor=f"dispatcher-{i}", reason="chain")
                svc.store.audit("login", actor=f"dispatcher-{i}")
            return None

        return run

    results = together([writer(i, s) for i, s in enumerate(services)])
    assert results == [None, None, None]
    report = services[0].store.verify_audit()
    assert report.ok, report
    assert report.entries >= 3 * 12 * 3


_LEADER_SCRIPT = """
import sys, time
from dispatch import Store
from dispatch.leader import Leadership
leadership = Leadership(Store(sys.argv[1], replica="doomed"), retry_s=0.2).start()
if leadership.wait(10):
    print("leader", flush=True)
time.sleep(600)
"""


def test_the_leader_is_killed_another_replica_takes_over_within_5_s_and_escalates_once(
    pg: str, replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    doomed = subprocess.Popen(
        [sys.executable, "-c", _LEADER_SCRIPT, pg], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        assert doomed.stdout is not None and doomed.stdout.readline().strip() == "leader"
        policy = DispatchPolicy(ack_deadline=timedelta(seconds=1))
        followers = [replicas(name, policy=policy) for name in ("b", "c")]
        for svc in followers:
            svc.start_deadline_watcher(interval_s=0.1)
        b = followers[0]
        alert = _press(b, _devices(registry)[0], "lead-1")
        unit = b.get_alert(alert).recommendations[0].unit_id
        b.assign(alert, unit, actor="dispatcher-b")
        time.sleep(2.0)  # the deadline passed; nobody but the leader escalates, and it escalates nothing
        assert not any(s.is_leader for s in followers)
        assert b.get_alert(alert).escalations == 0

        killed = time.monotonic()
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=5)
        wait_for(lambda: any(s.is_leader for s in followers) or None, timeout_s=5, what="a new leader")
        wait_for(lambda: b.get_alert(alert).escalations == 1 or None, timeout_s=5, what="the escalation")
        assert time.monotonic() - killed < 5.0
        time.sleep(1.0)  # both followers run their watchers: still exactly one escalation
        assert sum(s.is_leader for s in followers) == 1
        assert b.get_alert(alert).escalations == 1
        entries = [e for e in b.store.audit_entries(alert_id=alert) if e.action == "escalation"]
        assert len(entries) == 1
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(timeout=5)


def test_a_follower_waiting_for_the_lock_leads_the_moment_the_leader_dies_not_at_its_next_try(pg: str) -> None:
    """The follower tries only every 30 s here; it still leads well within a second of the SIGKILL,
    because it waits in ``pg_advisory_lock`` and PostgreSQL grants it the freed lock at once. And
    closing a follower that waits ends the wait (no thread left blocked in the database)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    doomed = subprocess.Popen(
        [sys.executable, "-c", _LEADER_SCRIPT, pg], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    tag = os.urandom(4).hex()  # this test's sessions only, whatever other tests left in pg_stat_activity
    stores = [Store(pg, replica=f"{name}-{tag}") for name in ("b", "c")]
    followers = [Leadership(store, retry_s=30.0) for store in stores]
    try:
        assert doomed.stdout is not None and doomed.stdout.readline().strip() == "leader"
        for leadership in followers:
            leadership.start()
        assert all(f.another_leads and not f.is_leader for f in followers)

        killed = time.monotonic()
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=5)
        wait_for(lambda: any(f.is_leader for f in followers) or None, timeout_s=5, what="a new leader")
        took = time.monotonic() - killed
        assert took < 1.0, f"took over after {took:.2f} s"
        time.sleep(0.3)
        assert sum(f.is_leader for f in followers) == 1

        waiting = next(f for f in followers if not f.is_leader)
        assert waiting.another_leads
        began = time.monotonic()
        waiting.close()
        assert time.monotonic() - began < 2.0
        assert not waiting.is_leader and not waiting.another_leads

        def waiters() -> int:
            with stores[0].engine.connect() as conn:
                return int(
                    conn.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qorgau-leader:' || :r"),
                        {"r": waiting.store.replica},
                    ).scalar_one()
                )

        # the cancelled session's backend leaves pg_stat_activity a moment after the client closed it
        wait_for(lambda: waiters() == 0, timeout_s=5, what="the cancelled wait's session to end")
    finally:
        for leadership in followers:
            leadership.close()
        for store in stores:
            store.close()
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(timeout=5)


def test_two_replicas_escalating_the_same_overdue_orders_at_once_escalate_each_once(
    replicas: Callable[..., DispatchService], registry: Registry
) -> None:
    """Work done once must hold even when two replicas both think they lead for a moment (a leader
    that has not yet noticed its lock is gone): the order is read again under the alert's lock."""
    policy = DispatchPolicy(ack_deadline=timedelta(seconds=0.5))
    a, b = (replicas(name, policy=policy) for name in ("a", "b"))
    alerts = []
    for i, device in enumerate(_devices(registry)[:4]):
        alert = _press(a, device, f"overdue-{i}")
        a.assign(alert, a.get_alert(alert).recommendations[0].unit_id, actor="dispatcher-a")
        alerts.append(alert)
    time.sleep(0.7)  # every deadline passed; nobody escalated yet
    for _ in range(2):
        together([a.escalate_overdue, b.escalate_overdue])
    for alert in alerts:
        assert a.get_alert(alert).escalations == 1
        actions = [e.action for e in a.store.audit_entries(alert_id=alert)]
        assert actions.count("escalation") == 1 and "order_lapsed" not in actions, actions
        missed = [o for o in a.assignments(alert) if o.missed_at is not None]
        assert len(missed) == 1
    assert a.store.verify_audit().ok


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_device_supervision_writes_each_event_once_across_replicas_and_a_new_leader_goes_on_from_it(
    pg: str, registry: Registry
) -> None:
    """Every replica hears every heartbeat and last will; only the leader writes; a takeover resyncs."""
    from dispatch.supervision import DeviceState, DeviceSupervisor, SupervisionPolicy

    clock = _Clock()
    policy = SupervisionPolicy(heartbeat_interval=timedelta(seconds=30), flap_window=timedelta(seconds=60))
    leader = {"a": True, "b": False}
    stores = {name: Store(pg, replica=name) for name in leader}
    sups = {
        name: DeviceSupervisor(store, registry.devices, policy=policy, clock=clock).open()
        for name, store in stores.items()
    }
    for name, sup in sups.items():
        sup.leading = lambda name=name: leader[name]  # type: ignore[misc]
    one, two = _devices(registry)[:2]

    def both(call: Callable[[DeviceSupervisor], object]) -> None:
        for sup in sups.values():
            call(sup)

    def beat(device: str) -> None:
        both(lambda s: s.heartbeat(device, json.dumps({"ts": clock.now.isoformat()}).encode()))

    def actions(device: str) -> list[str]:
        return [e.action for e in stores["a"].audit_entries() if json.loads(e.after or "{}").get("device_id") == device]

    try:
        beat(one)
        beat(two)
        both(lambda s: s.report_status(one, b'{"state": "offline"}'))  # the last will reaches both
        both(lambda s: s.tick())
        assert actions(one) == ["device_offline"]
        assert len(sups["a"].events(device_id=one)) == 1
        assert sups["a"].state(one) is DeviceState.OFFLINE
        assert sups["b"].state(one) is DeviceState.OFFLINE  # the follower read the leader's event back

        leader.update(a=False, b=True)  # a is gone as the leader; b takes over
        clock.advance(10)
        beat(one)  # back: written once, by b
        both(lambda s: s.tick())
        assert actions(one) == ["device_offline", "device_online"]
        clock.advance(25)
        beat(one)
        clock.advance(70)  # two silent past 3 x 30 s, one back for a whole flap window
        beat(one)
        both(lambda s: s.tick())
        assert actions(one) == ["device_offline", "device_online", "device_event_closed"]
        assert actions(two) == ["device_offline"]
        assert [e.cause for e in sups["b"].events(device_id=two)] == ["silent"]
        sups["a"].tick()  # the follower ticked before b wrote: it reads it on its next tick
        assert sups["a"].state(two) is DeviceState.OFFLINE and sups["a"].state(one) is DeviceState.ONLINE
        assert stores["a"].verify_audit().ok
    finally:
        for store in stores.values():
            store.close()


def test_two_replicas_both_acting_as_leader_for_a_moment_write_one_offline_event_and_one_return(
    pg: str, registry: Registry
) -> None:
    """A leader that has not yet noticed its lock is gone and the new one both write a drop and a return:
    one event, one return."""
    from dispatch.supervision import DeviceSupervisor, SupervisionPolicy

    clock = _Clock()
    policy = SupervisionPolicy(heartbeat_interval=timedelta(seconds=30))
    stores = [Store(pg, replica=name) for name in ("a", "b")]
    sups = [DeviceSupervisor(store, registry.devices, policy=policy, clock=clock).open() for store in stores]
    for sup in sups:
        sup.leading = lambda: True  # type: ignore[method-assign]
    device = _devices(registry)[0]
    try:
        for sup in sups:
            sup.heartbeat(device, json.dumps({"ts": clock.now.isoformat()}).encode())
        clock.advance(5)
        together([lambda s=s: s.report_status(device, b'{"state": "offline"}') for s in sups])
        together([s.tick for s in sups])
        events = sups[0].events(device_id=device)
        assert len(events) == 1, events
        offline = [e for e in stores[0].audit_entries() if e.action == "device_offline"]
        assert len(offline) == 1
        clock.advance(5)  # back: both hear the heartbeat, one return is written
        together([lambda s=s: s.heartbeat(device, json.dumps({"ts": clock.now.isoformat()}).encode()) for s in sups])
        actions = [e.action for e in stores[0].audit_entries() if e.action.startswith("device_")]
        assert actions == ["device_offline", "device_online"], actions
        assert stores[0].verify_audit().ok
    finally:
        for store in stores:
            store.close()
