"""Property-based tests (hypothesis) of every payload parser, the topic router and the API's models.

Properties:

- arbitrary bytes and arbitrary JSON never raise anything but :class:`Rejected` (with a
  :class:`RejectReason` and a non-empty detail) from :func:`parse_message`, and nothing at all from
  :meth:`Topics.route`; the API's request models raise only pydantic's ``ValidationError``;
- every valid generated payload is accepted and its fields round-trip.

The found bugs stay as ``@example`` regressions.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from dispatch.intake import (
    MAX_ID,
    App102Report,
    Rejected,
    SosAlert,
    UnitAck,
    UnitPosition,
    UnitStatusReport,
    parse_message,
)
from dispatch.ports import RejectReason
from mqtt_bridge import Route, Topics
from web.schemas import AckIn, AssignIn, BoothIn, PlanRequest, StatusIn, TransitionIn, UnitIn, UnitPatch, UserIn

NOW = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)
MAX_BYTES = 16 * 1024
MODELS = [SosAlert, App102Report, UnitPosition, UnitStatusReport, UnitAck]

# -- strategies ---------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
aware_times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2026, 3, 7, 9, 0), timezones=offsets
)  # naive bounds are the local wall time: a day and a half before NOW is never "in the future", whatever the offset
texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=200)
ids = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1, max_size=128)
lats = st.floats(min_value=-90, max_value=90, allow_nan=False)
lons = st.floats(min_value=-180, max_value=180, allow_nan=False)


def _rfc3339(ts: datetime) -> str:
    return ts.isoformat()


def _fields_of(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _hostile_object(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's own keys (some missing) holding arbitrary JSON values."""
    return st.fixed_dictionaries(
        {}, optional={name: json_values | st.just("2026-03-08T09:00:00Z") for name in _fields_of(model)}
    )


def _parse(model: type, payload: bytes) -> Any:
    return parse_message(model, payload, now=NOW, max_bytes=MAX_BYTES)


def _assert_parses_or_rejects(model: type, payload: bytes) -> None:
    try:
        message = _parse(model, payload)
    except Rejected as e:
        assert isinstance(e.reason, RejectReason)
        assert e.reason is not RejectReason.INTERNAL_ERROR
        assert e.detail.strip(), f"{e.reason} without a detail"
        assert e.event_id is None or isinstance(e.event_id, str)
        return
    assert isinstance(message, model)
    ts = message.ts  # type: ignore[attr-defined]
    assert ts.tzinfo is not None
    ts.astimezone(UTC)  # storable in UTC
    for value in message.model_dump().values():
        assert not (isinstance(value, str) and "\x00" in value), "a NUL character cannot be stored in PostgreSQL"


# -- parse_message: anything in, the documented answer out --------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@given(payload=st.binary(max_size=512))
@example(payload=b"\xff\xfe")
@example(payload=b"")
@example(payload=b"[" * 5000)
def test_arbitrary_bytes_are_parsed_or_rejected_with_a_reason(model: type, payload: bytes) -> None:
    _assert_parses_or_rejects(model, payload)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@given(value=json_values)
def test_arbitrary_json_is_parsed_or_rejected_with_a_reason(model: type, value: Any) -> None:
    _assert_parses_or_rejects(model, json.dumps(value).encode())


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@given(data=st.data())
# Regressions: accepted before, then failing in the store (no UTC equivalent; NUL in PostgreSQL text).
@example(data=None)
def test_objects_with_the_right_keys_and_wrong_values_are_parsed_or_rejected(model: type, data: Any) -> None:
    if data is None:  # the explicit regressions
        for payload in (
            {"event_id": "e", "ts": "0001-01-01T00:00:00+05:00", "kind": "press"},
            {"event_id": "e\u0000", "ts": "2026-03-08T09:00:00Z", "kind": "press"},
            {
                "event_id": "e",
                "ts": "2026-03-08T09:00:00Z",
                "lat": 43.2,
                "lon": 76.9,
                "accuracy_m": 1,
                "category": "theft\u0000",
                "text": "x",
            },
            {"ts": "0001-01-01T04:59:59+05:00", "lat": 0, "lon": 0, "status": "available", "alert_id": 1},
        ):
            _assert_parses_or_rejects(model, json.dumps(payload).encode())
        return
    payload = data.draw(_hostile_object(model))
    _assert_parses_or_rejects(model, json.dumps(payload).encode())


