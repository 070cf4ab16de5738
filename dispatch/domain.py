"""The dispatcher's vocabulary: alerts, units and SOS devices.

Plain dataclasses and enums with no I/O. Times are timezone-aware UTC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from enum import StrEnum

from geo import Recommendation

__all__ = [
    "SYSTEM",
    "Alert",
    "AlertSource",
    "AlertStatus",
    "Assignment",
    "CloseOutcome",
    "Device",
    "DeviceSite",
    "Role",
    "Unit",
    "UnitKind",
    "UnitStatus",
    "User",
    "alert_priority",
    "ensure_utc",
    "parse_hhmm",
]

APP102_SENDER = "app102"
"""The sender recorded for reports from the Police 102 app (it has no device id)."""

SYSTEM = "system"
"""The actor of changes the service makes by itself (ingest, auto-assignment, escalation, supervision)."""


class AlertSource(StrEnum):
    """Where an alert came from."""

    SOS = "sos"
    """An SOS button (emergency call point) was pressed."""
    APP102 = "app102"
    """A citizen reported through the Police 102 app."""


class AlertStatus(StrEnum):
    """Where an alert is in its life (the allowed moves are in :mod:`dispatch.lifecycle`)."""

    NEW = "new"
    """Received; no unit could be recommended yet."""
    RECOMMENDED = "recommended"
    """Units are ranked by ETA; the dispatcher is to assign one."""
    ASSIGNED = "assigned"
    """An order went to a unit; its acknowledgement is awaited (with a deadline)."""
    ACKNOWLEDGED = "acknowledged"
    """The unit confirmed the order."""
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    CLOSED = "closed"
    """Dealt with."""
    CANCELLED = "cancelled"
    """Closed without a response, with a reason."""
    FALSE_ALARM = "false_alarm"
    """Closed as a false alarm, with a reason."""
    TEST = "test"
    """A test press of an SOS button: recorded and ranked, but nobody is to be sent."""


class CloseOutcome(StrEnum):
    """How the unit on scene closed an alert (the handheld's Close button)."""

    RESOLVED = "resolved"
    """Dealt with on scene."""
    FALSE_ALARM = "false_alarm"
    """Nothing had happened (a false or mistaken press)."""
    NOBODY_FOUND = "nobody_found"
    """Nobody was there when the unit arrived."""
    HANDED_OVER = "handed_over"
    """Handed over to another service (ambulance, fire, investigators)."""


class UnitKind(StrEnum):
    """What kind of police unit this is; it decides how the unit moves."""

    BOOTH = "booth"
    """A staffed police booth (post); its officers respond on foot."""
    FOOT = "foot"
    """A foot patrol."""
    CAR = "car"
    """A patrol car."""


class UnitStatus(StrEnum):
    """What a unit is doing; only ``available`` units are recommended."""

    AVAILABLE = "available"
    ASSIGNED = "assigned"
    """Has an order it has not finished (acknowledged or not)."""
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    OFF_DUTY = "off_duty"
    """Not working: never recommended."""
    OFFLINE = "offline"


class DeviceSite(StrEnum):
    """Where an SOS button is installed; schools and hospitals come first."""

    STREET = "street"
    SCHOOL = "school"
    HOSPITAL = "hospital"
    OTHER = "other"


def ensure_utc(value: datetime, *, name: str = "time") -> datetime:
    """Return ``value`` converted to UTC; refuse naive datetimes.

    Raises
    ------
    ValueError
        If ``value`` has no timezone.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"{name} must be timezone-aware, got the naive datetime {value.isoformat()!r}"
        raise ValueError(msg)
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Device:
    """An SOS button from the device registry.

    Parameters
    ----------
    id
        The device id used in MQTT topics.
    site
        Where the button is installed.
    lat, lon
        WGS 84 position of the button.
    """

    id: str
    site: DeviceSite
    lat: float
    lon: float


@dataclass(slots=True)
class Unit:
    """A police unit: a booth, a foot patrol or a patrol car.

    Parameters
    ----------
    id
        The unit id used in MQTT topics and recommendations.
    kind
        Booth, foot patrol or car.
    name
        A human name ("Booth 12, Abay Ave").
    lat, lon
        Last known WGS 84 position.
    status
        Whether the unit can be recommended.
    position_ts
        When the position was measured (UTC), or None for the registry's seed position.
    """

    id: str
    kind: UnitKind
    name: str
    lat: float
    lon: float
    status: UnitStatus = UnitStatus.AVAILABLE
    position_ts: datetime | None = None
    retired: bool = False
    staff_from: str | None = None
    staff_to: str | None = None
    alert_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("staff_from", "staff_to"):
            value = getattr(self, name)
            if value is not None:
                parse_hhmm(value, name=f"unit {self.id!r} {name}")
        if (self.staff_from is None) != (self.staff_to is None):
            msg = f"unit {self.id!r} needs both staff_from and staff_to or neither, got {self.staff_from!r}, {self.staff_to!r}"
            raise ValueError(msg)
        if self.position_ts is not None:
            self.position_ts = ensure_utc(self.position_ts, name=f"unit {self.id!r} position_ts")

    def copy(self) -> Unit:
        """Return an independent copy (units are mutable, snapshots should not be)."""
        return dataclasses.replace(self)


def parse_hhmm(value: str, *, name: str = "time") -> time:
    """``"08:00"`` -> ``time(8, 0)``; refuse anything else."""
    try:
        hours, minutes = value.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError(value)
        return time(int(hours), int(minutes))
    except (ValueError, AttributeError) as e:
        msg = f"{name} must be a local time HH:MM, got {value!r}"
        raise ValueError(msg) from e


DEFAULT_102_PRIORITY = 3


def alert_priority(
    source: AlertSource,
    site: DeviceSite | None,
    category: str | None = None,
    *,
    categories: Mapping[str, int] | None = None,
) -> int:
    """Rank an alert for the dispatcher: 1 is most urgent.

    An SOS from a school or hospital is P1, any other SOS P2; a 102 report takes its category's
    priority from ``categories`` (a table in the settings), else P3.
    """
    if source is AlertSource.SOS:
        return 1 if site in (DeviceSite.SCHOOL, DeviceSite.HOSPITAL) else 2
    if categories and category is not None:
        return int(categories.get(category.lower(), DEFAULT_102_PRIORITY))
    return DEFAULT_102_PRIORITY


@dataclass(slots=True)
class Alert:
    """One alert: an SOS press or a 102 report, with the units recommended for it.

    Parameters
    ----------
    source
        SOS button or 102 app.
    sender
        The SOS device id, or ``"app102"`` for 102 reports. ``(source, sender, event_id)`` is unique.
    event_id
        The sender's id for this event; a redelivered message carries the same one.
    event_ts
        When the sender says the event happened (UTC).
    received_at
        When the dispatch service received it (UTC).
    lat, lon
        WGS 84 location of the event.
    status
        Where the alert is in its life.
    kind
        ``"press"`` or ``"test"`` for SOS buttons, None for 102 reports.
    site
        Where the SOS button is installed, None for 102 reports.
    accuracy_m, category, text
        What the 102 app sent, None for SOS presses.
    snap_distance_m
        How far the location is from the nearest street.
    recommendations
        Units ranked by ETA, fastest first.
    id
        Store id, None until committed.
    priority
        1 is most urgent (:func:`alert_priority`); 0 means "compute from source, site and category".
    duplicate_of
        The open alert this one was linked to as a probable duplicate (shown, not merged).
    location_unverified
        A 102 report whose ``accuracy_m`` is worse than the service's threshold.
    escalations
        How many times an order went unacknowledged past its deadline.
    assigned_unit_id, proposed_unit_id
        The unit holding the current order; the unit proposed after an escalation.
    close_reason
        Why it was cancelled or a false alarm (required then), or the closing note.
    outcome, close_note
        How the unit on scene closed it (:class:`CloseOutcome`) and its short note (the handheld).
    recommended_at ... closed_at
        When the alert first reached each state (UTC), for response times.
    device_counter
        The counter of a signed SOS press (:mod:`dispatch.signing`), None when unsigned.
    """

    source: AlertSource
    sender: str
    event_id: str
    event_ts: datetime
    received_at: datetime
    lat: float
    lon: float
    status: AlertStatus = AlertStatus.NEW
    kind: str | None = None
    site: DeviceSite | None = None
    accuracy_m: float | None = None
    category: str | None = None
    text: str | None = None
    snap_distance_m: float | None = None
    recommendations: tuple[Recommendation, ...] = field(default_factory=tuple)
    id: int | None = None
    priority: int = 0
    duplicate_of: int | None = None
    location_unverified: bool = False
    escalations: int = 0
    assigned_unit_id: str | None = None
    proposed_unit_id: str | None = None
    close_reason: str | None = None
    recommended_at: datetime | None = None
    assigned_at: datetime | None = None
    acknowledged_at: datetime | None = None
    en_route_at: datetime | None = None
    on_scene_at: datetime | None = None
    closed_at: datetime | None = None
    device_counter: int | None = None
    outcome: CloseOutcome | None = None
    close_note: str | None = None

    def __post_init__(self) -> None:
        if not self.priority:
            self.priority = alert_priority(self.source, self.site, self.category)
        for name in ("recommended_at", "assigned_at", "acknowledged_at", "en_route_at", "on_scene_at", "closed_at"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, ensure_utc(value, name=name))
        self.event_ts = ensure_utc(self.event_ts, name="event_ts")
        self.received_at = ensure_utc(self.received_at, name="received_at")
        etas = [r.eta_s for r in self.recommendations]
        if etas != sorted(etas):
            msg = f"recommendations of alert {self.event_id!r} must be sorted by eta_s, got {etas}"
            raise ValueError(msg)

    @property
    def device_id(self) -> str | None:
        """The SOS device id, None for 102 reports."""
        return self.sender if self.source is AlertSource.SOS else None

    @property
    def false_alarm(self) -> bool:
        """Closed as a false alarm: by a dispatcher (status ``false_alarm``) or by the unit on scene
        (status ``closed`` with the handheld's outcome ``false_alarm``)."""
        return self.status is AlertStatus.FALSE_ALARM or (
            self.status is AlertStatus.CLOSED and self.outcome is CloseOutcome.FALSE_ALARM
        )

    def copy(self) -> Alert:
        return dataclasses.replace(self)


@dataclass(slots=True)
class Assignment:
    """One order to a unit for an alert.

    Parameters
    ----------
    alert_id, unit_id
        Which alert, which unit.
    assigned_at
        When the order was given (UTC).
    assigned_by
        Who gave it: a username, or ``"system"`` for an automatic assignment.
    ack_due_at
        The unit must acknowledge by then, or the alert escalates.
    override
        The unit was not among the recommended ones.
    auto
        Given by the service (P1 auto-assignment), not by a dispatcher.
    reason
        The dispatcher's note (why the override).
    eta_s
        The unit's ETA when ordered, if it was ranked.
    acknowledged_at, missed_at
        When the unit acknowledged, or when its deadline passed unacknowledged.
    """

    alert_id: int
    unit_id: str
    assigned_at: datetime
    assigned_by: str
    ack_due_at: datetime
    override: bool = False
    auto: bool = False
    reason: str | None = None
    eta_s: float | None = None
    acknowledged_at: datetime | None = None
    missed_at: datetime | None = None
    id: int | None = None


class Role(StrEnum):
    """What a signed-in user may do."""

    DISPATCHER = "dispatcher"
    """Alerts and assignment."""
    COMMANDER = "commander"
    """Plans, reports and units."""
    ADMIN = "admin"
    """Users, devices and settings."""
    UNIT = "unit"
    """A unit's terminal: its own orders and status."""
    VIEWER = "viewer"
    """Reads, changes nothing."""


@dataclass(frozen=True, slots=True)
class User:
    """Someone who may sign in; a ``unit`` user is bound to one ``unit_id``."""

    username: str
    role: Role
    unit_id: str | None = None
    disabled: bool = False
