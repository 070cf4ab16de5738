"""SOS press -> ``accepted`` ack through the real broker, beside a bare publish -> echo round trip.

Both run at the same rate for the same time against the same Mosquitto, with TCP_NODELAY on every
client (paho leaves Nagle's algorithm on otherwise, which alone costs ~20 ms a round trip):

* **bare**: a client publishes (QoS 1) to a ping topic, an echo client republishes each message to a
  pong topic, and the first client times the round trip. This is the floor any broker hop pays.
* **qorgau**: a simulated SOS button publishes a press; the running service (bridge + dispatch +
  routing + SQLite commit) answers with an ack on the device's ack topic. Timed per ``event_id``.

The echo client and the service each run in a process of their own, as they would in the field,
so that the measuring publisher does not compete with them for one interpreter lock.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import secrets
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from pydantic import SecretStr

from dispatch import Device, DeviceSite, write_devices
from geo import Router, generate_city
from mqtt_bridge import parse_mqtt_url
from mqtt_bridge.broker import new_client
from qorgau import QorgauService, Settings
from qorgau.demo import write_seed_registry


def _connected(url: str, client_id: str, *, max_inflight: int | None = None) -> mqtt.Client:
    client = new_client(parse_mqtt_url(url), client_id=client_id)
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)
    ready = threading.Event()
    client.on_connect = lambda *a: ready.set()
    address = parse_mqtt_url(url)
    client.connect(address.host, address.port)
    client.loop_start()
    if not ready.wait(10):
        msg = f"no CONNACK from {url}"
        raise ConnectionError(msg)
    return client


def _paced(rate_hz: float, duration_s: float, send) -> int:
    """Call ``send(i)`` at ``rate_hz`` for ``duration_s``; returns how many were sent."""
    n = int(rate_hz * duration_s)
    start = time.perf_counter()
    for i in range(n):
        due = start + i / rate_hz
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(i)
    return n


def _summary(latencies_s: list[float], sent: int) -> dict:
    a = np.asarray(latencies_s) * 1e3
    return {
        "sent": sent,
        "received": int(a.size),
        "p50_ms": float(np.median(a)) if a.size else None,
        "p99_ms": float(np.percentile(a, 99)) if a.size else None,
        "max_ms": float(a.max()) if a.size else None,
    }


def _echo_process(url: str, ping: str, pong: str, ready, stop) -> None:
    echo = _connected(url, f"bench-echo-{uuid.uuid4().hex[:8]}")
    echo.on_message = lambda c, u, m: c.publish(pong, m.payload, qos=1)
    done = threading.Event()
    echo.on_subscribe = lambda *a: done.set()
    echo.subscribe(ping, qos=1)
    done.wait(10)
    ready.set()
    stop.wait()
    echo.loop_stop()
    echo.disconnect()


def bare_round_trip(url: str, rate_hz: float, duration_s: float) -> dict:
    run = uuid.uuid4().hex[:8]
    ping, pong = f"bench/{run}/ping", f"bench/{run}/pong"
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_echo_process, args=(url, ping, pong, ready, stop), daemon=True)
    child.start()
    if not ready.wait(60):
        msg = "the echo process did not come up"
        raise RuntimeError(msg)
    sent_at: dict[bytes, float] = {}
    latencies: list[float] = []
    client = _connected(url, f"bench-ping-{run}")

    def on_pong(c, u, m):
        t0 = sent_at.get(m.payload)
        if t0 is not None:
            latencies.append(time.perf_counter() - t0)

    client.on_message = on_pong
    client.subscribe(pong, qos=1)
    time.sleep(0.5)

    def send(i: int) -> None:
        payload = str(i).encode()
        sent_at[payload] = time.perf_counter()
        client.publish(ping, payload, qos=1)

    sent = _paced(rate_hz, duration_s, send)
    deadline = time.monotonic() + 10
    while len(latencies) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    stop.set()
    child.join(10)
    return _summary(latencies, sent)


def _service_process(settings_json: str, nodes: int, ready, stop, results) -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = Settings.model_validate_json(settings_json)
    settings = settings.model_copy(
        update={"jwt_secret": SecretStr(secrets.token_urlsafe(48))}
    )  # never leaves this process
    service = QorgauService(settings, network=generate_city(nodes, seed=3)).start()
    ready.set()
    stop.wait()
    results.put(service.store.count_alerts())
    service.stop(end_session=True)


def press_to_ack(url: str, rate_hz: float, duration_s: float, *, nodes: int = 10_000) -> dict:
    run = uuid.uuid4().hex[:8]
    root = f"qorgau-bench-{run}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        net = generate_city(nodes, seed=3)
        units_path, _ = write_seed_registry(Router(net), tmp, seed=3)
        # Many buttons, so that presses come from all over the city.
        router = Router(net)
        rng = np.random.default_rng(3)
        lat0, lon0, lat1, lon1 = net.bounds
        devices = []
        while len(devices) < 200:
            lat, lon = float(rng.uniform(lat0, lat1)), float(rng.uniform(lon0, lon1))
            if router.in_service_area(lat, lon):
                devices.append(Device(id=f"btn-{len(devices)}", site=DeviceSite.STREET, lat=lat, lon=lon))
        devices_path = write_devices(Path(tmp) / "devices.geojson", devices)
        settings = Settings(
            units=units_path,
            devices=devices_path,
            db_url=f"sqlite:///{tmp}/bench.sqlite3",
            mqtt_url=url,
            port=0,
            topic_root=root,
            client_id=f"qorgau-bench-{run}",
        )
        ctx = mp.get_context("spawn")
        ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
        child = ctx.Process(
            target=_service_process, args=(settings.model_dump_json(), nodes, ready, stop, results), daemon=True
        )
        child.start()
        if not ready.wait(120):
            msg = "the service process did not come up"
            raise RuntimeError(msg)
        try:
            sent_at: dict[str, float] = {}
            latencies: list[float] = []
            statuses: dict[str, int] = {}
            client = _connected(url, f"bench-buttons-{run}")

            def on_ack(c, u, m):
                ack = json.loads(m.payload)
                statuses[ack["status"]] = statuses.get(ack["status"], 0) + 1
                t0 = sent_at.get(ack["event_id"])
                if t0 is not None and ack["status"] == "accepted":
                    latencies.append(time.perf_counter() - t0)

            client.on_message = on_ack
            client.subscribe(f"{root}/sos/+/ack", qos=1)
            time.sleep(0.5)

            def send(i: int) -> None:
                event_id = f"{run}-{i}"
                device = devices[i % len(devices)].id
                body = json.dumps({"event_id": event_id, "ts": datetime.now(UTC).isoformat(), "kind": "press"})
                sent_at[event_id] = time.perf_counter()
                client.publish(f"{root}/sos/{device}/alert", body, qos=1)

            sent = _paced(rate_hz, duration_s, send)
            deadline = time.monotonic() + 30
            while len(latencies) < sent and time.monotonic() < deadline:
                time.sleep(0.05)
            client.loop_stop()
            client.disconnect()
            out = _summary(latencies, sent)
            out["ack_statuses"] = statuses
            stop.set()
            out["alerts_stored"] = results.get(timeout=60)
            return out
        finally:
            stop.set()
            child.join(30)
