"""Group commit that survives another writer's commit: overlapping batches of alerts stored at once.

Two stores (PostgreSQL: two engines, as two replicas have; SQLite: one store, two threads, as one
process has) commit batches that share events, counters and duplicate links. ``INSERT ... ON
CONFLICT DO NOTHING`` skips what the other committed, one look-up answers it, and nothing is stored
one by one (``Store.batch_fallbacks``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from support import together

from dispatch import Alert, AlertSource, DeviceSite, Store, StoreError
from dispatch.models import AlertRow, ChangeRow
from dispatch.store import deadlocked
from geo import Recommendation

T = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _alert(event_id: str, counter: int | None = None, *, duplicate_of: int | None = None) -> Alert:
    return Alert(
        source=AlertSource.SOS,
        sender="sos-1",
        event_id=event_id,
        event_ts=T,
        received_at=T,
        lat=43.2389,
        lon=76.9455,
        kind="press",
        site=DeviceSite.SCHOOL,
        recommendations=(Recommendation("foot-1", "foot", 61.5, 86.1),),
        device_counter=counter,
        duplicate_of=duplicate_of,
    )


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[Store, Store]]:
    """Two writers: two engines with their own replica names on PostgreSQL; one store on SQLite."""
    first = Store(db_url, replica="a")
    first.drop_schema()
    first.upgrade_schema()
    second = Store(db_url, replica="b") if first.engine.dialect.name == "postgresql" else first
    yield first, second
    for s in {id(first): first, id(second): second}.values():
        s.close()


def _batches(r: int) -> tuple[list[Alert], list[Alert]]:
    """Round ``r``: A holds events 0-29, B events 15-44 (15 shared, with the same counters).

    In each, event 40 (B) or 10 (A) is linked to the batch's event 20 or 5 (B's 20 is shared), and B
    carries a replay: another event with event 25's counter.
    """
    base = 1000 * (r + 1)

    def event(i: int) -> Alert:
        return _alert(f"r{r}-e{i}", base + i)

    a = [event(i) for i in range(30)]
    a[10] = _alert(a[10].event_id, base + 10, duplicate_of=-5 - 1)  # -> a[5]
    b = [event(i) for i in range(15, 45)]
    b[40 - 15] = _alert(f"r{r}-e40", base + 40, duplicate_of=-(20 - 15) - 1)  # -> b[5], event 20: shared
    b.append(_alert(f"r{r}-replay", base + 25))
    return a, b


def test_overlapping_batches_committed_at_once_store_each_event_once_and_agree_on_every_id(
    stores: tuple[Store, Store],
) -> None:
    sa, sb = stores
    created_by = {"a": 0, "b": 0}
    for r in range(4):
        a, b = _batches(r)
        ra, rb = together((lambda a=a: sa.add_alerts(a), lambda b=b: sb.add_alerts(b)))
        assert isinstance(ra, list) and isinstance(rb, list), (ra, rb)
        ids = {}
        for alert, (stored, created) in [*zip(a, ra, strict=True), *zip(b, rb, strict=True)]:
            assert stored.event_id == alert.event_id
            if alert.event_id.endswith("replay"):
                assert (stored.id, created) == (None, False)  # its counter is event 25's
                continue
            assert stored.id is not None
            assert ids.setdefault(alert.event_id, stored.id) == stored.id  # both writers name one alert
        created_by["a"] += sum(c for _, c in ra)
        created_by["b"] += sum(c for _, c in rb)
        shared = [f"r{r}-e{i}" for i in range(15, 30)]
        # each shared event was created by exactly one writer; the loser got the winner's alert
        for event in shared:
            made = [
                c for alert, (_, c) in [*zip(a, ra, strict=True), *zip(b, rb, strict=True)] if alert.event_id == event
            ]
            assert sorted(made) == [False, True], (event, made)
        # links within a batch point at the stored alert, whoever stored it
        by_event = {s.event_id: s for s, c in [*ra, *rb] if c}
        assert by_event[f"r{r}-e10"].duplicate_of == ids[f"r{r}-e5"]
        assert by_event[f"r{r}-e40"].duplicate_of == ids[f"r{r}-e20"]
        stored40 = sa.get_alert(ids[f"r{r}-e40"])
        assert stored40 is not None and stored40.duplicate_of == ids[f"r{r}-e20"]
    with sa.session("check") as session:
        per_event = session.execute(select(AlertRow.event_id, func.count()).group_by(AlertRow.event_id)).all()
        origins = dict(session.execute(select(ChangeRow.origin, func.count()).group_by(ChangeRow.origin)).all())
    assert len(per_event) == 4 * 45 and all(n == 1 for _, n in per_event)  # nothing lost, nothing doubled
    assert sum(created_by.values()) == 4 * 45
    if sa is not sb:  # each writer noted a change for what it created, and only that
        assert origins == {k: v for k, v in created_by.items() if v}
    assert sa.batch_fallbacks == sb.batch_fallbacks == 0  # no alert stored one by one
    entries = sa.audit_entries()
    ingests = [e.alert_id for e in entries if e.action == "ingest"]
    assert sorted(ingests) == sorted(set(ingests)) and len(ingests) == 4 * 45
    assert sum(e.action == "link_duplicate" for e in entries) == 4 * 2
    assert sa.verify_audit().ok


def test_a_batch_meeting_stored_events_and_counters_is_answered_without_a_fallback(
    stores: tuple[Store, Store],
) -> None:
    sa, sb = stores
    (first, _), _ = sa.add_alerts([_alert("x1", 7), _alert("x2", 8)])
    batch = [_alert("x1", 7), _alert("x3", 9), _alert("x4", 8), _alert("x5", None, duplicate_of=-1)]
    out = sb.add_alerts(batch)
    assert [(s.id, c) for s, c in out[:3]] == [(first.id, False), (out[1][0].id, True), (None, False)]
    assert out[3][1] and out[3][0].duplicate_of == first.id  # linked to x1, stored before
    assert sb.batch_fallbacks == 0
    found, counters = sb.stored_events(
        [(AlertSource.SOS, "sos-1", e) for e in ("x1", "x4", "x5")], [("sos-1", 8), ("sos-1", 99)]
    )
    assert sorted(found) == [(AlertSource.SOS, "sos-1", "x1"), (AlertSource.SOS, "sos-1", "x5")]
    assert counters[("sos-1", 8)].event_id == "x2" and ("sos-1", 99) not in counters
    assert sa.count_alerts() == 4
    assert sa.verify_audit().ok


def test_a_batch_meeting_an_alert_that_another_transaction_is_changing_commits_without_waiting_for_it(
    pg_url: str,
) -> None:
    """A stored event arrives again (another replica's batch) while an assignment changes its alert and
    waits to commit: the batch reads it under the commit lock and does not insert it again (an insert
    would wait for that transaction, and it for the lock: deadlock)."""
    sa, sb = Store(pg_url, replica="a"), Store(pg_url, replica="b")  # PostgreSQL: SQLite runs one writer at a time
    sa.drop_schema()
    sa.upgrade_schema()
    (stored, _), _ = sa.add_alerts([_alert("busy", 41), _alert("other", 42)])
    done: list[object] = []
    with sa.transaction("change the alert, commit later") as tx:
        alert = tx.alert(int(stored.id or 0))  # FOR UPDATE
        assert alert is not None
        alert.priority = 2
        tx.save_alert(alert)
        tx.session.flush()  # the UPDATE is sent: the row's new version belongs to this open transaction
        tx.audit("test_change", actor="test", alert_id=alert.id)  # its commit takes the commit lock
        batch = threading.Thread(target=lambda: done.append(sb.add_alerts([_alert("busy", 41), _alert("new", 43)])))
        batch.start()
        batch.join(timeout=30)
        assert done, "the batch waited for the open transaction"
    out = done[0]
    assert isinstance(out, list)
    assert (out[0][0].id, out[0][1]) == (stored.id, False) and out[1][1]
    assert sb.batch_fallbacks == 0 and sa.verify_audit().ok
    sa.close()
    sb.close()


def test_deadlocked_names_postgresql_breaking_a_deadlock_and_nothing_else(pg_url: str) -> None:
    """What Fleet.open retries on (replicas starting together): a real deadlock, turned into StoreError."""
    sa, sb = Store(pg_url, replica="a"), Store(pg_url, replica="b")
    sa.drop_schema()
    sa.upgrade_schema()
    (first, _), (second, _) = sa.add_alerts([_alert("lock-1"), _alert("lock-2")])
    both = threading.Barrier(2)

    def cross(store: Store, mine: int, theirs: int) -> object:
        try:
            with store.transaction("lock two alerts in the other order") as tx:
                tx.alert(mine)
                both.wait()
                tx.alert(theirs)
        except StoreError as e:
            return e
        return None

    ids = (int(first.id or 0), int(second.id or 0))
    results = together((lambda: cross(sa, ids[0], ids[1]), lambda: cross(sb, ids[1], ids[0])))
    errors = [r for r in results if isinstance(r, StoreError)]
    assert len(errors) == 1 and deadlocked(errors[0]), results  # PostgreSQL chose one victim
    assert not deadlocked(StoreError("could not reach the database"))
    sa.close()
    sb.close()
