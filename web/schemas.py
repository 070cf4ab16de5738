"""The HTTP API's models: what the routes read (``...In``) and answer (``...Out``).

Answers are built from the domain objects themselves (``AlertOut.model_validate(alert)``,
``from_attributes``): a field of the same name is read from the object, enums are sent as their
values. Request bodies derive from :class:`~web.hardening.RequestBody` (no NUL characters, ids
within the database's range).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from dispatch.domain import Alert, Assignment, Role, Unit, UnitKind
from web.hardening import BoundedId, RequestBody

DEFAULT_ESTIMATOR = "spacetime"
"""patrol_planner.hotspots.DEFAULT_ESTIMATOR, mirrored so that the API models load without the planner (a test checks)."""

__all__ = [
    "ERROR_RESPONSES",
    "AckIn",
    "AlertOut",
    "AssignIn",
    "AssignmentOut",
    "AvailabilityIn",
    "BoothIn",
    "ConflictOut",
    "ErrorOut",
    "OrderStatusIn",
    "PlanRequest",
    "PositionIn",
    "PositionOut",
    "RecommendationOut",
    "StatusIn",
    "TransitionIn",
    "UnitIn",
    "UnitOut",
    "UnitPatch",
    "UserIn",
]


def _value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


EnumValue = Annotated[str, BeforeValidator(_value)]
"""A string field read from an enum member (its value)."""


def _any_escalation(value: Any) -> Any:
    return value > 0 if isinstance(value, int) and not isinstance(value, bool) else value


class _FromDomain(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- answers ------------------------------------------------------------------------------------


class RecommendationOut(_FromDomain):
    unit_id: str
    unit_kind: str
    eta_s: float
    distance_m: float


class AssignmentOut(_FromDomain):
    order_id: int = Field(validation_alias=AliasChoices("order_id", "id"))
    unit_id: str
    assigned_at: datetime
    assigned_by: str
    override: bool
    auto: bool
    reason: str | None
    eta_s: float | None
    ack_due_at: datetime
    acknowledged_at: datetime | None
    missed_at: datetime | None


class AlertOut(_FromDomain):
    id: int
    source: EnumValue
    sender: str
    device_id: str | None
    event_id: str
    event_ts: datetime
    received_at: datetime
    lat: float
    lon: float
    status: EnumValue
    priority: int
    kind: str | None
    site: EnumValue | None
    accuracy_m: float | None
    category: str | None
    text: str | None
    snap_distance_m: float | None
    location_unverified: bool
    duplicate_of: int | None
    escalated: Annotated[bool, BeforeValidator(_any_escalation)] = Field(
        validation_alias=AliasChoices("escalated", "escalations")
    )  # an alert is escalated once it has been escalated at all
    escalations: int
    assigned_unit_id: str | None
    proposed_unit_id: str | None
    close_reason: str | None
    outcome: EnumValue | None = None
    close_note: str | None = None
    recommended_at: datetime | None
    assigned_at: datetime | None
    acknowledged_at: datetime | None
    en_route_at: datetime | None
    on_scene_at: datetime | None
    closed_at: datetime | None
    recommendations: list[RecommendationOut]
    orders: list[AssignmentOut] | None = None

    @classmethod
    def of(cls, alert: Alert, orders: Sequence[Assignment] | None = None) -> AlertOut:
        """The alert as the API shows it; with ``orders``, its orders too (one alert's view)."""
        out = cls.model_validate(alert)
        if orders is not None:
            out.orders = [AssignmentOut.model_validate(a) for a in orders]
        return out


class UnitOut(_FromDomain):
    id: str
    kind: EnumValue
    name: str
    lat: float
    lon: float
    status: EnumValue
    position_ts: datetime | None
    retired: bool = False
    staff_from: str | None = None
    staff_to: str | None = None
    alert_id: int | None = None
    stale: bool = False
    position_age_s: float | None = None
    recommendable: bool = True

    @classmethod
    def of(cls, unit: Unit, view: Mapping[str, Any] | None = None) -> UnitOut:
        """The unit with its freshness (``DispatchService.unit_view``: stale, position age, recommendable)."""
        return cls.model_validate(unit).model_copy(
            update={k: v for k, v in (view or {}).items() if k in cls.model_fields}
        )


class ErrorOut(BaseModel):
    """An error: what was wrong (a list of field errors for request validation)."""

    detail: str | list[dict[str, Any]]


class ConflictOut(ErrorOut):
    """The state machine refused: ``current`` is the alert's state now."""

    current: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body could not be read (not JSON, or not the declared encoding)"},
    401: {"model": ErrorOut, "description": "not signed in, or the token is invalid or expired"},
    403: {"model": ErrorOut, "description": "the role may not do this"},
    404: {"model": ErrorOut, "description": "no such alert, unit, user or plan"},
    409: {"model": ConflictOut, "description": "the alert's or unit's state does not allow this now"},
    413: {"model": ErrorOut, "description": "request body over the limit (QORGAU_MAX_REQUEST_BYTES)"},
    422: {"model": ErrorOut, "description": "invalid input"},
    429: {"model": ErrorOut, "description": "too many failed sign-ins (Retry-After says how long to wait)"},
    503: {"model": ErrorOut, "description": "the database is unavailable"},
}
"""Declared on every operation (OpenAPI): the errors any route may answer."""


# -- requests -----------------------------------------------------------------------------------

HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
UnitId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^/+#\s]+$")]


