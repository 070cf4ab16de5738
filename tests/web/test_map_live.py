"""The live map's server side over real HTTP, MQTT and databases: sign-in, the page, the event stream, the basemap.

The browser itself is in ``test_map_browser.py``; here the routes are read as a client would.
"""

from __future__ import annotations

import itertools
import json
import re

import httpx
import numpy as np
import pytest
from support import (
    PASSWORD,
    Probe,
    Registry,
    Running,
    add_user,
    now_rfc3339,
    read_events,
    sign_in,
    sos_payload,
    wait_for,
)

from geo import StreetNetwork
from web.pages import street_layers


def _device(registry: Registry, site: str) -> str:
    return next(d for d, dev in sorted(registry.devices.items()) if dev.site.value == site)


def test_map_needs_sign_in_and_the_cookie_is_httponly_and_strict(running: Running) -> None:
    base = running.service.base_url
    add_user(running.service, "aigerim", "dispatcher")
    anonymous = httpx.Client(base_url=base, timeout=5)
    response = anonymous.get("/map")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?lang=ru&next=/map")
    assert anonymous.get("/map/snapshot").status_code == 401
    assert anonymous.get("/map/events").status_code == 401

    form = anonymous.get("/login?lang=kk")
    assert form.status_code == 200 and "Құпиясөз" in form.text  # the Kazakh catalogue

    wrong = anonymous.post("/login", data={"username": "aigerim", "password": "not it at all"})
    assert wrong.status_code == 401 and "Неверное имя пользователя или пароль" in wrong.text
    right = anonymous.post(
        "/login", data={"username": "aigerim", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/map?lang=ru"  # never an open redirect
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("qorgau_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    actions = [(e.actor, e.action) for e in running.service.store.audit_entries()]
    assert ("aigerim", "login_failed") in actions and ("aigerim", "login") in actions

    page = anonymous.get("/map")
    assert page.status_code == 200
    assert 'data-state="connecting"' in page.text and "Qorgau · карта дежурного" in page.text
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page.text), (
        "the page loads something from outside"
    )
    for name in ("leaflet.js", "leaflet.css", "live-map.js", "live-map.css"):
        asset = anonymous.get(f"/static/{name}")
        assert asset.status_code == 200 and len(asset.content) > 1000, name
        assert anonymous.get(f"/static/{name}", headers={"If-None-Match": asset.headers["etag"]}).status_code == 304
    assert "url(data:image/png;base64," in anonymous.get("/static/leaflet.css").text  # no image requests either

    english = anonymous.get("/map?lang=en")
    assert "Qorgau · dispatcher's map" in english.text
    assert anonymous.post("/logout").status_code == 303
    assert anonymous.get("/map").status_code == 303  # the cookie is gone


def test_cookie_writes_need_the_request_header_and_the_dispatcher_role(
    running: Running, probe: Probe, registry: Registry
) -> None:
    base = running.service.base_url
    dispatcher = sign_in(base, add_user(running.service, "dana", "dispatcher"))
    viewer = sign_in(base, add_user(running.service, "vika", "viewer"))
    probe.sos(_device(registry, "street"), sos_payload())
    alert_id = probe.next_ack(probe.topics.sos_ack(_device(registry, "street")))["alert_id"]
    unit_id = dispatcher.get(f"/api/alerts/{alert_id}").json()["recommendations"][0]["unit_id"]

    forged = dispatcher.post(f"/api/alerts/{alert_id}/assign", json={"unit_id": unit_id})
    assert forged.status_code == 403 and "X-Qorgau-Request" in forged.json()["detail"]
    as_viewer = viewer.post(
        f"/api/alerts/{alert_id}/assign", json={"unit_id": unit_id}, headers={"X-Qorgau-Request": "1"}
    )
    assert as_viewer.status_code == 403
    assert viewer.get(f"/api/alerts/{alert_id}").status_code == 200  # a viewer sees, but cannot act
    done = dispatcher.post(
        f"/api/alerts/{alert_id}/assign", json={"unit_id": unit_id}, headers={"X-Qorgau-Request": "1"}
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "assigned"
    trail = running.http.get(f"/api/alerts/{alert_id}/timeline").json()["entries"]
    assert ("dana", "assign") in [(e["actor"], e["action"]) for e in trail]


def test_event_stream_replays_what_a_reconnecting_client_missed(
    running: Running, probe: Probe, registry: Registry
) -> None:
    client = sign_in(running.service.base_url, add_user(running.service, "dana", "dispatcher"))
    snapshot = client.get("/map/snapshot").json()
    assert {u["id"] for u in snapshot["units"]} == {u.id for u in registry.units}
    assert snapshot["alerts"] == []
    street = _device(registry, "street")

    with client.stream("GET", "/map/events", params={"after": snapshot["last_event_id"]}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        probe.sos(street, sos_payload())
        first = read_events(stream, 1)[0]
    assert first["event"] == "alert"
    assert json.loads(first["data"])["id"] == probe.next_ack(probe.topics.sos_ack(street))["alert_id"]
    alert = json.loads(first["data"])
    assert alert["status"] == "recommended" and alert["device_id"] == street and alert["recommendations"]
    assert int(first["id"]) > int(snapshot["last_event_id"])  # the change's global seq

    # While nobody listens: two more alerts and a patrol moves.
    foot = next(u for u in registry.units if u.kind.value == "foot")
    missed = []
    for _ in range(2):
        probe.sos(street, sos_payload())
        missed.append(probe.next_ack(probe.topics.sos_ack(street))["alert_id"])
    probe.publish(probe.topics.unit_position(foot.id), {"ts": now_rfc3339(), "lat": foot.lat, "lon": foot.lon})
    wait_for(lambda: running.http.get(f"/api/units/{foot.id}").json()["position_ts"], what="the position")

    with client.stream("GET", "/map/events", headers={"Last-Event-ID": first["id"]}) as stream:
        replayed = read_events(stream, 3)
    assert [e["event"] for e in replayed] == ["alert", "alert", "unit"]
    assert [json.loads(e["data"])["id"] for e in replayed[:2]] == missed
    assert json.loads(replayed[2]["data"])["id"] == foot.id
    ids = [int(e["id"]) for e in [first, *replayed]]
    assert ids == sorted(ids) and len(set(ids)) == 4
    stored = [c.seq for c in running.service.service.changes_since(int(first["id"]) - 1)]
    assert set(ids) <= set(stored)  # each id is the seq of its row in the changes table

    # An id of the old format, garbage, none, or beyond the newest committed change: a snapshot.
    for stale in ("0badc0de.3", "", "abc", "-1", "999999"):
        with client.stream("GET", "/map/events", headers={"Last-Event-ID": stale} if stale else {}) as stream:
            assert read_events(stream, 1)[0]["event"] == "reset"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_snapshot_has_open_alerts_and_route_follows_the_streets(
    running: Running, probe: Probe, registry: Registry
) -> None:
    client = sign_in(running.service.base_url, add_user(running.service, "dana", "dispatcher"))
    hospital = _device(registry, "hospital")
    probe.sos(hospital, sos_payload())
    alert_id = probe.next_ack(probe.topics.sos_ack(hospital))["alert_id"]
    probe.sos(hospital, sos_payload(kind="test"))
    test_id = probe.next_ack(probe.topics.sos_ack(hospital))["alert_id"]
    alerts = {a["id"]: a for a in client.get("/map/snapshot").json()["alerts"]}
    assert alerts[alert_id]["priority"] == 1 and alerts[test_id]["status"] == "test"

    top = alerts[alert_id]["recommendations"][0]
    route = client.get(f"/map/alerts/{alert_id}/route", params={"unit_id": top["unit_id"]}).json()
    coords = route["geometry"]["coordinates"]
    assert coords[-1] == [round(alerts[alert_id]["lon"], 7), round(alerts[alert_id]["lat"], 7)]
    assert route["properties"]["eta_s"] == pytest.approx(top["eta_s"])
    assert route["properties"]["distance_m"] == pytest.approx(top["distance_m"], rel=0.05, abs=30)
    assert client.get(f"/map/alerts/{alert_id}/route", params={"unit_id": "nobody"}).status_code == 404


def test_street_layers_draw_every_street_once(city: StreetNetwork) -> None:
    layers = street_layers(city)
    assert {f["properties"]["class"] for f in layers["features"]} <= {"major", "minor"}
    drawn = set()
    lines = 0
    index = {
        (round(float(lon), 6), round(float(lat), 6)): i
        for i, (lat, lon) in enumerate(zip(city.node_lat, city.node_lon, strict=True))
    }
    for feature in layers["features"]:
        for line in feature["geometry"]["coordinates"]:
            lines += 1
            nodes = [index[tuple(p)] for p in line]
            for a, b in itertools.pairwise(nodes):
                key = (min(a, b), max(a, b))
                assert key not in drawn, f"segment {key} drawn twice"
                drawn.add(key)
    every = {(min(a, b), max(a, b)) for a, b in zip(city.seg_u.tolist(), city.seg_v.tolist(), strict=True) if a != b}
    assert drawn == every
    assert lines < len(every) / 4, "lines run on through junctions"


def test_street_layers_join_a_chain_and_keep_a_branch_apart() -> None:
    # 0-1-2-3 is one straight street through the junction at 1, where 1-4 branches off; 5-6-7-5 is a loop.
    lat = np.array([43.0, 43.001, 43.002, 43.003, 43.001, 43.01, 43.011, 43.01])
    lon = np.array([76.9, 76.9, 76.9, 76.9, 76.901, 76.9, 76.9, 76.901])
    net = StreetNetwork.from_arrays(lat, lon, [0, 1, 2, 1, 1, 5, 6, 7], [1, 2, 3, 4, 0, 6, 7, 5], "residential")
    (feature,) = street_layers(net)["features"]
    lines = sorted(len(line) for line in feature["geometry"]["coordinates"])
    assert lines == [2, 4, 4]  # 1-4, 0-1-2-3 and the loop 5-6-7-5


def test_a_configured_tile_server_replaces_the_street_basemap() -> None:
    from maps import render_live_map
    from web.pages import map_catalogue

    config = {"tz_label": "UTC+5, Asia/Almaty"}
    offline = render_live_map(labels=map_catalogue("ru"), config=config, center=(43.24, 76.95))
    tiled = render_live_map(
        labels=map_catalogue("en"),
        config=config,
        center=(43.24, 76.95),
        tile_url="https://tiles.example/{z}/{x}/{y}.png",
        tile_attribution="© the city",
    )
    assert '"tiles": false' in offline and "tiles.example" not in offline
    assert '"tiles": true' in tiled and "https://tiles.example/{z}/{x}/{y}.png" in tiled and "\\u00a9 the city" in tiled
    for page in (offline, tiled):
        assert not re.search(r"""<(?:script|link)\b[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    for lang in ("kk", "ru", "en"):
        assert set(map_catalogue(lang)) == set(map_catalogue("ru")), f"{lang} lacks texts"
