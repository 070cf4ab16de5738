"""The dispatch service: ingest alerts, rank units by ETA, commit, answer.

Adapters (the MQTT bridge, later an HTTP intake) hand raw payloads to :class:`DispatchService`;
it validates them (:mod:`dispatch.intake`), asks :class:`geo.Router` for the nearest units by
travel time, commits the alert to the :class:`~dispatch.store.Store` and only then answers through
the :class:`~dispatch.ports.Notifier`. An adapter may acknowledge its transport once an ingest
method has returned; when the store is down the method raises :class:`~dispatch.store.StoreError`
and the adapter must not acknowledge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from zoneinfo import ZoneInfo

from dispatch.domain import (
    APP102_SENDER,
    Alert,
    AlertSource,
    AlertStatus,
    Assignment,
    Device,
    Unit,
    UnitKind,
    UnitStatus,
    alert_priority,
)
from dispatch.intake import (
    App102Report,
    Rejected,
    SosAlert,
    UnitAck,
    UnitPosition,
    UnitStatusReport,
    parse_message,
)
from dispatch.lifecycle import (
    CLOSING,
    OPEN,
    DispatchPolicy,
    StalePolicy,
    TransitionRefused,
    check_transition,
    find_duplicate,
    is_stale,
    location_unverified,
    next_proposal,
    rank_units,
    recommendable,
    stamp_transition,
)
from dispatch.ports import Ack, AckStatus, ChangeListener, Notifier, Order, RejectReason
from dispatch.recent import RecentAlerts
from dispatch.signing import PressVerifier, VerifiedPress
from dispatch.signing_store import stored_counters
from dispatch.store import Store, StoreError, Tx, alert_snapshot, unit_snapshot
from geo import OutsideServiceArea, Recommendation, Router

__all__ = ["Conflict", "DispatchService", "Inbound", "NotFound", "utc_now"]

_DUPLICATE_CANDIDATES = 25
"""The earliest open alerts in the duplicate box that are checked; the earliest inside the circle wins."""

SYSTEM = "system"
"""The actor of changes the service makes by itself (ingest, auto-assignment, escalation)."""


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
    """

    source: AlertSource
    sender: str
    payload: bytes


_Valid = tuple[int, Inbound, Any, "Device | None", "VerifiedPress | None"]
"""A message that parsed: its index in the batch, itself, its model, its device and checked press."""


def _where(m: Inbound) -> str:
    """Where a message came from, for the rejection log."""
    return f"sos/{m.sender}" if m.source is AlertSource.SOS else "app102"


class NotFound(LookupError):
    """No alert or unit with that id."""


