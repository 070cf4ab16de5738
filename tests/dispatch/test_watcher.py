"""The one periodic watcher: runs its task every interval, survives failures, stops on close."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from support import FAR_DEVICE, Registry

from dispatch import DispatchPolicy, DispatchService, Store
from dispatch.store import StoreError
from dispatch.supervision import DeviceState, DeviceSupervisor, SupervisionPolicy
from dispatch.watcher import Watcher
from geo import Router, StreetNetwork

T0 = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # 09:00 in Almaty


def _wait_for(condition, timeout_s: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def test_runs_the_task_every_interval_on_a_daemon_thread() -> None:
    threads: list[threading.Thread] = []
    watcher = Watcher(
        lambda: threads.append(threading.current_thread()), interval_s=0.01, name="qorgau-test", what="test check"
    )
    watcher.start()
    try:
        assert _wait_for(lambda: len(threads) >= 3)
    finally:
        watcher.close()
    assert {t.name for t in threads} == {"qorgau-test"}
    assert all(t.daemon for t in threads)
    assert threading.current_thread() not in threads


def test_first_run_waits_one_interval() -> None:
    runs: list[float] = []
    watcher = Watcher(lambda: runs.append(time.monotonic()), interval_s=0.2, name="qorgau-test", what="test check")
    started = time.monotonic()
    watcher.start()
    try:
        assert _wait_for(lambda: len(runs) >= 1)
    finally:
        watcher.close()
    assert runs[0] - started >= 0.19


def test_close_stops_it_and_it_can_start_again() -> None:
    runs: list[int] = []
    watcher = Watcher(lambda: runs.append(1), interval_s=0.01, name="qorgau-test", what="test check")
    watcher.start()
    assert watcher.running
    assert _wait_for(lambda: len(runs) >= 1)
    watcher.close()
    assert not watcher.running
    after_close = len(runs)
    time.sleep(0.1)
    assert len(runs) == after_close
    watcher.start()
    try:
        assert _wait_for(lambda: len(runs) > after_close)
    finally:
        watcher.close()


def test_starting_twice_keeps_one_thread() -> None:
    watcher = Watcher(lambda: None, interval_s=0.01, name="qorgau-test-twice", what="test check")
    watcher.start()
    watcher.start()
    try:
        assert sum(t.name == "qorgau-test-twice" for t in threading.enumerate()) == 1
    finally:
        watcher.close()
    watcher.close()  # closing twice is harmless
    assert _wait_for(lambda: not any(t.name == "qorgau-test-twice" for t in threading.enumerate()))


def test_failures_are_logged_and_the_watcher_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def task() -> None:
        calls.append(1)
        if len(calls) == 1:
            msg = "database down"
            raise StoreError(msg)
        if len(calls) == 2:
            msg = "a bug"
            raise RuntimeError(msg)

    caplog.set_level(logging.ERROR, logger="dispatch.watcher")
    watcher = Watcher(task, interval_s=0.01, name="qorgau-test", what="test check", retry_on=(StoreError,))
    watcher.start()
    try:
        assert _wait_for(lambda: len(calls) >= 4)
    finally:
        watcher.close()
    records = [r for r in caplog.records if r.name == "dispatch.watcher"]
    retried = [r for r in records if "test check failed, retrying: database down" in r.getMessage()]
    crashed = [r for r in records if r.getMessage() == "test check failed"]
    assert len(retried) == 1 and retried[0].exc_info is None
    assert len(crashed) == 1 and crashed[0].exc_info is not None and "a bug" in caplog.text


def test_run_once_reports_whether_the_task_succeeded() -> None:
    def boom() -> None:
        msg = "boom"
        raise ValueError(msg)

    assert Watcher(lambda: None, interval_s=1, name="t", what="t").run_once() is True
    assert Watcher(boom, interval_s=1, name="t", what="t").run_once() is False


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s must be positive"):
        Watcher(lambda: None, interval_s=0, name="t", what="t")


# -- the two watchers of the service, on the one mechanism ----------------------------------------


def test_the_deadline_watcher_escalates_a_missed_order_and_stops_on_close(
    db_url: str, city: StreetNetwork, registry: Registry
) -> None:
    store = Store(db_url).upgrade_schema()
    started = time.monotonic()

    def clock() -> datetime:  # runs from 09:00 in Almaty, whatever the time of day: units are staffed
        return T0 + timedelta(seconds=time.monotonic() - started)

    service = DispatchService(
        store,
        Router(city),
        devices=registry.devices,
        units=registry.units,
        clock=clock,
        policy=DispatchPolicy(ack_deadline=timedelta(seconds=0.2), auto_assign_p1=False),
    ).open()
    try:
        device = next(d for d in sorted(registry.devices) if d != FAR_DEVICE)
        now = clock().isoformat()
        ack = service.ingest_sos(device, json.dumps({"event_id": "w1", "ts": now, "kind": "press"}).encode())
        alert = service.get_alert(int(ack.alert_id))
        service.assign(alert.id, alert.recommendations[0].unit_id, actor="disp-1")
        service.start_deadline_watcher(interval_s=0.02)
        assert any(t.name == "qorgau-deadlines" for t in threading.enumerate())
        assert _wait_for(lambda: service.get_alert(alert.id).escalations == 1)
        assert _wait_for(lambda: service.metrics()["escalations"] == 1)  # counted just after the commit
    finally:
        service.close()
        store.close()
    assert _wait_for(lambda: not any(t.name == "qorgau-deadlines" for t in threading.enumerate()))


def test_the_supervision_watcher_puts_a_silent_button_offline_and_stops_on_close(
    db_url: str, registry: Registry
) -> None:
    store = Store(db_url).upgrade_schema()
    policy = SupervisionPolicy(heartbeat_interval=timedelta(seconds=0.05), misses=2)
    supervisor = DeviceSupervisor(store, registry.devices, policy=policy).open()
    device = sorted(registry.devices)[0]
    try:
        supervisor.start_watcher(interval_s=0.02)
        assert any(t.name == "qorgau-supervision" for t in threading.enumerate())
        assert _wait_for(lambda: supervisor.state(device) is DeviceState.OFFLINE)
        assert supervisor.metrics()["events_opened"] >= 1
    finally:
        supervisor.close()
        store.close()
    assert _wait_for(lambda: not any(t.name == "qorgau-supervision" for t in threading.enumerate()))
