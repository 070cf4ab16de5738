"""The unit's terminal (the officer's handheld): its current order, its moves and its position fixes.

:class:`Terminal` is what a unit login may do, in the control room's words: read the order it
holds, move it along the same lifecycle as the dispatcher (acknowledge, en route, on scene, close
with an outcome), and report a position with its accuracy. Every move goes through
:class:`~dispatch.assignment.Dispatcher`, so the state machine and the audit trail are the
dispatcher's own; the actor is the unit's user.

A move names the alert it is meant for: when the unit no longer holds it (re-assigned,
withdrawn, escalated), :class:`NotYourOrder` says so instead of moving another alert. A fix less
accurate than ``DispatchPolicy.location_accuracy_max_m`` is flagged, counted and audited, and
never moves the unit (ranking keeps its last good position).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dispatch.assignment import Dispatcher
from dispatch.counters import ServiceCounters
from dispatch.domain import Alert, AlertStatus, Assignment, CloseOutcome, Unit, UnitKind, UnitStatus
from dispatch.errors import Conflict
from dispatch.fleet import Fleet
from dispatch.ingest import Intake
from dispatch.lifecycle import OPEN, DispatchPolicy
from dispatch.store import Store

__all__ = ["UNIT_MOVES", "CurrentOrder", "FixResult", "NotYourOrder", "Terminal"]

UNIT_MOVES = frozenset({AlertStatus.ACKNOWLEDGED, AlertStatus.EN_ROUTE, AlertStatus.ON_SCENE, AlertStatus.CLOSED})
"""The moves a unit makes on its own order."""


class NotYourOrder(Conflict):
    """The alert is not (or no longer) this unit's order: re-assigned, withdrawn or closed."""


@dataclass(frozen=True, slots=True)
class CurrentOrder:
    """What a unit holds now: the unit, and its open alert with the order that sent it (or None)."""

    unit: Unit
    alert: Alert | None
    assignment: Assignment | None


@dataclass(frozen=True, slots=True)
class FixResult:
    """What became of a position fix from a handheld."""

    accepted: bool
    """The unit moved (ranking uses the fix)."""
    flagged: bool
    """Less accurate than ``accuracy_max_m``: kept out of ranking, counted and audited."""
    reason: str | None
    """Why it was not used (a rejection reason such as ``stale_position``, or the accuracy)."""
    accuracy_max_m: float


class Terminal:
    """A unit's own view and actions (see the module docstring).

    Parameters
    ----------
    store, fleet, dispatcher, intake
        The service's collaborators.
    policy
        The accuracy limit of position fixes.
    counters
        Flagged fixes are counted here.
    clock
        The current UTC time.
    """

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        dispatcher: Dispatcher,
        intake: Intake,
        *,
        policy: DispatchPolicy,
        counters: ServiceCounters,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.dispatcher = dispatcher
        self.intake = intake
        self.policy = policy
        self.counters = counters
        self.clock = clock

    def current_order(self, unit_id: str) -> CurrentOrder:
        """The unit and the open alert it holds, with the order that sent it; NotFound for no such unit."""
        unit = self.fleet.get(unit_id)
        if unit.alert_id is None:
            return CurrentOrder(unit, None, None)
        alert = self.store.get_alert(unit.alert_id)
        if alert is None or alert.status not in OPEN or alert.assigned_unit_id != unit_id:
            return CurrentOrder(unit, None, None)
        orders = [a for a in self.store.assignments(unit.alert_id) if a.unit_id == unit_id]
        return CurrentOrder(unit, alert, orders[-1] if orders else None)

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
        """Move the unit's own order: ``acknowledged``, ``en_route``, ``on_scene`` or ``closed`` (with an outcome).

        Raises
        ------
        NotYourOrder
            The unit does not hold ``alert_id`` (any more).
        Conflict
            The lifecycle does not allow the move from the alert's state.
        ValueError
            ``closed`` without an outcome, or an outcome with another move.
        """
        status = AlertStatus(status)
        if status not in UNIT_MOVES:
            msg = f"a unit may move its order to {sorted(s.value for s in UNIT_MOVES)}, not {status.value!r}"
            raise ValueError(msg)
        if status is AlertStatus.CLOSED and outcome is None:
            msg = f"closing needs an outcome: one of {[o.value for o in CloseOutcome]}"
            raise ValueError(msg)
        if status is not AlertStatus.CLOSED and outcome is not None:
            msg = f"an outcome goes with 'closed' only, not with {status.value!r}"
            raise ValueError(msg)
        with self.fleet.writes:  # the unit must still hold the alert when it moves: see dispatch.fleet
            unit = self.fleet.unit(unit_id)
            if unit.alert_id != alert_id:
                holder = self.store.get_alert(alert_id)
                state = holder.status.value if holder is not None else None
                msg = f"alert {alert_id} is no longer an order of unit {unit_id!r}"
                raise NotYourOrder(msg, current=state)
            if status is AlertStatus.ACKNOWLEDGED:
                moved = self.dispatcher.acknowledge(alert_id, unit_id, actor=actor)
            elif status is AlertStatus.CLOSED:
                moved = self.dispatcher.transition(alert_id, status, actor=actor, outcome=outcome, note=note)
            else:
                self.dispatcher.unit_moves(unit, UnitStatus(status.value), actor=actor, alert_id=alert_id)
                moved = self.dispatcher.get_alert(alert_id)
        if note and note.strip() and status is not AlertStatus.CLOSED:
            self.store.audit(
                "unit_note",
                actor=actor,
                alert_id=alert_id,
                unit_id=unit_id,
                after={"status": status.value, "note": note.strip()},
            )
        return moved

    def report_fix(
        self, unit_id: str, lat: float, lon: float, accuracy_m: float, *, actor: str, ts: datetime | None = None
    ) -> FixResult:
        """A position fix from the handheld (see the module docstring).

        Raises
        ------
        NotFound
            No such unit.
        Conflict
            The unit is a booth: its position is fixed.
        """
        unit = self.fleet.get(unit_id)
        if unit.kind is UnitKind.BOOTH:
            msg = f"unit {unit_id!r} is a booth: its position is fixed and sends none"
            raise Conflict(msg, current="fixed_position")
        limit = self.policy.location_accuracy_max_m
        when = ts or self.clock()
        if accuracy_m > limit:
            self.counters.flagged_position()
            self.store.audit(
                "position_flagged",
                actor=actor,
                unit_id=unit_id,
                after={"lat": lat, "lon": lon, "accuracy_m": accuracy_m, "ts": when.isoformat(), "limit_m": limit},
            )
            reason = f"accuracy {accuracy_m:g} m is worse than the limit of {limit:g} m: not used for ranking"
            return FixResult(accepted=False, flagged=True, reason=reason, accuracy_max_m=limit)
        payload = json.dumps({"ts": when.isoformat(), "lat": lat, "lon": lon}).encode()
        refused = self.intake.unit_positions([(unit_id, payload)])[0]
        return FixResult(
            accepted=refused is None,
            flagged=False,
            reason=None if refused is None else refused.value,
            accuracy_max_m=limit,
        )
