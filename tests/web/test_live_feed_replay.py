"""The live feed's replay by the global change seq (issue 11), on SQLite and PostgreSQL, without HTTP.

An event's id is the ``seq`` of its row in the ``changes`` table: a reconnect with the last id it
saw is replayed every change after it, from memory when the feed holds them, otherwise from the
table, and is reset only when neither can be trusted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from support import Clock, Registry, device_of, ingest_press, replica_services, wait_for

from dispatch import DispatchService
from dispatch.domain import UnitKind
from dispatch.ports import PatrolPlan, PlanStop
from dispatch.store import StoreError
from geo import StreetNetwork
from web.handheld import HandheldFeed, audience
from web.live_feed import LiveFeed, Resume, parse_event_id


def _events(
    feed: LiveFeed, start: Resume | None, *, until: Callable[[list[dict]], bool], audience: str | None = None
) -> list[dict]:
    """Run one event stream until ``until(events)`` (or 3 s) and return its named events."""

    async def run() -> list[dict]:
        events: list[dict] = []
        stream = feed.stream(start, heartbeat_s=0.05, audience=audience)
        try:
            async with asyncio.timeout(3.0):
                async for chunk in stream:
                    for block in chunk.split("\n\n"):
                        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
                        if "event" in fields:
                            events.append(fields)
                    if until(events):
                        break
        except TimeoutError:
            pass
        finally:
            await stream.aclose()
        return events

    # on a thread of its own: after the browser tests the test thread holds a running event loop
    # (Playwright's sync API), where asyncio.run() refuses to start
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=30)


def _ids(events: list[dict]) -> list[int]:
    return [int(e["id"]) for e in events]


def _alert_ids(events: list[dict]) -> list[int]:
    return [json.loads(e["data"])["id"] for e in events if e["event"] == "alert"]


def test_ids_are_the_change_seq_and_a_reconnect_is_replayed_from_memory(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    feed = LiveFeed(service).attach()
    first = ingest_press(service, device_of(registry), clock, "e-1")
    seen = feed.last_seq
    second = ingest_press(service, device_of(registry, 1), clock, "e-2")
    start = feed.resume(str(seen))
    assert start is not None and start.source == "memory"
    events = _events(feed, start, until=lambda ev: second in _alert_ids(ev))
    assert second in _alert_ids(events) and first not in _alert_ids(events)
    assert all(i > seen for i in _ids(events)) and _ids(events) == sorted(_ids(events))
    table = {c.seq for c in service.changes_since(seen)}
    assert set(_ids(events)) <= table  # each id is the seq of its row in the changes table
    assert feed.last_seq == max(table) == service.last_change_seq


def test_a_feed_that_did_not_hear_them_replays_from_the_table_then_goes_on_live(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    """A restarted process, or another replica: its memory starts now, the ids still mean the same."""
    before = LiveFeed(service).attach()
    ingest_press(service, device_of(registry), clock, "e-1")
    seen = before.last_seq
    missed = ingest_press(service, device_of(registry, 1), clock, "e-2")
    unit_id = service.get_alert(missed).recommendations[0].unit_id
    service.assign(missed, unit_id, actor="dispatcher-1")  # more changes of the same alert and a unit

    after = LiveFeed(service).attach()  # hears from here on
    assert after.horizon > seen
    start = after.resume(str(seen))
    assert start is not None and start.source == "database"
    later: list[int] = []

    def commit_later(events: list[dict]) -> bool:
        if not later and _alert_ids(events):
            later.append(ingest_press(service, device_of(registry, 2), clock, "e-3"))
        return bool(later) and later[0] in _alert_ids(events)

    events = _events(after, start, until=commit_later)
    assert [e["event"] for e in events].count("reset") == 0
    alerts = [json.loads(e["data"]) for e in events if e["event"] == "alert"]
    assert [a["id"] for a in alerts] == [missed, later[0]]  # each object once, in its current state
    assert alerts[0]["status"] == "assigned" and alerts[0]["assigned_unit_id"] == unit_id
    units = [json.loads(e["data"])["id"] for e in events if e["event"] == "unit"]
    assert units.count(unit_id) == 1
    assert _ids(events) == sorted(_ids(events)) and min(_ids(events)) > seen
    assert after.replays["database"] == 1 and after.replays["reset"] == 0


def test_a_reset_only_when_it_cannot_be_replayed(service: DispatchService, registry: Registry, clock: Clock) -> None:
    feed = LiveFeed(service, max_replay=2).attach()
    ingest_press(service, device_of(registry), clock, "e-1")
    for garbage in (None, "", "abc", "0badc0de.3", "-1", "1.5", "١٢", "9" * 30):
        assert parse_event_id(garbage) is None
        assert feed.resume(garbage) is None, garbage
    assert feed.resume(str(service.last_change_seq + 1000)) is None  # beyond the newest committed change
    assert [e["event"] for e in _events(feed, None, until=bool)] == ["reset"]

    # A feed started later, asked for more changes than max_replay: a snapshot is cheaper.
    late = LiveFeed(service, max_replay=2).attach()
    ingest_press(service, device_of(registry, 1), clock, "e-2")
    assert service.last_change_seq > late.max_replay
    assert late.resume("0") is None
    assert late.resume(str(late.horizon)) is not None  # from memory it is replayed
    assert late.replays["reset"] == 1


def test_when_the_buffer_moves_on_the_table_replays_what_it_dropped(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    feed = LiveFeed(service, capacity=3, max_replay=1000).attach()
    ingest_press(service, device_of(registry), clock, "e-1")
    seen = feed.last_seq
    dropped = ingest_press(service, device_of(registry, 1), clock, "e-2")
    for i in range(3):
        ingest_press(service, device_of(registry, 2 + i), clock, f"e-{3 + i}")
    assert feed.horizon > seen  # the buffer no longer holds everything after it
    start = feed.resume(str(seen))
    assert start is not None and start.source == "database"
    events = _events(feed, start, until=lambda ev: len(_alert_ids(ev)) >= 4)
    assert _alert_ids(events)[0] == dropped and len(set(_alert_ids(events))) == 4


def test_a_units_events_carry_the_seq_of_their_change_and_replay_from_memory_only(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    feed = LiveFeed(service)
    feed.attach(HandheldFeed(service, feed))
    alert_id = ingest_press(service, device_of(registry), clock, "e-1")
    unit_id = service.get_alert(alert_id).recommendations[0].unit_id
    feed.now(audience=audience(unit_id))  # the unit's handheld connects
    seen = feed.last_seq
    service.assign(alert_id, unit_id, actor="dispatcher-1")
    start = feed.resume(str(seen), audience=audience(unit_id))
    assert start is not None and start.source == "memory"
    [order] = _events(feed, start, audience=audience(unit_id), until=bool)
    assert order["event"] == "order" and json.loads(order["data"])["alert_id"] == alert_id
    alert_changes = [c.seq for c in service.changes_since(seen) if c.alerts]
    assert int(order["id"]) in alert_changes  # the id of the change it follows from
    # the map's streams never carry it
    assert "order" not in [e["event"] for e in _events(feed, feed.resume(str(seen)), until=lambda ev: len(ev) >= 2)]

    later = LiveFeed(service)
    later.attach(HandheldFeed(service, later))
    assert later.resume(str(seen), audience=audience(unit_id)) is None  # not in the table: reset with the order


def test_a_units_events_are_derived_only_while_its_handheld_is_listened_for_here(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    feed = LiveFeed(service, listen_grace_s=2.0)  # long enough for a loaded machine between two steps
    feed.attach(HandheldFeed(service, feed))
    routes: list[str] = []
    route_to_alert = service.route_to_alert

    def counted(alert_id: int, unit_id: str) -> tuple[tuple[float, float], ...]:
        routes.append(unit_id)
        return route_to_alert(alert_id, unit_id)

    service.route_to_alert = counted  # type: ignore[method-assign]  # the order's costly part, counted
    alert_id = ingest_press(service, device_of(registry), clock, "e-1")
    first, second = (r.unit_id for r in service.get_alert(alert_id).recommendations[:2])
    seen = feed.last_seq
    service.assign(alert_id, first, actor="dispatcher-1")
    assert routes == [] and not feed.listened(audience(first))  # no handheld of it here: nothing derived
    # a reconnect with an id from before it was listened for is reset (the page reloads its order) ...
    assert feed.resume(str(seen), audience=audience(first)) is None
    assert feed.listened(audience(first))  # ... and from then on it is listened for
    start = feed.now(audience=audience(first))
    service.assign(alert_id, second, actor="dispatcher-1")  # the first unit's order is withdrawn
    [withdrawn] = _events(feed, start, audience=audience(first), until=bool)
    assert withdrawn["event"] == "withdrawn" and json.loads(withdrawn["data"])["reason"] == "reassigned"
    assert routes == []  # the second unit has no handheld here either

    wait_for(lambda: not feed.listened(audience(first)), timeout_s=15, what="the grace after the last ask to pass")
    gone = feed.last_seq
    service.assign(alert_id, first, actor="dispatcher-1")
    assert routes == [] and feed.resume(str(gone), audience=audience(first)) is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_replicas_number_alike_and_either_replays_the_others_ids(
    db_url: str, city: StreetNetwork, registry: Registry, clock: Clock
) -> None:
    with replica_services(db_url, city, registry, clock) as (a, b):
        b.start_change_stream()
        feed_a, feed_b = LiveFeed(a).attach(), LiveFeed(b).attach()
        ingest_press(a, device_of(registry), clock, "e-1")
        seen = feed_a.last_seq
        wait_for(lambda: feed_b.last_seq >= seen, timeout_s=5, what="B hears A's first alert")
        alert_id = ingest_press(a, device_of(registry, 1), clock, "e-2")  # committed by A only
        wait_for(lambda: feed_b.last_seq >= feed_a.last_seq, timeout_s=5, what="B hears A's second alert")
        on_a = _events(feed_a, feed_a.resume(str(seen)), until=lambda ev: alert_id in _alert_ids(ev))
        start = feed_b.resume(str(seen))  # the browser reconnects to B with the id A gave it
        assert start is not None and start.source == "memory"
        on_b = _events(feed_b, start, until=lambda ev: alert_id in _alert_ids(ev))
        assert [(e["id"], e["event"]) for e in on_b] == [(e["id"], e["event"]) for e in on_a]

        # A is ahead of B by a change B has not polled yet: B resumes after it, sends nothing twice.
        b.close()
        ahead = ingest_press(a, device_of(registry, 2), clock, "e-3")
        newest = feed_a.last_seq
        assert feed_b.last_seq < newest
        start = feed_b.resume(str(newest))
        assert start is not None and start.after == newest
        b.sync_changes()
        after = ingest_press(a, device_of(registry, 3), clock, "e-4")
        b.sync_changes()
        events = _events(feed_b, start, until=lambda ev: after in _alert_ids(ev))
        assert ahead not in _alert_ids(events) and after in _alert_ids(events)
        assert min(_ids(events)) > newest


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_when_the_remote_changes_cannot_be_read_a_local_commit_waits_for_them(
    db_url: str, city: StreetNetwork, registry: Registry, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed's ids must only grow: B's own change waits until A's earlier one can be handed on first."""
    with replica_services(db_url, city, registry, clock) as (a, b):
        feed = LiveFeed(b).attach()
        remote = ingest_press(a, device_of(registry), clock, "e-1")  # B has not polled it
        real = b.store.read_changes
        failures = []

        def flaky(*args: object, **kw: object) -> object:
            if not failures:
                failures.append(1)
                raise StoreError("the database went away for a moment")
            return real(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(b.store, "read_changes", flaky)
        local = ingest_press(b, device_of(registry, 1), clock, "e-2")
        assert failures and feed.last_seq < a.last_change_seq  # B's change was committed but waits
        b.sync_changes()
        events = _events(feed, feed.resume(str(feed.horizon)), until=lambda ev: local in _alert_ids(ev))
        assert _alert_ids(events)[0] == remote and local in _alert_ids(events)
        assert _ids(events) == sorted(_ids(events))
        assert feed.horizon < min(_ids(events))  # heard in seq order: memory still replays across both


def test_the_leader_prunes_the_change_stream_and_a_reconnect_before_it_is_reset(
    service: DispatchService, registry: Registry, clock: Clock
) -> None:
    """``changes`` keeps ``policy.changes_retention`` (24 h); a reconnect older than what is kept gets a snapshot."""
    seen_before = service.last_change_seq
    ingest_press(service, device_of(registry), clock, "e-1")
    seen_old = service.last_change_seq
    clock.tick(3600)
    ingest_press(service, device_of(registry, 1), clock, "e-2")
    seen_mid = service.last_change_seq
    clock.tick(24 * 3600 - 1800)  # e-1 is now older than a day, e-2 not
    kept = ingest_press(service, device_of(registry, 2), clock, "e-3")
    oldest_before, newest, _ = service.store.change_bounds(0, service.last_change_seq)
    assert oldest_before is not None and oldest_before <= seen_old

    assert service.prune_changes() >= 1
    oldest, newest_after, _ = service.store.change_bounds(0, newest)
    assert oldest is not None and seen_old < oldest <= seen_mid + 1 and newest_after == newest
    assert service.prune_changes() == 0  # nothing more is old enough

    feed = LiveFeed(service).attach()  # a replica that started after the pruning: replay from the table
    assert feed.resume(str(seen_before)) is None  # what came after it is gone: a fresh snapshot
    assert feed.resume(str(seen_old)) is not None  # it missed nothing that was pruned
    start = feed.resume(str(seen_mid))
    assert start is not None and start.source == "database"
    events = _events(feed, start, until=lambda ev: kept in _alert_ids(ev))
    assert kept in _alert_ids(events) and "reset" not in [e["event"] for e in events]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_plan_issued_through_one_replica_reaches_the_other_replicas_handhelds_and_map(
    db_url: str, city: StreetNetwork, registry: Registry, clock: Clock
) -> None:
    """Issue 14 with replicas: the handheld on B hears the plan A issued, the map on B too, replayable by id."""
    with replica_services(db_url, city, registry, clock) as (a, b):
        b.start_change_stream()
        feed_b = LiveFeed(b)
        feed_b.attach(HandheldFeed(b, feed_b))
        start_map, start_unit = feed_b.now(), feed_b.now()
        walker = next(u for u in a.units() if u.kind is UnitKind.FOOT)
        t0 = clock.now
        stop = PlanStop(1, 7, walker.lat, walker.lon, t0 + timedelta(minutes=5), t0 + timedelta(minutes=20), 15.0)
        plan = PatrolPlan(
            "plan-x", "P01", walker.id, "08:00-16:00", t0, t0 + timedelta(hours=8), "booth-1",
            (stop,), ((walker.lat, walker.lon), (walker.lat, walker.lon)), t0, "commander-1",
        )  # fmt: skip
        a.issue_plan([plan], actor="commander-1")  # through A only: no publish on B's feed by hand

        on_unit = _events(feed_b, start_unit, until=lambda ev: any(e["event"] == "plan" for e in ev),
                          audience=audience(walker.id))  # fmt: skip
        notices = [json.loads(e["data"]) for e in on_unit if e["event"] == "plan"]
        assert notices == [{"plan_id": "plan-x", "unit_id": walker.id, "issued_at": t0.isoformat()}]
        on_map = _events(feed_b, start_map, until=lambda ev: any(e["event"] == "plan" for e in ev))
        plan_events = [e for e in on_map if e["event"] == "plan"]
        assert [json.loads(e["data"])["plan_id"] for e in plan_events] == ["plan-x"]

        # a map that reconnects to a replica that did not hear it live is replayed the issue from the table
        late = LiveFeed(b).attach()
        resumed = late.resume(str(int(plan_events[0]["id"]) - 1))
        assert resumed is not None and resumed.source == "database"
        assert '"plan_id":"plan-x"' in resumed.replay and "event: plan" in resumed.replay