def test_nul_and_pre_utc_times_are_bad_values() -> None:
    """Regression: these passed validation and then failed in the store as an internal error."""
    with pytest.raises(Rejected) as nul:
        _parse(SosAlert, json.dumps({"event_id": "a\u0000b", "ts": "2026-03-08T09:00:00Z", "kind": "press"}).encode())
    assert nul.value.reason is RejectReason.BAD_VALUE and "NUL" in nul.value.detail
    with pytest.raises(Rejected) as early:
        _parse(SosAlert, json.dumps({"event_id": "a", "ts": "0001-01-01T00:00:00+05:00", "kind": "press"}).encode())
    assert early.value.reason is RejectReason.BAD_VALUE and "UTC" in early.value.detail
    assert early.value.event_id == "a"


@given(size=st.integers(min_value=MAX_BYTES + 1, max_value=MAX_BYTES * 4))
def test_oversized_payloads_are_rejected_unread(size: int) -> None:
    with pytest.raises(Rejected) as e:
        _parse(SosAlert, b"{" * size)
    assert e.value.reason is RejectReason.OVERSIZED_PAYLOAD and str(size) in e.value.detail


@given(ts=st.datetimes(min_value=datetime(2026, 3, 8, 9, 36), max_value=datetime(9998, 1, 1), timezones=st.just(UTC)))
def test_a_ts_beyond_the_clock_skew_is_rejected_with_its_event_id(ts: datetime) -> None:
    payload = json.dumps({"event_id": "late", "ts": _rfc3339(ts), "kind": "press"}).encode()
    with pytest.raises(Rejected) as e:
        _parse(SosAlert, payload)
    assert e.value.reason is RejectReason.TS_IN_FUTURE and e.value.event_id == "late"


# -- valid payloads round-trip ------------------------------------------------------------------


@given(
    event_id=ids,
    ts=aware_times,
    kind=st.sampled_from(["press", "test"]),
    extra=st.dictionaries(st.text(max_size=8), json_scalars, max_size=3),
)
def test_every_valid_sos_alert_is_accepted_and_round_trips(event_id: str, ts: datetime, kind: str, extra: dict) -> None:
    payload = {
        **{k: v for k, v in extra.items() if k not in ("event_id", "ts", "kind")},
        "event_id": event_id,
        "ts": _rfc3339(ts),
        "kind": kind,
    }
    message = _parse(SosAlert, json.dumps(payload).encode())
    assert (message.event_id, message.ts, message.kind) == (event_id, ts, kind)


@given(
    event_id=ids,
    ts=aware_times,
    lat=lats,
    lon=lons,
    accuracy=st.floats(min_value=0, max_value=1e9),
    category=texts.filter(lambda s: 1 <= len(s) <= 64),
    text=texts,
)
def test_every_valid_102_report_is_accepted_and_round_trips(
    event_id: str, ts: datetime, lat: float, lon: float, accuracy: float, category: str, text: str
) -> None:
    payload = {
        "event_id": event_id,
        "ts": _rfc3339(ts),
        "lat": lat,
        "lon": lon,
        "accuracy_m": accuracy,
        "category": category,
        "text": text,
    }
    m = _parse(App102Report, json.dumps(payload).encode())
    assert (m.event_id, m.ts, m.lat, m.lon, m.accuracy_m, m.category, m.text) == (
        event_id,
        ts,
        lat,
        lon,
        accuracy,
        category,
        text,
    )


