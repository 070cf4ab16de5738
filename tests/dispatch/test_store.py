"""The store on both SQLite and PostgreSQL: commits, UTC times, idempotency, units."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from dispatch import Alert, AlertSource, AlertStatus, DeviceSite, DispatchService, Store, StoreError, Unit, UnitKind
from dispatch.domain import APP102_SENDER, Assignment, UnitStatus
from dispatch.models import AlertRow
from geo import Recommendation, Router, StreetNetwork

ALMATY = timezone(timedelta(hours=5))


def _alert(event_id: str = "e1", sender: str = "sos-1", **kw: object) -> Alert:
    fields: dict = {
        "source": AlertSource.SOS,
        "sender": sender,
        "event_id": event_id,
        "event_ts": datetime(2026, 3, 8, 14, 0, 5, 250000, tzinfo=ALMATY),
        "received_at": datetime(2026, 3, 8, 9, 0, 6, tzinfo=UTC),
        "lat": 43.2389,
        "lon": 76.9455,
        "kind": "press",
        "site": DeviceSite.SCHOOL,
        "snap_distance_m": 12.5,
        "recommendations": (
            Recommendation("foot-1", "foot", 61.5, 86.1),
            Recommendation("car-1", "car", 75.0, 900.0),
        ),
    }
    fields.update(kw)
    return Alert(**fields)


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store(db_url).create_schema()
    yield s
    s.close()


def test_alert_round_trip_in_utc(store: Store) -> None:
    stored, created = store.add_alert(_alert())
    assert created
    assert stored.id is not None
    again = store.get_alert(stored.id)
    assert again == stored
    assert again.event_ts == datetime(2026, 3, 8, 9, 0, 5, 250000, tzinfo=UTC)
    assert again.event_ts.utcoffset() == timedelta(0)
    assert again.received_at.tzinfo is not None
    assert [r.unit_id for r in again.recommendations] == ["foot-1", "car-1"]
    assert again.priority == 1
    assert again.device_id == "sos-1"


def test_redelivered_event_is_stored_once(store: Store) -> None:
    first, created = store.add_alert(_alert())
    second, created_again = store.add_alert(_alert(lat=0.0))
    assert created and not created_again
    assert second == first
    assert store.count_alerts() == 1


def test_same_event_id_from_other_senders_is_another_alert(store: Store) -> None:
    store.add_alert(_alert(sender="sos-1"))
    store.add_alert(_alert(sender="sos-2"))
    store.add_alert(_alert(source=AlertSource.APP102, sender=APP102_SENDER, site=None, kind=None))
    assert store.count_alerts() == 3


def test_concurrent_redeliveries_make_one_alert(store: Store) -> None:
    barrier = threading.Barrier(4)
    results: list[tuple[Alert, bool]] = []

    def add() -> None:
        barrier.wait()
        results.append(store.add_alert(_alert("race")))

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(created for _, created in results) == 1
    assert len({a.id for a, _ in results}) == 1
    assert store.count_alerts() == 1


def test_list_alerts_newest_first_with_paging(store: Store) -> None:
    ids = [store.add_alert(_alert(f"e{i}"))[0].id for i in range(5)]
    assert [a.id for a in store.list_alerts()] == ids[::-1]
    assert [a.id for a in store.list_alerts(limit=2, offset=1)] == ids[3:1:-1]
    assert store.get_alert(10_000) is None


def test_units_upsert(store: Store) -> None:
    unit = Unit(id="car-1", kind=UnitKind.CAR, name="Car 1", lat=43.2, lon=76.9)
    store.save_units([unit, Unit(id="booth-1", kind=UnitKind.BOOTH, name="Booth 1", lat=43.21, lon=76.91)])
    moved = unit.copy()
    moved.lat, moved.position_ts = 43.3, datetime(2026, 3, 8, 14, 0, tzinfo=ALMATY)
    store.save_unit(moved)
    assert [u.id for u in store.list_units()] == ["booth-1", "car-1"]
    got = store.get_unit("car-1")
    assert got is not None
    assert (got.lat, got.position_ts) == (43.3, datetime(2026, 3, 8, 9, 0, tzinfo=UTC))


def test_service_prefers_measured_positions_over_seed_positions(store: Store, city: StreetNetwork) -> None:
    lat, lon = city.center
    seed = [
        Unit(id="foot-1", kind=UnitKind.FOOT, name="F1", lat=lat, lon=lon),
        Unit(id="booth-1", kind=UnitKind.BOOTH, name="B1", lat=lat, lon=lon),
    ]
    measured = Unit(
        id="foot-1",
        kind=UnitKind.FOOT,
        name="F1",
        lat=lat + 0.002,
        lon=lon,
        position_ts=datetime(2026, 3, 8, 9, 0, tzinfo=UTC),
    )
    store.save_unit(measured)
    service = DispatchService(store, Router(city), devices={}, units=seed).open()
    units = {u.id: u for u in service.units()}
    assert (units["foot-1"].lat, units["foot-1"].position_ts) == (lat + 0.002, measured.position_ts)
    assert units["booth-1"].lat == lat
    assert sorted(service.router.unit_ids) == ["booth-1", "foot-1"]


def test_naive_times_are_refused() -> None:
    with pytest.raises(
        ValueError, match="event_ts must be timezone-aware, got the naive datetime '2026-03-08T09:00:00'"
    ):
        _alert(event_ts=datetime(2026, 3, 8, 9, 0))


def test_unsorted_recommendations_are_refused() -> None:
    recs = (Recommendation("a", "car", 90.0, 1.0), Recommendation("b", "car", 30.0, 1.0))
    with pytest.raises(ValueError, match=r"must be sorted by eta_s, got \[90.0, 30.0\]"):
        _alert(recommendations=recs)


def test_status_values_survive(store: Store) -> None:
    stored, _ = store.add_alert(_alert(status=AlertStatus.TEST, kind="test"))
    assert store.get_alert(stored.id).status is AlertStatus.TEST


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'sub' / 'q.sqlite3'}").create_schema()
    assert store.journal_mode() == "wal"
    assert (tmp_path / "sub" / "q.sqlite3").exists()
    store.close()


def test_unreachable_database_raises_store_error() -> None:
    store = Store("postgresql+psycopg://postgres@127.0.0.1:9/nothing_here")
    with pytest.raises(StoreError, match=r"could not store alert 'e1' from 'sos-1' in Store\('postgresql"):
        store.add_alert(_alert())
    with pytest.raises(StoreError, match="could not list alerts"):
        store.list_alerts()
    assert store.ping() is False


def test_session_reads_what_was_committed(store: Store) -> None:
    store.add_alert(_alert("e1"))
    store.add_alert(_alert("e2"))
    with store.session("count alerts by sender") as session:
        rows = session.execute(select(AlertRow.sender, func.count()).group_by(AlertRow.sender)).all()
    assert [tuple(r) for r in rows] == [("sos-1", 2)]


def test_session_of_an_unreachable_database_raises_store_error_naming_the_action() -> None:
    store = Store("postgresql+psycopg://postgres@127.0.0.1:9/nothing_here")
    with (
        pytest.raises(StoreError, match=r"could not read the device events in Store\('postgresql"),
        store.session("read the device events") as session,
    ):
        session.execute(text("SELECT 1"))


def test_every_field_of_units_and_orders_survives_a_round_trip(store: Store) -> None:
    alert, _ = store.add_alert(
        _alert(
            status=AlertStatus.RECOMMENDED,
            location_unverified=True,
            escalations=2,
            close_reason="x",
            duplicate_of=None,
            device_counter=7,
        )
    )
    assert store.get_alert(alert.id) == alert
    assert (alert.location_unverified, alert.escalations, alert.device_counter, alert.site) == (
        True,
        2,
        7,
        DeviceSite.SCHOOL,
    )
    unit = Unit(
        id="car-9",
        kind=UnitKind.CAR,
        name="Car 9",
        lat=43.2,
        lon=76.9,
        status=UnitStatus.EN_ROUTE,
        position_ts=datetime(2026, 3, 8, 9, 0, tzinfo=UTC),
        retired=True,
        staff_from="08:00",
        staff_to="20:00",
        alert_id=alert.id,
    )
    store.save_unit(unit)
    assert store.get_unit("car-9") == unit
    t = datetime(2026, 3, 8, 9, 1, tzinfo=UTC)
    order = Assignment(
        alert_id=alert.id,
        unit_id="car-9",
        assigned_at=t,
        assigned_by="d-1",
        ack_due_at=t + timedelta(seconds=30),
        override=True,
        auto=True,
        reason="nearest is busy",
        eta_s=61.5,
        acknowledged_at=t + timedelta(seconds=5),
        missed_at=None,
    )
    with store.transaction("store an order") as tx:
        saved = tx.save_assignment(order)
    assert saved.id is not None
    assert store.assignments(alert.id) == [replace(order, id=saved.id)]
