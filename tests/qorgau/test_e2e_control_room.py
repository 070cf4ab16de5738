"""The control room end to end: real Mosquitto, real databases, the HTTP API with roles.

A dispatcher assigns; the order reaches the unit on MQTT with its street route; the unit
acknowledges and reports its way to the scene over MQTT; the alert closes; the timeline, the
response-time report and the audit chain show it. A missed acknowledgement escalates by itself.
"""

from __future__ import annotations

from collections.abc import Callable

from support import FAR_DEVICE, Probe, Registry, Running, now_rfc3339, report_payload, sos_payload, wait_for

from geo import StreetNetwork


def _street_device(registry: Registry, site: str | None = None) -> str:
    return next(
        d
        for d in sorted(registry.devices)
        if d != FAR_DEVICE and (site is None or registry.devices[d].site.value == site)
    )


def _press(running: Running, probe: Probe, device_id: str) -> dict:
    probe.sos(device_id, sos_payload())
    ack = probe.next_ack(probe.topics.sos_ack(device_id))
    assert ack["status"] == "accepted", ack
    return running.http.get(f"/api/alerts/{ack['alert_id']}").json()


def test_assign_order_ack_en_route_on_scene_close_timeline_report(
    running: Running, probe: Probe, registry: Registry, city: StreetNetwork
) -> None:
    alert = _press(running, probe, _street_device(registry))
    unit_id = alert["recommendations"][0]["unit_id"]
    probe.listen(f"{probe.topics.root}/units/+/orders")

    response = running.http.post(f"/api/alerts/{alert['id']}/assign", json={"unit_id": unit_id})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "assigned"
    order = probe.next_ack(probe.topics.unit_orders(unit_id))
    assert (order["alert_id"], order["unit_id"], order["override"]) == (alert["id"], unit_id, False)
    assert order["location"] == {"lat": alert["lat"], "lon": alert["lon"]}
    route = order["route"]
    assert route["type"] == "LineString" and len(route["coordinates"]) >= 3
    unit = next(u for u in registry.units if u.id == unit_id)
    assert route["coordinates"][0] == [round(unit.lon, 7), round(unit.lat, 7)]
    assert route["coordinates"][-1] == [round(alert["lon"], 7), round(alert["lat"], 7)]
    expected = registry.router(city).route(unit_id, alert["lat"], alert["lon"])
    assert route["coordinates"] == [[round(lon, 7), round(lat, 7)] for lat, lon in expected]

    probe.publish(probe.topics.unit_ack(unit_id), {"ts": now_rfc3339(), "alert_id": alert["id"]})
    wait_for(lambda: running.http.get(f"/api/alerts/{alert['id']}").json()["status"] == "acknowledged", what="ack")
    probe.publish(probe.topics.unit_status(unit_id), {"ts": now_rfc3339(), "status": "en_route"})
    wait_for(lambda: running.http.get(f"/api/alerts/{alert['id']}").json()["status"] == "en_route", what="en route")
    probe.publish(
        probe.topics.unit_status(unit_id), {"ts": now_rfc3339(), "status": "on_scene", "alert_id": alert["id"]}
    )
    wait_for(lambda: running.http.get(f"/api/alerts/{alert['id']}").json()["status"] == "on_scene", what="on scene")
    units = {u["id"]: u for u in running.http.get("/api/units").json()}
    assert (units[unit_id]["status"], units[unit_id]["alert_id"]) == ("on_scene", alert["id"])

    refused = running.http.post(f"/api/alerts/{alert['id']}/transition", json={"status": "en_route"})
    assert refused.status_code == 409
    assert refused.json()["current"] == "on_scene"
    closed = running.http.post(f"/api/alerts/{alert['id']}/transition", json={"status": "closed", "reason": "detained"})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    freed = running.http.get(f"/api/units/{unit_id}").json()
    assert (freed["status"], freed["alert_id"]) == ("available", None)

    entries = running.http.get(f"/api/alerts/{alert['id']}/timeline").json()["entries"]
    actions = [(e["action"], e["actor"]) for e in entries if e["action"] != "unit_change"]
    assert actions == [
        ("ingest", "system"),
        ("recommend", "system"),
        ("assign", "test-dispatcher"),
        ("ack", f"unit:{unit_id}"),
        ("state_change", f"unit:{unit_id}"),
        ("state_change", f"unit:{unit_id}"),
        ("state_change", "test-dispatcher"),
    ]
    last = [e for e in entries if e["action"] == "state_change"][-1]
    assert (last["before"]["status"], last["after"]["status"], last["after"]["close_reason"]) == (
        "on_scene",
        "closed",
        "detained",
    )

    commander = running.client("commander")
    report = commander.get("/api/reports/response-times", params={"group_by": "unit"}).json()
    group = next(g for g in report["groups"] if g["key"] == unit_id)
    assert group["count"] == 1 and group["to_close"]["n"] == 1 and group["to_arrive"]["median_s"] > 0
    csv = commander.get("/api/reports/response-times", params={"group_by": "source", "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0].startswith("source,count,to_recommend_n,to_recommend_median_s,to_recommend_p90_s,to_assign_n")
    assert lines[1].startswith("sos,1,1,")
    verify = running.client("admin").get("/api/audit/verify").json()
    assert verify["ok"] and verify["entries"] >= len(entries)


def test_missed_ack_escalates_to_the_next_unit_and_p1_auto_assignment(
    start_service: Callable[..., Running], probe: Probe, registry: Registry
) -> None:
    # 2 s to acknowledge, and generous waits: on a loaded 2-core CI box the watcher, the broker and
    # the database all run late, and a second lapse must not race the unit's acknowledgement.
    running = start_service(ack_deadline_s=2.0, auto_assign_p1=True)
    probe.listen(f"{probe.topics.root}/units/+/orders")
    street = _press(running, probe, _street_device(registry, "street"))  # P2: proposed, not auto-assigned
    assert street["status"] == "recommended" and street["priority"] == 2
    first = street["recommendations"][0]["unit_id"]
    running.http.post(f"/api/alerts/{street['id']}/assign", json={"unit_id": first}).raise_for_status()
    probe.next_ack(probe.topics.unit_orders(first))
    escalated = wait_for(
        lambda: (a := running.http.get(f"/api/alerts/{street['id']}").json())["escalated"] and a,
        timeout_s=10,
        what="the escalation of the P2 alert",
    )
    assert escalated["status"] == "recommended" and escalated["proposed_unit_id"] not in (None, first)
    assert escalated["orders"][0]["missed_at"] is not None

    school = next(
        d
        for d in sorted(registry.devices)
        if registry.devices[d].site.value in ("school", "hospital") and d != FAR_DEVICE
    )
    p1 = _press(running, probe, school)
    assert p1["priority"] == 1
    first_order = wait_for(
        lambda: (a := running.http.get(f"/api/alerts/{p1['id']}").json())["orders"] and a,
        timeout_s=10,
        what="auto order",
    )
    auto_unit = first_order["orders"][0]["unit_id"]
    assert first_order["orders"][0]["auto"] and first_order["orders"][0]["assigned_by"] == "system"
    assert probe.next_ack(probe.topics.unit_orders(auto_unit))["alert_id"] == p1["id"]
    again = wait_for(
        # The miss is committed first (back to "recommended"), the automatic order right after.
        lambda: (
            len((a := running.http.get(f"/api/alerts/{p1['id']}").json())["orders"]) >= 2
            and a["status"] == "assigned"
            and a
        ),
        timeout_s=10,
        what="the automatic re-assignment after the missed ack",
    )
    second_unit = again["orders"][1]["unit_id"]
    assert second_unit != auto_unit and again["status"] == "assigned" and again["escalations"] == 1
    assert probe.next_ack(probe.topics.unit_orders(second_unit))["alert_id"] == p1["id"]
    ack = running.client("unit", unit_id=second_unit).post(f"/api/units/{second_unit}/ack", json={"alert_id": p1["id"]})
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    assert running.http.get("/api/metrics").json()["escalations"] >= 2


def test_override_duplicates_location_quality_and_priority_order(
    running: Running, probe: Probe, registry: Registry, city: StreetNetwork
) -> None:
    device = _street_device(registry)
    first = _press(running, probe, device)
    second = _press(running, probe, device)
    assert second["duplicate_of"] == first["id"]
    unlinked = running.http.post(f"/api/alerts/{second['id']}/unlink")
    assert unlinked.status_code == 200 and unlinked.json()["duplicate_of"] is None
    assert running.http.post(f"/api/alerts/{second['id']}/unlink").status_code == 409

    lat, lon = city.center
    vague = report_payload(lat, lon, accuracy_m=800.0, category="assault")
    probe.publish(probe.topics.app102_report, vague)
    alerts = wait_for(lambda: (a := running.alerts()) and len(a) == 3 and a, what="three alerts")
    assert [a["priority"] for a in alerts] == [1, 2, 2]  # by priority, then age
    assert alerts[0]["location_unverified"] and alerts[0]["category"] == "assault"
    assert [a["id"] for a in alerts[1:]] == [first["id"], second["id"]]

    recommended = {r["unit_id"] for r in first["recommendations"]}
    other = next(u.id for u in registry.units if u.id not in recommended)
    response = running.http.post(
        f"/api/alerts/{first['id']}/assign", json={"unit_id": other, "reason": "closer in fact"}
    )
    assert response.status_code == 200
    order = response.json()["orders"][0]
    assert (order["override"], order["reason"]) == (True, "closer in fact")
    busy = running.http.post(f"/api/alerts/{second['id']}/assign", json={"unit_id": other})
    assert busy.status_code == 409 and "busy" in busy.json()["detail"]
    cancel = running.http.post(f"/api/alerts/{second['id']}/transition", json={"status": "cancelled"})
    assert cancel.status_code == 409 and cancel.json()["detail"] == "moving an alert to 'cancelled' needs a reason"
    cancel = running.http.post(
        f"/api/alerts/{second['id']}/transition", json={"status": "false_alarm", "reason": "child"}
    )
    assert cancel.json()["status"] == "false_alarm"
    timeline = running.http.get(f"/api/alerts/{first['id']}/timeline").json()["entries"]
    assert any(e["action"] == "override" and e["after"]["reason"] == "closer in fact" for e in timeline)


def test_units_registry_status_over_mqtt_and_freshness(
    start_service: Callable[..., Running], probe: Probe, registry: Registry, city: StreetNetwork
) -> None:
    running = start_service(stale_after_s=1.0, stale_policy="exclude")
    commander = running.client("commander")
    lat, lon = city.center
    created = commander.post(
        "/api/units", json={"id": "car-api", "kind": "car", "name": "Car API", "lat": lat, "lon": lon}
    )
    assert created.status_code == 201, created.text
    assert (
        commander.post(
            "/api/units", json={"id": "car-api", "kind": "car", "name": "x", "lat": lat, "lon": lon}
        ).status_code
        == 409
    )
    far = commander.post("/api/units", json={"id": "car-far", "kind": "car", "name": "x", "lat": 0.0, "lon": 0.0})
    assert far.status_code == 422 and "outside the service area" in far.json()["detail"]
    patched = commander.patch("/api/units/car-api", json={"name": "Car 77"})
    assert patched.json()["name"] == "Car 77"

    booth = next(u for u in registry.units if u.kind.value == "booth")
    probe.publish(probe.topics.unit_status(booth.id), {"ts": now_rfc3339(), "status": "off_duty"})
    wait_for(lambda: running.http.get(f"/api/units/{booth.id}").json()["status"] == "off_duty", what="off duty")
    assert running.http.get(f"/api/units/{booth.id}").json()["recommendable"] is False
    probe.publish(probe.topics.unit_status("car-api"), {"ts": now_rfc3339(), "status": "en_route"})
    wait_for(lambda: running.rejected("conflict") == 1, what="an en_route without an order is refused")

    # Patrols that have not reported for over a second are stale and excluded; booths never go stale.
    car = next(u for u in registry.units if u.kind.value == "car")
    wait_for(lambda: running.http.get(f"/api/units/{car.id}").json()["stale"], timeout_s=3, what="stale patrols")
    probe.publish(probe.topics.unit_position(car.id), {"ts": now_rfc3339(), "lat": car.lat, "lon": car.lon})
    wait_for(lambda: not running.http.get(f"/api/units/{car.id}").json()["stale"], what="a fresh position")
    alert = _press(running, probe, _street_device(registry))
    kinds = {r["unit_id"] for r in alert["recommendations"]}
    assert car.id in kinds and booth.id not in kinds
    assert all(r["unit_id"] == car.id or r["unit_kind"] == "booth" for r in alert["recommendations"])

    retired = commander.post("/api/units/car-api/retire")
    assert retired.status_code == 200 and retired.json()["retired"]
    assert "car-api" not in {u["id"] for u in running.http.get("/api/units").json()}
    assert "car-api" in {u["id"] for u in running.http.get("/api/units", params={"retired": True}).json()}
    assert running.http.post(f"/api/alerts/{alert['id']}/assign", json={"unit_id": "car-api"}).status_code == 409
    changes = [e.action for e in running.service.store.audit_entries(unit_id="car-api") if e.action.startswith("unit")]
    assert changes == ["unit_create", "unit_change", "unit_retire"]