@given(ts=aware_times, lat=lats, lon=lons)
def test_every_valid_unit_position_is_accepted_and_round_trips(ts: datetime, lat: float, lon: float) -> None:
    m = _parse(UnitPosition, json.dumps({"ts": _rfc3339(ts), "lat": lat, "lon": lon}).encode())
    assert (m.ts, m.lat, m.lon) == (ts, lat, lon)


@given(
    ts=aware_times,
    status=st.sampled_from(["available", "en_route", "on_scene", "off_duty", "offline"]),
    alert_id=st.none() | st.integers(min_value=1, max_value=MAX_ID),
)
def test_every_valid_unit_status_and_ack_is_accepted_and_round_trips(
    ts: datetime, status: str, alert_id: int | None
) -> None:
    body: dict[str, Any] = {"ts": _rfc3339(ts), "status": status}
    if alert_id is not None:
        body["alert_id"] = alert_id
    m = _parse(UnitStatusReport, json.dumps(body).encode())
    assert (m.ts, m.status, m.alert_id) == (ts, status, alert_id)
    if alert_id is not None:
        ack = _parse(UnitAck, json.dumps({"ts": _rfc3339(ts), "alert_id": alert_id}).encode())
        assert (ack.ts, ack.alert_id) == (ts, alert_id)


@given(value=st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=10) | st.booleans())
def test_a_coordinate_is_a_finite_json_number_in_range(value: Any) -> None:
    payload = json.dumps({"ts": "2026-03-08T09:00:00Z", "lat": value, "lon": 0.0}).encode()  # NaN -> NaN (not JSON)
    valid = isinstance(value, float) and math.isfinite(value) and -90 <= value <= 90
    if valid:
        assert _parse(UnitPosition, payload).lat == value
    else:
        with pytest.raises(Rejected):
            _parse(UnitPosition, payload)


# -- topics -------------------------------------------------------------------------------------

topic_levels = st.text(st.characters(exclude_characters="/+#\x00", exclude_categories=("Cs",)), min_size=1, max_size=20)
ROOT = "qorgau/v1"


@given(
    topic=st.text(max_size=80)
    | st.lists(
        st.sampled_from(
            [
                "qorgau",
                "v1",
                "sos",
                "units",
                "app102",
                "report",
                "alert",
                "ack",
                "position",
                "status",
                "orders",
                "",
                "x",
                "+",
                "#",
            ]
        ),
        max_size=7,
    ).map("/".join)
)
def test_routing_any_topic_answers_a_route_or_none(topic: str) -> None:
    routed = Topics(ROOT).route(topic)
    if routed is not None:
        kind, ident = routed
        assert isinstance(kind, Route)
        assert topic.startswith(ROOT + "/")
        assert ident is None or (ident and "/" not in ident)


@given(ident=topic_levels)
def test_every_incoming_topic_routes_back_to_its_kind_and_id(ident: str) -> None:
    t = Topics(ROOT)
    assert t.route(t.sos_alert(ident)) == (Route.SOS_ALERT, ident)
    assert t.route(t.unit_position(ident)) == (Route.UNIT_POSITION, ident)
    assert t.route(t.unit_status(ident)) == (Route.UNIT_STATUS, ident)
    assert t.route(t.unit_ack(ident)) == (Route.UNIT_ACK, ident)
    assert t.route(t.app102_report) == (Route.APP102_REPORT, None)
    assert t.route(t.sos_ack(ident)) is None  # outgoing topics are never taken as input
    assert t.route(t.unit_orders(ident)) is None


@given(ident=st.text(max_size=10))
def test_building_a_topic_accepts_a_topic_level_or_says_why_not(ident: str) -> None:
    t = Topics(ROOT)
    try:
        topic = t.sos_alert(ident)
    except ValueError as e:
        assert "device id" in str(e)
        assert not ident or any(c in ident for c in "/+#\0")
    else:
        assert t.route(topic) == (Route.SOS_ALERT, ident)


