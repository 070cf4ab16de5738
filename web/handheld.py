"""The officer's handheld, server side: the order as a unit sees it, and the unit's own event stream.

:func:`order_json` is the contract's ``Order`` (priority, source and site, the nearest street's
name, distance, ETA, times, the acknowledgement deadline and the route on the city's streets).
:class:`HandheldFeed` hears the global change stream (a :class:`~dispatch.ports.ChangeListener`
with ``change_committed``, every change of every replica in ``seq`` order) and files, in the live
map's feed (:class:`~web.live_feed.LiveFeed`), events meant for one unit only, each with the
``seq`` of the change it follows from (so ``Last-Event-ID`` replay is the map's own, on any replica):

- ``order``: an alert change that leaves the alert open and assigned to the unit: its new order,
  or its order's status changed (data: the Order);
- ``withdrawn``: a unit change that takes away the alert the unit held (data: ``alert_id``,
  ``order_id``, ``reason``: ``reassigned`` | ``cancelled`` | ``closed``).

Each is derived from the committed change alone (and the database), never from this replica's
memory of the fleet, so every replica derives the same events for the same change. They are
derived only for a unit whose handheld this replica is listened for (``LiveFeed.listened``): the
reads and the route of an order are not spent on every change for units nobody watches here.

The route is ``GET /unit/events`` (:mod:`web.routes.handheld`).
"""

from __future__ import annotations

import logging
import threading
from itertools import pairwise
from typing import Any

from dispatch.domain import Alert, AlertStatus, Unit
from dispatch.lifecycle import CLOSING, OPEN
from dispatch.ports import Change
from dispatch.service import DispatchService, NotFound
from dispatch.terminal import CurrentOrder
from geo import great_circle_m
from web.live_feed import LiveFeed

__all__ = ["HandheldFeed", "audience", "order_json", "order_of"]

log = logging.getLogger(__name__)


def audience(unit_id: str) -> str:
    """The feed audience of one unit's handheld."""
    return f"unit:{unit_id}"


def _route_metres(points: tuple[tuple[float, float], ...]) -> float:
    return sum(great_circle_m(a[0], a[1], b[0], b[1]) for a, b in pairwise(points))


def order_json(service: DispatchService, current: CurrentOrder) -> dict[str, Any] | None:
    """The unit's order as the handheld shows it (the contract's ``Order``), or None without one."""
    alert, assignment, unit = current.alert, current.assignment, current.unit
    if alert is None or alert.id is None:
        return None
    route = service.route_to_alert(alert.id, unit.id)
    eta = assignment.eta_s if assignment is not None else None
    if eta is None:
        eta = next((r.eta_s for r in alert.recommendations if r.unit_id == unit.id), None)
    device = service.devices.get(alert.sender) if alert.source.value == "sos" else None
    street = service.router.street_name(alert.lat, alert.lon)
    waiting = assignment is not None and assignment.acknowledged_at is None and alert.status is AlertStatus.ASSIGNED
    return {
        "order_id": str(assignment.id) if assignment is not None else f"{alert.id}:{unit.id}",
        "alert_id": alert.id,
        "status": alert.status.value,
        "priority": f"P{alert.priority}",
        "source": alert.source.value,
        "site": None if alert.site is None else alert.site.value,
        "site_label": None if device is None else str(getattr(device, "name", None) or device.id),
        "lat": alert.lat,
        "lon": alert.lon,
        "street": street,
        "distance_m": round(_route_metres(route), 1) if len(route) >= 2 else None,
        "eta_s": None if eta is None else round(float(eta), 1),
        "alert_at": alert.received_at.isoformat(),
        "assigned_at": (
            assignment.assigned_at if assignment is not None else alert.assigned_at or alert.received_at
        ).isoformat(),
        "ack_deadline": assignment.ack_due_at.isoformat() if waiting and assignment is not None else None,
        "route": [[round(lat, 7), round(lon, 7)] for lat, lon in route],
    }


def order_of(service: DispatchService, unit_id: str) -> dict[str, Any] | None:
    """The current Order of ``unit_id`` (None without one)."""
    return order_json(service, service.current_order(unit_id))


class HandheldFeed:
    """Turns committed alert and unit changes into each unit's ``order`` and ``withdrawn`` events.

    Parameters
    ----------
    service
        The dispatch service (for the orders' routes and street names).
    feed
        The numbered feed the events are filed in, with the unit's audience.
    """

    def __init__(self, service: DispatchService, feed: LiveFeed) -> None:
        self._service = service
        self._feed = feed
        self._lock = threading.Lock()
        self._held: dict[str, int] = {u.id: u.alert_id for u in service.units() if u.alert_id is not None}

    def alert_changed(self, alert: Alert) -> None:
        """Not called: this listener hears :meth:`change_committed`."""

    def unit_changed(self, unit: Unit) -> None:
        """Not called: this listener hears :meth:`change_committed`."""

    def change_committed(self, change: Change) -> None:
        for alert in change.alerts:
            self._alert(change.seq, alert)
        for unit in change.units:
            self._unit(change.seq, unit)
        for plan in change.plans:  # the handheld reloads its plan (GET /api/units/{id}/plan)
            for unit_id in plan.get("units", ()):
                notice = {"plan_id": plan.get("plan_id"), "unit_id": unit_id, "issued_at": plan.get("issued_at")}
                self._feed.publish("plan", notice, seq=change.seq, audience=audience(str(unit_id)))

    def _alert(self, seq: int, alert: Alert) -> None:
        unit_id = alert.assigned_unit_id
        if unit_id is None or alert.id is None or alert.status not in OPEN:
            return
        with self._lock:
            self._held[unit_id] = alert.id
        if not self._feed.listened(audience(unit_id)):
            return  # no handheld of the unit here: it reads its order when it connects
        try:
            unit = self._service.get_unit(unit_id)
        except NotFound:
            return
        orders = [a for a in self._service.assignments(alert.id) if a.unit_id == unit_id]
        order = order_json(self._service, CurrentOrder(unit, alert, orders[-1] if orders else None))
        if order is not None:
            self._feed.publish("order", order, seq=seq, audience=audience(unit_id))

    def _unit(self, seq: int, unit: Unit) -> None:
        with self._lock:
            before = self._held.get(unit.id)
            if unit.alert_id is None:
                self._held.pop(unit.id, None)
            else:
                self._held[unit.id] = unit.alert_id
        if before is None or before == unit.alert_id or not self._feed.listened(audience(unit.id)):
            return
        alert = self._service.store.get_alert(before)
        if alert is None:
            return
        if alert.status is AlertStatus.CLOSED:
            reason = "closed"
        elif alert.status in CLOSING:
            reason = "cancelled"
        else:
            reason = "reassigned"
        orders = [a for a in self._service.assignments(before) if a.unit_id == unit.id]
        data = {"alert_id": before, "order_id": str(orders[-1].id) if orders else None, "reason": reason}
        self._feed.publish("withdrawn", data, seq=seq, audience=audience(unit.id))
        log.info("order of alert %d withdrawn from unit %s (%s)", before, unit.id, reason)