class Conflict(ValueError):
    """The change is not allowed in the current state; ``current`` names that state."""

    def __init__(self, detail: str, *, current: str | None = None) -> None:
        super().__init__(detail)
        self.current = current

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class DispatchService:
    """Turns incoming alerts into committed, ranked alerts and answers the senders.

    Parameters
    ----------
    store
        Where alerts and unit positions are committed.
    router
        Ranks units by travel time on the street network; the service places its units on it.
    devices
        The SOS device registry, by id.
    units
        The unit registry (seed positions); positions the store already knows from position
        messages take precedence over seed positions when :meth:`open` runs.
    notifier
        Sends acks to SOS devices; may be attached later with :meth:`attach_notifier`.
    recommend_k
        How many units to recommend per alert; None for all reachable units.
    max_payload_bytes
        Larger payloads are rejected unread.
    max_clock_skew
        How far in the future a message's ``ts`` may lie.
    clock
        Returns the current UTC time (tests may pin it).
    policy
        Priorities, duplicate linking, location quality, freshness, ack deadline, auto-assignment.
    press_verifier
        Checks signed presses (:mod:`dispatch.signing`); by default no device signs.

    Examples
    --------
    >>> service = DispatchService(store, router, devices=devices, units=units).open()  # doctest: +SKIP
    >>> service.ingest_sos("btn-1", b'{"event_id": "e1", "ts": "...", "kind": "press"}')  # doctest: +SKIP
    Ack(event_id='e1', alert_id=1, status=<AckStatus.ACCEPTED: 'accepted'>, ...)
    """

    def __init__(
        self,
        store: Store,
        router: Router,
        *,
        devices: Mapping[str, Device],
        units: Iterable[Unit] = (),
        notifier: Notifier | None = None,
        recommend_k: int | None = 3,
        max_payload_bytes: int = 16 * 1024,
        max_clock_skew: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = utc_now,
        policy: DispatchPolicy | None = None,
        press_verifier: PressVerifier | None = None,
    ) -> None:
        if recommend_k is not None and recommend_k < 1:
            msg = f"recommend_k must be a positive number of units or None, got {recommend_k!r}"
            raise ValueError(msg)
        if max_payload_bytes < 1:
            msg = f"max_payload_bytes must be positive, got {max_payload_bytes!r}"
            raise ValueError(msg)
        self.store = store
        self.router = router
        self.devices: dict[str, Device] = dict(devices)
        self.notifier = notifier
        self.recommend_k = recommend_k
        self.max_payload_bytes = max_payload_bytes
        self.max_clock_skew = max_clock_skew
        self.clock = clock
        self.policy = policy or DispatchPolicy()
        self.press_verifier = press_verifier or PressVerifier()
        self.zone = ZoneInfo(self.policy.timezone)
        store.clock = clock
        self._seed_units = list(units)
        self._opened_at = clock()
        self._watcher: threading.Thread | None = None
        self._watcher_stop = threading.Event()
        self._escalations = 0
        self._units: dict[str, Unit] = {}
        self._lock = threading.RLock()  # guards the router, the units and the counters
        self._accepted: Counter[str] = Counter()
        self._duplicates: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._positions = 0
        self._superseded_positions = 0
        self._store_errors = 0
        self._listeners: list[ChangeListener] = []
        self._recent = RecentAlerts(
            self.policy.duplicate_window, self.policy.duplicate_radius_m, per_cell=_DUPLICATE_CANDIDATES
        )

    # set-up -------------------------------------------------------------------------------

    def open(self) -> DispatchService:
        """Merge the unit registry with positions the store remembers and place units on the router."""
        known = {u.id: u for u in self.store.list_units()}
        units = []
        seeded = set()
        for seed in self._seed_units:
            unit = seed.copy()
            seeded.add(unit.id)
            old = known.get(unit.id)
            if old is not None:
                unit.status, unit.retired, unit.alert_id = old.status, old.retired, old.alert_id
                unit.staff_from, unit.staff_to = old.staff_from or unit.staff_from, old.staff_to or unit.staff_to
                if old.position_ts is not None:  # measured after the seed file was written
                    unit.lat, unit.lon, unit.position_ts = old.lat, old.lon, old.position_ts
            units.append(unit)
        units.extend(u for u in known.values() if u.id not in seeded)  # registered through the API
        self._opened_at = self.clock()
        with self._lock:
            self._units = {u.id: u for u in units}
            placed = sum(self._place(unit) for unit in units)
        self.store.save_units(units)
        since = self.clock() - self.policy.duplicate_window
        for source in AlertSource:
            self._recent.load(self.store.recent_alerts(source, since, OPEN))
        self.press_verifier.restore(stored_counters(self.store, window=self.press_verifier.window))
        self._warm_up()
        log.info(
            "dispatch open: %d units (%d available on the streets), %d SOS devices",
            len(units),
            placed,
            len(self.devices),
        )
        return self

    def _warm_up(self) -> None:
        """Rank once now, so the first real alert does not wait for the router's compiled code to load."""
        started = time.perf_counter()
        with self._lock:
            points = [(u.lat, u.lon) for u in self._units.values()] + [self.router.network.center]
        for lat, lon in points[:1] + points[-1:]:
            try:
                with self._lock:
                    self.router.recommend(lat, lon, k=1)
                break
            except OutsideServiceArea:
                continue
        log.debug("router warm-up took %.2f s", time.perf_counter() - started)

    def attach_notifier(self, notifier: Notifier) -> None:
        """Set who sends acks (the MQTT bridge attaches itself)."""
        self.notifier = notifier

    def add_listener(self, listener: ChangeListener) -> None:
        """Tell ``listener`` about every committed alert and unit change from now on (the live map)."""
        self._listeners.append(listener)

    def _announce(self, *, alerts: Iterable[Alert] = (), units: Iterable[Unit | None] = ()) -> None:
        """Hand committed changes to the listeners; a failing listener never undoes a change."""
        for alert in (alerts := tuple(alerts)):
            self._recent.changed(alert)
        for listener in self._listeners:
            try:
                for alert in alerts:
                    listener.alert_changed(alert)
                for unit in units:
                    if unit is not None:
                        listener.unit_changed(unit)
            except Exception:
                log.exception("change listener %r failed", listener)

    @property
    def opened_at(self) -> datetime:
        """When :meth:`open` ran: a patrol that never reported counts as seen then."""
        return self._opened_at

    def _place(self, unit: Unit) -> bool:
        """Put an available unit on the router; True if it can now be recommended."""
        if unit.status is not UnitStatus.AVAILABLE or unit.retired:
            self.router.remove_unit(unit.id)
            return False
        try:
            self.router.place_unit(unit.id, unit.kind.value, unit.lat, unit.lon)
        except OutsideServiceArea as e:
            self.router.remove_unit(unit.id)
            log.warning(
                "unit %r at (%.6f, %.6f) is %.0f m from the nearest street: not recommendable",
                unit.id,
                unit.lat,
                unit.lon,
                e.distance_m,
            )
            return False
        return True

    # ingest -------------------------------------------------------------------------------

    def ingest_sos(self, device_id: str, payload: bytes) -> Ack:
        """Ingest one SOS message from ``{root}/sos/{device_id}/alert`` (see :meth:`ingest_many`).

        The alert is committed before the ack is sent. A redelivered ``event_id`` is answered with
        the ack of the alert stored the first time.

        Raises
        ------
        StoreError
            If the alert could not be committed; nothing was acknowledged.
        """
        return self.ingest_many([Inbound(AlertSource.SOS, device_id, payload)])[0]

    def ingest_app102(self, payload: bytes) -> Ack:
        """Ingest one report from the Police 102 app (``{root}/app102/report``; see :meth:`ingest_many`).

        Raises
        ------
        StoreError
            If the alert could not be committed.
        """
        return self.ingest_many([Inbound(AlertSource.APP102, APP102_SENDER, payload)])[0]

    def ingest_many(self, messages: Sequence[Inbound]) -> list[Ack]:
        """Ingest a batch of alert messages with ONE database transaction (group commit).

        Each message is validated and ranked on its own; a bad one is rejected with its reason and
        never holds up the others. The new alerts are then committed together, and only then
        are the senders answered: SOS devices through the notifier, and every message through the
        returned acks, in the order of ``messages``. A redelivered event (stored before, or twice in
        this batch) gets the ack of the alert stored the first time.

        Raises
        ------
        StoreError
            If the database could not be reached: nothing of the batch was stored, counted or
            answered, and the caller must not acknowledge any of it (it will come again).
        """
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
                stored_before = self.store.find_alerts((m.source, m.sender, v[0].event_id) for _, m, *v in valid)
                fresh, redelivered = self._prepare(valid, stored_before, now, rejections, held)
                committed = self.store.add_alerts([alert for _, alert in fresh])
        except StoreError:
            self._count_store_error()
            raise
        first_ack: dict[tuple[AlertSource, str, str], Ack] = {}
        for (i, _), (stored, created) in zip(fresh, committed, strict=True):
            self._log_committed(stored, created)
            if created:
                self._recent.add(stored)
            acks[i] = first_ack[(stored.source, stored.sender, stored.event_id)] = self._accepted_ack(stored, created=created)
        for i, key in redelivered:
            earlier = stored_before.get(key)
            acks[i] = (
                self._accepted_ack(earlier, created=False) if earlier is not None
                else self._redelivered(first_ack[key], key[0])
            )
        for i, rejection, where in rejections:
            acks[i] = self._reject(rejection, source=where)
        for m, ack in zip(messages, acks, strict=True):
            if m.source is AlertSource.SOS and ack is not None:
                self._notify(m.sender, ack)
        for stored, created in committed:
            if created:
                self._after_ingest(stored)
        return [ack for ack in acks if ack is not None]

    def _parse_alert(self, m: Inbound, now: datetime) -> tuple[Any, Device | None, VerifiedPress | None]:
        """Validate one alert payload: its message and, for an SOS button, its registry entry and
        checked signature (signature and age here; the counter only for a new event, see
        :mod:`dispatch.signing`: a redelivery is no replay)."""
        model = SosAlert if m.source is AlertSource.SOS else App102Report
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
        stored_before: Mapping[tuple[AlertSource, str, str], Alert],
        now: datetime,
        rejections: list[tuple[int, Rejected, str]],
        held: ExitStack,
    ) -> tuple[list[tuple[int, Alert]], list[tuple[int, tuple[AlertSource, str, str]]]]:
        """Rank the batch's new events; ``(index, alert)`` to store and ``(index, key)`` of redeliveries.

        The counter of each new signed press is taken into ``held`` (in order, so a counter twice
        in one batch is a replay) and stays held until ``held`` closes after the commit.

        A later alert of the batch may be linked as a duplicate of an earlier one: its
        ``duplicate_of`` is then ``-(position in the returned list) - 1`` (see :meth:`Store.add_alerts`).
        """
        fresh: list[tuple[int, Alert]] = []
        redelivered: list[tuple[int, tuple[AlertSource, str, str]]] = []
        seen: set[tuple[AlertSource, str, str]] = set()
        provisional: list[Alert] = []  # copies of ``fresh`` with the ids -1, -2, ... for duplicate links
        exclusions = self._exclusions(now)
        for i, m, message, device, press in valid:
            key = (m.source, m.sender, message.event_id)
            if key in stored_before or key in seen:
                redelivered.append((i, key))
                continue
            try:
                fields: dict[str, Any]
                if device is not None:
                    lat, lon = device.lat, device.lon
                    fields = {"kind": message.kind, "site": device.site, "test": message.kind == "test",
                              "device_counter": None if press is None else press.counter}
                else:
                    lat, lon = message.lat, message.lon
                    fields = {"accuracy_m": message.accuracy_m, "category": message.category, "text": message.text}
                alert = self._new_alert(
                    source=m.source, sender=m.sender, event_id=message.event_id, event_ts=message.ts,
                    received_at=now, lat=lat, lon=lon, batch=provisional, exclusions=exclusions, **fields,
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

    def update_unit_position(self, unit_id: str, payload: bytes) -> RejectReason | None:
        """Move a unit (``{root}/units/{unit_id}/position``); see :meth:`update_unit_positions`.

        Returns
        -------
        None when the position was applied, else why it was not (also counted and logged).

        Raises
        ------
        StoreError
            If the position could not be committed.
        """
        return self.update_unit_positions([(unit_id, payload)])[0]

    def update_unit_positions(self, messages: Sequence[tuple[str, bytes]]) -> list[RejectReason | None]:
        """Apply a batch of position messages ``(unit_id, payload)``, committed in one transaction.

        Of several positions of one unit in the batch only the last is applied: the ones before it
        are superseded (counted in ``positions`` and ``positions_superseded``, not rejected), so a
        backlog of positions costs one write per unit, not per message. A position older than one
        received before it is rejected as stale, as it would be one at a time.

        Returns
        -------
        Per message, None when it was applied or superseded, else why it was rejected.

        Raises
        ------
        StoreError
            If the positions could not be committed (the router may already show them; a retry
            applies them again).
        """
        now = self.clock()
        results: list[RejectReason | None] = [None] * len(messages)
        newest: dict[str, tuple[int, UnitPosition]] = {}
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
        moved: list[Unit] = []
        with self._lock:
            for unit_id, (i, message) in newest.items():
                try:
                    moved.append(self._moved_unit(unit_id, message))
                except Rejected as rejection:
                    rejections.append((i, rejection, f"units/{unit_id}"))
                except Exception as e:
                    log.exception("internal error on a position of unit %r", unit_id)
                    rejections.append((i, Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"), "units"))
            try:
                if moved:
                    self.store.save_units(moved)
            except StoreError:
                self._count_store_error()
                raise
            for unit in moved:
                self._units[unit.id] = unit
            self._positions += len(moved) + superseded
            self._superseded_positions += superseded
        for i, rejection, where in rejections:
            self._reject(rejection, source=where)
            results[i] = rejection.reason
        self._announce(units=moved)
        return results

    def _moved_unit(self, unit_id: str, message: UnitPosition) -> Unit:
        """The unit at its new position, placed on the router (caller holds the lock); or Rejected."""
        unit = self._units.get(unit_id)
        if unit is None:
            msg = f"unit {unit_id!r} is not in the unit registry"
            raise Rejected(RejectReason.UNKNOWN_UNIT, msg)
        if unit.kind is UnitKind.BOOTH:
            msg = f"unit {unit_id!r} is a booth: its position is fixed by the registry"
            raise Rejected(RejectReason.FIXED_POSITION, msg)
        if unit.position_ts is not None and message.ts < unit.position_ts:
            msg = (
                f"position of unit {unit_id!r} at {message.ts.isoformat()} is older than the "
                f"known one at {unit.position_ts.isoformat()}"
            )
            raise Rejected(RejectReason.STALE_POSITION, msg)
        if unit.status is UnitStatus.AVAILABLE and not unit.retired:
            try:
                self.router.place_unit(unit.id, unit.kind.value, message.lat, message.lon)
            except OutsideServiceArea as e:
                msg = (
                    f"position ({message.lat:.6f}, {message.lon:.6f}) of unit {unit_id!r} is "
                    f"{e.distance_m:.0f} m from the nearest street; the unit stays where it was"
                )
                raise Rejected(RejectReason.OUTSIDE_SERVICE_AREA, msg) from e
        moved = unit.copy()
        moved.lat, moved.lon, moved.position_ts = message.lat, message.lon, message.ts
        return moved

    # reading ------------------------------------------------------------------------------

    def units(self) -> list[Unit]:
        """Snapshot of the registry's units with their current positions and statuses, by id."""
        with self._lock:
            return [u.copy() for _, u in sorted(self._units.items())]

    def metrics(self) -> dict[str, Any]:
        """Counters since start: accepted and duplicate alerts by source, rejections by reason."""
        with self._lock:
            return {
                "accepted": dict(self._accepted),
                "duplicates": dict(self._duplicates),
                "rejected": {reason.value: self._rejected[reason.value] for reason in RejectReason},
                "positions": self._positions,
                "positions_superseded": self._superseded_positions,
                "store_errors": self._store_errors,
                "escalations": self._escalations,
            }

    # helpers ------------------------------------------------------------------------------

    def _exclusions(self, now: datetime) -> tuple[set[str], set[str]]:
        """Units that are stale and units outside their staffing hours now (once per batch)."""
        local = now.astimezone(self.zone).time()
        with self._lock:
            stale = {u.id for u in self._units.values() if self._is_stale(u, now)}
            unstaffed = {u.id for u in self._units.values() if not recommendable(u, local)}
        return stale, unstaffed

    def _rank(
        self,
        lat: float,
        lon: float,
        *,
        event_id: str | None = None,
        exclusions: tuple[set[str], set[str]] | None = None,
    ) -> tuple[tuple[Recommendation, ...], float]:
        """Units by ETA after the freshness policy and staffing hours; and the snap distance."""
        stale, unstaffed = exclusions if exclusions is not None else self._exclusions(self.clock())
        k = self.recommend_k
        exclude_stale = self.policy.stale_policy is StalePolicy.EXCLUDE
        skip = unstaffed | stale if exclude_stale else unstaffed
        # With the penalty policy a stale patrol may fall behind others: search a few more.
        extra = 0 if exclude_stale or k is None else len(stale)
        with self._lock:
            try:
                found = self.router.recommend(lat, lon, k=None if k is None else k + extra, exclude=skip)
                snap = self.router.snap(lat, lon)
            except OutsideServiceArea as e:
                msg = (
                    f"location ({lat:.6f}, {lon:.6f}) is {e.distance_m:.0f} m from the nearest street, "
                    f"outside the service area"
                )
                raise Rejected(RejectReason.OUTSIDE_SERVICE_AREA, msg, event_id=event_id) from e
        ranked = rank_units(found, stale, policy=self.policy.stale_policy, penalty_s=self.policy.stale_penalty_s, k=k)
        return ranked, snap.distance_m

    def _is_stale(self, unit: Unit, now: datetime) -> bool:
        return is_stale(unit, now, stale_after=self.policy.stale_after, since=self._opened_at)

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
        exclusions: tuple[set[str], set[str]] | None = None,
        **fields: Any,
    ) -> Alert:
        """A ranked alert with its priority, location-quality flag and duplicate link.

        ``batch`` holds the alerts of the same batch ranked before this one and not yet stored,
        with provisional ids ``-(position) - 1``: a link to one of them is that id.
        """
        recommendations, snap_m = self._rank(lat, lon, event_id=event_id, exclusions=exclusions)
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
        alert.priority = alert_priority(
            source, alert.site, alert.category, categories=self.policy.priority_by_category
        )
        alert.location_unverified = location_unverified(
            source, alert.accuracy_m, threshold_m=self.policy.location_accuracy_max_m
        )
        if test:
            alert.status = AlertStatus.TEST
            return alert
        if recommendations:
            alert.status, alert.recommended_at = AlertStatus.RECOMMENDED, received_at
        candidates = self._recent.candidates(source, alert.lat, alert.lon, received_at)
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
        self._announce(alerts=(alert,))
        if not (
            self.policy.auto_assign_p1
            and alert.priority == 1
            and alert.source is AlertSource.SOS
            and alert.status is AlertStatus.RECOMMENDED
            and alert.duplicate_of is None
        ):
            return
        assert alert.id is not None
        for rec in alert.recommendations:
            try:
                self.assign(alert.id, rec.unit_id, actor=SYSTEM, auto=True)
                return
            except Conflict as e:  # taken meanwhile: try the next one
                log.info("auto-assignment of alert %d to %s refused: %s", alert.id, rec.unit_id, e)

    # alert lifecycle ----------------------------------------------------------------------

    def get_alert(self, alert_id: int) -> Alert:
        alert = self.store.get_alert(alert_id)
        if alert is None:
            msg = f"alert {alert_id} does not exist"
            raise NotFound(msg)
        return alert

    def _locked_alert(self, tx: Tx, alert_id: int) -> Alert:
        alert = tx.alert(alert_id)
        if alert is None:
            msg = f"alert {alert_id} does not exist"
            raise NotFound(msg)
        return alert

    def _unit(self, unit_id: str) -> Unit:
        unit = self._units.get(unit_id)
        if unit is None:
            msg = f"unit {unit_id!r} does not exist"
            raise NotFound(msg)
        return unit

    @staticmethod
    def _move(alert: Alert, target: AlertStatus, now: datetime, *, reason: str | None = None) -> Alert:
        try:
            return stamp_transition(alert, target, now, reason=reason)
        except TransitionRefused as e:
            raise Conflict(str(e), current=e.current.value) from e

    def recommend_again(self, alert_id: int, *, actor: str) -> Alert:
        """Rank the units again from their current positions (a new alert moves to ``recommended``)."""
        with self._lock, self.store.transaction(f"re-rank alert {alert_id}") as tx:
            alert = self._locked_alert(tx, alert_id)
            if alert.status in CLOSING or alert.status is AlertStatus.TEST:
                msg = f"alert {alert_id} is {alert.status.value}: nothing to recommend"
                raise Conflict(msg, current=alert.status.value)
            try:
                recs, _ = self._rank(alert.lat, alert.lon)
            except Rejected as e:
                raise Conflict(e.detail, current=alert.status.value) from e
            updated = alert.copy()
            updated.recommendations = recs
            if alert.status is AlertStatus.NEW and recs:
                updated = self._move(updated, AlertStatus.RECOMMENDED, self.clock())
            tx.save_alert(updated)
            tx.audit("recommend", actor=actor, alert_id=alert_id, before=alert_snapshot(alert), after=alert_snapshot(updated))
        self._announce(alerts=(updated,))
        return updated

    def assign(
        self,
        alert_id: int,
        unit_id: str,
        *,
        actor: str,
        reason: str | None = None,
        auto: bool = False,
    ) -> Alert:
        """Order ``unit_id`` to the alert; a unit not among the recommended ones is an override.

        The order is committed with its acknowledgement deadline, then sent through the notifier.

        Raises
        ------
        NotFound
            No such alert or unit.
        Conflict
            The alert's state does not allow an assignment, or the unit is retired, off duty or busy.
        """
        now = self.clock()
        with self._lock:
            unit = self._unit(unit_id)
            with self.store.transaction(f"assign unit {unit_id!r} to alert {alert_id}") as tx:
                alert = self._locked_alert(tx, alert_id)
                check = self._move(alert, AlertStatus.ASSIGNED, now)
                if unit.retired or unit.status in (UnitStatus.OFF_DUTY, UnitStatus.OFFLINE):
                    state = "retired" if unit.retired else unit.status.value
                    msg = f"unit {unit_id!r} is {state} and cannot be assigned"
                    raise Conflict(msg, current=alert.status.value)
                if unit.alert_id is not None and unit.alert_id != alert_id:
                    msg = f"unit {unit_id!r} is busy with alert {unit.alert_id}"
                    raise Conflict(msg, current=alert.status.value)
                if alert.assigned_unit_id == unit_id and alert.status is AlertStatus.ASSIGNED:
                    msg = f"unit {unit_id!r} is already assigned to alert {alert_id}"
                    raise Conflict(msg, current=alert.status.value)
                recommended = {r.unit_id: r for r in alert.recommendations}
                override = unit_id not in recommended
                released = self._release_previous(tx, alert, now, actor=actor)
                updated = check
                updated.assigned_unit_id, updated.proposed_unit_id = unit_id, None
                assignment = tx.save_assignment(
                    Assignment(
                        alert_id=alert_id,
                        unit_id=unit_id,
                        assigned_at=now,
                        assigned_by=actor,
                        ack_due_at=now + self.policy.ack_deadline,
                        override=override,
                        auto=auto,
                        reason=reason,
                        eta_s=recommended[unit_id].eta_s if unit_id in recommended else None,
                    )
                )
                tx.save_alert(updated)
                busy = unit.copy()
                busy.status, busy.alert_id = UnitStatus.ASSIGNED, alert_id
                tx.save_unit(busy)
                action = "auto_assign" if auto else "override" if override else "assign"
                before, after = alert_snapshot(alert), alert_snapshot(updated)
                after.update(order_id=assignment.id, override=override, reason=reason)
                tx.audit(action, actor=actor, alert_id=alert_id, unit_id=unit_id, before=before, after=after)
                tx.audit("unit_change", actor=actor, unit_id=unit_id, alert_id=alert_id,
                         before=unit_snapshot(unit), after=unit_snapshot(busy))
            route = self._route(busy, alert)
            for old in released:
                self._units[old.id] = old
                self._place(old)
            self._units[unit_id] = busy
            self.router.remove_unit(unit_id)
            self._announce(alerts=(updated,), units=(*released, busy))
        log.info("alert %d assigned to %s by %s%s", alert_id, unit_id, actor, " (override)" if override else "")
        self._send_order(assignment, updated, route)
        return updated

    def _release_previous(self, tx: Tx, alert: Alert, now: datetime, *, actor: str) -> list[Unit]:
        """Free the unit that held the alert before a re-assignment; its unanswered order lapses."""
        if alert.assigned_unit_id is None:
            return []
        previous = self._units.get(alert.assigned_unit_id)
        if previous is None or previous.alert_id != alert.id:
            return []
        freed = previous.copy()
        freed.status, freed.alert_id = UnitStatus.AVAILABLE, None
        tx.save_unit(freed)
        tx.audit("unit_change", actor=actor, unit_id=freed.id, alert_id=alert.id,
                 before=unit_snapshot(previous), after=unit_snapshot(freed))
        return [freed]

    def _route(self, unit: Unit, alert: Alert) -> tuple[tuple[float, float], ...]:
        """The unit's fastest path to the alert; a straight line if the router cannot route it."""
        placed = unit.id in self.router.unit_ids
        try:
            if not placed:
                self.router.place_unit(unit.id, unit.kind.value, unit.lat, unit.lon)
            return tuple(self.router.route(unit.id, alert.lat, alert.lon))
        except (KeyError, ValueError) as e:  # OutsideServiceArea is a ValueError
            log.warning("no street route for unit %r to alert %s (%s): sending a straight line", unit.id, alert.id, e)
            return ((unit.lat, unit.lon), (alert.lat, alert.lon))
        finally:
            if not placed:
                self.router.remove_unit(unit.id)

    def route_to_alert(self, alert_id: int, unit_id: str) -> tuple[tuple[float, float], ...]:
        """The unit's fastest street route to the alert, ``(lat, lon)`` vertices (for the map).

        Raises
        ------
        NotFound
            No such alert or unit.
        """
        alert = self.get_alert(alert_id)
        with self._lock:
            return self._route(self._unit(unit_id).copy(), alert)

    def _send_order(self, a: Assignment, alert: Alert, route: tuple[tuple[float, float], ...]) -> None:
        if self.notifier is None or a.id is None or alert.id is None:
            return
        order = Order(
            order_id=a.id,
            alert_id=alert.id,
            unit_id=a.unit_id,
            priority=alert.priority,
            source=alert.source.value,
            lat=alert.lat,
            lon=alert.lon,
            route=route,
            ack_due_at=a.ack_due_at,
            eta_s=a.eta_s,
            category=alert.category,
            site=None if alert.site is None else alert.site.value,
            location_unverified=alert.location_unverified,
            override=a.override,
        )
        try:
            self.notifier.send_order(a.unit_id, order)
        except Exception:  # the assignment is committed; the deadline escalates an undelivered order
            log.exception("could not send order %d to unit %r", a.id, a.unit_id)

    def acknowledge(self, alert_id: int, unit_id: str, *, actor: str) -> Alert:
        """The unit confirms its order; only the unit holding the alert's open order may.

        Raises
        ------
        Conflict
            The alert is not waiting for this unit's acknowledgement (e.g. it escalated meanwhile).
        """
        now = self.clock()
        with self._lock, self.store.transaction(f"acknowledge alert {alert_id} by {unit_id!r}") as tx:
            alert = self._locked_alert(tx, alert_id)
            if alert.status is not AlertStatus.ASSIGNED or alert.assigned_unit_id != unit_id:
                holder = alert.assigned_unit_id or "no unit"
                msg = f"alert {alert_id} is {alert.status.value} for {holder}: no order of unit {unit_id!r} to acknowledge"
                raise Conflict(msg, current=alert.status.value)
            pending = [a for a in tx.assignments(alert_id) if a.unit_id == unit_id and a.acknowledged_at is None and a.missed_at is None]
            updated = self._move(alert, AlertStatus.ACKNOWLEDGED, now)
            for a in pending:
                a.acknowledged_at = now
                tx.save_assignment(a)
            tx.save_alert(updated)
            after = alert_snapshot(updated)
            after["ack_after_s"] = round((now - pending[-1].assigned_at).total_seconds(), 3) if pending else None
            tx.audit("ack", actor=actor, alert_id=alert_id, unit_id=unit_id, before=alert_snapshot(alert), after=after)
        self._announce(alerts=(updated,))
        log.info("alert %d acknowledged by %s", alert_id, unit_id)
        return updated

    def transition(self, alert_id: int, target: AlertStatus, *, actor: str, reason: str | None = None) -> Alert:
        """Move an alert along its lifecycle (en route, on scene, closed, cancelled, false alarm).

        Assignment, acknowledgement and re-ranking have their own methods. Closing frees the unit.

        Raises
        ------
        Conflict
            The state machine does not allow the move, or a closing state lacks its reason.
        """
        target = AlertStatus(target)
        if target in (AlertStatus.ASSIGNED, AlertStatus.ACKNOWLEDGED, AlertStatus.RECOMMENDED, AlertStatus.NEW, AlertStatus.TEST):
            msg = f"use the assign, acknowledge or recommend actions to move an alert to {target.value!r}"
            raise Conflict(msg)
        now = self.clock()
        with self._lock:
            with self.store.transaction(f"move alert {alert_id} to {target.value}") as tx:
                alert = self._locked_alert(tx, alert_id)
                updated = self._move(alert, target, now, reason=reason)
                tx.save_alert(updated)
                tx.audit("state_change", actor=actor, alert_id=alert_id, unit_id=alert.assigned_unit_id,
                         before=alert_snapshot(alert), after=alert_snapshot(updated))
                unit = self._units.get(alert.assigned_unit_id or "")
                changed = None
                if unit is not None and unit.alert_id == alert_id:
                    changed = unit.copy()
                    if target in CLOSING:
                        changed.status, changed.alert_id = UnitStatus.AVAILABLE, None
                    else:
                        changed.status = UnitStatus(target.value)
                    if changed.status is not unit.status or changed.alert_id != unit.alert_id:
                        tx.save_unit(changed)
                        tx.audit("unit_change", actor=actor, unit_id=unit.id, alert_id=alert_id,
                                 before=unit_snapshot(unit), after=unit_snapshot(changed))
            if changed is not None:
                self._units[changed.id] = changed
                self._place(changed)
            self._announce(alerts=(updated,), units=(changed,))
        log.info("alert %d %s -> %s by %s", alert_id, alert.status.value, target.value, actor)
        return updated

    def unlink_duplicate(self, alert_id: int, *, actor: str) -> Alert:
        """Undo the duplicate link of an alert (the dispatcher knows better)."""
        with self.store.transaction(f"unlink alert {alert_id}") as tx:
            alert = self._locked_alert(tx, alert_id)
            if alert.duplicate_of is None:
                msg = f"alert {alert_id} is not linked to another alert"
                raise Conflict(msg, current=alert.status.value)
            updated = alert.copy()
            updated.duplicate_of = None
            tx.save_alert(updated)
            tx.audit("unlink_duplicate", actor=actor, alert_id=alert_id, before=alert_snapshot(alert), after=alert_snapshot(updated))
        self._announce(alerts=(updated,))
        return updated

    def assignments(self, alert_id: int) -> list[Assignment]:
        return self.store.assignments(alert_id)

    # escalation ---------------------------------------------------------------------------

    def escalate_overdue(self) -> list[int]:
        """Escalate every alert whose unit missed its acknowledgement deadline; return their ids.

        The miss is recorded on the order, the alert is flagged (``escalations`` + 1) and ranked
        again; the best unit not yet tried is proposed, or assigned at once for a P1 alert when
        auto-assignment is on.
        """
        now = self.clock()
        escalated = []
        for a in self.store.overdue_assignments(now):
            try:
                proposal = self._escalate(a, now)
            except (Conflict, NotFound) as e:
                log.info("order %s needs no escalation: %s", a.id, e)
                continue
            escalated.append(a.alert_id)
            if proposal is not None and self.policy.auto_assign_p1:
                alert = self.store.get_alert(a.alert_id)
                if alert is not None and alert.priority == 1 and alert.source is AlertSource.SOS:
                    try:
                        self.assign(a.alert_id, proposal, actor=SYSTEM, auto=True, reason="escalation")
                    except Conflict as e:
                        log.warning("auto-assignment after escalation of alert %d refused: %s", a.alert_id, e)
        return escalated

    def _escalate(self, a: Assignment, now: datetime) -> str | None:
        with self._lock:
            with self.store.transaction(f"escalate alert {a.alert_id}") as tx:
                alert = self._locked_alert(tx, a.alert_id)
                a.missed_at = now
                tx.save_assignment(a)
                if alert.status is not AlertStatus.ASSIGNED or alert.assigned_unit_id != a.unit_id:
                    tx.audit("order_lapsed", actor=SYSTEM, alert_id=a.alert_id, unit_id=a.unit_id,
                             after={"order_id": a.id}, only_changes=False)
                    return None
                unit = self._units.get(a.unit_id)
                freed = None
                if unit is not None and unit.alert_id == a.alert_id:
                    freed = unit.copy()
                    freed.status, freed.alert_id = UnitStatus.AVAILABLE, None
                    tx.save_unit(freed)
                    tx.audit("unit_change", actor=SYSTEM, unit_id=unit.id, alert_id=a.alert_id,
                             before=unit_snapshot(unit), after=unit_snapshot(freed))
                    self._units[freed.id] = freed
                    self._place(freed)
                try:
                    recs, _ = self._rank(alert.lat, alert.lon)
                except Rejected:
                    recs = alert.recommendations
                tried = {x.unit_id for x in tx.assignments(a.alert_id)}
                proposal = next_proposal(recs, tried)
                updated = self._move(alert, AlertStatus.RECOMMENDED, now)
                updated.recommendations = recs
                updated.escalations = alert.escalations + 1
                updated.assigned_unit_id = None
                updated.proposed_unit_id = None if proposal is None else proposal.unit_id
                tx.save_alert(updated)
                after = alert_snapshot(updated)
                after.update(missed_unit_id=a.unit_id, order_id=a.id, deadline=a.ack_due_at.isoformat())
                tx.audit("escalation", actor=SYSTEM, alert_id=a.alert_id, unit_id=a.unit_id,
                         before=alert_snapshot(alert), after=after)
            self._escalations += 1
            self._announce(alerts=(updated,), units=(freed,))
        log.warning(
            "alert %d escalated: unit %s did not acknowledge by %s; proposing %s",
            a.alert_id, a.unit_id, a.ack_due_at.isoformat(), updated.proposed_unit_id or "nobody",
        )
        return updated.proposed_unit_id

    def start_deadline_watcher(self, *, interval_s: float | None = None) -> None:
        """Check acknowledgement deadlines from a background thread until :meth:`close`."""
        if self._watcher is not None:
            return
        interval = interval_s or max(0.05, min(1.0, self.policy.ack_deadline.total_seconds() / 20))
        self._watcher_stop.clear()

        def run() -> None:
            while not self._watcher_stop.wait(interval):
                try:
                    self.escalate_overdue()
                except StoreError as e:
                    log.error("deadline check failed, retrying: %s", e)
                except Exception:
                    log.exception("deadline check failed")

        self._watcher = threading.Thread(target=run, name="qorgau-deadlines", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        """Stop the deadline watcher."""
        self._watcher_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    # units --------------------------------------------------------------------------------

    def unit_view(self, unit: Unit) -> dict[str, Any]:
        """A unit as the dispatcher sees it: with freshness and whether it can be recommended now."""
        now = self.clock()
        seen = unit.position_ts
        return {
            "stale": self._is_stale(unit, now),
            "position_age_s": None if seen is None else round((now - seen).total_seconds(), 1),
            "recommendable": recommendable(unit, now.astimezone(self.zone).time())
            and not (self.policy.stale_policy is StalePolicy.EXCLUDE and self._is_stale(unit, now)),
        }

    def get_unit(self, unit_id: str) -> Unit:
        with self._lock:
            return self._unit(unit_id).copy()

    def create_unit(self, unit: Unit, *, actor: str) -> Unit:
        """Register a unit through the API (besides the GeoJSON seed).

        Raises
        ------
        Conflict
            A unit with that id exists (retired ones too: ids are never reused).
        ValueError
            The position is outside the service area.
        """
        with self._lock:
            if unit.id in self._units:
                msg = f"unit {unit.id!r} already exists"
                raise Conflict(msg, current=self._units[unit.id].status.value)
            self._check_on_streets(unit)
            new = unit.copy()
            new.alert_id = None
            with self.store.transaction(f"register unit {unit.id!r}") as tx:
                tx.save_unit(new)
                tx.audit("unit_create", actor=actor, unit_id=new.id, after=unit_snapshot(new), only_changes=False)
            self._units[new.id] = new
            self._place(new)
            self._announce(units=(new,))
        return new.copy()

    def _check_on_streets(self, unit: Unit) -> None:
        if not self.router.in_service_area(unit.lat, unit.lon):
            msg = f"position ({unit.lat:.6f}, {unit.lon:.6f}) of unit {unit.id!r} is outside the service area"
            raise ValueError(msg)

    def update_unit(self, unit_id: str, *, actor: str, **changes: Any) -> Unit:
        """Change a unit's name, staffing hours, booth position or status (``status`` as in :meth:`set_unit_status`)."""
        status = changes.pop("status", None)
        allowed = {"name", "staff_from", "staff_to", "lat", "lon"}
        unknown = set(changes) - allowed
        if unknown:
            msg = f"cannot change {sorted(unknown)} of a unit; changeable: {sorted(allowed)}"
            raise ValueError(msg)
        with self._lock:
            unit = self._unit(unit_id)
            if unit.retired:
                msg = f"unit {unit_id!r} is retired"
                raise Conflict(msg, current="retired")
            changed = unit.copy()
            for name, value in changes.items():
                setattr(changed, name, value)
            changed = Unit(**{f: getattr(changed, f) for f in Unit.__dataclass_fields__})  # re-validate
            if ("lat" in changes or "lon" in changes):
                self._check_on_streets(changed)
            if changes:
                with self.store.transaction(f"update unit {unit_id!r}") as tx:
                    tx.save_unit(changed)
                    tx.audit("unit_change", actor=actor, unit_id=unit_id, before=unit_snapshot(unit), after=unit_snapshot(changed))
                self._units[unit_id] = changed
                self._place(changed)
                self._announce(units=(changed,))
        if status is not None:
            self.set_unit_status(unit_id, UnitStatus(status), actor=actor)
        return self.get_unit(unit_id)

    def retire_unit(self, unit_id: str, *, actor: str) -> Unit:
        """Take a unit out of service for good; it stays in the records and is never recommended."""
        with self._lock:
            unit = self._unit(unit_id)
            if unit.alert_id is not None:
                msg = f"unit {unit_id!r} holds alert {unit.alert_id}: close or re-assign it first"
                raise Conflict(msg, current=unit.status.value)
            retired = unit.copy()
            retired.retired, retired.status = True, UnitStatus.OFFLINE
            with self.store.transaction(f"retire unit {unit_id!r}") as tx:
                tx.save_unit(retired)
                tx.audit("unit_retire", actor=actor, unit_id=unit_id, before=unit_snapshot(unit), after=unit_snapshot(retired))
            self._units[unit_id] = retired
            self.router.remove_unit(unit_id)
            self._announce(units=(retired,))
        return retired.copy()

    def set_unit_status(self, unit_id: str, status: UnitStatus, *, actor: str, alert_id: int | None = None) -> Unit:
        """A unit's status from the API or MQTT.

        ``en_route`` and ``on_scene`` move the unit's alert along; ``available``, ``off_duty`` and
        ``offline`` need the unit to hold no open alert. ``assigned`` is set by assignment only.

        Raises
        ------
        Conflict
            The status does not fit the unit's alert (none, another one, or a state that forbids it).
        """
        status = UnitStatus(status)
        if status is UnitStatus.ASSIGNED:
            msg = "a unit becomes 'assigned' by an assignment, not by a status change"
            raise Conflict(msg)
        with self._lock:
            unit = self._unit(unit_id)
            if unit.retired:
                msg = f"unit {unit_id!r} is retired"
                raise Conflict(msg, current="retired")
            if status in (UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE):
                held = unit.alert_id
                if held is None:
                    msg = f"unit {unit_id!r} holds no alert: it cannot be {status.value}"
                    raise Conflict(msg, current=unit.status.value)
                if alert_id is not None and alert_id != held:
                    msg = f"unit {unit_id!r} holds alert {held}, not alert {alert_id}"
                    raise Conflict(msg, current=unit.status.value)
                alert = self.get_alert(held)
                if alert.status is AlertStatus.ASSIGNED:  # moving counts as acknowledging the order
                    self.acknowledge(held, unit_id, actor=actor)
                self.transition(held, AlertStatus(status.value), actor=actor)
                return self.get_unit(unit_id)
            if unit.alert_id is not None:
                msg = f"unit {unit_id!r} holds alert {unit.alert_id}: it cannot become {status.value} before it is closed"
                raise Conflict(msg, current=unit.status.value)
            if status is unit.status:
                return unit.copy()
            changed = unit.copy()
            changed.status = status
            with self.store.transaction(f"set status of unit {unit_id!r}") as tx:
                tx.save_unit(changed)
                tx.audit("unit_status", actor=actor, unit_id=unit_id, before=unit_snapshot(unit), after=unit_snapshot(changed))
            self._units[unit_id] = changed
            self._place(changed)
            self._announce(units=(changed,))
        return changed.copy()

    def report_unit_status(self, unit_id: str, payload: bytes) -> RejectReason | None:
        """A status message from ``{root}/units/{unit_id}/status``; None when applied."""
        return self._unit_message(unit_id, payload, UnitStatusReport, lambda m: self.set_unit_status(
            unit_id, UnitStatus(m.status), actor=f"unit:{unit_id}", alert_id=m.alert_id))

    def report_unit_ack(self, unit_id: str, payload: bytes) -> RejectReason | None:
        """An acknowledgement from ``{root}/units/{unit_id}/ack``; None when applied."""
        return self._unit_message(unit_id, payload, UnitAck, lambda m: self.acknowledge(
            m.alert_id, unit_id, actor=f"unit:{unit_id}"))

    def _unit_message(self, unit_id: str, payload: bytes, model: type, apply: Callable[[Any], Any]) -> RejectReason | None:
        try:
            message = parse_message(
                model, payload, now=self.clock(), max_bytes=self.max_payload_bytes, max_clock_skew=self.max_clock_skew
            )
            if unit_id not in self._units:
                raise Rejected(RejectReason.UNKNOWN_UNIT, f"unit {unit_id!r} is not in the unit registry")
            try:
                apply(message)
            except (Conflict, NotFound) as e:
                raise Rejected(RejectReason.CONFLICT, str(e)) from e
            return None
        except Rejected as rejection:
            self._reject(rejection, source=f"units/{unit_id}")
            return rejection.reason
        except StoreError:
            self._count_store_error()
            raise
        except Exception as e:
            log.exception("internal error on a message of unit %r", unit_id)
            self._reject(Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"), source="units")
            return RejectReason.INTERNAL_ERROR

    @staticmethod
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

    def _redelivered(self, first: Ack, source: AlertSource) -> Ack:
        """The ack of an event that came twice in one batch: the first one's, counted as a duplicate."""
        with self._lock:
            self._duplicates[source.value] += 1
        return first

    def _accepted_ack(self, alert: Alert, *, created: bool) -> Ack:
        with self._lock:
            (self._accepted if created else self._duplicates)[alert.source.value] += 1
        if not created:
            log.info("redelivery of event %r from %r: alert %d already stored", alert.event_id, alert.sender, alert.id)
        return Ack(event_id=alert.event_id, alert_id=alert.id, status=AckStatus.ACCEPTED)

    def _reject(self, rejection: Rejected, *, source: str) -> Ack:
        with self._lock:
            self._rejected[rejection.reason.value] += 1
        log.warning("rejected message on %s: %s: %s", source, rejection.reason.value, rejection.detail)
        return Ack(
            event_id=rejection.event_id,
            alert_id=None,
            status=AckStatus.REJECTED,
            reason=rejection.reason,
            detail=rejection.detail,
        )

    def _count_store_error(self) -> None:
        with self._lock:
            self._store_errors += 1

    def _notify(self, device_id: str, ack: Ack) -> None:
        if self.notifier is None:
            return
        try:
            self.notifier.send_ack(device_id, ack)
        except Exception:  # the alert is committed; a failed ack must not undo that
            log.exception("could not send ack for event %r to device %r", ack.event_id, device_id)
