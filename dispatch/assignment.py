"""The alert lifecycle and assignment: re-ranking, orders, acknowledgements, moves, closing.

:class:`Dispatcher` changes committed alerts: each change reads the alert locked inside its
transaction (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite runs one write transaction at a time),
so the database judges concurrent changes of one alert. Changes that also change a unit, and
acknowledgements (see :meth:`Dispatcher.acknowledge`), hold the fleet's ``writes`` lock across the
transaction (see :mod:`dispatch.fleet` for why); re-ranking and unlinking a duplicate change only
the alert and take no lock of ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from dispatch.domain import SYSTEM, Alert, AlertStatus, Assignment, CloseOutcome, Unit, UnitStatus
from dispatch.errors import Conflict, NotFound
from dispatch.fleet import Fleet
from dispatch.intake import Rejected
from dispatch.lifecycle import (
    CLOSING,
    DispatchPolicy,
    TransitionRefused,
    stamp_transition,
)
from dispatch.outbox import Outbox
from dispatch.ports import Order
from dispatch.store import Store, Tx, alert_snapshot, unit_snapshot

__all__ = ["Dispatcher", "locked_alert", "moved"]

log = logging.getLogger(__name__)


def locked_alert(tx: Tx, alert_id: int) -> Alert:
    """The alert, locked in ``tx`` until it commits; NotFound if there is none."""
    alert = tx.alert(alert_id)
    if alert is None:
        msg = f"alert {alert_id} does not exist"
        raise NotFound(msg)
    return alert


def moved(alert: Alert, target: AlertStatus, now: datetime, *, reason: str | None = None) -> Alert:
    """A copy of ``alert`` moved to ``target``; Conflict if the lifecycle forbids the move."""
    try:
        return stamp_transition(alert, target, now, reason=reason)
    except TransitionRefused as e:
        raise Conflict(str(e), current=e.current.value) from e


class Dispatcher:
    """Moves alerts along their lifecycle and orders units to them.

    Parameters
    ----------
    store
        Where alerts, orders and audit entries are committed.
    fleet
        The units: who is free, ranking, routes.
    policy
        The acknowledgement deadline.
    clock
        The current UTC time.
    outbox
        Hears committed changes and sends the orders.
    """

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        *,
        policy: DispatchPolicy,
        clock: Callable[[], datetime],
        outbox: Outbox,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.policy = policy
        self.clock = clock
        self.outbox = outbox

    def get_alert(self, alert_id: int) -> Alert:
        alert = self.store.get_alert(alert_id)
        if alert is None:
            msg = f"alert {alert_id} does not exist"
            raise NotFound(msg)
        return alert

    def assignments(self, alert_id: int) -> list[Assignment]:
        return self.store.assignments(alert_id)

    def recommend_again(self, alert_id: int, *, actor: str) -> Alert:
        """Rank the units again from their current positions (a new alert moves to ``recommended``)."""
        # Only the alert changes: its row lock judges; ranking takes the fleet's in-memory lock.
        with self.store.transaction(f"re-rank alert {alert_id}") as tx:
            alert = locked_alert(tx, alert_id)
            if alert.status in CLOSING or alert.status is AlertStatus.TEST:
                msg = f"alert {alert_id} is {alert.status.value}: nothing to recommend"
                raise Conflict(msg, current=alert.status.value)
            try:
                recs, _ = self.fleet.rank(alert.lat, alert.lon)
            except Rejected as e:
                raise Conflict(e.detail, current=alert.status.value) from e
            updated = alert.copy()
            updated.recommendations = recs
            if alert.status is AlertStatus.NEW and recs:
                updated = moved(updated, AlertStatus.RECOMMENDED, self.clock())
            tx.save_alert(updated)
            tx.audit(
                "recommend", actor=actor, alert_id=alert_id, before=alert_snapshot(alert), after=alert_snapshot(updated)
            )
        self.outbox.announce(alerts=(updated,))
        return updated

    def auto_assign(self, alert: Alert) -> None:
        """Assign a new alert to its first recommended unit that is still free."""
        assert alert.id is not None
        for rec in alert.recommendations:
            try:
                self.assign(alert.id, rec.unit_id, actor=SYSTEM, auto=True)
                return
            except Conflict as e:  # taken meanwhile: try the next one
                log.info("auto-assignment of alert %d to %s refused: %s", alert.id, rec.unit_id, e)

    def assign(
        self,
        alert_id: int,
        unit_id: str,
        *,
        actor: str,
        reason: str | None = None,
        auto: bool = False,
    ) -> Alert:
        """Order ``unit_id`` to the alert (see :meth:`DispatchService.assign`)."""
        now = self.clock()
        with self.fleet.writes:  # the unit is judged free in memory: see dispatch.fleet
            unit = self.fleet.unit(unit_id)
            with self.store.transaction(f"assign unit {unit_id!r} to alert {alert_id}") as tx:
                alert = locked_alert(tx, alert_id)
                check = moved(alert, AlertStatus.ASSIGNED, now)
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
                released = self._release_previous(tx, alert, actor=actor)
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
                tx.audit(
                    "unit_change",
                    actor=actor,
                    unit_id=unit_id,
                    alert_id=alert_id,
                    before=unit_snapshot(unit),
                    after=unit_snapshot(busy),
                )
            route = self.fleet.route(busy, alert)
            self.fleet.put(*released)
            self.fleet.take_off_router(busy)
            self.outbox.announce(alerts=(updated,), units=(*released, busy))
        log.info("alert %d assigned to %s by %s%s", alert_id, unit_id, actor, " (override)" if override else "")
        self._send_order(assignment, updated, route)
        return updated

    def _release_previous(self, tx: Tx, alert: Alert, *, actor: str) -> list[Unit]:
        """Free the unit that held the alert before a re-assignment; its unanswered order lapses."""
        if alert.assigned_unit_id is None:
            return []
        previous = self.fleet.find(alert.assigned_unit_id)
        if previous is None or previous.alert_id != alert.id:
            return []
        return [self.fleet.release(tx, previous, alert_id=alert.id, actor=actor)]

    def route_to_alert(self, alert_id: int, unit_id: str) -> tuple[tuple[float, float], ...]:
        """The unit's fastest street route to the alert (see :meth:`DispatchService.route_to_alert`)."""
        alert = self.get_alert(alert_id)
        return self.fleet.route(self.fleet.get(unit_id), alert)

    def _send_order(self, a: Assignment, alert: Alert, route: tuple[tuple[float, float], ...]) -> None:
        if a.id is None or alert.id is None:
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
        self.outbox.send_order(a.unit_id, order)

    def acknowledge(self, alert_id: int, unit_id: str, *, actor: str) -> Alert:
        """The unit confirms its order (see :meth:`DispatchService.acknowledge`)."""
        now = self.clock()
        # Only the alert and its orders change, but ``writes`` stays: a unit's en_route/on_scene
        # report acknowledges and moves its alert under it as one step (see unit_moves); an
        # acknowledgement slipping between the two would refuse the report with a Conflict.
        with self.fleet.writes, self.store.transaction(f"acknowledge alert {alert_id} by {unit_id!r}") as tx:
            alert = locked_alert(tx, alert_id)
            if alert.status is not AlertStatus.ASSIGNED or alert.assigned_unit_id != unit_id:
                holder = alert.assigned_unit_id or "no unit"
                msg = f"alert {alert_id} is {alert.status.value} for {holder}: no order of unit {unit_id!r} to acknowledge"
                raise Conflict(msg, current=alert.status.value)
            pending = [
                a
                for a in tx.assignments(alert_id)
                if a.unit_id == unit_id and a.acknowledged_at is None and a.missed_at is None
            ]
            updated = moved(alert, AlertStatus.ACKNOWLEDGED, now)
            for a in pending:
                a.acknowledged_at = now
                tx.save_assignment(a)
            tx.save_alert(updated)
            after = alert_snapshot(updated)
            after["ack_after_s"] = round((now - pending[-1].assigned_at).total_seconds(), 3) if pending else None
            tx.audit("ack", actor=actor, alert_id=alert_id, unit_id=unit_id, before=alert_snapshot(alert), after=after)
        self.outbox.announce(alerts=(updated,))
        log.info("alert %d acknowledged by %s", alert_id, unit_id)
        return updated

    def transition(
        self,
        alert_id: int,
        target: AlertStatus,
        *,
        actor: str,
        reason: str | None = None,
        outcome: CloseOutcome | None = None,
        note: str | None = None,
    ) -> Alert:
        """Move an alert along its lifecycle (see :meth:`DispatchService.transition`)."""
        target = AlertStatus(target)
        if outcome is not None and target is not AlertStatus.CLOSED:
            msg = f"an outcome closes an alert: it cannot go with a move to {target.value!r}"
            raise Conflict(msg)
        if target in (
            AlertStatus.ASSIGNED,
            AlertStatus.ACKNOWLEDGED,
            AlertStatus.RECOMMENDED,
            AlertStatus.NEW,
            AlertStatus.TEST,
        ):
            msg = f"use the assign, acknowledge or recommend actions to move an alert to {target.value!r}"
            raise Conflict(msg)
        now = self.clock()
        with self.fleet.writes:  # the alert's unit changes too: see dispatch.fleet
            with self.store.transaction(f"move alert {alert_id} to {target.value}") as tx:
                alert = locked_alert(tx, alert_id)
                updated = moved(alert, target, now, reason=reason)
                if outcome is not None:
                    updated.outcome = CloseOutcome(outcome)
                    updated.close_note = note.strip() if note and note.strip() else None
                tx.save_alert(updated)
                tx.audit(
                    "state_change",
                    actor=actor,
                    alert_id=alert_id,
                    unit_id=alert.assigned_unit_id,
                    before=alert_snapshot(alert),
                    after=alert_snapshot(updated),
                )
                unit = self.fleet.find(alert.assigned_unit_id or "")
                changed = None
                if unit is not None and unit.alert_id == alert_id:
                    changed = unit.copy()
                    if target in CLOSING:
                        changed.status, changed.alert_id = UnitStatus.AVAILABLE, None
                    else:
                        changed.status = UnitStatus(target.value)
                    if changed.status is not unit.status or changed.alert_id != unit.alert_id:
                        tx.save_unit(changed)
                        tx.audit(
                            "unit_change",
                            actor=actor,
                            unit_id=unit.id,
                            alert_id=alert_id,
                            before=unit_snapshot(unit),
                            after=unit_snapshot(changed),
                        )
            if changed is not None:
                self.fleet.put(changed)
            self.outbox.announce(alerts=(updated,), units=(changed,))
        log.info("alert %d %s -> %s by %s", alert_id, alert.status.value, target.value, actor)
        return updated

    def set_unit_status(self, unit_id: str, status: UnitStatus, *, actor: str, alert_id: int | None = None) -> Unit:
        """A unit's status (see :meth:`DispatchService.set_unit_status`): moving ones move their alert."""
        status = UnitStatus(status)
        if status is UnitStatus.ASSIGNED:
            msg = "a unit becomes 'assigned' by an assignment, not by a status change"
            raise Conflict(msg)
        with self.fleet.writes:  # the unit is judged in memory: see dispatch.fleet
            unit = self.fleet.unit(unit_id)
            if unit.retired:
                msg = f"unit {unit_id!r} is retired"
                raise Conflict(msg, current="retired")
            if status in (UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE):
                self.unit_moves(unit, status, actor=actor, alert_id=alert_id)
                return self.fleet.get(unit_id)
            return self.fleet.set_status(unit, status, actor=actor)

    def unit_moves(self, unit: Unit, status: UnitStatus, *, actor: str, alert_id: int | None) -> None:
        """A unit reports ``en_route`` or ``on_scene``: its alert moves along (caller holds ``writes``).

        Moving counts as acknowledging an order not yet acknowledged.
        """
        held = unit.alert_id
        if held is None:
            msg = f"unit {unit.id!r} holds no alert: it cannot be {status.value}"
            raise Conflict(msg, current=unit.status.value)
        if alert_id is not None and alert_id != held:
            msg = f"unit {unit.id!r} holds alert {held}, not alert {alert_id}"
            raise Conflict(msg, current=unit.status.value)
        alert = self.get_alert(held)
        if alert.status is AlertStatus.ASSIGNED:  # moving counts as acknowledging the order
            self.acknowledge(held, unit.id, actor=actor)
        self.transition(held, AlertStatus(status.value), actor=actor)

    def unlink_duplicate(self, alert_id: int, *, actor: str) -> Alert:
        """Undo the duplicate link of an alert (the dispatcher knows better)."""
        with self.store.transaction(f"unlink alert {alert_id}") as tx:
            alert = locked_alert(tx, alert_id)
            if alert.duplicate_of is None:
                msg = f"alert {alert_id} is not linked to another alert"
                raise Conflict(msg, current=alert.status.value)
            updated = alert.copy()
            updated.duplicate_of = None
            tx.save_alert(updated)
            tx.audit(
                "unlink_duplicate",
                actor=actor,
                alert_id=alert_id,
                before=alert_snapshot(alert),
                after=alert_snapshot(updated),
            )
        self.outbox.announce(alerts=(updated,))
        return updated
