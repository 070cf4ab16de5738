"""The dispatch service: ingest alerts, rank units by ETA, commit, answer.

Adapters (the MQTT bridge, later an HTTP intake) hand raw payloads to :class:`DispatchService`;
it validates them (:mod:`dispatch.intake`), asks :class:`geo.Router` for the nearest units by
travel time, commits the alert to the :class:`~dispatch.store.Store` and only then answers through
the :class:`~dispatch.ports.Notifier`. An adapter may acknowledge its transport once an ingest
method has returned; when the store is down the method raises :class:`~dispatch.store.StoreError`
and the adapter must not acknowledge.

:class:`DispatchService` is a thin facade over collaborators with one job each: intake
(:class:`~dispatch.ingest.Intake`), the unit registry (:class:`~dispatch.fleet.Fleet`), the alert
lifecycle and assignment (:class:`~dispatch.assignment.Dispatcher`) and escalation
(:class:`~dispatch.escalation.Escalator`); committed changes leave through one
:class:`~dispatch.outbox.Outbox`, counters are kept in :class:`~dispatch.counters.ServiceCounters`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatch.assignment import Dispatcher
from dispatch.changes import ChangeStream
from dispatch.counters import ServiceCounters
from dispatch.domain import (
    APP102_SENDER,
    Alert,
    AlertSource,
    AlertStatus,
    Assignment,
    CloseOutcome,
    Device,
    Unit,
    UnitKind,
    UnitStatus,
)
from dispatch.errors import Conflict, NotFound
from dispatch.escalation import Escalator
from dispatch.fleet import Fleet
from dispatch.idempotency import IdempotencyLedger
from dispatch.ingest import Inbound, Intake
from dispatch.intake import UnitAck, UnitStatusReport
from dispatch.leader import Leadership
from dispatch.lifecycle import OPEN, DispatchPolicy
from dispatch.outbox import Outbox
from dispatch.ports import (
    Ack,
    AlertUnitListener,
    Change,
    ChangeKind,
    ChangeListener,
    Notifier,
    PatrolPlan,
    RejectReason,
)
from dispatch.recent import RecentAlerts
from dispatch.signing import PressVerifier
from dispatch.signing_store import stored_counters
from dispatch.store import Store, StoreError
from dispatch.terminal import CurrentOrder, FixResult, Terminal
from dispatch.watcher import Watcher
from geo import Router

__all__ = ["Conflict", "DispatchService", "Inbound", "NotFound", "utc_now"]

_DUPLICATE_CANDIDATES = 25
"""The earliest open alerts in the duplicate box that are checked; the earliest inside the circle wins."""

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


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
        self.recommend_k = recommend_k
        self.max_payload_bytes = max_payload_bytes
        self.max_clock_skew = max_clock_skew
        self.clock = clock
        self.policy = policy or DispatchPolicy()
        self.press_verifier = press_verifier or PressVerifier()
        store.clock = clock
        self._seed_units = list(units)
        self._recent = RecentAlerts(
            self.policy.duplicate_window, self.policy.duplicate_radius_m, per_cell=_DUPLICATE_CANDIDATES
        )
        self._outbox = Outbox(self._recent, notifier)
        self._counters = ServiceCounters()
        self._fleet = Fleet(
            store,
            router,
            policy=self.policy,
            clock=clock,
            outbox=self._outbox,
            counters=self._counters,
            writes=threading.RLock(),
            recommend_k=recommend_k,
        )
        self.zone = self._fleet.zone
        self._dispatcher = Dispatcher(store, self._fleet, policy=self.policy, clock=clock, outbox=self._outbox)
        self._escalator = Escalator(
            store,
            self._fleet,
            self._dispatcher,
            policy=self.policy,
            clock=clock,
            outbox=self._outbox,
            counters=self._counters,
        )
        self._intake = Intake(
            store,
            self._fleet,
            devices=self.devices,
            recent=self._recent,
            press_verifier=self.press_verifier,
            policy=self.policy,
            clock=clock,
            outbox=self._outbox,
            counters=self._counters,
            after_ingest=self._dispatcher.auto_assign,
            max_payload_bytes=max_payload_bytes,
            max_clock_skew=max_clock_skew,
            catch_up=self._catch_up,
            hold=self._follower_hold,
            heard=lambda: self._stream.remote_alerts_heard,
            await_heard=lambda heard, timeout_s: self._stream.wait_remote(heard, timeout_s),
        )
        self._stream = ChangeStream(store, apply=self._apply_remote, deliver=self._outbox.deliver)
        self.leadership = Leadership(store)
        """Whether this replica runs the work done once (escalation, supervision): see :mod:`dispatch.leader`."""
        self._housekeeping: Watcher | None = None
        self._terminal = Terminal(
            store,
            self._fleet,
            self._dispatcher,
            self._intake,
            policy=self.policy,
            counters=self._counters,
            clock=clock,
        )
        self.requests = IdempotencyLedger(store, clock=clock)
        """Requests a client may repeat (``Idempotency-Key``): applied once, answered alike."""

    # set-up -------------------------------------------------------------------------------

    def open(self) -> DispatchService:
        """Merge the unit registry with positions the store remembers and place units on the router.

        The change stream starts here: every change committed from now on, by this replica or
        (after :meth:`start_change_stream`, PostgreSQL) another, reaches this one's memory and listeners.
        """
        self._stream.open()
        placed = self._fleet.open(self._seed_units)
        since = self.clock() - self.policy.duplicate_window
        for source in AlertSource:
            self._recent.load(self.store.recent_alerts(source, since, OPEN))
        self.press_verifier.restore(stored_counters(self.store, window=self.press_verifier.window))
        self._fleet.warm_up()
        log.info(
            "dispatch open: %d units (%d available on the streets), %d SOS devices",
            len(self._fleet),
            placed,
            len(self.devices),
        )
        return self

    @property
    def notifier(self) -> Notifier | None:
        """Who sends acks and orders (None until the MQTT bridge attaches itself)."""
        return self._outbox.notifier

    @notifier.setter
    def notifier(self, notifier: Notifier | None) -> None:
        self._outbox.notifier = notifier

    def attach_notifier(self, notifier: Notifier) -> None:
        """Set who sends acks (the MQTT bridge attaches itself)."""
        self._outbox.notifier = notifier

    def add_listener(self, *listeners: ChangeListener | AlertUnitListener) -> int:
        """Tell ``listeners`` about every committed alert and unit change from now on (the live map).

        With ``change_committed`` a listener hears every change of the global stream, local or from
        another replica, in ``seq`` order (see :class:`~dispatch.ports.ChangeListener`). Returns the
        ``seq`` after which they hear every change: they are added under the store's commit lock, so
        no change is half handed on meanwhile.
        """
        with self.store.commit_lock:
            for listener in listeners:
                self._outbox.add_listener(listener)
            return self._stream.last_seq

    # replicas -----------------------------------------------------------------------------

    @property
    def replica(self) -> str:
        """This replica's name: the ``origin`` of the changes it commits."""
        return self.store.replica

    @property
    def is_leader(self) -> bool:
        """Whether this replica runs escalation and supervision (always True on SQLite)."""
        return self.leadership.is_leader

    def start_change_stream(self) -> None:
        """PostgreSQL: apply the other replicas' changes (LISTEN/NOTIFY, polled every 250 ms) until :meth:`close`."""
        self._stream.start()

    def sync_changes(self) -> int:
        """Apply the other replicas' changes not seen yet, now; how many (the stream's thread does this by itself)."""
        return self._stream.poll()

    @property
    def last_change_seq(self) -> int:
        """The ``seq`` of the newest change this replica has handed on."""
        return self._stream.last_seq

    def changes_since(self, seq: int, limit: int = 1000, *, until: int | None = None) -> list[Change]:
        """The changes of the global stream after ``seq`` (up to ``until``), oldest first, each object in its current state.

        Raises
        ------
        StoreError
            If the database could not be reached.
        """
        return self.store.changes_since(seq, limit, until=until)

    def change_bounds(self, after: int, until: int) -> tuple[int | None, int, int]:
        """The oldest and newest ``seq`` the change table keeps and how many rows lie in ``(after, until]``.

        Raises
        ------
        StoreError
            If the database could not be reached.
        """
        return self.store.change_bounds(after, until)

    def _catch_up(self) -> None:
        """Before an ingest batch (PostgreSQL, once the stream runs): the other replicas' changes not seen yet."""
        if self._stream.running:
            self._stream.poll()

    def _follower_hold(self) -> float:
        """Seconds a batch waits for the leader's commit: the policy's hold while another replica
        leads and its commits reach this one (the change stream runs), else 0."""
        if self._stream.running and self.leadership.another_leads:
            return self.policy.follower_hold.total_seconds()
        return 0.0

    def _apply_remote(self, change: Change) -> None:
        """Another replica's committed change into this one's memory: units, the duplicate grid, counters."""
        for unit in change.units:
            self._fleet.apply_remote(unit)
        for alert in change.alerts:
            self._intake.remote_committed(alert)  # a batch held for the leader's commit finds it
            self._recent.add(alert)  # a new open alert is a duplicate candidate here too
            self._recent.changed(alert)  # a closed one is not
            if alert.device_counter is not None:
                self.press_verifier.observe(alert.sender, alert.device_counter)

    @property
    def opened_at(self) -> datetime:
        """When :meth:`open` ran: a patrol that never reported counts as seen then."""
        return self._fleet.opened_at

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
        return self._intake.ingest_many(messages)

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
        return self._intake.unit_positions(messages)

    # reading ------------------------------------------------------------------------------

    def units(self) -> list[Unit]:
        """Snapshot of the registry's units with their current positions and statuses, by id."""
        return self._fleet.units()

    def metrics(self) -> dict[str, Any]:
        """Counters since start: accepted and duplicate alerts by source, rejections by reason."""
        return self._counters.snapshot()

    # alert lifecycle ----------------------------------------------------------------------

    def incident_history(self, start: datetime, end: datetime) -> list[Alert]:
        """What the public reported in ``[start, end)``, for planning patrols from Qorgau's own history.

        SOS presses and 102 reports, without test presses, false alarms (the dispatcher's or the
        unit's outcome), cancelled alerts and alerts linked as duplicates of another (each event
        counts once).
        """
        left_out = {AlertStatus.TEST, AlertStatus.FALSE_ALARM, AlertStatus.CANCELLED}
        return [
            a
            for a in self.store.alerts_received_between(start, end)
            if a.status not in left_out and not a.false_alarm and a.kind != "test" and a.duplicate_of is None
        ]

    def get_alert(self, alert_id: int) -> Alert:
        """The alert; NotFound if there is none."""
        return self._dispatcher.get_alert(alert_id)

    def recommend_again(self, alert_id: int, *, actor: str) -> Alert:
        """Rank the units again from their current positions (a new alert moves to ``recommended``)."""
        return self._dispatcher.recommend_again(alert_id, actor=actor)

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
        return self._dispatcher.assign(alert_id, unit_id, actor=actor, reason=reason, auto=auto)

    def route_to_alert(self, alert_id: int, unit_id: str) -> tuple[tuple[float, float], ...]:
        """The unit's fastest street route to the alert, ``(lat, lon)`` vertices (for the map).

        Raises
        ------
        NotFound
            No such alert or unit.
        """
        return self._dispatcher.route_to_alert(alert_id, unit_id)

    def acknowledge(self, alert_id: int, unit_id: str, *, actor: str) -> Alert:
        """The unit confirms its order; only the unit holding the alert's open order may.

        Raises
        ------
        Conflict
            The alert is not waiting for this unit's acknowledgement (e.g. it escalated meanwhile).
        """
        return self._dispatcher.acknowledge(alert_id, unit_id, actor=actor)

    def transition(self, alert_id: int, target: AlertStatus, *, actor: str, reason: str | None = None) -> Alert:
        """Move an alert along its lifecycle (en route, on scene, closed, cancelled, false alarm).

        Assignment, acknowledgement and re-ranking have their own methods. Closing frees the unit.

        Raises
        ------
        Conflict
            The state machine does not allow the move, or a closing state lacks its reason.
        """
        return self._dispatcher.transition(alert_id, target, actor=actor, reason=reason)

    def unlink_duplicate(self, alert_id: int, *, actor: str) -> Alert:
        """Undo the duplicate link of an alert (the dispatcher knows better)."""
        return self._dispatcher.unlink_duplicate(alert_id, actor=actor)

    def assignments(self, alert_id: int) -> list[Assignment]:
        """The orders of an alert, oldest first."""
        return self._dispatcher.assignments(alert_id)

    # escalation ---------------------------------------------------------------------------

    def escalate_overdue(self) -> list[int]:
        """Escalate every alert whose unit missed its acknowledgement deadline; return their ids.

        The miss is recorded on the order, the alert is flagged (``escalations`` + 1) and ranked
        again; the best unit not yet tried is proposed, or assigned at once for a P1 alert when
        auto-assignment is on.
        """
        return self._escalator.escalate_overdue()

    def start_deadline_watcher(self, *, interval_s: float | None = None) -> None:
        """Check acknowledgement deadlines from a background thread until :meth:`close`, on the leader only.

        Starts the leader election too (:attr:`leadership`; on SQLite this process is the leader).
        """
        self.leadership.start()
        self._escalator.start_watcher(interval_s=interval_s, when=lambda: self.leadership.is_leader)
        if self._housekeeping is None and self.policy.changes_retention is not None:
            self._housekeeping = Watcher(
                self.prune_changes,
                interval_s=self.HOUSEKEEPING_INTERVAL_S,
                name="qorgau-housekeeping",
                what="change stream pruning",
                retry_on=(StoreError,),
                when=lambda: self.leadership.is_leader,
            )
            self._housekeeping.start()

    HOUSEKEEPING_INTERVAL_S = 600.0
    """How often the leader prunes the change stream past ``policy.changes_retention``."""

    def prune_changes(self) -> int:
        """Delete the change stream's rows older than ``policy.changes_retention``; how many went.

        A live map that reconnects with an older ``Last-Event-ID`` gets a fresh snapshot (``reset``).
        """
        keep = self.policy.changes_retention
        return 0 if keep is None else self.store.prune_changes(self.clock() - keep)

    def close(self) -> None:
        """Stop the deadline watcher, the change stream and the leader election (a leader steps down)."""
        self._escalator.close()
        if self._housekeeping is not None:
            self._housekeeping.close()
            self._housekeeping = None
        self._stream.close()
        self.leadership.close()

    # units --------------------------------------------------------------------------------

    def unit_view(self, unit: Unit) -> dict[str, Any]:
        """A unit as the dispatcher sees it: with freshness and whether it can be recommended now."""
        return self._fleet.view(unit)

    def get_unit(self, unit_id: str) -> Unit:
        """A copy of the unit; NotFound if there is none."""
        return self._fleet.get(unit_id)

    def create_unit(self, unit: Unit, *, actor: str) -> Unit:
        """Register a unit through the API (besides the GeoJSON seed).

        Raises
        ------
        Conflict
            A unit with that id exists (retired ones too: ids are never reused).
        ValueError
            The position is outside the service area.
        """
        return self._fleet.create(unit, actor=actor)

    def update_unit(self, unit_id: str, *, actor: str, **changes: Any) -> Unit:
        """Change a unit's name, staffing hours, booth position or status (``status`` as in :meth:`set_unit_status`)."""
        status = changes.pop("status", None)
        self._fleet.update(unit_id, changes, actor=actor)
        if status is not None:
            self.set_unit_status(unit_id, UnitStatus(status), actor=actor)
        return self.get_unit(unit_id)

    def retire_unit(self, unit_id: str, *, actor: str) -> Unit:
        """Take a unit out of service for good; it stays in the records and is never recommended."""
        return self._fleet.retire(unit_id, actor=actor)

    def set_unit_status(self, unit_id: str, status: UnitStatus, *, actor: str, alert_id: int | None = None) -> Unit:
        """A unit's status from the API or MQTT.

        ``en_route`` and ``on_scene`` move the unit's alert along; ``available``, ``off_duty`` and
        ``offline`` need the unit to hold no open alert. ``assigned`` is set by assignment only.

        Raises
        ------
        Conflict
            The status does not fit the unit's alert (none, another one, or a state that forbids it).
        """
        return self._dispatcher.set_unit_status(unit_id, status, actor=actor, alert_id=alert_id)

    # patrol plans (issue 14) ---------------------------------------------------------------

    def issue_plan(self, plans: Sequence[PatrolPlan], *, actor: str) -> dict[str, bool]:
        """Issue a commander's patrol plan: each unit's route is audited (``plan_issued``), then sent.

        Every unit must be registered, in service and able to walk a route (not a booth); nothing is
        issued otherwise. Returns, per unit, whether the transport took its plan (False without an
        MQTT bridge, or when sending failed: the handheld still shows it).

        Raises
        ------
        NotFound
            A unit is not registered.
        ValueError
            A unit is retired or a booth, or two patrols name the same unit.
        """
        units = [p.unit_id for p in plans]
        if len(set(units)) != len(units):
            msg = f"each unit walks one patrol of a plan; given {units}"
            raise ValueError(msg)
        for p in plans:
            unit = self.get_unit(p.unit_id)
            if unit.retired:
                msg = f"unit {unit.id!r} is retired"
                raise ValueError(msg)
            if unit.kind is UnitKind.BOOTH:
                msg = f"unit {unit.id!r} is a booth: a patrol route needs a foot or car unit"
                raise ValueError(msg)
        with self.store.transaction("record an issued patrol plan") as tx:
            for p in plans:
                tx.audit(
                    "plan_issued",
                    actor=actor,
                    unit_id=p.unit_id,
                    after={
                        "plan_id": p.plan_id,
                        "patrol": p.patrol_id,
                        "shift": p.shift,
                        "stops": len(p.stops),
                        "shift_start": p.shift_start.isoformat(),
                        "shift_end": p.shift_end.isoformat(),
                    },
                    only_changes=False,
                )
            if plans:  # every replica's streams hear it (the handhelds and the live map reload the plan)
                notice = {
                    "plan_id": plans[0].plan_id,
                    "issued_at": plans[0].issued_at.isoformat(),
                    "units": units,
                }
                tx.note_change(ChangeKind.PLAN, plans[0].plan_id, notice)
        log.info("plan %s issued by %s to %s", plans[0].plan_id if plans else "-", actor, ", ".join(units))
        return {p.unit_id: self._outbox.send_plan(p.unit_id, p) for p in plans}

    # the unit's terminal (the handheld) ------------------------------------------------------

    def current_order(self, unit_id: str) -> CurrentOrder:
        """The unit, the open alert it holds and the order that sent it (see :mod:`dispatch.terminal`)."""
        return self._terminal.current_order(unit_id)

    def move_order(
        self,
        unit_id: str,
        alert_id: int,
        status: AlertStatus,
        *,
        actor: str,
        outcome: CloseOutcome | None = None,
        note: str | None = None,
    ) -> Alert:
        """The unit moves its own order: acknowledged, en route, on scene, closed with an outcome.

        Raises
        ------
        dispatch.terminal.NotYourOrder
            The unit does not hold the alert (any more).
        Conflict
            The lifecycle does not allow the move.
        ValueError
            ``closed`` without an outcome (or an outcome with another move).
        """
        return self._terminal.move_order(unit_id, alert_id, status, actor=actor, outcome=outcome, note=note)

    def report_fix(
        self, unit_id: str, lat: float, lon: float, accuracy_m: float, *, actor: str, ts: datetime | None = None
    ) -> FixResult:
        """A handheld's position fix; one worse than the accuracy limit is flagged and not used.

        Raises
        ------
        Conflict
            The unit is a booth (fixed position).
        """
        return self._terminal.report_fix(unit_id, lat, lon, accuracy_m, actor=actor, ts=ts)

    def report_unit_status(self, unit_id: str, payload: bytes) -> RejectReason | None:
        """A status message from ``{root}/units/{unit_id}/status``; None when applied."""
        return self._intake.unit_message(
            unit_id,
            payload,
            UnitStatusReport,
            lambda m: self.set_unit_status(unit_id, UnitStatus(m.status), actor=f"unit:{unit_id}", alert_id=m.alert_id),
        )

    def report_unit_ack(self, unit_id: str, payload: bytes) -> RejectReason | None:
        """An acknowledgement from ``{root}/units/{unit_id}/ack``; None when applied."""
        return self._intake.unit_message(
            unit_id, payload, UnitAck, lambda m: self.acknowledge(m.alert_id, unit_id, actor=f"unit:{unit_id}")
        )
