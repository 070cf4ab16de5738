"""The qorgau command: simulate and demo against the real broker, serve's wiring."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from support import FAR_DEVICE, JWT_SECRET, Registry, Running, wait_for

from dispatch import write_devices
from geo import Router, StreetNetwork
from qorgau import QorgauService, Settings, Simulator
from qorgau.cli import main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"QORGAU_{name.upper()}", raising=False)


def _street_devices(registry: Registry, tmp_path: Path) -> Path:
    return write_devices(
        tmp_path / "street-devices.geojson", [d for d in registry.devices.values() if d.id != FAR_DEVICE]
    )


def test_simulate_command_feeds_the_service(
    running: Running,
    registry: Registry,
    mqtt_url: str,
    topic_root: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    devices = _street_devices(registry, tmp_path)
    argv = [
        "simulate",
        "--mqtt",
        mqtt_url,
        "--topic-root",
        topic_root,
        "--devices",
        str(devices),
        "--count",
        "5",
        "--rate",
        "50",
        "--kind",
        "press",
        "--seed",
        "3",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no --network: publishing SOS presses only" in out
    assert f"published 5 SOS alerts, 0 102 reports, 0 unit positions to {mqtt_url} under {topic_root}/" in out
    alerts = wait_for(lambda: (a := running.alerts()) and len(a) == 5 and a, what="5 simulated alerts")
    assert {a["source"] for a in alerts} == {"sos"}
    assert {a["kind"] for a in alerts} == {"press"}


def test_simulator_sends_reports_on_streets_and_moves_units(
    running: Running, registry: Registry, city: StreetNetwork, mqtt_url: str, topic_root: str
) -> None:
    sim = Simulator(
        url=mqtt_url,
        topic_root=topic_root,
        devices=[d for d in registry.devices.values() if d.id != FAR_DEVICE],
        router=Router(city),
        units=registry.units,
        rate_per_s=50,
        sos_share=0.3,
        move_units=True,
        seed=11,
    )
    report = sim.run(8)
    assert (report.alerts, report.positions) == (8, 8)
    assert report.app102 > 0
    wait_for(lambda: len(running.alerts()) == 8, what="8 simulated alerts")
    metrics = wait_for(
        lambda: (m := running.http.get("/api/metrics").json())["positions"] == 8 and m, what="8 unit positions applied"
    )
    assert sum(metrics["rejected"].values()) == 0
    assert {a["kind"] for a in running.alerts() if a["source"] == "sos"} <= {"test"}  # simulated presses are tests
    booths = {u.id: u for u in registry.units if u.kind.value == "booth"}
    for unit in running.http.get("/api/units").json():
        if unit["id"] in booths:
            assert unit["position_ts"] is None  # booths do not move


def test_simulator_refuses_impossible_settings(mqtt_url: str) -> None:
    with pytest.raises(ValueError, match="SOS presses need devices"):
        Simulator(url=mqtt_url, topic_root="x")
    with pytest.raises(ValueError, match="rate_per_s must be positive, got 0"):
        Simulator(url=mqtt_url, topic_root="x", rate_per_s=0)


def test_demo_runs_a_generated_city_and_prints_its_url(
    mqtt_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = f"qorgau-test/{uuid.uuid4().hex[:12]}/demo"
    argv = [
        "demo",
        "--city",
        "generated",
        "--data-dir",
        str(tmp_path / "demo"),
        "--nodes",
        "1500",
        "--port",
        "0",
        "--duration",
        "10",
        "--rate",
        "4",
        "--mqtt",
        mqtt_url,
        "--topic-root",
        root,
        "--client-id",
        f"qorgau-test-{uuid.uuid4().hex[:8]}",
    ]
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(argv)))
    thread.start()
    out = ""
    deadline = time.monotonic() + 20
    while "Open http" not in out and thread.is_alive() and time.monotonic() < deadline:
        out += capsys.readouterr().out
        time.sleep(0.05)
    match = re.search(r"Open (http://127\.0\.0\.1:\d+)/api/alerts", out)
    assert match, out
    while "dispatcher token" not in out and thread.is_alive() and time.monotonic() < deadline:
        out += capsys.readouterr().out
        time.sleep(0.05)
    token = re.search(r"dispatcher token: (\S+)", out)
    assert token, out
    assert httpx.get(f"{match.group(1)}/api/alerts").status_code == 401
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    alerts = wait_for(
        lambda: httpx.get(f"{match.group(1)}/api/alerts", headers=headers).json(), timeout_s=3, what="demo alerts"
    )
    assert alerts[0]["recommendations"]
    while "Dispatcher map" not in out and thread.is_alive() and time.monotonic() < deadline:
        out += capsys.readouterr().out
        time.sleep(0.05)
    out += capsys.readouterr().out
    login = re.search(r"Dispatcher map: (\S+)/map  \(sign in as 'dispatcher', password (\S+)\)", out)
    assert login and login.group(1) == match.group(1), out
    signed_in = httpx.post(
        f"{login.group(1)}/login", data={"username": "dispatcher", "password": login.group(2)}, timeout=30
    )
    assert signed_in.status_code == 303 and "qorgau_session=" in signed_in.headers["set-cookie"]
    while "Handheld" not in out and thread.is_alive() and time.monotonic() < deadline:
        out += capsys.readouterr().out
        time.sleep(0.05)
    out += capsys.readouterr().out
    handheld = re.search(r"Handheld .*: (\S+)/unit  \(sign in as '(officer-(\S+))', password (\S+):", out)
    assert handheld and handheld.group(1) == match.group(1), out
    officer, unit_id, password = handheld.group(2), handheld.group(3), handheld.group(4)
    assert unit_id == "car-1"
    issued = httpx.post(f"{match.group(1)}/api/token", data={"username": officer, "password": password}, timeout=30)
    assert issued.status_code == 200, issued.text
    unit_headers = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert httpx.get(f"{match.group(1)}/api/units/{unit_id}", headers=unit_headers).json()["id"] == unit_id
    assert httpx.get(f"{match.group(1)}/api/units/car-2", headers=unit_headers).status_code == 403
    while "Plans console" not in out and thread.is_alive() and time.monotonic() < deadline:
        out += capsys.readouterr().out
        time.sleep(0.05)
    out += capsys.readouterr().out
    plans = re.search(r"Plans console \(commander\): (\S+)/plans  \(sign in as 'commander', password (\S+)\)", out)
    assert plans and plans.group(1) == match.group(1), out
    console = httpx.Client(base_url=plans.group(1), timeout=30)
    try:
        signed = console.post("/login", data={"username": "commander", "password": plans.group(2), "next": "/plans"})
        assert signed.status_code == 303 and signed.headers["location"].startswith("/plans")
        assert console.get("/plans").status_code == 200
    finally:
        console.close()
    assert "issued plans are walked by 12 simulated foot patrols during their shift" in out, out
    thread.join(timeout=20)
    out += capsys.readouterr().out
    assert result == [0]
    assert "city: a generated city, not a real place (generated city (synthetic" in out
    assert "simulated officers acknowledge after 5-25 s" in out
    assert re.search(r"responders: \d+ orders", out), out
    assert re.search(r"patrols: 0 plans walked", out), out  # nobody issued one
    assert re.search(r"demo stopped: [1-9]\d* alerts accepted, 0 messages rejected", out), out
    assert (tmp_path / "demo" / "units.geojson").exists()
    assert (tmp_path / "demo" / "devices.geojson").exists()
    assert (tmp_path / "demo" / "demo.sqlite3").exists()
    assert (tmp_path / "demo" / "plans").is_dir()  # the demo's plans beside its database
    assert "synthetic incidents of the last 90 days, not real" in out
    assert (tmp_path / "demo" / "incidents-synthetic.csv").read_text().startswith("lat,lon,occurred_at,category\n")
    assert "JWT secret: " in out and "(made by this run;" in out
    assert (tmp_path / "demo" / "jwt-secret").stat().st_mode & 0o077 == 0  # the owner's only

    # A second run on the same data directory: the first run's printed token and passwords still work
    # (the secret is kept beside the database, as the passwords are in it).
    result.clear()
    thread = threading.Thread(
        target=lambda: result.append(main([*argv[:-2], "--client-id", f"qorgau-test-{uuid.uuid4().hex[:8]}"]))
    )
    thread.start()
    again, deadline = "", time.monotonic() + 30
    while "Stopping after" not in again and thread.is_alive() and time.monotonic() < deadline:
        again += capsys.readouterr().out
        time.sleep(0.05)
    second = re.search(r"Open (http://127\.0\.0\.1:\d+)/api/alerts", again)
    assert second and "(kept from an earlier run;" in again, again
    assert "with the password printed by the first demo on this database" in again
    assert httpx.get(f"{second.group(1)}/api/alerts", headers=headers).status_code == 200
    assert httpx.get(f"{second.group(1)}/api/units/{unit_id}", headers=unit_headers).status_code == 200
    issued = httpx.post(f"{second.group(1)}/api/token", data={"username": officer, "password": password}, timeout=30)
    assert issued.status_code == 200, issued.text
    thread.join(timeout=30)
    assert result == [0]


def test_serve_without_network_says_what_to_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QORGAU_JWT_SECRET", JWT_SECRET)
    monkeypatch.delenv("QORGAU_NETWORK", raising=False)
    assert main(["serve", "--port", "0"]) == 1
    assert "no street network: give --network (or QORGAU_NETWORK)" in capsys.readouterr().err


def test_serve_with_unreachable_broker_fails_clearly(city: StreetNetwork, registry: Registry, tmp_path: Path) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'q.sqlite3'}",
        mqtt_url="mqtt://127.0.0.1:9",
        jwt_secret=JWT_SECRET,
        units=registry.units_path,
        devices=registry.devices_path,
        port=0,
    )
    with pytest.raises(ConnectionError, match=r"cannot reach the MQTT broker at mqtt://127\.0\.0\.1:9"):
        QorgauService(settings, network=city).start()


def test_serve_forever_runs_bridge_and_api_in_one_process(
    city: StreetNetwork,
    registry: Registry,
    mqtt_url: str,
    topic_root: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'q.sqlite3'}",
        mqtt_url=mqtt_url,
        topic_root=topic_root,
        client_id=f"qorgau-test-{uuid.uuid4().hex[:12]}",
        session_expiry_s=60,
        jwt_secret=JWT_SECRET,
        units=registry.units_path,
        devices=registry.devices_path,
        port=0,
    )
    service = QorgauService(settings, network=city)
    preloaded = threading.Event()
    monkeypatch.setattr("qorgau.runtime.preload", lambda app: preloaded.set() if app is service.app else None)
    thread = threading.Thread(target=service.serve_forever, kwargs={"started_at": lambda: 1.25})
    with caplog.at_level(logging.INFO, logger="qorgau.runtime"):
        thread.start()
        try:
            wait_for(lambda: service.port != 0, timeout_s=10, what="HTTP server bound")
            health = httpx.get(f"{service.base_url}/healthz").json()
            assert health["checks"] == {"database": "ok", "mqtt": "ok"}
            assert preloaded.wait(10)  # once HTTP was up, what later requests use was loaded
        finally:
            service.stop(end_session=True)
            thread.join(timeout=10)
    assert not thread.is_alive()
    up = [r.getMessage() for r in caplog.records if " up: " in r.getMessage()]
    assert len(up) == 1 and "1.25 s after the command started; start " in up[0], up
    steps = ("network", "router", "dispatch", "app", "schema", "open", "mqtt", "watchers", "http")
    assert list(service.startup) == [*steps[:4], "wait", *steps[4:]]
    assert re.findall(r"(\w+) \d+\.\d\d", up[0].partition("(")[2]) == list(steps)  # the wait is not the start's
