"""The dispatcher's vocabulary: alerts, units and SOS devices.

Plain dataclasses and enums with no I/O. Times are timezone-aware UTC.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum

from geo import Recommendation

__all__ = [
    "Alert",
    "AlertSource",
    "AlertStatus",
    "Device",
    "DeviceSite",
    "Unit",
    "UnitKind",
    "UnitStatus",
    "alert_priority",
    "ensure_utc",
]

APP102_SENDER = "app102"
"""The sender recorded for reports from the Police 102 app (it has no device id)."""


class AlertSource(StrEnum):
    """Where an alert came from."""

    SOS = "sos"
    """An SOS button (emergency call point) was pressed."""
    APP102 = "app102"
    """A citizen reported through the Police 102 app."""


class AlertStatus(StrEnum):
    """Where an alert is in its life."""

    NEW = "new"
    """Received and ranked; no unit assigned yet."""
    TEST = "test"
    """A test press of an SOS button: recorded and ranked, but nobody is to be sent."""
    ASSIGNED = "assigned"
    CLOSED = "closed"


class UnitKind(StrEnum):
    """What kind of police unit this is; it decides how the unit moves."""

    BOOTH = "booth"
    """A staffed police booth (post); its officers respond on foot."""
    FOOT = "foot"
    """A foot patrol."""
    CAR = "car"
    """A patrol car."""


class UnitStatus(StrEnum):
    """Whether a unit can be recommended."""

    AVAILABLE = "available"
    ASSIGNED = "assigned"
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
    return value.astimezone(timezone.utc)


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

    def __post_init__(self) -> None:
        if self.position_ts is not None:
            self.position_ts = ensure_utc(self.position_ts, name=f"unit {self.id!r} position_ts")

    def copy(self) -> Unit:
        """Return an independent copy (units are mutable, snapshots should not be)."""
        return dataclasses.replace(self)


def alert_priority(source: AlertSource, site: DeviceSite | None) -> int:
    """Rank an alert for the dispatcher: 1 is most urgent.

    An SOS from a school or hospital comes first (1), any other SOS next (2), 102 reports after (3).
    """
    if source is AlertSource.SOS:
        return 1 if site in (DeviceSite.SCHOOL, DeviceSite.HOSPITAL) else 2
    return 3


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

    def __post_init__(self) -> None:
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
    def priority(self) -> int:
        """1 (school or hospital SOS), 2 (other SOS) or 3 (102 report)."""
        return alert_priority(self.source, self.site)
