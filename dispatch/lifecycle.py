"""The control room's rules as plain functions: lifecycle, duplicates, location quality,
freshness and staffing of units, ranking with penalties, escalation. No I/O here.

Lifecycle::

    new -> recommended -> assigned -> acknowledged -> en_route -> on_scene -> closed
     \\________________\\__________\\______________\\__________\\__ cancelled | false_alarm (with a reason)

An escalation moves ``assigned`` back to ``recommended`` (or to ``assigned`` with the next unit);
a dispatcher may re-assign an alert that is recommended, assigned or acknowledged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum

from dispatch.domain import Alert, AlertSource, AlertStatus, Unit, UnitKind, UnitStatus, parse_hhmm
from geo import Recommendation, great_circle_m
from geo.distance import EARTH_RADIUS_M

__all__ = [
    "CLOSING",
    "NEEDS_REASON",
    "OPEN",
    "TRANSITIONS",
    "DispatchPolicy",
    "StalePolicy",
    "TransitionRefused",
    "check_transition",
    "distance_m",
    "find_duplicate",
    "is_staffed",
    "is_stale",
    "location_unverified",
    "next_proposal",
    "rank_units",
    "stamp_transition",
]

S = AlertStatus

TRANSITIONS: Mapping[AlertStatus, frozenset[AlertStatus]] = {
    S.NEW: frozenset({S.RECOMMENDED, S.ASSIGNED, S.CANCELLED, S.FALSE_ALARM}),
    S.RECOMMENDED: frozenset({S.ASSIGNED, S.CANCELLED, S.FALSE_ALARM}),
    S.ASSIGNED: frozenset({S.ASSIGNED, S.RECOMMENDED, S.ACKNOWLEDGED, S.CANCELLED, S.FALSE_ALARM}),
    S.ACKNOWLEDGED: frozenset({S.ASSIGNED, S.EN_ROUTE, S.ON_SCENE, S.CANCELLED, S.FALSE_ALARM}),
    S.EN_ROUTE: frozenset({S.ON_SCENE, S.CANCELLED, S.FALSE_ALARM}),
    S.ON_SCENE: frozenset({S.CLOSED, S.FALSE_ALARM}),
    S.CLOSED: frozenset(),
    S.CANCELLED: frozenset(),
    S.FALSE_ALARM: frozenset(),
    S.TEST: frozenset(),
}
"""Allowed moves from each state. Closing states and test presses allow none: nothing is reopened or deleted."""

CLOSING = frozenset({S.CLOSED, S.CANCELLED, S.FALSE_ALARM})
NEEDS_REASON = frozenset({S.CANCELLED, S.FALSE_ALARM})
OPEN = frozenset(s for s in AlertStatus if s not in CLOSING and s is not S.TEST)

_STAMP = {
    S.RECOMMENDED: "recommended_at",
    S.ASSIGNED: "assigned_at",
    S.ACKNOWLEDGED: "acknowledged_at",
    S.EN_ROUTE: "en_route_at",
    S.ON_SCENE: "on_scene_at",
    S.CLOSED: "closed_at",
    S.CANCELLED: "closed_at",
    S.FALSE_ALARM: "closed_at",
}


class TransitionRefused(ValueError):
    """The state machine does not allow this move; ``current`` is the alert's state now."""

    def __init__(self, current: AlertStatus, target: AlertStatus, detail: str) -> None:
        super().__init__(detail)
        self.current = current
        self.target = target


def check_transition(current: AlertStatus, target: AlertStatus, *, reason: str | None = None) -> None:
    """Refuse a move the lifecycle does not allow, or a closing state without a reason.

    Raises
    ------
    TransitionRefused
        Naming both states.
    """
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none: it is closed"
        msg = f"an alert in state {current.value!r} cannot move to {target.value!r} (allowed: {allowed})"
        raise TransitionRefused(current, target, msg)
    if target in NEEDS_REASON and not (reason and reason.strip()):
        msg = f"moving an alert to {target.value!r} needs a reason"
        raise TransitionRefused(current, target, msg)


