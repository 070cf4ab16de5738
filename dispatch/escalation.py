"""Escalation: an order whose unit did not acknowledge by its deadline goes to the next unit.

:class:`Escalator` finds the overdue orders, records the miss, frees the unit, ranks the alert
again and proposes the best unit not yet tried (or assigns it at once for a P1 SOS alert when
auto-assignment is on). Its :class:`~dispatch.watcher.Watcher` checks the deadlines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from dispatch.assignment import Dispatcher, locked_alert, moved
from dispatch.counters import ServiceCounters
from dispatch.domain import SYSTEM, AlertSource, AlertStatus, Assignment
from dispatch.errors import Conflict, NotFound
from dispatch.fleet import Fleet
from dispatch.intake import Rejected
from dispatch.lifecycle import DispatchPolicy, next_proposal
from dispatch.outbox import Outbox
from dispatch.store import Store, StoreError, alert_snapshot
from dispatch.watcher import Watcher

__all__ = ["Escalator"]

log = logging.getLogger(__name__)


class Escalator:
    """Escalates orders that missed their acknowledgement deadline.

    Parameters
    ----------
    store
        Where the misses, the freed units and the re-ranked alerts are committed.
    fleet
        The units: frees the one that missed, ranks again.
    dispatcher
        Assigns the next unit of a P1 SOS alert (auto-assignment).
    policy
        The acknowledgement deadline and auto-assignment.
    clock
        The current UTC time.
    outbox
        Hears committed changes.
    counters
        Counts escalations.
    """

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        dispatcher: Dispatcher,
        *,
        policy: DispatchPolicy,
        clock: Callable[[], datetime],
        outbox: Outbox,
        counters: ServiceCounters,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.dispatcher = dispatcher
        self.policy = policy
        self.clock = clock
        self.outbox = outbox
        self.counters = counters
        self._watcher: Watcher | None = None

    def escalate_overdue(self) -> list[int]:
        """Escalate every alert whose unit missed its acknowledgement deadline; return their ids."""
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
                        self.dispatcher.assign(a.alert_id, proposal, actor=SYSTEM, auto=True, reason="escalation")
                    except Conflict as e:
                        log.warning("auto-assignment after escalation of alert %d refused: %s", a.alert_id, e)
        return escalated

    def _escalate(self, a: Assignment, now: datetime) -> str | None:
        with self.fleet.writes:  # the unit that missed is freed: see dispatch.fleet
            with self.store.transaction(f"escalate alert {a.alert_id}") as tx:
                alert = locked_alert(tx, a.alert_id)
                # The order as committed, read under the alert's lock: another escalator (a leader
                # that has not yet seen it lost its lock, e.g. across a database restart) may have
                # escalated it since ``overdue_assignments`` was read, or the unit acknowledged it.
                settled = next((x for x in tx.assignments(a.alert_id) if x.id == a.id), None)
                if settled is None or settled.missed_at is not None or settled.acknowledged_at is not None:
                    msg = f"order {a.id} of alert {a.alert_id} was settled meanwhile"
                    raise Conflict(msg)
                a = settled
                a.missed_at = now
                tx.save_assignment(a)
                if alert.status is not AlertStatus.ASSIGNED or alert.assigned_unit_id != a.unit_id:
                    tx.audit(
                        "order_lapsed",
                        actor=SYSTEM,
                        alert_id=a.alert_id,
                        unit_id=a.unit_id,
                        after={"order_id": a.id},
                        only_changes=False,
                    )
                    return None
                unit = tx.unit(a.unit_id) or self.fleet.find(a.unit_id)  # the database's, locked
                freed = None
                if unit is not None and unit.alert_id == a.alert_id:
                    freed = self.fleet.release(tx, unit, alert_id=a.alert_id, actor=SYSTEM)
                    # Placed before the ranking below, as it may be proposed again only if untried.
                    self.fleet.put(freed)
                try:
                    recs, _ = self.fleet.rank(alert.lat, alert.lon)
                except Rejected:
                    recs = alert.recommendations
                tried = {x.unit_id for x in tx.assignments(a.alert_id)}
                proposal = next_proposal(recs, tried)
                updated = moved(alert, AlertStatus.RECOMMENDED, now)
                updated.recommendations = recs
                updated.escalations = alert.escalations + 1
                updated.assigned_unit_id = None
                updated.proposed_unit_id = None if proposal is None else proposal.unit_id
                tx.save_alert(updated)
                after = alert_snapshot(updated)
                after.update(missed_unit_id=a.unit_id, order_id=a.id, deadline=a.ack_due_at.isoformat())
                tx.audit(
                    "escalation",
                    actor=SYSTEM,
                    alert_id=a.alert_id,
                    unit_id=a.unit_id,
                    before=alert_snapshot(alert),
                    after=after,
                )
            self.counters.escalated()
            self.outbox.announce(alerts=(updated,), units=(freed,))
        log.warning(
            "alert %d escalated: unit %s did not acknowledge by %s; proposing %s",
            a.alert_id,
            a.unit_id,
            a.ack_due_at.isoformat(),
            updated.proposed_unit_id or "nobody",
        )
        return updated.proposed_unit_id

    def start_watcher(self, *, interval_s: float | None = None, when: Callable[[], bool] | None = None) -> None:
        """Check acknowledgement deadlines from a background thread until :meth:`close` (while ``when()``)."""
        if self._watcher is not None:
            return
        interval = interval_s or max(0.05, min(1.0, self.policy.ack_deadline.total_seconds() / 20))
        self._watcher = Watcher(
            self.escalate_overdue,
            interval_s=interval,
            name="qorgau-deadlines",
            what="deadline check",
            retry_on=(StoreError,),
            when=when,
        )
        self._watcher.start()

    def close(self) -> None:
        """Stop the deadline watcher."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
