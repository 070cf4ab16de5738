"""What dispatch needs from the outside world, as Protocols the adapters implement.

Dispatch never imports an adapter: ``mqtt_bridge`` implements :class:`Notifier` and hands it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

__all__ = ["Ack", "AckStatus", "Notifier", "RejectReason"]


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
    INTERNAL_ERROR = "internal_error"
    """The service failed on this message; the error is logged with a traceback."""


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


@runtime_checkable
class Notifier(Protocol):
    """Sends dispatch's answers back to devices and units.

    Implementations must not block for long: they are called on the ingest path after the alert
    is committed.
    """

    def send_ack(self, device_id: str, ack: Ack) -> None:
        """Tell SOS device ``device_id`` whether its alert was accepted."""
        ...