def stamp_transition(alert: Alert, target: AlertStatus, now: datetime, *, reason: str | None = None) -> Alert:
    """Return a copy of ``alert`` moved to ``target``; the first time in a state is kept for response times."""
    check_transition(alert.status, target, reason=reason)
    moved = alert.copy()
    moved.status = target
    field = _STAMP.get(target)
    if field is not None and getattr(moved, field) is None:
        setattr(moved, field, now)
    if target in CLOSING:
        moved.close_reason = reason.strip() if reason else None
        moved.proposed_unit_id = None
    return moved


# -- duplicates and location quality ----------------------------------------------------------

distance_m = great_circle_m
"""Great-circle (haversine) distance in metres: :func:`geo.great_circle_m`, under its old name for callers."""


def find_duplicate(
    alert: Alert,
    candidates: Iterable[Alert],
    *,
    radius_m: float = 100.0,
    window: timedelta = timedelta(minutes=10),
) -> Alert | None:
    """The open alert ``alert`` probably repeats: same source type, within ``radius_m`` and ``window``.

    The earliest such alert wins, and an alert that is itself a duplicate points at its original.
    """
    best: Alert | None = None
    # Lower bounds of the great-circle distance, to skip most candidates without it (a batch of a
    # burst compares each press with every earlier one): |dlat| * R, and from the haversine's
    # a >= cos(lat1) cos(lat2) sin^2(dlon / 2).
    max_dlat = radius_m / EARTH_RADIUS_M
    cos_lat = math.cos(math.radians(alert.lat))
    sin_half = math.sin(min(max_dlat, math.pi) / 2)
    for other in candidates:
        if other.id is None or other.id == alert.id or other.source is not alert.source:
            continue
        if other.status not in OPEN or alert.received_at - other.received_at > window:
            continue
        if other.received_at > alert.received_at:
            continue
        if abs(math.radians(other.lat - alert.lat)) > max_dlat:
            continue
        lon_bound = cos_lat * math.cos(math.radians(other.lat)) * math.sin(math.radians(other.lon - alert.lon) / 2) ** 2
        if lon_bound > sin_half**2:
            continue
        if great_circle_m(alert.lat, alert.lon, other.lat, other.lon) > radius_m:
            continue
        if best is None or (other.received_at, other.id) < (best.received_at, best.id):
            best = other
    return best


def location_unverified(source: AlertSource, accuracy_m: float | None, *, threshold_m: float) -> bool:
    """A 102 report whose position is less accurate than ``threshold_m`` is flagged "location unverified"."""
    return source is AlertSource.APP102 and accuracy_m is not None and accuracy_m > threshold_m


# -- units: freshness, staffing, ranking ------------------------------------------------------


class StalePolicy(StrEnum):
    """What ranking does with a patrol whose last position is too old."""

    PENALTY = "penalty"
    """Rank it with ``stale_penalty_s`` added to its ETA."""
    EXCLUDE = "exclude"
    """Do not recommend it."""


def is_stale(unit: Unit, now: datetime, *, stale_after: timedelta, since: datetime) -> bool:
    """Whether a patrol's position is too old; booths never move, so never go stale.

    ``since`` stands in for a patrol that never reported: its seed position counts from then
    (usually the start of the service).
    """
    if unit.kind is UnitKind.BOOTH:
        return False
    seen = unit.position_ts or since
    return now - seen > stale_after


def is_staffed(unit: Unit, local: time) -> bool:
    """Whether a booth is staffed at local wall-clock time ``local``; patrols and unset hours always are.

    Hours may wrap midnight (``20:00``-``08:00``).
    """
    if unit.staff_from is None or unit.staff_to is None:
        return True
    start, end = parse_hhmm(unit.staff_from), parse_hhmm(unit.staff_to)
    if start == end:
        return True
    if start < end:
        return start <= local < end
    return local >= start or local < end


def recommendable(unit: Unit, local: time) -> bool:
    """Available, not retired, and (for a booth) staffed now."""
    return unit.status is UnitStatus.AVAILABLE and not unit.retired and is_staffed(unit, local)


@dataclass(frozen=True, slots=True)
class RankedUnit:
    """A recommendation after freshness: ``eta_s`` includes any stale penalty."""

    recommendation: Recommendation
    stale: bool


