"""Intake: inbound alert and unit messages validated, ranked, committed, answered.

:class:`Intake` turns a batch of SOS presses and 102 reports into committed, ranked alerts (one
transaction per batch, group commit) and answers the senders only after the commit; it validates
unit messages (positions, statuses, acknowledgements) and hands them to whoever applies them.
It holds no lock across the database: ranking takes the fleet's in-memory lock only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from dispatch.counters import ServiceCounters
from dispatch.domain import Alert, AlertSource, AlertStatus, Device, alert_priority
from dispatch.errors import Conflict, NotFound
from dispatch.fleet import Exclusions, Fleet
from dispatch.intake import (
    App102Report,
    Message,
    Rejected,
    SosAlert,
    UnitPosition,
    parse_message,
)
from dispatch.lifecycle import OPEN, DispatchPolicy, find_duplicate, location_unverified
from dispatch.outbox import Outbox
from dispatch.ports import Ack, AckStatus, RejectReason
from dispatch.recent import RecentAlerts
from dispatch.signing import PressVerifier, VerifiedPress
from dispatch.store import Store, StoreError

__all__ = ["Inbound", "Intake"]

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=Message)

_RECHECK_S = 0.1
"""While a follower waits for the leader's commits, it checks this often that a leader still lives."""

_REMEMBERED = 20_000
"""Alerts other replicas committed, remembered from the change stream for the follower's hold."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """One alert message for :meth:`DispatchService.ingest_many`.

    Parameters
    ----------
    source
        SOS button or Police 102 app.
    sender
        The SOS device id (from the topic, vouched for by the broker's ACL), or
        :data:`~dispatch.domain.APP102_SENDER`.
    payload
        The raw message body.
    received
        When the transport received it (``time.monotonic()``), None when unknown: a replica that is
        not the leader waits for the leader's commit from then on (``DispatchPolicy.follower_hold``).
    """

    source: AlertSource
    sender: str
    payload: bytes
    received: float | None = None


_Valid = tuple[int, Inbound, Any, "Device | None", "VerifiedPress | None"]
"""A message that parsed: its index in the batch, itself, its model, its device and checked press."""

_Key = tuple[AlertSource, str, str]
"""An event: ``(source, sender, event_id)``."""


def _key(v: _Valid) -> _Key:
    """The event of a message that parsed."""
    return (v[1].source, v[1].sender, v[2].event_id)


def _remember(seen: OrderedDict[Any, Alert], key: Any, alert: Alert) -> None:
    """Put ``alert`` newest under ``key``, forgetting the oldest beyond :data:`_REMEMBERED`."""
    seen[key] = alert
    seen.move_to_end(key)
    if len(seen) > _REMEMBERED:
        seen.popitem(last=False)


def _where(m: Inbound) -> str:
    """Where a message came from, for the rejection log."""
    return f"sos/{m.sender}" if m.source is AlertSource.SOS else "app102"


class Intake:
    """Validates inbound messages; ranks, links, commits and answers alerts.

    Parameters
    ----------
    store
        Where the alerts are committed.
    fleet
        Ranks the units for each alert; applies positions.
    devices
        The SOS device registry, by id.
    recent
        The open alerts duplicate linking compares against.
    press_verifier
        Checks signed presses.
    policy
        Priorities, duplicate linking, location quality.
    clock
        The current UTC time.
    outbox
        Hears the new alerts, sends the acks.
    counters
        Counts accepted, duplicate and rejected messages and store outages.
    after_ingest
        Called with each new alert after it was announced (auto-assignment).
    max_payload_bytes, max_clock_skew
        Larger payloads, and a ``ts`` further in the future, are rejected.
    catch_up
        Called before a batch's new events are ranked (after the hold): applies the other replicas'
        changes not yet seen (the duplicate grid, positions, replay windows), so a press on this
        replica meets an alert another replica committed a moment ago.
    hold
        Seconds this replica waits, from a press's receipt, for another replica to commit it before
        it ranks the press itself (0: it ranks at once; non-zero on a follower while a leader lives).
    heard, await_heard
        The generation of remote alert commits heard, and a wait for the next one
        (``await_heard(generation, timeout_s)``), for the hold. The alerts of those commits reach
        :meth:`remote_committed` before the generation moves on.
    """

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        *,
        devices: Mapping[str, Device],
        recent: RecentAlerts,
        press_verifier: PressVerifier,
        policy: DispatchPolicy,
        clock: Callable[[], datetime],
        outbox: Outbox,
        counters: ServiceCounters,
        after_ingest: Callable[[Alert], None],
        max_payload_bytes: int,
        max_clock_skew: timedelta,
        catch_up: Callable[[], object] = lambda: None,
        hold: Callable[[], float] = lambda: 0.0,
        heard: Callable[[], int] = lambda: 0,
        await_heard: Callable[[int, float], int] | None = None,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.devices = devices
        self.recent = recent
        self.press_verifier = press_verifier
        self.policy = policy
        self.clock = clock
        self.outbox = outbox
        self.counters = counters
        self.after_ingest = after_ingest
        self.max_payload_bytes = max_payload_bytes
        self.max_clock_skew = max_clock_skew
        self.catch_up = catch_up
        self.hold = hold
        self.heard = heard
        self.await_heard = await_heard or _sleep_for
        self._remote: OrderedDict[_Key, Alert] = OrderedDict()
        self._remote_counters: OrderedDict[tuple[str, int], Alert] = OrderedDict()
        self._remote_lock = threading.Lock()

    def remote_committed(self, alert: Alert) -> None:
        """An alert another replica committed (the change stream's): a held batch finds it here,
        without asking the database at each remote commit (the last 20,000 are remembered)."""
        with self._remote_lock:
            _remember(self._remote, (alert.source, alert.sender, alert.event_id), alert)
            if alert.device_counter is not None:
                _remember(self._remote_counters, (alert.sender, alert.device_counter), alert)

    def _remote_found(self, valid: Sequence[_Valid]) -> tuple[dict[_Key, Alert], dict[tuple[str, int], Alert]]:
        """:func:`_look_up` for ``valid`` among the remembered remote commits."""
        found: dict[_Key, Alert] = {}
        counters: dict[tuple[str, int], Alert] = {}
        with self._remote_lock:
            for v in valid:
                key, m, press = _key(v), v[1], v[4]
                if key in self._remote:
                    found[key] = self._remote[key]
                if press is not None and press.counter is not None:
                    alert = self._remote_counters.get((m.sender, press.counter))
                    if alert is not None:
                        counters[(m.sender, press.counter)] = alert
        return found, counters

    # alerts -------------------------------------------------------------------------------

    def ingest_many(self, messages: Sequence[Inbound]) -> list[Ack]:
        """Ingest a batch of alert messages with ONE transaction (see :meth:`DispatchService.ingest_many`)."""
        now = self.clock()
        acks: list[Ack | None] = [None] * len(messages)
        rejections: list[tuple[int, Rejected, str]] = []
        valid: list[_Valid] = []
        for i, m in enumerate(messages):
            try:
                valid.append((i, m, *self._parse_alert(m, now)))
            except Rejected as rejection:
                rejections.append((i, rejection, _where(m)))
            except Exception as e:  # a bug must not kill the bridge: answer and log with traceback
                log.exception("internal error on a %s message from %r", m.source.value, m.sender)
                rejections.append((i, Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"), _where(m)))
        try:
            # Signed presses: the counters of the new presses are held until the batch commits
            # (a failed commit frees them, so the redelivery passes).
            with ExitStack() as held:
                # One query before any ranking: the events (and counters) already committed, by
                # another replica (every replica receives every press) or before a redelivery.
                heard = self.heard()
                stored_before, used_counters = _look_up(self.store, valid)
                hold = self.hold() if valid else 0.0
                if hold > 0:
                    self._wait_for_others(valid, stored_before, used_counters, hold, heard)
                if any(_key(v) not in stored_before for v in valid):
                    self.catch_up()  # something to rank here: with what the others committed meanwhile
                fresh, redelivered = self._prepare(valid, stored_before, used_counters, now, rejections, held)
                committed = self.store.add_alerts([alert for _, alert in fresh])
        except StoreError:
            self.counters.store_error()
            raise
        first_ack: dict[_Key, Ack] = {}
        replayed: dict[_Key, Rejected] = {}
        lost = 0
        for (i, _), (stored, created) in zip(fresh, committed, strict=True):
            if stored.id is None:  # its counter was committed a moment ago by another replica
                msg = f"counter {stored.device_counter} of device {stored.sender!r} was already used: a replayed press"
                refusal = Rejected(RejectReason.REPLAYED, msg, event_id=stored.event_id)
                replayed[(stored.source, stored.sender, stored.event_id)] = refusal
                rejections.append((i, refusal, f"sos/{stored.sender}"))
                continue
            _log_committed(stored, created)
            self.recent.add(stored)  # open, it is a duplicate candidate (another replica's too: the stream may lag)
            lost += not created
            acks[i] = first_ack[(stored.source, stored.sender, stored.event_id)] = self._accepted_ack(
                stored, created=created
            )
        if lost:
            self.counters.lost_to_another_commit(lost)
            log.info("%d of a batch of %d new events were committed meanwhile by another replica", lost, len(fresh))
        found = 0
        for i, key in redelivered:
            earlier = stored_before.get(key)
            if earlier is not None:
                found += 1
                acks[i] = self._accepted_ack(earlier, created=False)
            elif key in replayed:
                rejections.append((i, replayed[key], f"sos/{key[1]}"))
            else:  # twice in this batch: the first one's ack, counted as a duplicate
                self.counters.duplicate(key[0].value)
                acks[i] = first_ack[key]
        if found:
            self.counters.found_stored(found)
        for i, refusal, where in rejections:
            acks[i] = self.counters.reject(refusal, source=where)
        for m, ack in zip(messages, acks, strict=True):
            if m.source is AlertSource.SOS and ack is not None:
                self.outbox.send_ack(m.sender, ack)
        for stored, created in committed:
            if created:
                self._after_ingest(stored)
        return [ack for ack in acks if ack is not None]

    def _wait_for_others(
        self,
        valid: list[_Valid],
        stored_before: dict[_Key, Alert],
        used_counters: dict[tuple[str, int], Alert],
        hold: float,
        heard: int,
    ) -> None:
        """A follower: wait for the leader to commit the batch's presses that are not stored yet,
        looking for them among the remote commits heard (:meth:`remote_committed`) after each one.

        The wait lasts while another replica leads (``self.hold()`` stays non-zero: the leader's
        lock is held, see :class:`~dispatch.leader.Leadership`), at most ``hold`` seconds from the
        receipt of the oldest waiting press. Every replica receives every press; ranking one the
        leader commits a moment later is work in vain (and was most of a follower's CPU). What is
        committed meanwhile is answered from the stored alert; what is still not stored when the
        wait ends (the leader died, or is more than ``hold`` behind) is looked up once more in the
        database (this replica's stream may lag behind the leader's commits, under load) and the
        rest is ranked and committed here, as without a hold.
        """
        waiting = [v for v in valid if _key(v) not in stored_before]
        if not waiting:
            return
        received = [m.received for _, m, *_ in waiting if m.received is not None]
        deadline = (min(received) if received else time.monotonic()) + hold
        rounds = 0

        def found(events: dict[_Key, Alert], counters: dict[tuple[str, int], Alert]) -> list[_Valid]:
            stored_before.update(events)
            used_counters.update(counters)
            return [
                v
                for v in waiting
                if _key(v) not in stored_before
                and (v[4] is None or v[4].counter is None or (v[1].sender, v[4].counter) not in used_counters)
            ]

        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            now_heard = self.await_heard(heard, min(left, _RECHECK_S))
            if now_heard != heard:
                heard, rounds = now_heard, rounds + 1
                waiting = found(*self._remote_found(waiting))
            if self.hold() <= 0:
                break  # no other leader any more (it died, or this replica took over): rank the rest now
        if waiting:
            waiting = found(*_look_up(self.store, waiting))
        log.debug(
            "follower hold: %d of %d presses committed by another replica (%d remote commits heard), %d to rank here",
            len(valid) - len(waiting),
            len(valid),
            rounds,
            len(waiting),
        )

    def _parse_alert(self, m: Inbound, now: datetime) -> tuple[Any, Device | None, VerifiedPress | None]:
        """Validate one alert payload: its message and, for an SOS button, its registry entry and
        checked signature (signature and age here; the counter only for a new event, see
        :mod:`dispatch.signing`: a redelivery is no replay)."""
        model: type[SosAlert | App102Report] = SosAlert if m.source is AlertSource.SOS else App102Report
        message = parse_message(
            model, m.payload, now=now, max_bytes=self.max_payload_bytes, max_clock_skew=self.max_clock_skew
        )
        if m.source is not AlertSource.SOS:
            return message, None, None
        device = self.devices.get(m.sender)
        if device is None:
            msg = f"device {m.sender!r} is not in the device registry"
            raise Rejected(RejectReason.UNKNOWN_DEVICE, msg, event_id=message.event_id)
        press = self.press_verifier.verify(m.sender, m.payload, event_id=message.event_id, ts=message.ts, now=now)
        return message, device, press

    def _prepare(
        self,
        valid: list[_Valid],
        stored_before: Mapping[_Key, Alert],
        used_counters: Mapping[tuple[str, int], Alert],
        now: datetime,
        rejections: list[tuple[int, Rejected, str]],
        held: ExitStack,
    ) -> tuple[list[tuple[int, Alert]], list[tuple[int, _Key]]]:
        """Rank the batch's new events; ``(index, alert)`` to store and ``(index, key)`` of redeliveries.

        An event in ``stored_before`` is not ranked: it is answered from the stored alert (and,
        when open, is a duplicate candidate for the rest of the batch). A signed press whose
        counter is refused (``used_counters``: stored with another event; or by the anti-replay
        window) is rejected before it is ranked. The counter of each new signed press is taken
        into ``held`` (in order, so a counter twice in one batch is a replay) and stays held
        until ``held`` closes after the commit.

        A later alert of the batch may be linked as a duplicate of an earlier one: its
        ``duplicate_of`` is then ``-(position in the returned list) - 1`` (see :meth:`Store.add_alerts`).
        """
        fresh: list[tuple[int, Alert]] = []
        redelivered: list[tuple[int, _Key]] = []
        seen: set[_Key] = set()
        provisional: list[Alert] = []  # copies of ``fresh`` with the ids -1, -2, ... for duplicate links
        for stored in stored_before.values():
            self.recent.add(stored)  # committed elsewhere a moment ago: a candidate for the batch's other presses
        exclusions = self.fleet.exclusions(now)
        for i, m, message, device, press in valid:
            key = (m.source, m.sender, message.event_id)
            if key in stored_before or key in seen:
                redelivered.append((i, key))
                continue
            if press is not None and press.counter is not None:
                other = used_counters.get((m.sender, press.counter))
                refusal = (
                    self.press_verifier.check(press)
                    if other is None
                    else Rejected(
                        RejectReason.REPLAYED,
                        f"counter {press.counter} of device {m.sender!r} was already used "
                        f"(event {other.event_id!r}, alert {other.id}): a replayed press",
                        event_id=message.event_id,
                    )
                )
                if refusal is not None:
                    rejections.append((i, refusal, _where(m)))
                    continue
            try:
                fields: dict[str, Any]
                if device is not None:
                    lat, lon = device.lat, device.lon
                    fields = {
                        "kind": message.kind,
                        "site": device.site,
                        "test": message.kind == "test",
                        "device_counter": None if press is None else press.counter,
                    }
                else:
                    lat, lon = message.lat, message.lon
                    fields = {"accuracy_m": message.accuracy_m, "category": message.category, "text": message.text}
                alert = self._new_alert(
                    source=m.source,
                    sender=m.sender,
                    event_id=message.event_id,
                    event_ts=message.ts,
                    received_at=now,
                    lat=lat,
                    lon=lon,
                    batch=provisional,
                    exclusions=exclusions,
                    **fields,
                )
                if press is not None:
                    held.enter_context(self.press_verifier.counting(press))
            except Rejected as rejection:
                rejections.append((i, rejection, _where(m)))
                continue
            except StoreError:
                raise
            except Exception as e:
                log.exception("internal error on a %s message from %r", m.source.value, m.sender)
                rejections.append((i, Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"), _where(m)))
                continue
            seen.add(key)
            fresh.append((i, alert))
            provisional.append(replace(alert, id=-len(fresh)))
        return fresh, redelivered

    def _new_alert(
        self,
        *,
        source: AlertSource,
        sender: str,
        event_id: str,
        event_ts: datetime,
        received_at: datetime,
        lat: float,
        lon: float,
        test: bool = False,
        batch: Sequence[Alert] = (),
        exclusions: Exclusions | None = None,
        **fields: Any,
    ) -> Alert:
        """A ranked alert with its priority, location-quality flag and duplicate link.

        ``batch`` holds the alerts of the same batch ranked before this one and not yet stored,
        with provisional ids ``-(position) - 1``: a link to one of them is that id.
        """
        recommendations, snap_m = self.fleet.rank(lat, lon, event_id=event_id, exclusions=exclusions)
        alert = Alert(
            source=source,
            sender=sender,
            event_id=event_id,
            event_ts=event_ts,
            received_at=received_at,
            lat=lat,
            lon=lon,
            snap_distance_m=snap_m,
            recommendations=recommendations,
            **fields,
        )
        alert.priority = alert_priority(source, alert.site, alert.category, categories=self.policy.priority_by_category)
        alert.location_unverified = location_unverified(
            source, alert.accuracy_m, threshold_m=self.policy.location_accuracy_max_m
        )
        if test:
            alert.status = AlertStatus.TEST
            return alert
        if recommendations:
            alert.status, alert.recommended_at = AlertStatus.RECOMMENDED, received_at
        candidates = self.recent.candidates(source, alert.lat, alert.lon, received_at)
        # Alerts of this batch take part with provisional ids -1, -2, ... (their link value).
        pending = [other for other in batch if other.source is source and other.status in OPEN]
        original = find_duplicate(
            alert, [*candidates, *pending], radius_m=self.policy.duplicate_radius_m, window=self.policy.duplicate_window
        )
        if original is not None:
            alert.duplicate_of = original.duplicate_of or original.id
        return alert

    def _after_ingest(self, alert: Alert) -> None:
        """Announce the new alert; auto-assign a P1 SOS to its top recommendation when the policy says so."""
        self.outbox.announce(alerts=(alert,))
        if not (
            self.policy.auto_assign_p1
            and alert.priority == 1
            and alert.source is AlertSource.SOS
            and alert.status is AlertStatus.RECOMMENDED
            and alert.duplicate_of is None
        ):
            return
        self.after_ingest(alert)

    def _accepted_ack(self, alert: Alert, *, created: bool) -> Ack:
        self.counters.accepted(alert.source.value, created=created)
        if not created:
            log.info("redelivery of event %r from %r: alert %d already stored", alert.event_id, alert.sender, alert.id)
        return Ack(event_id=alert.event_id, alert_id=alert.id, status=AckStatus.ACCEPTED)

    # unit messages ------------------------------------------------------------------------

    def unit_positions(self, messages: Sequence[tuple[str, bytes]]) -> list[RejectReason | None]:
        """Apply a batch of position messages (see :meth:`DispatchService.update_unit_positions`)."""
        now = self.clock()
        results: list[RejectReason | None] = [None] * len(messages)
        newest: dict[str, tuple[int, UnitPosition]] = {}
        track: dict[str, list[UnitPosition]] = {}
        rejections: list[tuple[int, Rejected, str]] = []
        superseded = 0
        for i, (unit_id, payload) in enumerate(messages):
            try:
                message = parse_message(
                    UnitPosition, payload, now=now, max_bytes=self.max_payload_bytes, max_clock_skew=self.max_clock_skew
                )
            except Rejected as rejection:
                rejections.append((i, rejection, f"units/{unit_id}"))
                continue
            earlier = newest.get(unit_id)
            if earlier is not None and message.ts < earlier[1].ts:  # as if the earlier one were applied
                msg = (
                    f"position of unit {unit_id!r} at {message.ts.isoformat()} is older than the "
                    f"one received before it at {earlier[1].ts.isoformat()}"
                )
                rejections.append((i, Rejected(RejectReason.STALE_POSITION, msg), f"units/{unit_id}"))
                continue
            superseded += earlier is not None
            newest[unit_id] = (i, message)
            track.setdefault(unit_id, []).append(message)  # superseded for ranking, kept for dosage
        moved, refused = self.fleet.move(newest, superseded=superseded, track=track)
        for i, refusal, where in (*rejections, *refused):
            self.counters.reject(refusal, source=where)
            results[i] = refusal.reason
        self.outbox.announce(units=moved)
        return results

    def unit_message(
        self, unit_id: str, payload: bytes, model: type[_M], apply: Callable[[_M], Any]
    ) -> RejectReason | None:
        """Validate a unit's status or acknowledgement message and ``apply`` it; None when applied."""
        try:
            message = parse_message(
                model, payload, now=self.clock(), max_bytes=self.max_payload_bytes, max_clock_skew=self.max_clock_skew
            )
            if unit_id not in self.fleet:
                raise Rejected(RejectReason.UNKNOWN_UNIT, f"unit {unit_id!r} is not in the unit registry")
            try:
                apply(message)
            except (Conflict, NotFound) as e:
                raise Rejected(RejectReason.CONFLICT, str(e)) from e
            return None
        except Rejected as rejection:
            self.counters.reject(rejection, source=f"units/{unit_id}")
            return rejection.reason
        except StoreError:
            self.counters.store_error()
            raise
        except Exception as e:
            log.exception("internal error on a message of unit %r", unit_id)
            self.counters.reject(Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"), source="units")
            return RejectReason.INTERNAL_ERROR


def _look_up(store: Store, valid: Sequence[_Valid]) -> tuple[dict[_Key, Alert], dict[tuple[str, int], Alert]]:
    """The events (and signed presses' counters) of ``valid`` already stored: one query."""
    return store.stored_events(
        (_key(v) for v in valid),
        ((m.sender, v[2].counter) for _, m, *v in valid if v[2] is not None and v[2].counter is not None),
    )


def _sleep_for(heard: int, timeout_s: float) -> int:
    """No change stream to wait on: wait a little, then look again (``heard`` + 1)."""
    time.sleep(min(timeout_s, 0.02))
    return heard + 1


def _log_committed(stored: Alert, created: bool) -> None:
    if not created:
        return
    first = stored.recommendations[0] if stored.recommendations else None
    log.info(
        "alert %d committed: %s from %r event %r, nearest %s",
        stored.id,
        stored.source.value,
        stored.sender,
        stored.event_id,
        "none" if first is None else f"{first.unit_id} ({first.eta_s:.0f} s)",
    )
