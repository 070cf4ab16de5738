"""Message schemas: every fault maps to one reason and a detail naming the field and value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from dispatch.intake import App102Report, Rejected, SosAlert, UnitPosition, parse_message
from dispatch.ports import RejectReason

NOW = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)


def _parse(model: type, payload: dict | bytes, **kw: object):  # type: ignore[no-untyped-def]
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_message(model, data, now=NOW, max_bytes=kw.pop("max_bytes", 4096), **kw)  # type: ignore[arg-type]


def test_valid_sos_alert_is_parsed_with_utc_time() -> None:
    msg = _parse(SosAlert, {"event_id": "e1", "ts": "2026-03-08T14:29:00+05:00", "kind": "press", "extra": 1})
    assert msg.event_id == "e1"
    assert msg.ts == datetime(2026, 3, 8, 9, 29, tzinfo=UTC)
    assert msg.kind == "press"


def test_valid_report_and_position() -> None:
    report = _parse(
        App102Report,
        {
            "event_id": "r1",
            "ts": "2026-03-08T09:00:00Z",
            "lat": 43.2,
            "lon": 76.9,
            "accuracy_m": 8,
            "category": "theft",
            "text": "",
        },
    )
    assert (report.lat, report.accuracy_m, report.text) == (43.2, 8.0, "")
    position = _parse(UnitPosition, {"ts": "2026-03-08T09:00:00Z", "lat": 43.2, "lon": 76.9})
    assert position.lon == 76.9


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"{nope", RejectReason.MALFORMED_JSON, "not valid JSON"),
        (b"", RejectReason.MALFORMED_JSON, "not valid JSON"),
        (b"[]", RejectReason.WRONG_TYPE, "'payload'"),
        ({"event_id": "e1", "kind": "press"}, RejectReason.MISSING_FIELD, "field 'ts' is required by SosAlert"),
        ({"event_id": 5, "ts": "2026-03-08T09:00:00Z", "kind": "press"}, RejectReason.WRONG_TYPE, "'event_id'"),
        ({"event_id": "e1", "ts": 1700000000, "kind": "press"}, RejectReason.WRONG_TYPE, "'ts'"),
        ({"event_id": "e1", "ts": "2026-03-08T09:00:00", "kind": "press"}, RejectReason.BAD_VALUE, "timezone"),
        ({"event_id": "e1", "ts": "yesterday", "kind": "press"}, RejectReason.BAD_VALUE, "'ts'"),
        ({"event_id": "e1", "ts": "2026-03-08T09:00:00Z", "kind": "boom"}, RejectReason.BAD_VALUE, "'boom'"),
        ({"event_id": "", "ts": "2026-03-08T09:00:00Z", "kind": "press"}, RejectReason.BAD_VALUE, "'event_id'"),
        # several faults: the most basic one is reported
        ({"event_id": 5, "kind": "boom"}, RejectReason.WRONG_TYPE, "'event_id'"),
    ],
)
def test_bad_sos_payloads(payload: dict | bytes, reason: RejectReason, detail: str) -> None:
    with pytest.raises(Rejected) as info:
        _parse(SosAlert, payload)
    assert info.value.reason is reason
    assert detail in info.value.detail


def test_event_id_is_kept_when_readable() -> None:
    with pytest.raises(Rejected) as info:
        _parse(SosAlert, {"event_id": "e-42", "ts": "2026-03-08T09:00:00Z", "kind": "boom"})
    assert info.value.event_id == "e-42"


def test_ts_in_future_beyond_skew_is_rejected_within_skew_accepted() -> None:
    soon = (NOW + timedelta(minutes=4)).isoformat()
    assert _parse(SosAlert, {"event_id": "e", "ts": soon, "kind": "press"}).ts > NOW
    later = (NOW + timedelta(hours=2)).isoformat()
    with pytest.raises(Rejected, match=r"ts_in_future: ts .* lies 7200 s in the future") as info:
        _parse(SosAlert, {"event_id": "e", "ts": later, "kind": "press"})
    assert info.value.event_id == "e"


def test_oversized_payload_is_not_parsed() -> None:
    with pytest.raises(Rejected, match="payload has 5000 bytes, the limit is 4096") as info:
        _parse(SosAlert, b"{" + b" " * 4998 + b"}")
    assert info.value.reason is RejectReason.OVERSIZED_PAYLOAD


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"lat": 91}, RejectReason.BAD_VALUE),
        ({"lon": -181}, RejectReason.BAD_VALUE),
        ({"lat": "43.2"}, RejectReason.WRONG_TYPE),
        ({"lat": True}, RejectReason.WRONG_TYPE),
        ({"accuracy_m": -1}, RejectReason.BAD_VALUE),
        ({"category": ""}, RejectReason.BAD_VALUE),
        ({"text": None}, RejectReason.WRONG_TYPE),
    ],
)
def test_bad_report_fields(change: dict, reason: RejectReason) -> None:
    good = {
        "event_id": "r1",
        "ts": "2026-03-08T09:00:00Z",
        "lat": 43.2,
        "lon": 76.9,
        "accuracy_m": 8,
        "category": "theft",
        "text": "x",
    }
    with pytest.raises(Rejected) as info:
        _parse(App102Report, {**good, **change})
    assert info.value.reason is reason
    assert next(iter(change)) in info.value.detail


def test_nan_coordinates_are_rejected() -> None:
    with pytest.raises(Rejected) as info:
        _parse(UnitPosition, b'{"ts": "2026-03-08T09:00:00Z", "lat": NaN, "lon": 76.9}')
    assert info.value.reason is RejectReason.BAD_VALUE
    assert "finite" in info.value.detail
