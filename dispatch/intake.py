"""Schemas of incoming messages and the rules that reject bad ones.

Each message is JSON; its schema is a strict pydantic model (a string is not a number, a ``ts``
needs an offset). :func:`parse_message` turns every failure into a :class:`Rejected` carrying one
:class:`~dispatch.ports.RejectReason` and a detail naming the field and the value.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from dispatch.ports import RejectReason

__all__ = [
    "MAX_ID",
    "App102Report",
    "Message",
    "Rejected",
    "SosAlert",
    "Text",
    "Timestamp",
    "UnitAck",
    "UnitPosition",
    "UnitStatusReport",
    "parse_message",
]


def no_nul(value: str) -> str:
    """Refuse a string with a NUL character: PostgreSQL cannot store one in a text column."""
    if "\x00" in value:
        msg = "must not contain a NUL character (\\u0000)"
        raise ValueError(msg)
    return value


def in_utc_range(value: datetime) -> datetime:
    """Refuse a time that has no UTC equivalent (e.g. ``0001-01-01T00:00:00+05:00``): it is stored in UTC."""
    try:
        value.astimezone(UTC)
    except OverflowError as e:
        msg = "must lie between years 1 and 9999 in UTC"
        raise ValueError(msg) from e
    return value


MAX_ID = 2**31 - 1
"""The largest alert id (a PostgreSQL ``integer``); larger ones are refused, not looked up."""

Text = Annotated[str, AfterValidator(no_nul)]
"""A string field that PostgreSQL and SQLite can both store."""
Timestamp = Annotated[AwareDatetime, AfterValidator(in_utc_range)]
"""An RFC 3339 time with an offset that converts to UTC."""
EventId = Annotated[Text, Field(min_length=1, max_length=128)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]


class Rejected(Exception):
    """An incoming message was refused.

    Parameters
    ----------
    reason
        The reason code sent in acks and counted.
    detail
        What was wrong with which value.
    event_id
        The event id if it could be read.
    """

    def __init__(self, reason: RejectReason, detail: str, *, event_id: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.event_id = event_id


class Message(BaseModel):
    """The base of every inbound MQTT message: strict types, unknown fields ignored, immutable."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class SosAlert(Message):
    """``{root}/sos/{device_id}/alert``: an SOS button was pressed (or tested)."""

    event_id: EventId
    ts: Timestamp
    kind: Literal["press", "test"]


class App102Report(Message):
    """``{root}/app102/report``: a citizen's report from the Police 102 app."""

    event_id: EventId
    ts: Timestamp
    lat: Latitude
    lon: Longitude
    accuracy_m: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    category: Annotated[Text, Field(min_length=1, max_length=64)]
    text: Annotated[Text, Field(max_length=4000)]


class UnitPosition(Message):
    """``{root}/units/{unit_id}/position``: where a unit is now."""

    ts: Timestamp
    lat: Latitude
    lon: Longitude


class UnitStatusReport(Message):
    """``{root}/units/{unit_id}/status``: what a unit is doing now."""

    ts: Timestamp
    status: Literal["available", "en_route", "on_scene", "off_duty", "offline"]
    alert_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None


class UnitAck(Message):
    """``{root}/units/{unit_id}/ack``: the unit confirms the order for ``alert_id``."""

    ts: Timestamp
    alert_id: Annotated[int, Field(ge=1, le=MAX_ID)]


M = TypeVar("M", bound=Message)

# When a payload has several faults, report the most basic one.
_PRECEDENCE = [
    RejectReason.MALFORMED_JSON,
    RejectReason.WRONG_TYPE,
    RejectReason.MISSING_FIELD,
    RejectReason.BAD_VALUE,
]


def _reason_for(error_type: str) -> RejectReason:
    if error_type == "json_invalid":
        return RejectReason.MALFORMED_JSON
    if error_type == "missing":
        return RejectReason.MISSING_FIELD
    if error_type.endswith("_type"):  # string_type, float_type, model_type, datetime_type (a number), ...
        return RejectReason.WRONG_TYPE
    return RejectReason.BAD_VALUE


class _EventIdOnly(Message):
    event_id: EventId


def _peek_event_id(payload: bytes) -> str | None:
    """The event id of a payload that failed validation, if it has a readable one."""
    try:
        return _EventIdOnly.model_validate_json(payload).event_id
    except ValidationError:
        return None


def parse_message(
    model: type[M],
    payload: bytes,
    *,
    now: datetime,
    max_bytes: int,
    max_clock_skew: timedelta = timedelta(minutes=5),
) -> M:
    """Validate one JSON payload against ``model``.

    Parameters
    ----------
    model
        :class:`SosAlert`, :class:`App102Report` or :class:`UnitPosition`.
    payload
        The raw bytes as received.
    now
        The receiver's clock (UTC), to refuse a ``ts`` in the future.
    max_bytes
        Larger payloads are refused without being parsed.
    max_clock_skew
        How far in the future a ``ts`` may lie (senders' clocks drift).

    Raises
    ------
    Rejected
        With the reason and a detail naming the field and the value.
    """
    if len(payload) > max_bytes:
        msg = f"payload has {len(payload)} bytes, the limit is {max_bytes}"
        raise Rejected(RejectReason.OVERSIZED_PAYLOAD, msg)
    try:
        message = model.model_validate_json(payload)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        found = [(_reason_for(err["type"]), err) for err in errors]
        reason, err = min(found, key=lambda pair: _PRECEDENCE.index(pair[0]))
        field_name = ".".join(str(p) for p in err["loc"]) or "payload"
        if reason is RejectReason.MALFORMED_JSON:
            detail = f"payload is not valid JSON: {err['msg']}"
        elif reason is RejectReason.MISSING_FIELD:
            detail = f"field {field_name!r} is required by {model.__name__}"
        else:
            detail = f"field {field_name!r}: {err['msg']}, got {err.get('input')!r}"
        event_id = None if reason is RejectReason.MALFORMED_JSON else _peek_event_id(payload)
        raise Rejected(reason, detail, event_id=event_id) from e
    ts: datetime | None = getattr(message, "ts", None)  # optional in a few messages (a device's last will)
    if ts is not None and ts - now > max_clock_skew:
        detail = (
            f"ts {ts.isoformat()} lies {(ts - now).total_seconds():.0f} s in the future "
            f"(allowed clock skew {max_clock_skew.total_seconds():.0f} s)"
        )
        raise Rejected(RejectReason.TS_IN_FUTURE, detail, event_id=getattr(message, "event_id", None))
    return message