@given(root=st.text(max_size=30))
def test_a_topic_root_is_accepted_or_refused_with_a_value_error(root: str) -> None:
    try:
        t = Topics(root)
    except ValueError as e:
        assert "topic root" in str(e)
    else:
        assert all(f.startswith(root + "/") for f in t.subscriptions)


# -- API request models -------------------------------------------------------------------------

API_MODELS: list[type[BaseModel]] = [
    UnitIn,
    UnitPatch,
    StatusIn,
    AssignIn,
    TransitionIn,
    AckIn,
    UserIn,
    BoothIn,
    PlanRequest,
]


@pytest.mark.parametrize("model", API_MODELS, ids=lambda m: m.__name__)
@given(data=st.data())
def test_api_models_validate_or_raise_validation_error(model: type[BaseModel], data: Any) -> None:
    raw = data.draw(json_values | _hostile_object(model))
    try:
        parsed = model.model_validate_json(json.dumps(raw))
    except ValidationError as e:
        assert e.errors(), "a ValidationError names what was wrong"
        return
    for value in parsed.model_dump().values():
        assert not (isinstance(value, str) and "\x00" in value), f"{model.__name__} accepted a NUL character"


@given(
    unit_id=st.from_regex(r"^[A-Za-z0-9_.:-]{1,64}$", fullmatch=True),
    kind=st.sampled_from(["booth", "foot", "car"]),
    name=texts.filter(lambda s: 1 <= len(s) <= 256),
    lat=lats,
    lon=lons,
    status=st.sampled_from(["available", "off_duty", "offline"]),
    staff=st.none()
    | st.tuples(
        st.from_regex(r"^([01]\d|2[0-3]):[0-5]\d$", fullmatch=True),
        st.from_regex(r"^([01]\d|2[0-3]):[0-5]\d$", fullmatch=True),
    ),
)
def test_every_valid_unit_registration_round_trips(
    unit_id: str, kind: str, name: str, lat: float, lon: float, status: str, staff: tuple[str, str] | None
) -> None:
    body = {"id": unit_id, "kind": kind, "name": name, "lat": lat, "lon": lon, "status": status}
    if staff:
        body.update(staff_from=staff[0], staff_to=staff[1])
    unit = UnitIn.model_validate_json(json.dumps(body))
    assert unit.model_dump(mode="json", exclude_none=True) == body


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (UnitIn, {"id": "u1", "kind": "foot", "name": "a\u0000b", "lat": 1, "lon": 1}),
        (UnitPatch, {"name": "x\u0000"}),
        (AssignIn, {"unit_id": "u\u0000"}),
        (TransitionIn, {"status": "cancelled", "reason": "r\u0000"}),
        (UserIn, {"username": "bob", "password": "pass\u0000word", "role": "viewer"}),
        (BoothIn, {"id": "b\u0000", "lat": 0, "lon": 0}),
        (PlanRequest, {"incidents_csv": "a,b\u0000"}),
        (PlanRequest, {"timezone": "\u0000"}),
    ],
)
def test_api_models_refuse_nul_characters(model: type[BaseModel], body: dict[str, Any]) -> None:
    """Regression: a NUL reached PostgreSQL (500) or the time zone database (ValueError -> 500)."""
    with pytest.raises(ValidationError):
        model.model_validate_json(json.dumps(body))


@pytest.mark.parametrize("model", [UnitStatusReport, UnitAck], ids=lambda m: m.__name__)
@given(alert_id=st.integers(min_value=MAX_ID + 1) | st.integers(max_value=0))
def test_an_alert_id_outside_the_database_range_is_a_bad_value(model: type, alert_id: int) -> None:
    """Regression: 2**63 reached SQLite as a query parameter (OverflowError: internal_error)."""
    body = {"ts": "2026-03-08T09:00:00Z", "status": "en_route", "alert_id": alert_id}
    with pytest.raises(Rejected) as e:
        _parse(model, json.dumps(body).encode())
    assert e.value.reason is RejectReason.BAD_VALUE and "alert_id" in e.value.detail
