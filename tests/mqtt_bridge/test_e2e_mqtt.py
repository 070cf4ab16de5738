"""End to end through the real Mosquitto and a real database: publish, ingest, rank, commit, ack."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support import FAR_DEVICE, BruteForce, Probe, Registry, Running, now_rfc3339, report_payload, sos_payload, wait_for

from geo import StreetNetwork


def _alert_for(running: Running, event_id: str) -> dict:
    def find() -> dict | None:
        return next((a for a in running.alerts() if a["event_id"] == event_id), None)

    return wait_for(find, timeout_s=2.0, what=f"alert {event_id} in GET /api/alerts")


def _street_device(registry: Registry) -> str:
    return next(d for d in sorted(registry.devices) if d != FAR_DEVICE)


def _assert_nearest_by_eta(alert: dict, registry: Registry, city: StreetNetwork) -> None:
    expected = registry.router(city).recommend(alert["lat"], alert["lon"], k=None)
    # The first unit is the nearest by a brute-force networkx Dijkstra too (support.BruteForce).
    brute = BruteForce(city).etas(
        {u.id: (u.kind.value, u.lat, u.lon) for u in registry.units}, alert["lat"], alert["lon"]
    )
    best_id, (best_eta, _) = min(brute.items(), key=lambda kv: kv[1][0])
    recs = alert["recommendations"]
    assert recs and recs[0]["unit_id"] == best_id
    assert recs[0]["eta_s"] == pytest.approx(best_eta, abs=1e-6)
    assert recs, "the alert has no recommendations"
    assert [r["eta_s"] for r in recs] == sorted(r["eta_s"] for r in recs)
    assert recs[0]["unit_id"] == expected[0].unit_id
    assert recs[0]["unit_kind"] == expected[0].unit_kind
    assert recs[0]["eta_s"] == pytest.approx(expected[0].eta_s, rel=1e-9)
    assert recs[0]["distance_m"] == pytest.approx(expected[0].distance_m, rel=1e-9)
    assert [r["unit_id"] for r in recs] == [e.unit_id for e in expected[: len(recs)]]


def test_sos_press_becomes_alert_with_nearest_unit_and_accepted_ack(
    running: Running, probe: Probe, registry: Registry, city: StreetNetwork
) -> None:
    device_id = _street_device(registry)
    payload = sos_payload()
    probe.sos(device_id, payload)

    ack = probe.next_ack(probe.topics.sos_ack(device_id))
    # The ack is published after the commit: the alert it names is already readable.
    response = running.http.get(f"/api/alerts/{ack['alert_id']}")
    assert response.status_code == 200
    alert = response.json()
    assert ack == {
        "event_id": payload["event_id"],
        "alert_id": alert["id"],
        "status": "accepted",
        "reason": None,
        "detail": None,
    }
    assert alert["source"] == "sos"
    assert alert["device_id"] == device_id
    assert alert["status"] == "recommended"  # ranked at ingest: new -> recommended
    device = registry.devices[device_id]
    assert (alert["lat"], alert["lon"]) == (device.lat, device.lon)
    assert alert["received_at"].endswith(("Z", "+00:00"))
    assert len(alert["recommendations"]) == 3
    _assert_nearest_by_eta(alert, registry, city)
    assert _alert_for(running, payload["event_id"])["id"] == alert["id"]


def test_app102_report_becomes_alert_and_acks_on_its_response_topic(
    running: Running, probe: Probe, registry: Registry, city: StreetNetwork
) -> None:
    lat, lon = city.center
    payload = report_payload(lat + 0.003, lon - 0.002)
    reply_to = probe.topics.app102_ack_prefix + "phone-42"
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply_to
    props.CorrelationData = b"req-1"
    probe.publish(probe.topics.app102_report, payload, properties=props)

    alert = _alert_for(running, payload["event_id"])
    assert alert["source"] == "app102"
    assert alert["device_id"] is None
    assert (alert["lat"], alert["lon"], alert["accuracy_m"]) == (payload["lat"], payload["lon"], 12.5)
    assert (alert["category"], alert["text"], alert["priority"]) == ("theft", "a bag was snatched", 3)
    _assert_nearest_by_eta(alert, registry, city)
    ack = probe.next_ack(reply_to)
    assert (ack["status"], ack["alert_id"], ack["event_id"]) == ("accepted", alert["id"], payload["event_id"])


def test_app102_report_without_response_topic_is_ingested(running: Running, probe: Probe, city: StreetNetwork) -> None:
    lat, lon = city.center
    payload = report_payload(lat, lon)
    probe.publish(probe.topics.app102_report, payload)
    assert _alert_for(running, payload["event_id"])["recommendations"]


def test_same_message_twice_makes_one_alert_and_the_same_ack(
    running: Running, probe: Probe, registry: Registry
) -> None:
    device_id = _street_device(registry)
    payload = json.dumps(sos_payload()).encode()
    probe.sos(device_id, payload)
    first = probe.next_ack(probe.topics.sos_ack(device_id))
    probe.sos(device_id, payload)
    second = probe.next_ack(probe.topics.sos_ack(device_id))
    assert first == second
    assert first["status"] == "accepted"
    assert len(running.alerts()) == 1
    metrics = running.http.get("/api/metrics").json()
    assert metrics["accepted"] == {"sos": 1}
    assert metrics["duplicates"] == {"sos": 1}


def test_same_event_id_from_two_devices_makes_two_alerts(running: Running, probe: Probe, registry: Registry) -> None:
    a, b = [d for d in sorted(registry.devices) if d != FAR_DEVICE][:2]
    payload = sos_payload()
    probe.sos(a, payload)
    probe.sos(b, payload)
    ack_a = probe.next_ack(probe.topics.sos_ack(a))
    ack_b = probe.next_ack(probe.topics.sos_ack(b))
    assert ack_a["alert_id"] != ack_b["alert_id"]


BAD_SOS = [
    pytest.param(b'{"event_id": "e-1", "ts": ', "malformed_json", id="malformed-json"),
    pytest.param(b"\xff\xfe not utf-8", "malformed_json", id="not-utf8"),
    pytest.param(json.dumps({"event_id": "e-1", "ts": now_rfc3339()}).encode(), "missing_field", id="missing-field"),
    pytest.param(
        json.dumps({"event_id": 17, "ts": now_rfc3339(), "kind": "press"}).encode(), "wrong_type", id="wrong-type"
    ),
    pytest.param(json.dumps(["not", "an", "object"]).encode(), "wrong_type", id="not-an-object"),
    pytest.param(
        json.dumps({"event_id": "e-1", "ts": now_rfc3339(), "kind": "hello"}).encode(), "bad_value", id="bad-kind"
    ),
    pytest.param(
        json.dumps({"event_id": "e-1", "ts": now_rfc3339(timedelta(days=1)), "kind": "press"}).encode(),
        "ts_in_future",
        id="ts-in-future",
    ),
    pytest.param(
        json.dumps({"event_id": "e-1", "ts": now_rfc3339(), "kind": "press", "pad": "x" * 20_000}).encode(),
        "oversized_payload",
        id="oversized",
    ),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_SOS)
def test_bad_sos_is_rejected_counted_and_the_next_goes_through(
    running: Running, probe: Probe, registry: Registry, payload: bytes, reason: str
) -> None:
    device_id = _street_device(registry)
    assert running.rejected(reason) == 0
    probe.sos(device_id, payload)
    ack = probe.next_ack(probe.topics.sos_ack(device_id))
    assert ack["status"] == "rejected"
    assert ack["reason"] == reason
    assert ack["alert_id"] is None
    assert ack["detail"]

    good = sos_payload()
    probe.sos(device_id, good)
    assert probe.next_ack(probe.topics.sos_ack(device_id))["status"] == "accepted"
    assert _alert_for(running, good["event_id"])
    assert running.rejected(reason) == 1
    assert len(running.alerts()) == 1


def test_unknown_device_is_rejected_and_the_next_goes_through(
    running: Running, probe: Probe, registry: Registry
) -> None:
    bad = sos_payload()
    probe.sos("no-such-button", bad)
    ack = probe.next_ack(probe.topics.sos_ack("no-such-button"))
    assert (ack["status"], ack["reason"], ack["event_id"]) == ("rejected", "unknown_device", bad["event_id"])
    assert "no-such-button" in ack["detail"]
    good = sos_payload()
    probe.sos(_street_device(registry), good)
    assert _alert_for(running, good["event_id"])
    assert running.rejected("unknown_device") == 1


def test_device_outside_service_area_is_rejected_and_the_next_goes_through(
    running: Running, probe: Probe, registry: Registry
) -> None:
    probe.sos(FAR_DEVICE, sos_payload())
    ack = probe.next_ack(probe.topics.sos_ack(FAR_DEVICE))
    assert (ack["status"], ack["reason"]) == ("rejected", "outside_service_area")
    assert "m from the nearest street" in ack["detail"]
    good = sos_payload()
    probe.sos(_street_device(registry), good)
    assert _alert_for(running, good["event_id"])
    assert running.rejected("outside_service_area") == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"lat": 0.0, "lon": 0.0}, "outside_service_area", id="outside-service-area"),
        pytest.param({"lat": "43.2"}, "wrong_type", id="wrong-type"),
        pytest.param({"lat": 95.0}, "bad_value", id="latitude-out-of-range"),
        pytest.param({"accuracy_m": None}, "wrong_type", id="null-accuracy"),
    ],
)
def test_bad_102_report_is_rejected_and_the_next_goes_through(
    running: Running, probe: Probe, city: StreetNetwork, change: dict, reason: str
) -> None:
    lat, lon = city.center
    reply_to = probe.topics.app102_ack_prefix + "phone-7"
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply_to
    probe.publish(probe.topics.app102_report, {**report_payload(lat, lon), **change}, properties=props)
    ack = probe.next_ack(reply_to)
    assert (ack["status"], ack["reason"]) == ("rejected", reason)

    good = report_payload(lat, lon)
    probe.publish(probe.topics.app102_report, good)
    assert _alert_for(running, good["event_id"])
    assert running.rejected(reason) == 1


def test_response_topic_outside_app102_acks_is_not_used(running: Running, probe: Probe, registry: Registry) -> None:
    device_id = _street_device(registry)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = probe.topics.sos_ack(device_id)  # a report must not speak for a device
    lat, lon = registry.devices[device_id].lat, registry.devices[device_id].lon
    payload = report_payload(lat, lon)
    probe.publish(probe.topics.app102_report, payload, properties=props)
    assert _alert_for(running, payload["event_id"])
    with pytest.raises(AssertionError, match="no message"):
        probe.next_ack(probe.topics.sos_ack(device_id), timeout_s=0.3)


def test_unit_position_moves_the_unit_and_its_recommendation(
    running: Running, probe: Probe, registry: Registry, city: StreetNetwork
) -> None:
    device_id = _street_device(registry)
    device = registry.devices[device_id]
    car = next(u for u in registry.units if u.kind.value == "car")
    ts = now_rfc3339()
    probe.publish(probe.topics.unit_position(car.id), {"ts": ts, "lat": device.lat, "lon": device.lon})

    def moved() -> dict | None:
        units = {u["id"]: u for u in running.http.get("/api/units").json()}
        return units[car.id] if units[car.id]["lat"] == device.lat else None

    unit = wait_for(moved, what=f"{car.id} at the device")
    assert (unit["lon"], unit["kind"], unit["status"]) == (device.lon, "car", "available")
    assert running.service.store.get_unit(car.id).lat == device.lat  # committed, survives a restart

    probe.sos(device_id, sos_payload())
    ack = probe.next_ack(probe.topics.sos_ack(device_id))
    alert = running.http.get(f"/api/alerts/{ack['alert_id']}").json()
    router = registry.router(city)
    router.place_unit(car.id, "car", device.lat, device.lon)
    expected = router.recommend(device.lat, device.lon, k=None)[0]
    assert alert["recommendations"][0]["unit_id"] == expected.unit_id
    assert alert["recommendations"][0]["eta_s"] == pytest.approx(expected.eta_s)


@pytest.mark.parametrize(
    ("unit", "position", "reason"),
    [
        pytest.param("no-such-unit", {"lat": 43.24, "lon": 76.94}, "unknown_unit", id="unknown-unit"),
        pytest.param(None, {"lat": 0.0, "lon": 0.0}, "outside_service_area", id="outside-service-area"),
        pytest.param(None, {"lat": 43.24}, "missing_field", id="missing-field"),
    ],
)
def test_bad_unit_position_is_rejected_and_the_unit_stays(
    running: Running, probe: Probe, registry: Registry, unit: str | None, position: dict, reason: str
) -> None:
    original = next(u for u in registry.units if u.kind.value == "foot")
    unit_id = unit or original.id
    probe.publish(probe.topics.unit_position(unit_id), {"ts": now_rfc3339(), **position})
    wait_for(lambda: running.rejected(reason) == 1, what=f"rejection counted as {reason}")
    units = {u["id"]: u for u in running.http.get("/api/units").json()}
    assert (units[original.id]["lat"], units[original.id]["lon"]) == (original.lat, original.lon)


def test_stale_position_is_ignored(running: Running, probe: Probe, registry: Registry) -> None:
    foot = next(u for u in registry.units if u.kind.value == "foot")
    other = next(d for d in registry.devices.values() if d.id != FAR_DEVICE)
    probe.publish(probe.topics.unit_position(foot.id), {"ts": now_rfc3339(), "lat": other.lat, "lon": other.lon})
    probe.publish(
        probe.topics.unit_position(foot.id),
        {"ts": now_rfc3339(timedelta(minutes=-10)), "lat": foot.lat, "lon": foot.lon},
    )
    wait_for(lambda: running.rejected("stale_position") == 1, what="stale position counted")
    units = {u["id"]: u for u in running.http.get("/api/units").json()}
    assert (units[foot.id]["lat"], units[foot.id]["lon"]) == (other.lat, other.lon)


def test_restart_ingests_alerts_published_while_down(
    start_service: Callable[[], Running], probe: Probe, registry: Registry
) -> None:
    first = start_service()
    first.service.stop()  # keeps the persistent session: the broker queues for us
    device_id = _street_device(registry)
    payloads = [sos_payload() for _ in range(3)]
    for payload in payloads:
        probe.sos(device_id, payload)

    second = start_service()
    for payload in payloads:
        assert _alert_for(second, payload["event_id"])["status"] == "recommended"
    acks = [probe.next_ack(probe.topics.sos_ack(device_id)) for _ in payloads]
    assert sorted(a["event_id"] for a in acks) == sorted(p["event_id"] for p in payloads)
    assert {a["status"] for a in acks} == {"accepted"}
    assert len(second.alerts()) == 3


def test_test_press_is_recorded_as_test(running: Running, probe: Probe, registry: Registry) -> None:
    device_id = _street_device(registry)
    payload = sos_payload(kind="test")
    probe.sos(device_id, payload)
    assert probe.next_ack(probe.topics.sos_ack(device_id))["status"] == "accepted"
    alert = _alert_for(running, payload["event_id"])
    assert (alert["status"], alert["kind"]) == ("test", "test")


def test_tcp_nodelay_is_set_on_the_bridge_socket(running: Running) -> None:
    sock = running.service.bridge.socket()
    assert sock is not None
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_healthz_reports_database_mqtt_and_counters(running: Running, probe: Probe) -> None:
    probe.sos("unknown-button", b"not json")
    probe.next_ack(probe.topics.sos_ack("unknown-button"))
    response = running.http.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "mqtt": "ok"}
    assert body["metrics"]["rejected"]["malformed_json"] == 1
    mqtt_health = body["mqtt"]
    assert set(mqtt_health["connected"]) == {"sos", "units", "app102", "devices"}
    assert all(mqtt_health["connected"].values())
    assert 0 <= mqtt_health["last_processed_age_s"] < 5  # the bad press was processed just now
    assert mqtt_health["queue_depth"] == {"sos": 0, "units": 0, "app102": 0, "devices": 0}


def test_metrics_are_prometheus_text_with_counters_reasons_and_the_latency_histogram(
    running: Running, probe: Probe, registry: Registry
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    device_id = next(d for d in sorted(registry.devices) if d != FAR_DEVICE)
    for payload in (sos_payload(), b"not json", sos_payload()):
        probe.sos(device_id, payload)
        probe.next_ack(probe.topics.sos_ack(device_id))
    response = httpx.get(f"{running.service.base_url}/metrics")  # no sign-in, as Prometheus scrapes
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    every = [s for family in text_string_to_metric_families(response.text) for s in family.samples]
    assert {s.labels.get("replica") for s in every} == {running.service.settings.replica}  # every sample says whose
    samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "replica"))): s.value for s in every}
    assert samples[("qorgau_alerts_accepted_total", (("source", "sos"),))] == 2
    assert samples[("qorgau_messages_rejected_total", (("reason", "malformed_json"),))] == 1
    assert samples[("qorgau_mqtt_messages_received_total", (("route", "sos_alert"),))] == 3
    assert samples[("qorgau_ingest_latency_seconds_count", ())] >= 3
    assert samples[("qorgau_ingest_latency_seconds_bucket", (("le", "+Inf"),))] >= 3
    assert samples[("qorgau_mqtt_queue_depth", (("lane", "sos"),))] == 0
    assert samples[("qorgau_mqtt_connected", (("lane", "app102"),))] == 1
    assert ("qorgau_devices", (("state", "online"),)) in samples


def test_api_404_names_the_missing_alert(running: Running) -> None:
    response = running.http.get("/api/alerts/987654")
    assert response.status_code == 404
    assert response.json()["detail"] == "alert 987654 does not exist"


def test_units_api_lists_the_registry(running: Running, registry: Registry) -> None:
    units = running.http.get("/api/units").json()
    assert [u["id"] for u in units] == sorted(u.id for u in registry.units)
    assert {u["status"] for u in units} == {"available"}
    assert all(math.isfinite(u["lat"]) for u in units)