class UnitIn(RequestBody):
    id: UnitId
    kind: UnitKind
    name: str = Field(min_length=1, max_length=256)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    status: Literal["available", "off_duty", "offline"] = "available"
    staff_from: HHMM | None = None
    staff_to: HHMM | None = None


class UnitPatch(RequestBody):
    name: str | None = Field(None, min_length=1, max_length=256)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    staff_from: HHMM | None = None
    staff_to: HHMM | None = None


class StatusIn(RequestBody):
    status: Literal["available", "en_route", "on_scene", "off_duty", "offline"]
    alert_id: BoundedId | None = None


class AssignIn(RequestBody):
    unit_id: str
    reason: str | None = Field(None, max_length=2000)


class TransitionIn(RequestBody):
    status: Literal["en_route", "on_scene", "closed", "cancelled", "false_alarm"]
    reason: str | None = Field(None, max_length=2000)


class AckIn(RequestBody):
    alert_id: BoundedId


class UserIn(RequestBody):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: Role
    unit_id: str | None = None


class UserPatch(RequestBody):
    disabled: bool


class BoothIn(RequestBody):
    id: str = Field(min_length=1, max_length=100)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    name: str = ""


class HistoryIn(RequestBody):
    """A period of Qorgau's own alerts to plan from (UTC, ``until`` default now)."""

    since: dt.datetime
    until: dt.datetime | None = None

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None and v.tzinfo is None:
            msg = "give the time with its offset, e.g. 2026-11-01T00:00:00+05:00"
            raise ValueError(msg)
        return v


class PlanRequest(RequestBody):
    """What to plan. Incidents come inline, as CSV text or a GeoJSON FeatureCollection, or from
    Qorgau's own history: the SOS presses and 102 reports of a period."""

    history: HistoryIn | None = Field(
        None, description="plan from the service's own alerts in this period (no tests, false alarms or duplicates)"
    )
    incidents_csv: str | None = Field(None, description="CSV text in a layout `qorgau plan` recognises")
    incidents_geojson: dict[str, Any] | None = Field(None, description="a FeatureCollection of incident Points")
    booths: list[BoothIn] | None = Field(None, description="default: the service's registered booths")
    patrols: int = Field(2, ge=1, le=200)
    shift: str = Field("22:00-06:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    date: dt.date | None = Field(None, description="day the shift starts [today, local]")
    timezone: str = "Asia/Almaty"
    lang: Literal["kk", "ru", "en"] = "ru"
    seed: int | None = None
    estimator: str = DEFAULT_ESTIMATOR
    officer_weight: float = Field(0.0, ge=0.0, le=1.0)
    """Weight of officer-discovered incidents in training (0: left out; the feedback-loop guard)."""
    dwell_min: float = Field(15.0, ge=10, le=16)
    walk_speed_mps: float | None = Field(
        None, ge=0.5, le=2.5, description="walking speed of the patrols, m/s [the service's, 1.4]"
    )
    iterations: int = Field(500, ge=10, le=100_000)  # patrol_planner.routes.SolverSettings().iterations
    time_limit_s: float = Field(30.0, gt=0, le=600)

    @field_validator("estimator")
    @classmethod
    def _known_estimator(cls, v: str) -> str:
        from patrol_planner.hotspots import ESTIMATORS  # the planner loads with the first plan request

        if v not in ESTIMATORS:
            msg = f"unknown estimator {v!r}; expected one of {sorted(ESTIMATORS)}"
            raise ValueError(msg)
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception as e:  # zoneinfo raises several kinds
            msg = f"unknown time zone {v!r}"
            raise ValueError(msg) from e
        return v


class PlanIssueIn(RequestBody):
    """Which unit walks which patrol; without ``units`` the patrols go to the registered foot units
    in order of their ids (P01 to the first, ...)."""

    units: dict[str, str] | None = Field(
        None, description='patrol id -> unit id, every patrol of the plan, e.g. {"P01": "foot-1", "P02": "car-2"}'
    )


# -- the handheld (issue 12; web.routes.handheld) -------------------------------------------------


class OrderStatusIn(RequestBody):
    """A unit moves its own order; ``closed`` needs an ``outcome``."""

    alert_id: BoundedId
    status: Literal["acknowledged", "en_route", "on_scene", "closed"]
    outcome: Literal["resolved", "false_alarm", "nobody_found", "handed_over"] | None = None
    note: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _outcome_closes(self) -> OrderStatusIn:
        if self.status == "closed" and self.outcome is None:
            msg = "closing needs an outcome: resolved, false_alarm, nobody_found or handed_over"
            raise ValueError(msg)
        if self.status != "closed" and self.outcome is not None:
            msg = f"an outcome goes with status 'closed' only, not with {self.status!r}"
            raise ValueError(msg)
        return self


class AvailabilityIn(RequestBody):
    status: Literal["available", "off_duty"]


class PositionIn(RequestBody):
    """A position fix from the handheld's Geolocation API, with its accuracy (metres, 1 sigma)."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float = Field(ge=0, le=1e7)
    ts: datetime | None = None

    @field_validator("ts")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and (v.tzinfo is None or v.utcoffset() is None):
            msg = "ts needs a UTC offset (ISO 8601 with Z or +00:00)"
            raise ValueError(msg)
        return v


class PositionOut(BaseModel):
    accepted: bool
    flagged: bool
    reason: str | None
    accuracy_max_m: float
