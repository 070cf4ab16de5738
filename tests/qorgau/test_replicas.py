"""Two real ``qorgau serve`` replicas on one PostgreSQL database and the test broker (issue 11).

Every replica has its own persistent MQTT sessions on the plain topics (docs/scaling.md, "The
design"), so every replica ingests every message and the database's event-id uniqueness decides
which one commits; the others acknowledge the same alert.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from support import Probe, Replicas, new_event_id, now_rfc3339, sos_payload, wait_for


def _acks(probe: Probe, topic: str, n: int, *, timeout_s: float) -> list[dict]:
    return [probe.next_ack(topic, timeout_s=timeout_s) for _ in range(n)]


@pytest.fixture(scope="module")
def pair(start_replicas: Callable[[int], Replicas]) -> Replicas:
    return start_replicas(2)


@pytest.fixture
def rprobe(pair: Replicas, mqtt_url: str) -> Iterator[Probe]:
    p = Probe(mqtt_url, pair.topic_root)
    yield p
    p.close()


def test_a_press_makes_one_alert_and_every_replica_acknowledges_it(
    pair: Replicas, rprobe: Probe, replica_city: tuple
) -> None:
    _, registry = replica_city
    replicas, probe = pair, rprobe
    device_id = sorted(d for d in registry.devices if d != "far-1")[0]
    payload = sos_payload()
    probe.sos(device_id, payload)

    acks = _acks(probe, probe.topics.sos_ack(device_id), 2, timeout_s=10)
    assert {a["status"] for a in acks} == {"accepted"}
    assert len({a["alert_id"] for a in acks}) == 1  # the same alert from both replicas
    for replica in replicas:
        stored = [a for a in replica.http.get("/api/alerts").json() if a["event_id"] == payload["event_id"]]
        assert [a["id"] for a in stored] == [acks[0]["alert_id"]]


def test_a_press_to_a_killed_replica_is_acknowledged_by_the_other_and_again_after_its_restart(
    pair: Replicas, rprobe: Probe, replica_city: tuple
) -> None:
    _, registry = replica_city
    replicas, probe = pair, rprobe
    device_id = sorted(d for d in registry.devices if d != "far-1")[1]
    replicas[0].kill()
    event_id = new_event_id()
    sent = time.monotonic()
    probe.sos(device_id, {"event_id": event_id, "ts": now_rfc3339(), "kind": "press"})
    first = probe.next_ack(probe.topics.sos_ack(device_id), timeout_s=5)
    delay_s = time.monotonic() - sent
    assert first["status"] == "accepted" and first["event_id"] == event_id
    assert delay_s < 5

    # the killed replica's session kept the press: after the restart it acknowledges the same alert
    replicas[0].start().wait_healthy()
    again = probe.next_ack(probe.topics.sos_ack(device_id), timeout_s=30)
    assert (again["event_id"], again["alert_id"], again["status"]) == (event_id, first["alert_id"], "accepted")
    stored = [a for a in replicas[0].http.get("/api/alerts").json() if a["event_id"] == event_id]
    assert len(stored) == 1


def test_a_unit_position_reaches_every_replica(pair: Replicas, rprobe: Probe, replica_city: tuple) -> None:
    _, registry = replica_city
    replicas, probe = pair, rprobe
    device = registry.devices[sorted(d for d in registry.devices if d != "far-1")[2]]
    foot = next(u for u in registry.units if u.kind.value == "foot")
    probe.publish(probe.topics.unit_position(foot.id), {"ts": now_rfc3339(), "lat": device.lat, "lon": device.lon})
    for replica in replicas:

        def moved(replica=replica) -> dict | None:  # type: ignore[no-untyped-def]
            units = {u["id"]: u for u in replica.http.get("/api/units").json()}
            return units[foot.id] if units[foot.id]["lat"] == device.lat else None

        unit = wait_for(moved, timeout_s=1.0 + 2.0, what=f"{foot.id} moved on {replica.name}")
        assert unit["lon"] == device.lon
    # and both rank it first for a press at that button, whichever of them commits the alert
    probe.sos(device.id, sos_payload())
    acks = _acks(probe, probe.topics.sos_ack(device.id), 2, timeout_s=10)
    alert = replicas[1].http.get(f"/api/alerts/{acks[0]['alert_id']}").json()
    assert alert["recommendations"][0]["unit_id"] == foot.id
