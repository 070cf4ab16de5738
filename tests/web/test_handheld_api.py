"""The handheld's API over real HTTP, MQTT and databases: orders, moves, availability, positions, SSE.

Alerts come in as SOS presses over the real Mosquitto; dispatchers assign through the API; the
unit acts with a ``unit`` login bound to its unit, as the /unit page does.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import uuid
from datetime import datetime
from itertools import pairwise
from typing import Any

import httpx
import pytest
from support import FAR_DEVICE, Probe, Registry, Running, read_events, sos_payload

from dispatch import UnitKind
from geo import great_circle_m

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _device(registry: Registry, site: str) -> str:
    return next(d for d, dev in sorted(registry.devices.items()) if dev.site.value == site and d != FAR_DEVICE)


def _press(probe: Probe, device: str) -> int:
    probe.sos(device, sos_payload())
    return int(probe.next_ack(probe.topics.sos_ack(device))["alert_id"])


def _patrol(running: Running, alert_id: int, *, skip: tuple[str, ...] = ()) -> str:
    """The best recommended foot patrol or car of the alert (booths cannot report positions)."""
    alert = running.http.get(f"/api/alerts/{alert_id}").json()
    kinds = {u["id"]: u["kind"] for u in running.http.get("/api/units").json()}
    recommended = [r["unit_id"] for r in alert["recommendations"] if kinds[r["unit_id"]] != "booth"]
    others = [u for u, k in sorted(kinds.items()) if k != "booth" and u not in recommended]
    return next(u for u in [*recommended, *others] if u not in skip)


def _assign(running: Running, alert_id: int, unit_id: str) -> None:
    response = running.http.post(f"/api/alerts/{alert_id}/assign", json={"unit_id": unit_id})
    assert response.status_code == 200, response.text


class _Events:
    """The named events of one open SSE response, read on a thread of their own (for timeouts)."""

    def __init__(self, response: httpx.Response) -> None:
        self._queue: queue.Queue[dict[str, str]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(response,), daemon=True)
        self._thread.start()

    def _read(self, response: httpx.Response) -> None:
        current: dict[str, str] = {}
        try:
            for line in response.iter_lines():
                if line == "":
                    if "event" in current:
                        self._queue.put(current)
                    current = {}
                elif not line.startswith(":"):
                    field, _, value = line.partition(":")
                    current[field] = value[1:] if value.startswith(" ") else value
        except httpx.HTTPError:
            return  # the stream was closed by the test

    def next(self, *, timeout_s: float = 3.0) -> dict[str, str]:
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout_s} s") from None


def _move(unit: httpx.Client, unit_id: str, alert_id: int, status: str, **extra: Any) -> httpx.Response:
    return unit.post(f"/api/units/{unit_id}/order/status", json={"alert_id": alert_id, "status": status, **extra})


@SQLITE
def test_an_assigned_order_is_on_the_handheld_and_moves_through_every_status(
    running: Running, probe: Probe, registry: Registry
) -> None:
    alert_id = _press(probe, _device(registry, "hospital"))
    unit_id = _patrol(running, alert_id)
    unit = running.client("unit", unit_id=unit_id)
    empty = unit.get(f"/api/units/{unit_id}/order")
    assert empty.status_code == 200 and empty.json()["order"] is None
    assert empty.json()["unit"] == running.http.get(f"/api/units/{unit_id}").json()

    _assign(running, alert_id, unit_id)
    body = unit.get(f"/api/units/{unit_id}/order").json()
    order = body["order"]
    alert = running.http.get(f"/api/alerts/{alert_id}").json()
    assert body["unit"]["status"] == "assigned" and body["unit"]["alert_id"] == alert_id
    assert order["alert_id"] == alert_id and order["status"] == "assigned"
    assert order["order_id"] == str(alert["orders"][-1]["order_id"])
    assert (order["priority"], order["source"], order["site"]) == ("P1", "sos", "hospital")
    assert (order["lat"], order["lon"]) == (alert["lat"], alert["lon"])
    assert datetime.fromisoformat(order["alert_at"]) == datetime.fromisoformat(alert["received_at"])
    assert datetime.fromisoformat(order["assigned_at"]) == datetime.fromisoformat(alert["orders"][-1]["assigned_at"])
    assert order["ack_deadline"] is not None and order["ack_deadline"] > order["assigned_at"]
    assert order["street"] is None  # the generated city's streets have no names
    route = order["route"]
    assert len(route) >= 2
    start, end = route[0], route[-1]
    here = body["unit"]
    assert great_circle_m(start[0], start[1], here["lat"], here["lon"]) < 600
    assert great_circle_m(end[0], end[1], alert["lat"], alert["lon"]) < 600
    legs = sum(great_circle_m(a[0], a[1], b[0], b[1]) for a, b in pairwise(route))
    assert order["distance_m"] == pytest.approx(legs, abs=1.0)
    assert order["eta_s"] is not None and order["eta_s"] > 0

    acked = _move(unit, unit_id, alert_id, "acknowledged")
    assert acked.status_code == 200, acked.text
    assert acked.json()["order"]["status"] == "acknowledged" and acked.json()["order"]["ack_deadline"] is None
    assert running.http.get(f"/api/alerts/{alert_id}").json()["status"] == "acknowledged"
    again = _move(unit, unit_id, alert_id, "acknowledged")
    assert again.status_code == 409
    assert again.json()["current"]["order"]["status"] == "acknowledged"

    for status in ("en_route", "on_scene"):
        moved = _move(unit, unit_id, alert_id, status)
        assert moved.status_code == 200, moved.text
        assert moved.json()["order"]["status"] == status and moved.json()["unit"]["status"] == status

    no_outcome = _move(unit, unit_id, alert_id, "closed")
    assert no_outcome.status_code == 422 and "outcome" in no_outcome.text
    assert running.http.get(f"/api/alerts/{alert_id}").json()["status"] == "on_scene"
    long_note = _move(unit, unit_id, alert_id, "closed", outcome="resolved", note="x" * 501)
    assert long_note.status_code == 422

    closed = _move(unit, unit_id, alert_id, "closed", outcome="handed_over", note="  ambulance took over  ")
    assert closed.status_code == 200, closed.text
    assert closed.json()["order"] is None and closed.json()["unit"]["status"] == "available"
    shown = running.http.get(f"/api/alerts/{alert_id}").json()
    assert (shown["status"], shown["outcome"], shown["close_note"]) == ("closed", "handed_over", "ambulance took over")
    entries = running.http.get(f"/api/alerts/{alert_id}/timeline").json()["entries"]
    closing = [e for e in entries if e["action"] == "state_change" and (e["after"] or {}).get("status") == "closed"]
    assert len(closing) == 1
    assert closing[0]["actor"] == f"test-unit-{unit_id}"
    assert closing[0]["after"]["outcome"] == "handed_over"
    assert closing[0]["after"]["close_note"] == "ambulance took over"
    actors = {e["actor"] for e in entries if e["action"] in {"ack", "state_change"}}
    assert actors == {f"test-unit-{unit_id}"}

    after = _move(unit, unit_id, alert_id, "on_scene")
    assert after.status_code == 409 and after.json()["current"]["order"] is None


@SQLITE
def test_unlawful_moves_are_409_with_the_current_order(running: Running, probe: Probe, registry: Registry) -> None:
    alert_id = _press(probe, _device(registry, "street"))
    unit_id = _patrol(running, alert_id)
    unit = running.client("unit", unit_id=unit_id)
    _assign(running, alert_id, unit_id)
    for status, extra in (("closed", {"outcome": "resolved"}), ("on_scene", {})):
        if status == "on_scene":
            assert _move(unit, unit_id, alert_id, "en_route").status_code == 200
            status, extra = "closed", {"outcome": "nobody_found"}  # en_route -> closed skips on_scene
        refused = _move(unit, unit_id, alert_id, status, **extra)
        assert refused.status_code == 409, refused.text
        assert "cannot move" in refused.json()["detail"]
        assert refused.json()["current"]["order"]["alert_id"] == alert_id
    assert running.http.get(f"/api/alerts/{alert_id}").json()["status"] == "en_route"
    wrong_alert = _move(unit, unit_id, alert_id + 1000, "on_scene")
    assert wrong_alert.status_code == 409 and "no longer an order" in wrong_alert.json()["detail"]
    outcome_early = _move(unit, unit_id, alert_id, "on_scene", outcome="resolved")
    assert outcome_early.status_code == 422


@SQLITE
def test_re_assignment_withdraws_the_first_units_order_live(running: Running, probe: Probe, registry: Registry) -> None:
    alert_id = _press(probe, _device(registry, "hospital"))
    first = _patrol(running, alert_id)
    second = _patrol(running, alert_id, skip=(first,))
    unit = running.client("unit", unit_id=first)
    with unit.stream("GET", "/unit/events") as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = _Events(response)
        _assign(running, alert_id, first)
        offered = events.next()
        assert offered["event"] == "order" and json.loads(offered["data"])["alert_id"] == alert_id
        _assign(running, alert_id, second)
        withdrawn = events.next()
    assert withdrawn["event"] == "withdrawn"
    data = json.loads(withdrawn["data"])
    assert data["alert_id"] == alert_id and data["reason"] == "reassigned"
    assert data["order_id"] == json.loads(offered["data"])["order_id"]
    assert unit.get(f"/api/units/{first}/order").json()["order"] is None
    refused = _move(unit, first, alert_id, "acknowledged")
    assert refused.status_code == 409 and refused.json()["current"]["order"] is None
    other = running.client("unit", unit_id=second)
    assert other.get(f"/api/units/{second}/order").json()["order"]["alert_id"] == alert_id

    # Reconnecting with the last id replays what came after it; the stream never carries the map's events.
    with unit.stream("GET", "/unit/events", headers={"Last-Event-ID": offered["id"]}) as replay:
        [again] = read_events(replay, 1)
    assert (again["event"], again["id"]) == ("withdrawn", withdrawn["id"])


@SQLITE
def test_a_fresh_stream_starts_with_the_current_order_and_hears_its_changes(
    running: Running, probe: Probe, registry: Registry
) -> None:
    alert_id = _press(probe, _device(registry, "street"))
    unit_id = _patrol(running, alert_id)
    _assign(running, alert_id, unit_id)
    unit = running.client("unit", unit_id=unit_id)
    with unit.stream("GET", "/unit/events") as response:
        events = _Events(response)
        first = events.next()
        assert first["event"] == "order" and json.loads(first["data"])["status"] == "assigned"
        assert _move(unit, unit_id, alert_id, "acknowledged").status_code == 200
        acked = events.next()
        assert acked["event"] == "order" and json.loads(acked["data"])["status"] == "acknowledged"
        running.http.post(f"/api/alerts/{alert_id}/transition", json={"status": "cancelled", "reason": "called off"})
        gone = events.next()
    assert gone["event"] == "withdrawn" and json.loads(gone["data"])["reason"] == "cancelled"
    with unit.stream("GET", "/unit/events", headers={"Last-Event-ID": "0badc0de.1"}) as stale:
        [reset] = read_events(stale, 1)
    assert reset["event"] == "reset" and json.loads(reset["data"]) == {"order": None}


@SQLITE
def test_a_unit_login_is_refused_on_every_route_of_another_unit(
    running: Running, probe: Probe, registry: Registry
) -> None:
    alert_id = _press(probe, _device(registry, "street"))
    mine = _patrol(running, alert_id)
    theirs = _patrol(running, alert_id, skip=(mine,))
    _assign(running, alert_id, theirs)
    unit = running.client("unit", unit_id=mine)
    calls = [
        ("GET", f"/api/units/{theirs}/order", None),
        ("POST", f"/api/units/{theirs}/order/status", {"alert_id": alert_id, "status": "acknowledged"}),
        ("PUT", f"/api/units/{theirs}/availability", {"status": "off_duty"}),
        ("PUT", f"/api/units/{theirs}/position", {"lat": 43.2, "lon": 76.9, "accuracy_m": 5}),
    ]
    for method, path, body in calls:
        response = unit.request(method, path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code == 403, (method, path, response.text)
        assert str(alert_id) not in response.text and "route" not in response.text
    assert running.http.get(f"/api/alerts/{alert_id}").json()["status"] == "assigned"
    assert running.http.get(f"/api/units/{theirs}").json()["status"] == "assigned"
    # The dispatcher reads any unit's order, but a move is the unit's own.
    assert running.http.get(f"/api/units/{theirs}/order").json()["order"]["alert_id"] == alert_id
    assert (
        running.http.post(
            f"/api/units/{theirs}/order/status", json={"alert_id": alert_id, "status": "acknowledged"}
        ).status_code
        == 403
    )
    viewer = running.client("viewer")
    assert viewer.put(f"/api/units/{mine}/availability", json={"status": "off_duty"}).status_code == 403
    assert running.client("viewer").get("/unit/events").status_code == 403


@SQLITE
def test_availability_and_a_busy_unit(running: Running, probe: Probe, registry: Registry) -> None:
    alert_id = _press(probe, _device(registry, "street"))
    unit_id = _patrol(running, alert_id)
    unit = running.client("unit", unit_id=unit_id)
    off = unit.put(f"/api/units/{unit_id}/availability", json={"status": "off_duty"})
    assert off.status_code == 200 and off.json()["status"] == "off_duty" and off.json()["recommendable"] is False
    assert running.http.post(f"/api/alerts/{alert_id}/assign", json={"unit_id": unit_id}).status_code == 409
    on = unit.put(f"/api/units/{unit_id}/availability", json={"status": "available"})
    assert on.status_code == 200 and on.json()["status"] == "available"
    _assign(running, alert_id, unit_id)
    busy = unit.put(f"/api/units/{unit_id}/availability", json={"status": "off_duty"})
    assert busy.status_code == 409
    assert unit.put(f"/api/units/{unit_id}/availability", json={"status": "en_route"}).status_code == 422
    audit = running.service.store.audit_entries(unit_id=unit_id)
    changes = [(e.actor, json.loads(e.after or "{}").get("status")) for e in audit if e.action == "unit_status"]
    assert changes == [(f"test-unit-{unit_id}", "off_duty"), (f"test-unit-{unit_id}", "available")]


@SQLITE
def test_a_flagged_fix_is_not_used_by_ranking_and_a_good_one_is(running: Running, registry: Registry) -> None:
    car = next(u for u in registry.units if u.kind is UnitKind.CAR)
    booth = next(u for u in registry.units if u.kind is UnitKind.BOOTH)
    unit = running.client("unit", unit_id=car.id)
    before = running.http.get(f"/api/units/{car.id}").json()
    # Somewhere else in the city: the farthest booth from the car.
    target = max(registry.units, key=lambda u: great_circle_m(u.lat, u.lon, car.lat, car.lon))
    limit = running.service.settings.location_accuracy_max_m

    def eta_to_target() -> float:
        ranked = running.service.router.recommend(target.lat, target.lon, k=None)
        return next(r.eta_s for r in ranked if r.unit_id == car.id)

    eta_before = eta_to_target()
    flagged = unit.put(
        f"/api/units/{car.id}/position", json={"lat": target.lat, "lon": target.lon, "accuracy_m": limit + 1}
    )
    assert flagged.status_code == 200
    body = flagged.json()
    assert (body["accepted"], body["flagged"], body["accuracy_max_m"]) == (False, True, limit)
    assert "accuracy" in body["reason"]
    still = running.http.get(f"/api/units/{car.id}").json()
    assert (still["lat"], still["lon"], still["position_ts"]) == (before["lat"], before["lon"], before["position_ts"])
    assert running.http.get("/api/metrics").json()["positions_flagged"] == 1
    assert eta_to_target() == pytest.approx(eta_before)
    assert re.search(
        r'^qorgau_unit_positions_flagged_total\{replica="[^"]+"\} 1\.0$', running.http.get("/metrics").text, re.M
    )
    audited = [e for e in running.service.store.audit_entries(unit_id=car.id) if e.action == "position_flagged"]
    assert len(audited) == 1 and audited[0].actor == f"test-unit-{car.id}"

    good = unit.put(f"/api/units/{car.id}/position", json={"lat": target.lat, "lon": target.lon, "accuracy_m": 8})
    assert good.json() == {"accepted": True, "flagged": False, "reason": None, "accuracy_max_m": limit}
    moved = running.http.get(f"/api/units/{car.id}").json()
    assert (moved["lat"], moved["lon"]) == pytest.approx((target.lat, target.lon))
    assert moved["position_ts"] is not None
    assert eta_to_target() < eta_before / 2  # ranking starts from the good fix
    assert running.http.get("/api/metrics").json()["positions_flagged"] == 1

    booth_login = running.client("unit", unit_id=booth.id)
    fixed = booth_login.put(
        f"/api/units/{booth.id}/position", json={"lat": booth.lat, "lon": booth.lon, "accuracy_m": 3}
    )
    assert fixed.status_code == 409 and "fixed" in fixed.json()["detail"]
    bad = unit.put(f"/api/units/{car.id}/position", json={"lat": 91, "lon": 0, "accuracy_m": 3})
    assert bad.status_code == 422


def test_an_idempotency_key_is_applied_once_also_across_a_restart(
    start_service: Any, registry: Registry, probe: Probe
) -> None:
    running = start_service()
    alert_id = _press(probe, _device(registry, "street"))
    unit_id = _patrol(running, alert_id)
    _assign(running, alert_id, unit_id)
    unit = running.client("unit", unit_id=unit_id)
    key = {"Idempotency-Key": f"ack-{uuid.uuid4().hex}"}
    body = {"alert_id": alert_id, "status": "acknowledged"}
    first = unit.post(f"/api/units/{unit_id}/order/status", json=body, headers=key)
    assert first.status_code == 200 and "idempotent-replay" not in first.headers
    repeat = unit.post(f"/api/units/{unit_id}/order/status", json=body, headers=key)
    assert repeat.status_code == 200 and repeat.headers["idempotent-replay"] == "true"
    assert repeat.json() == first.json()
    acks = [e for e in running.service.store.audit_entries(alert_id=alert_id) if e.action == "ack"]
    assert len(acks) == 1
    reused = unit.post(f"/api/units/{unit_id}/order/status", json={**body, "status": "en_route"}, headers=key)
    assert reused.status_code == 422 and "different request" in reused.json()["detail"]
    assert (
        unit.post(f"/api/units/{unit_id}/order/status", json=body, headers={"Idempotency-Key": "short"}).status_code
        == 422
    )

    en_route_key = {"Idempotency-Key": f"go-{uuid.uuid4().hex}"}
    go = unit.post(f"/api/units/{unit_id}/order/status", json={**body, "status": "en_route"}, headers=en_route_key)
    assert go.status_code == 200
    port = running.service.port
    running.service.stop()

    again = start_service(port=port)
    unit = again.client("unit", unit_id=unit_id)
    replay = unit.post(f"/api/units/{unit_id}/order/status", json={**body, "status": "en_route"}, headers=en_route_key)
    assert replay.status_code == 200 and replay.headers["idempotent-replay"] == "true"
    assert replay.json()["order"]["status"] == "en_route"
    moves = [
        e
        for e in again.service.store.audit_entries(alert_id=alert_id)
        if e.action == "state_change" and json.loads(e.after or "{}").get("status") == "en_route"
    ]
    assert len(moves) == 1
    # Another user's same key is another request.
    dispatcher_key = running.http.put(
        f"/api/units/{unit_id}/availability", json={"status": "off_duty"}, headers=en_route_key
    )
    assert dispatcher_key.status_code in (200, 409)  # not a replay of the unit's answer
    assert "idempotent-replay" not in dispatcher_key.headers


@SQLITE
def test_concurrent_repeats_of_one_key_apply_it_once(running: Running, probe: Probe, registry: Registry) -> None:
    alert_id = _press(probe, _device(registry, "street"))
    unit_id = _patrol(running, alert_id)
    _assign(running, alert_id, unit_id)
    unit = running.client("unit", unit_id=unit_id)
    key = {"Idempotency-Key": f"race-{uuid.uuid4().hex}"}
    results: list[httpx.Response] = []
    barrier = threading.Barrier(4)

    def send() -> None:
        with httpx.Client(base_url=running.service.base_url, headers=unit.headers, timeout=10) as c:
            barrier.wait()
            results.append(
                c.post(
                    f"/api/units/{unit_id}/order/status",
                    json={"alert_id": alert_id, "status": "acknowledged"},
                    headers=key,
                )
            )

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) >= 1 and set(codes) <= {200, 409}
    acks = [e for e in running.service.store.audit_entries(alert_id=alert_id) if e.action == "ack"]
    assert len(acks) == 1
