"""What dispatch needs from the outside world, as Protocols the adapters implement.

Dispatch never imports an adapter: ``mqtt_bridge`` implements :class:`Notifier` and hands it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from dispatch.domain import Alert, Unit

__all__ = [
    "Ack",
    "AckStatus",
    "AlertUnitListener",
    "Change",
    "ChangeKind",
    "ChangeListener",
    "Notifier",
    "Order",
    "PatrolPlan",
    "PlanSender",
    "PlanStop",
    "RejectReason",
]


class AckStatus(StrEnum):
    """The answer to an alert."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RejectReason(StrEnum):
    """Why an incoming message was rejected; the values are sent in acks and counted."""

    MALFORMED_JSON = "malformed_json"
    """The payload is not JSON (or not UTF-8)."""
    MISSING_FIELD = "missing_field"
    """A required field is absent."""
    WRONG_TYPE = "wrong_type"
    """A field (or the payload) has the wrong JSON type, e.g. a string where a number belongs."""
    BAD_VALUE = "bad_value"
    """A field has the right type but an impossible value: latitude 100, kind "hello", a ts without offset."""
    TS_IN_FUTURE = "ts_in_future"
    """The ``ts`` lies further in the future than the allowed clock skew."""
    OVERSIZED_PAYLOAD = "oversized_payload"
    """The payload is larger than the limit; it was not parsed."""
    UNKNOWN_DEVICE = "unknown_device"
    """The SOS device is not in the device registry."""
    UNKNOWN_UNIT = "unknown_unit"
    """A position for a unit that is not in the unit registry."""
    OUTSIDE_SERVICE_AREA = "outside_service_area"
    """The location is further from any street than the service's snapping limit."""
    STALE_POSITION = "stale_position"
    """A unit position older than the one already known (arrived out of order)."""
    FIXED_POSITION = "fixed_position"
    """A position for a booth: booths stay where the registry puts them."""
    CONFLICT = "conflict"
    """A status or ack the alert's lifecycle does not allow now (e.g. an ack for an order that escalated)."""
    # issue 6: signed presses (dispatch/signing.py)
    MISSING_SIGNATURE = "missing_signature"
    """A device that signs its presses sent one without ``sig`` (no downgrade to unsigned)."""
    BAD_SIGNATURE = "bad_signature"
    """The HMAC does not match the payload under the device's key: forged or altered."""
    REPLAYED = "replayed"
    """A signed press whose counter was already used by a stored alert."""
    COUNTER_TOO_OLD = "counter_too_old"
    """A signed press whose counter lies behind the device's anti-replay window."""
    PRESS_TOO_OLD = "press_too_old"
    """A signed press whose ``ts`` is older than the allowed age."""
    INTERNAL_ERROR = "internal_error"
    """The service failed on this message; the error is logged with a traceback."""


class ChangeKind(StrEnum):
    """What a row of the change stream (``changes.kind``) refers to."""

    ALERT = "alert"
    UNIT = "unit"
    DEVICE = "device"
    PLAN = "plan"


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change of the global change stream (table ``changes``), local or from another replica.

    Parameters
    ----------
    seq
        Its place in the stream: increasing in commit order across all replicas (gaps allowed).
    at
        When it was committed (UTC).
    origin
        The replica that committed it (``--replica``).
    alerts, units, devices
        The changed objects: alerts and units in their committed state (:meth:`DispatchService.changes_since`
        gives their current state), devices as ``GET /api/devices`` shows them.
    plans
        Patrol plans issued (:meth:`DispatchService.issue_plan`): ``{"plan_id", "issued_at", "units"}``,
        so every replica's streams tell the units and the live map (the plan itself is the plan's files).
    """

    seq: int
    at: datetime
    origin: str
    alerts: tuple[Alert, ...] = ()
    units: tuple[Unit, ...] = ()
    devices: tuple[dict[str, Any], ...] = ()
    plans: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to one alert message.

    Parameters
    ----------
    event_id
        The sender's event id, None when the payload could not be read.
    alert_id
        The store id of the alert, None when rejected.
    status
        Accepted or rejected.
    reason
        Why it was rejected, None when accepted.
    detail
        A human explanation of the reason (which field, which value).
    """

    event_id: str | None
    alert_id: int | None
    status: AckStatus
    reason: RejectReason | None = None
    detail: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is AckStatus.ACCEPTED

    def to_json(self) -> dict[str, Any]:
        """The wire form: ``{"event_id", "alert_id", "status", "reason", "detail"}``."""
        return {
            "event_id": self.event_id,
            "alert_id": self.alert_id,
            "status": self.status.value,
            "reason": None if self.reason is None else self.reason.value,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Order:
    """An order for a unit: go to this alert, by this route, and acknowledge by ``ack_due_at``.

    ``route`` is ``(lat, lon)`` vertices from the unit's position to the alert along the fastest
    path; the wire form is a GeoJSON LineString (``[lon, lat]`` pairs).
    """

    order_id: int
    alert_id: int
    unit_id: str
    priority: int
    source: str
    lat: float
    lon: float
    route: tuple[tuple[float, float], ...]
    ack_due_at: datetime
    eta_s: float | None = None
    category: str | None = None
    site: str | None = None
    location_unverified: bool = False
    override: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "alert_id": self.alert_id,
            "unit_id": self.unit_id,
            "priority": self.priority,
            "source": self.source,
            "category": self.category,
            "site": self.site,
            "location": {"lat": self.lat, "lon": self.lon},
            "location_unverified": self.location_unverified,
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "ack_due_at": self.ack_due_at.isoformat(),
            "override": self.override,
            "route": {"type": "LineString", "coordinates": [[round(lon, 7), round(lat, 7)] for lat, lon in self.route]},
        }