def rank_units(
    found: Sequence[Recommendation],
    stale: frozenset[str] | set[str],
    *,
    policy: StalePolicy,
    penalty_s: float,
    k: int | None,
) -> tuple[Recommendation, ...]:
    """Apply the freshness policy to ETA-ranked units and keep the best ``k``.

    A stale unit is dropped (``exclude``) or ranked with ``penalty_s`` added (``penalty``); its
    recommendation then carries the penalised ``eta_s`` so the list stays sorted by what the
    dispatcher can expect.
    """
    ranked = []
    for r in found:
        if r.unit_id in stale:
            if policy is StalePolicy.EXCLUDE:
                continue
            r = Recommendation(r.unit_id, r.unit_kind, r.eta_s + penalty_s, r.distance_m)
        ranked.append(r)
    ranked.sort(key=lambda r: (r.eta_s, r.unit_id))
    return tuple(ranked if k is None else ranked[:k])


# -- escalation -------------------------------------------------------------------------------


def next_proposal(recommendations: Sequence[Recommendation], tried: Iterable[str]) -> Recommendation | None:
    """After a missed acknowledgement: the best recommended unit not yet tried for this alert."""
    skip = set(tried)
    return next((r for r in recommendations if r.unit_id not in skip), None)


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """The control room's settings, as the service applies them.

    Parameters
    ----------
    priority_by_category
        102 report category (lower case) -> priority; other categories are P3.
    location_accuracy_max_m
        A 102 report with a worse ``accuracy_m`` is flagged "location unverified"; a handheld's
        position fix with a worse accuracy is flagged and not used (:mod:`dispatch.terminal`).
    duplicate_radius_m, duplicate_window
        A new alert this close in space and time to an open one of the same source type is linked to it.
    stale_after
        A patrol whose last position is older than this is stale.
    stale_policy, stale_penalty_s
        Whether stale patrols are ranked with a penalty (seconds added to the ETA) or excluded.
    ack_deadline
        How long a unit has to acknowledge an order before the alert escalates.
    auto_assign_p1
        Assign P1 SOS alerts to the top recommendation without waiting for a dispatcher (and, after a
        missed acknowledgement, to the next one).
    timezone
        The city's zone, for booth staffing hours and local-time reports.
    position_retention
        How long the position history (every accepted position, for dosage) is kept; None keeps it.
    changes_retention
        How long the change stream (table ``changes``: the live map's replay, the replicas' feed) is
        kept; the leader prunes it every ten minutes. None keeps it.
    follower_hold
        Replicas (PostgreSQL): how long at most a replica that is not the leader waits, from
        receipt, for the leader to commit a press it also received (it answers with the leader's
        alert), while the leader lives; what is not committed then it ranks and commits itself.
        Zero: every replica ranks every press at once.
    """

    priority_by_category: Mapping[str, int] = dataclasses.field(default_factory=dict)
    location_accuracy_max_m: float = 50.0
    duplicate_radius_m: float = 100.0
    duplicate_window: timedelta = timedelta(minutes=10)
    stale_after: timedelta = timedelta(seconds=120)
    stale_policy: StalePolicy = StalePolicy.PENALTY
    stale_penalty_s: float = 300.0
    ack_deadline: timedelta = timedelta(seconds=30)
    auto_assign_p1: bool = False
    timezone: str = "Asia/Almaty"
    position_retention: timedelta | None = timedelta(days=120)
    changes_retention: timedelta | None = timedelta(hours=24)
    follower_hold: timedelta = timedelta(seconds=2)

    def __post_init__(self) -> None:
        if self.ack_deadline <= timedelta(0):
            msg = f"ack_deadline must be positive, got {self.ack_deadline}"
            raise ValueError(msg)
        if self.follower_hold < timedelta(0):
            msg = f"follower_hold must not be negative, got {self.follower_hold}"
            raise ValueError(msg)
        bad = {k: v for k, v in self.priority_by_category.items() if not (isinstance(v, int) and 1 <= v <= 5)}
        if bad:
            msg = f"priorities of 102 categories must be integers 1..5, got {bad}"
            raise ValueError(msg)
        object.__setattr__(self, "stale_policy", StalePolicy(self.stale_policy))
        object.__setattr__(self, "priority_by_category", {k.lower(): v for k, v in self.priority_by_category.items()})
