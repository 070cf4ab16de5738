"""Issuing a patrol plan (issue 14): each patrol's route reaches its unit over MQTT (the real
Mosquitto), on the handheld's API and on the live map's plan layer, and the issue is audited."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions
from support import Probe, Running
from test_plans_console import small_plan

from dispatch import Role
from mqtt_bridge.broker import new_client

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_issuing_sends_each_route_to_its_unit_over_mqtt_the_handheld_and_the_map(
    start_service: Callable[..., Running], probe: Probe, topic_root: str, mqtt_url: str, tmp_path: Path
) -> None:
    running = start_service(plans_dir=tmp_path / "plans")
    service = running.service.service
    foot = sorted(u.id for u in service.units() if u.kind.value == "foot")
    booth = next(u.id for u in service.units() if u.kind.value == "booth")
    car = next(u.id for u in service.units() if u.kind.value == "car")
    plan_id = small_plan(running)
    commander = running.client(Role.COMMANDER)
    routes = commander.get(f"/api/plans/{plan_id}/files/routes.geojson").json()
    stops = {
        p: [f for f in routes["features"] if f["properties"]["kind"] == "stop" and f["properties"]["patrol"] == p]
        for p in ("P01", "P02")
    }
    assert all(stops.values()), "a patrol without stops proves nothing here"
    for unit in (foot[0], car):
        probe.listen(probe.topics.unit_plan(unit))

    # Who may issue, and mappings that do not fit.
    assert running.client(Role.DISPATCHER).post(f"/api/plans/{plan_id}/issue", json={}).status_code == 403
    assert commander.post(f"/api/plans/{plan_id}/issue", json={"units": {"P01": foot[0]}}).status_code == 422
    r = commander.post(f"/api/plans/{plan_id}/issue", json={"units": {"P01": foot[0], "P02": booth}})
    assert r.status_code == 422 and "booth" in r.json()["detail"]
    r = commander.post(f"/api/plans/{plan_id}/issue", json={"units": {"P01": foot[0], "P02": foot[0]}})
    assert r.status_code == 422
    assert (
        commander.post(f"/api/plans/{plan_id}/issue", json={"units": {"P01": foot[0], "P02": "nobody"}}).status_code
        == 404
    )
    assert running.client(Role.UNIT, unit_id=foot[0]).get(f"/api/units/{foot[0]}/plan").json()["plan"] is None
    assert not [
        e for e in service.store.audit_entries(unit_id=foot[0]) if e.action == "plan_issued"
    ]  # nothing half-issued

    r = commander.post(f"/api/plans/{plan_id}/issue", json={"units": {"P01": foot[0], "P02": car}})
    assert r.status_code == 200, r.text
    issued = r.json()
    assert issued["units"] == {"P01": foot[0], "P02": car} and issued["sent"] == {foot[0]: True, car: True}

    # MQTT: the unit's plan topic carries its stops with their times and the route.
    for patrol, unit in (("P01", foot[0]), ("P02", car)):
        body = probe.next_ack(probe.topics.unit_plan(unit), timeout_s=5)
        assert (body["plan_id"], body["patrol"], body["unit_id"]) == (plan_id, patrol, unit)
        assert [(s["seq"], s["arrive"], s["depart"]) for s in body["stops"]] == [
            (f["properties"]["seq"], f["properties"]["arrive"], f["properties"]["depart"]) for f in stops[patrol]
        ]
        assert body["route"]["type"] == "LineString" and len(body["route"]["coordinates"]) >= 2
        line = next(
            f for f in routes["features"] if f["properties"]["kind"] == "route" and f["properties"]["patrol"] == patrol
        )
        assert body["route"]["coordinates"][0] == pytest.approx(line["geometry"]["coordinates"][0], abs=1e-6)
        assert datetime.fromisoformat(body["shift_start"]) < datetime.fromisoformat(body["shift_end"])
        assert datetime.fromisoformat(body["stops"][0]["arrive"]) >= datetime.fromisoformat(body["shift_start"])

    # Retained: a unit that connects after the issue still gets its plan.
    late = new_client(probe.address, client_id=f"late-unit-{plan_id[:8]}")
    got: list[dict] = []
    late.on_message = lambda c, u, m: got.append({"topic": m.topic, "retain": m.retain, "payload": m.payload})
    late.connect(probe.address.host, probe.address.port, clean_start=True)
    late.loop_start()
    try:
        late.subscribe([(probe.topics.unit_plan(foot[0]), SubscribeOptions(qos=1))])
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got and got[0]["retain"] and plan_id.encode() in got[0]["payload"]
    finally:
        late.disconnect()
        late.loop_stop()

    # The audit trail records the issue per unit, with the commander as the actor.
    entries = [e for e in service.store.audit_entries(unit_id=foot[0]) if e.action == "plan_issued"]
    assert len(entries) == 1 and entries[0].actor == "test-commander"
    assert json.loads(entries[0].after or "{}")["plan_id"] == plan_id

    # The handheld's API: its own plan only.
    mine = running.client(Role.UNIT, unit_id=foot[0]).get(f"/api/units/{foot[0]}/plan").json()["plan"]
    assert mine["patrol"] == "P01" and len(mine["stops"]) == len(stops["P01"])
    assert running.client(Role.UNIT, unit_id=foot[1]).get(f"/api/units/{foot[1]}/plan").json()["plan"] is None
    assert running.client(Role.UNIT, unit_id=foot[1]).get(f"/api/units/{foot[0]}/plan").status_code == 403
    # The map's layer: the routes with their units, the stops, the hot spots.
    layer = running.http.get("/map/plan").json()
    assert layer["plan_id"] == plan_id
    kinds = [f["properties"]["kind"] for f in layer["features"]]
    assert (
        kinds.count("route") == 2 and kinds.count("stop") == sum(len(v) for v in stops.values()) and "hot_spot" in kinds
    )
    assert {f["properties"]["unit_id"] for f in layer["features"] if f["properties"]["kind"] == "route"} == {
        foot[0],
        car,
    }
    # The list of plans says it was issued.
    listed = next(p for p in commander.get("/api/plans").json() if p["id"] == plan_id)
    assert listed["issued"]["units"] == {"P01": foot[0], "P02": car}

    # Issued again with the default mapping (patrols to foot units by id): the newest replaces it.
    r = commander.post(f"/api/plans/{plan_id}/issue")
    assert r.status_code == 200 and r.json()["units"] == {"P01": foot[0], "P02": foot[1]}
    again = running.client(Role.UNIT, unit_id=foot[1]).get(f"/api/units/{foot[1]}/plan").json()["plan"]
    assert again["patrol"] == "P02"

    # The broker keeps retained messages: clear this test's (the probe, done, ignores the empty payloads).
    probe.client.on_message = lambda *args: None
    cleaner = new_client(probe.address, client_id=f"cleaner-{plan_id[:8]}")
    cleaner.connect(probe.address.host, probe.address.port, clean_start=True)
    cleaner.loop_start()
    try:
        for unit in (foot[0], foot[1], car):
            info = cleaner.publish(probe.topics.unit_plan(unit), b"", qos=1, retain=True)
            info.wait_for_publish(timeout=5)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS
    finally:
        cleaner.disconnect()
        cleaner.loop_stop()
