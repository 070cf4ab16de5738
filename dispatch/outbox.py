"""Where the dispatch service's committed changes go: the listeners, the duplicate grid, the notifier.

Every collaborator of :class:`~dispatch.service.DispatchService` hands what it committed to one
:class:`Outbox`; nothing here undoes a change when a listener or the transport fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from dispatch.domain import Alert, Unit
from dispatch.ports import Ack, AlertUnitListener, Change, ChangeListener, Notifier, Order, PatrolPlan, PlanSender
from dispatch.recent import RecentAlerts

__all__ = ["Outbox"]

log = logging.getLogger(__name__)


class Outbox:
    """Tells listeners about committed changes and sends acks and orders through the notifier.

    Parameters
    ----------
    recent
        The open-alert grid duplicate linking reads; it hears every alert change first.
    notifier
        Sends acks and orders; may be attached later (the MQTT bridge attaches itself).
    """

    def __init__(self, recent: RecentAlerts, notifier: Notifier | None = None) -> None:
        self.recent = recent
        self.notifier = notifier
        self._listeners: list[ChangeListener | AlertUnitListener] = []

    def add_listener(self, listener: ChangeListener | AlertUnitListener) -> None:
        """Tell ``listener`` about every committed alert and unit change from now on.

        A listener with ``change_committed`` hears the change stream only (local and remote
        changes, in ``seq`` order, :meth:`deliver`); one without it hears ``alert_changed`` and
        ``unit_changed`` (local changes from :meth:`announce`, remote ones from :meth:`deliver`).
        """
        self._listeners.append(listener)

    def deliver(self, change: Change, remote: bool) -> None:
        """Hand one change of the stream to the listeners (the change stream calls this in ``seq`` order)."""
        for listener in self._listeners:
            try:
                committed = getattr(listener, "change_committed", None)
                if committed is not None:
                    committed(change)
                elif remote:
                    for alert in change.alerts:
                        listener.alert_changed(alert)
                    for unit in change.units:
                        listener.unit_changed(unit)
            except Exception:
                log.exception("change listener %r failed on change %d", listener, change.seq)

    def announce(self, *, alerts: Iterable[Alert] = (), units: Iterable[Unit | None] = ()) -> None:
        """Hand committed changes to the listeners; a failing listener never undoes a change."""
        for alert in (alerts := tuple(alerts)):
            self.recent.changed(alert)
        for listener in self._listeners:
            if hasattr(listener, "change_committed"):
                continue  # it hears these from the change stream
            try:
                for alert in alerts:
                    listener.alert_changed(alert)
                for unit in units:
                    if unit is not None:
                        listener.unit_changed(unit)
            except Exception:
                log.exception("change listener %r failed", listener)

    def send_ack(self, device_id: str, ack: Ack) -> None:
        """Answer an SOS device; a failure is logged (the alert is committed, that stands)."""
        if self.notifier is None:
            return
        try:
            self.notifier.send_ack(device_id, ack)
        except Exception:  # the alert is committed; a failed ack must not undo that
            log.exception("could not send ack for event %r to device %r", ack.event_id, device_id)

    def send_order(self, unit_id: str, order: Order) -> None:
        """Send an order to a unit; a failure is logged (the deadline escalates an undelivered order)."""
        if self.notifier is None:
            return
        try:
            self.notifier.send_order(unit_id, order)
        except Exception:  # the assignment is committed; the deadline escalates an undelivered order
            log.exception("could not send order %d to unit %r", order.order_id, unit_id)

    def send_plan(self, unit_id: str, plan: PatrolPlan) -> bool:
        """Send a unit its patrol plan; False when no transport sends plans or sending failed (logged)."""
        if not isinstance(self.notifier, PlanSender):
            return False
        try:
            self.notifier.send_plan(unit_id, plan)
        except Exception:  # the issue is recorded; the commander sees which units did not get it
            log.exception("could not send plan %s (patrol %s) to unit %r", plan.plan_id, plan.patrol_id, unit_id)
            return False
        return True
