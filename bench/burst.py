"""Bursts and floods: 5,000 SOS presses in one second, and SOS presses under a flood of 102 reports.

Both run the real service (bridge + dispatch + routing + SQLite) in a process of its own against
the real Mosquitto, as :mod:`bench.mqtt` does; a sampler thread inside the service process records
its resident memory and the bridge's queue depths every 10 ms.

* **burst**: 200 buttons publish 5,000 presses as fast as one client can (about one second). We
  report how long the last ack took, whether every press was acknowledged and stored once, the
  service's peak queue depth per lane and its memory before and at the peak.
* **flood**: SOS presses at 10/s for 20 s, timed press -> ack, first alone (the baseline), then
  while another process floods 102 reports as fast as it can. SOS presses have their own lane
  and connection and are served first, so their latency should barely move while the 102 backlog
  waits at the broker.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import resource
import secrets
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import SecretStr

from bench.mqtt import _connected, _paced, _summary
from dispatch import Device, DeviceSite, write_devices
from geo import Router, generate_city
from qorgau import QorgauService, Settings
from qorgau.demo import write_seed_registry

NODES = 10_000


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _service_process(settings_json: str, nodes: int, ready, stop, results) -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = Settings.model_validate_json(settings_json)
    settings = settings.model_copy(
        update={"jwt_secret": SecretStr(secrets.token_urlsafe(48))}
    )  # never leaves this process
    service = QorgauService(settings, network=generate_city(nodes, seed=3)).start()  # the parent's city
    peak = {"rss_mib": _rss_mib(), "depth": {}}
    start_rss = peak["rss_mib"]
    halt = threading.Event()

    def sample() -> None:
        while not halt.wait(0.01):
            peak["rss_mib"] = max(peak["rss_mib"], _rss_mib())
            for lane, n in service.bridge.stats().queue_depth.items():
                peak["depth"][lane] = max(peak["depth"].get(lane, 0), n)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ready.set()
    stop.wait()
    halt.set()
    sampler.join()
    stats = service.bridge.stats()
    alerts = service.store.list_alerts(limit=1_000_000)
    results.put(
        {
            "rss_start_mib": round(start_rss, 1),
            "rss_peak_mib": round(peak["rss_mib"], 1),
            "max_queue_depth": peak["depth"],
            "queue_limit": {lane.value: n for lane, n in service.bridge.queue_limit.items()},
            "holds": stats.holds,
            "shed": stats.shed,
            "restarts": stats.restarts,
            "stored": {
                "sos": sum(a.source.value == "sos" for a in alerts),
                "app102": sum(a.source.value == "app102" for a in alerts),
            },
            "distinct_events": len({(a.source, a.sender, a.event_id) for a in alerts}),
        }
    )
    service.stop(end_session=True)


class _Service:
    """The service in its own process, on a generated city with 200 buttons."""

    def __init__(self, url: str, tmp: str, nodes: int = NODES) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.root = f"qorgau-burst-{self.run}/v1"
        net = generate_city(nodes, seed=3)
        units_path, _ = write_seed_registry(Router(net), tmp, seed=3)
        router, rng = Router(net), np.random.default_rng(3)
        lat0, lon0, lat1, lon1 = net.bounds
        self.devices: list[Device] = []
        while len(self.devices) < 200:
            lat, lon = float(rng.uniform(lat0, lat1)), float(rng.uniform(lon0, lon1))
            if router.in_service_area(lat, lon):
                self.devices.append(Device(id=f"btn-{len(self.devices)}", site=DeviceSite.STREET, lat=lat, lon=lon))
        self.street_points = [(d.lat, d.lon) for d in self.devices]
        settings = Settings(
            units=units_path,
            devices=write_devices(Path(tmp) / "devices.geojson", self.devices),
            db_url=f"sqlite:///{tmp}/burst-{self.run}.sqlite3",
            mqtt_url=url,
            port=0,
            topic_root=self.root,
            client_id=f"qorgau-burst-{self.run}",
        )
        ctx = mp.get_context("spawn")
        self._ready, self._stop, self._results = ctx.Event(), ctx.Event(), ctx.Queue()
        self._child = ctx.Process(
            target=_service_process,
            args=(settings.model_dump_json(), nodes, self._ready, self._stop, self._results),
            daemon=True,
        )
        self._child.start()
        if not self._ready.wait(180):
            msg = "the service process did not come up"
            raise RuntimeError(msg)

    def finish(self) -> dict:
        self._stop.set()
        out = self._results.get(timeout=120)
        self._child.join(30)
        return out


class _Buttons:
    """One client for all buttons: publishes presses and times their acks."""

    def __init__(self, url: str, service: _Service) -> None:
        self.service = service
        self.sent_at: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        self.statuses: dict[str, int] = {}
        self.client = _connected(url, f"bench-burst-buttons-{service.run}", max_inflight=65535)
        self.client.on_message = self._on_ack
        self.client.subscribe(f"{service.root}/sos/+/ack", qos=1)
        time.sleep(0.5)

    def _on_ack(self, c, u, m) -> None:
        ack = json.loads(m.payload)
        self.statuses[ack["status"]] = self.statuses.get(ack["status"], 0) + 1
        t0 = self.sent_at.get(ack["event_id"])
        if t0 is not None and ack["status"] == "accepted":
            self.latency.setdefault(ack["event_id"], time.perf_counter() - t0)

    def press(self, i: int) -> None:
        event_id = f"{self.service.run}-{i}"
        device = self.service.devices[i % len(self.service.devices)].id
        body = json.dumps({"event_id": event_id, "ts": datetime.now(UTC).isoformat(), "kind": "press"})
        self.sent_at[event_id] = time.perf_counter()
        self.client.publish(f"{self.service.root}/sos/{device}/alert", body, qos=1)

    def wait(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.latency) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def burst(url: str, n: int = 5000, *, nodes: int = NODES) -> dict:
    """``n`` presses as fast as one client publishes them; time to the last ack, memory, queues."""
    with tempfile.TemporaryDirectory() as tmp:
        service = _Service(url, tmp, nodes)
        buttons = _Buttons(url, service)
        try:
            started = time.perf_counter()
            for i in range(n):
                buttons.press(i)
            published_s = time.perf_counter() - started
            buttons.wait(n, timeout_s=300)
            drained_s = (
                (max(buttons.sent_at[e] + t for e, t in buttons.latency.items()) - started) if buttons.latency else None
            )
            out = _summary(list(buttons.latency.values()), n)
            out.update(
                published_in_s=round(published_s, 3),
                last_ack_after_s=None if drained_s is None else round(drained_s, 2),
                ack_statuses=dict(buttons.statuses),
            )
        finally:
            buttons.close()
            out_service = service.finish()
        out["service"] = out_service
        return out


def _flood_process(url: str, root: str, points: list, duration_s: float, ready, go, results) -> None:
    client = _connected(url, f"bench-flood-{uuid.uuid4().hex[:8]}", max_inflight=65535)
    ready.set()
    go.wait()
    rng = np.random.default_rng(5)
    sent, end = 0, time.monotonic() + duration_s
    while time.monotonic() < end:
        lat, lon = points[int(rng.integers(len(points)))]
        body = json.dumps(
            {
                "event_id": f"flood-{sent}",
                "ts": datetime.now(UTC).isoformat(),
                "lat": lat,
                "lon": lon,
                "accuracy_m": 10.0,
                "category": "noise",
                "text": "",
            }
        )
        client.publish(f"{root}/app102/report", body, qos=1)
        sent += 1
        if sent % 200 == 0:
            time.sleep(0.01)  # let paho's thread write
    results.put(sent)
    time.sleep(2)
    client.disconnect()
    client.loop_stop()


def flood(url: str, *, rate_hz: float = 10.0, duration_s: float = 20.0, nodes: int = NODES) -> dict:
    """SOS press -> ack at ``rate_hz``: alone, then under a flood of 102 reports (same service)."""
    with tempfile.TemporaryDirectory() as tmp:
        service = _Service(url, tmp, nodes)
        buttons = _Buttons(url, service)
        ctx = mp.get_context("spawn")
        try:
            sent = _paced(rate_hz, duration_s, buttons.press)
            buttons.wait(sent, timeout_s=30)
            quiet = _summary(list(buttons.latency.values()), sent)
            ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
            flooder = ctx.Process(
                target=_flood_process,
                args=(url, service.root, service.street_points, duration_s, ready, go, results),
                daemon=True,
            )
            flooder.start()
            if not ready.wait(60):
                msg = "the flood process did not come up"
                raise RuntimeError(msg)
            before = set(buttons.latency)
            go.set()
            time.sleep(1.0)  # let the backlog build
            offset = sent
            flooded_sent = _paced(rate_hz, duration_s - 1.0, lambda i: buttons.press(offset + i))
            buttons.wait(sent + flooded_sent, timeout_s=60)
            flooded = _summary([t for e, t in buttons.latency.items() if e not in before], flooded_sent)
            reports_sent = results.get(timeout=120)
            flooder.join(30)
            if flooder.is_alive():
                flooder.terminate()
        finally:
            buttons.close()
            out_service = service.finish()
        return {
            "rate_hz": rate_hz,
            "duration_s": duration_s,
            "quiet": quiet,
            "flooded": flooded,
            "reports_sent": reports_sent,
            "service": out_service,
        }


def run(url: str, quick: bool = False) -> dict:
    """Both scenarios; ``quick``: 200 presses and a 4 s flood on a 2,000-node city (a check, not a measurement)."""
    if quick:
        return {"broker": url, "burst": burst(url, 200, nodes=2000), "flood": flood(url, duration_s=4.0, nodes=2000)}
    return {"broker": url, "burst": burst(url, 5000), "flood": flood(url, duration_s=20.0)}


def render(f: dict) -> list[str]:
    b, fl = f["burst"], f["flood"]
    bs, fs = b["service"], fl["service"]
    q, w = fl["quiet"], fl["flooded"]
    ratio = w["p99_ms"] / q["p99_ms"] if w["p99_ms"] and q["p99_ms"] else float("nan")
    within = all(bs["max_queue_depth"].get(lane, 0) <= limit for lane, limit in bs["queue_limit"].items())
    return [
        "## Bursts: 5,000 presses in one second, and SOS presses under a 102 flood",
        "",
        f"**Burst:** {b['sent']} presses published in {b['published_in_s']} s by one client (200 buttons); "
        f"{b['received']} accepted acks, the last {b['last_ack_after_s']} s after the first press; "
        f"press -> ack p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms. Stored: {bs['stored']['sos']} alerts, "
        f"{bs['distinct_events']} distinct events (**{'each once' if bs['stored']['sos'] == bs['distinct_events'] == b['sent'] else 'NOT each once'}**). "
        f"Service memory {bs['rss_start_mib']} MiB before, {bs['rss_peak_mib']} MiB at the peak; largest queue per lane "
        f"{bs['max_queue_depth']} against the caps {bs['queue_limit']} (**{'bounded' if within else 'over the cap'}**); "
        f"{bs.get('holds', 0)} times a lane stopped reading its socket while its queue was full; "
        f"{bs['shed']} messages read beyond a cap and left to the broker, {bs['restarts']} lane reconnects to fetch them.",
        "",
        f"**Flood:** SOS presses at {fl['rate_hz']:.0f}/s, press -> accepted ack, alone and while another process floods "
        f"102 reports ({fl['reports_sent']} sent in {fl['duration_s']:.0f} s; the service stored {fs['stored']['app102']} of them by the end):",
        "",
        "| SOS presses | sent | acked | p50 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---|---|---|---|",
        f"| alone (baseline) | {q['sent']} | {q['received']} | {q['p50_ms']:.1f} | {q['p99_ms']:.1f} | {q['max_ms']:.1f} |",
        f"| during the 102 flood | {w['sent']} | {w['received']} | {w['p50_ms']:.1f} | {w['p99_ms']:.1f} | {w['max_ms']:.1f} |",
        "",
        f"p99 during the flood / alone: {ratio:.1f}x. SOS presses have their own lane and MQTT connection and are served "
        "first; a press can wait for at most one 102 batch (8 reports) already being committed.",
        "",
    ]