@dataclass(frozen=True, slots=True)
class PlanStop:
    """One stop of a patrol's planned route: stand at a hot spot from ``arrive`` to ``depart``."""

    seq: int
    hot_spot: int
    lat: float
    lon: float
    arrive: datetime
    depart: datetime
    dwell_min: float

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hot_spot": self.hot_spot,
            "lat": self.lat,
            "lon": self.lon,
            "arrive": self.arrive.isoformat(),
            "depart": self.depart.isoformat(),
            "dwell_min": self.dwell_min,
        }


@dataclass(frozen=True, slots=True)
class PatrolPlan:
    """A unit's patrol route for one shift, as issued by a commander (issue 14).

    ``route`` is ``(lat, lon)`` vertices along the streets, booth to booth; the wire form is a
    GeoJSON LineString (``[lon, lat]`` pairs). Times are timezone-aware (the plan's local offset).
    """

    plan_id: str
    patrol_id: str
    unit_id: str
    shift: str
    shift_start: datetime
    shift_end: datetime
    booth_id: str
    stops: tuple[PlanStop, ...]
    route: tuple[tuple[float, float], ...]
    issued_at: datetime
    issued_by: str
    walk_speed_mps: float | None = None
    """The walking speed the plan's times were computed at (None: not known)."""

    def to_json(self) -> dict[str, Any]:
        """The wire form of ``{root}/units/{unit_id}/plan`` (README, topic table)."""
        speed = {} if self.walk_speed_mps is None else {"walk_speed_mps": round(self.walk_speed_mps, 3)}
        return {
            "plan_id": self.plan_id,
            "patrol": self.patrol_id,
            "unit_id": self.unit_id,
            "shift": self.shift,
            "shift_start": self.shift_start.isoformat(),
            "shift_end": self.shift_end.isoformat(),
            "booth": self.booth_id,
            "issued_at": self.issued_at.isoformat(),
            "issued_by": self.issued_by,
            "stops": [s.to_json() for s in self.stops],
            "route": {"type": "LineString", "coordinates": [[round(lon, 7), round(lat, 7)] for lat, lon in self.route]},
            **speed,
        }


@runtime_checkable
class PlanSender(Protocol):
    """Sends a unit its patrol plan (the MQTT bridge does; a notifier without it sends no plans)."""

    def send_plan(self, unit_id: str, plan: PatrolPlan) -> None:
        """Send ``plan`` to unit ``unit_id`` (at least once; the newest plan replaces the one before)."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """Sends dispatch's answers back to devices and orders to units.

    Implementations must not block for long: they are called after the change is committed.
    """

    def send_ack(self, device_id: str, ack: Ack) -> None:
        """Tell SOS device ``device_id`` whether its alert was accepted."""
        ...

    def send_order(self, unit_id: str, order: Order) -> None:
        """Send ``order`` to unit ``unit_id`` (at least once)."""
        ...


@runtime_checkable
class ChangeListener(Protocol):
    """Hears every committed change of an alert or a unit (the live map's event feed).

    Called after the change is committed, in the thread that made it and possibly while the
    service holds its lock: an implementation must only record the change and return at once,
    and must not call back into the service's writing methods.
    """

    def alert_changed(self, alert: Alert) -> None:
        """An alert was created or changed; ``alert`` is its committed state."""
        ...

    def unit_changed(self, unit: Unit) -> None:
        """A unit was registered, moved or changed; ``unit`` is its committed state."""
        ...

    def change_committed(self, change: Change) -> None:
        """A change of the global stream, local or from another replica, in ``seq`` order.

        A listener with this method hears every change here only (its ``alert_changed`` and
        ``unit_changed`` are then not called); one without it (:class:`AlertUnitListener`) hears
        local and remote alert and unit changes through those two.
        """
        ...


@runtime_checkable
class AlertUnitListener(Protocol):
    """A listener of alert and unit changes only (before the change stream): still served."""

    def alert_changed(self, alert: Alert) -> None: ...

    def unit_changed(self, unit: Unit) -> None: ...
