"""The dispatcher's live map in headless Chromium: MQTT publish -> marker in the page, and the page under load.

Two scenarios, each against a service in a process of its own (so the measuring side does not
share an interpreter lock with it), the real Mosquitto and SQLite, and Debian's Chromium driven
by Playwright:

* **latency**: a 20,000-node generated city with 8 booths, 12 foot patrols and 8 cars; the 20
  patrols report a position every second over MQTT while SOS presses arrive every 150 ms. For each
  press: the time from just before the MQTT publish to the moment a ``MutationObserver`` in the
  page sees the alert's marker (``path[data-alert-id]``) added to the DOM. The browser's clock is
  the same system clock; the offset between them is measured and taken off.
* **scale**: 1,000 open alerts and 500 units (100 booths, 250 foot, 150 cars), all 400 patrols
  reporting a position every 4 s (100 position messages/s: what the service's SQLite ingest keeps
  up with on this machine; at 400/s its own queue, not the page, delays the alerts), plus a press
  every 500 ms, while the map zooms in and out; the page's frame intervals
  (``requestAnimationFrame``), the time to apply each batch of events to the map and the list,
  the snapshot load, a filter change over 1,000 alerts, and the same publish -> marker time.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import random
import secrets
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from pydantic import SecretStr

from dispatch import write_devices, write_units
from geo import Router, generate_city
from mqtt_bridge import Topics, parse_mqtt_url
from mqtt_bridge.broker import new_client

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "bench-password-1"
TARGET_P95_MS = 500.0

_OBSERVER = """() => {
  window.__seen = {};
  const pane = document.querySelector('.leaflet-q-alerts-pane');
  new MutationObserver((records) => {
    const t = performance.timeOrigin + performance.now();
    for (const r of records) for (const n of r.addedNodes) {
      const id = n.nodeType === 1 && n.getAttribute('data-alert-id');
      if (id && !(id in window.__seen)) window.__seen[id] = t;
    }
  }).observe(pane, { childList: true, subtree: true });
}"""

_FRAMES = """() => {
  window.__frames = [];
  const loop = Math.random();
  window.__framesLoop = loop;
  let last = performance.now();
  const step = (t) => {
    if (window.__framesLoop !== loop) return;
    window.__frames.push(t - last);
    last = t;
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}"""


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat()


def _stats(values: list[float]) -> dict[str, Any]:
    a = np.asarray(values, dtype=float)
    if not a.size:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.median(a)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def _service_process(settings_json: str, nodes: int, seed: int, preload: int, out: Any, stop: Any) -> None:
    """Run the service; register the bench user; optionally ingest ``preload`` 102 reports first."""
    logging.basicConfig(level=logging.WARNING)
    from dispatch import Role, User
    from dispatch.auth import hash_password
    from qorgau import QorgauService, Settings
    from qorgau.simulate import random_street_point

    settings = Settings.model_validate_json(settings_json)
    settings = settings.model_copy(
        update={"jwt_secret": SecretStr(secrets.token_urlsafe(48))}
    )  # never leaves this process
    service = QorgauService(settings, network=generate_city(nodes, seed=seed)).start()
    service.store.add_user(User("bench", Role.DISPATCHER), hash_password(PASSWORD), actor="bench")
    rng = random.Random(seed)
    categories = ["assault", "robbery", "burglary", "theft", "theft", "theft", "fraud", "noise"]
    started = time.perf_counter()
    for i in range(preload):
        lat, lon = random_street_point(service.router, rng)
        payload = {
            "event_id": f"pre-{i}",
            "ts": _now_rfc3339(),
            "lat": lat,
            "lon": lon,
            "accuracy_m": 15.0,
            "category": rng.choice(categories),
            "text": f"preloaded report {i}",
        }
        service.service.ingest_app102(json.dumps(payload).encode())
    out.put({"base_url": service.base_url, "preload_s": time.perf_counter() - started})
    stop.wait()
    service.stop(end_session=True)


class _Bench:
    """One service process, an MQTT client playing devices and patrols, and one signed-in page."""

    def __init__(
        self,
        browser: Any,
        mqtt_url: str,
        tmp: Path,
        *,
        nodes: int,
        seed: int,
        booths: int,
        foot: int,
        cars: int,
        devices: int,
        preload: int = 0,
    ) -> None:
        from qorgau import Settings
        from qorgau.demo import seed_registry

        self.city = generate_city(nodes, seed=seed)
        units, buttons = seed_registry(
            Router(self.city), booths=booths, foot=foot, cars=cars, devices=devices, seed=seed
        )
        self.patrols = [u for u in units if u.kind.value != "booth"]
        self.devices = [d.id for d in buttons]
        run = uuid.uuid4().hex[:8]
        self.topics = Topics(f"qorgau-bench-map-{run}/v1")
        settings = Settings(
            units=write_units(tmp / f"units-{run}.geojson", units),
            devices=write_devices(tmp / f"devices-{run}.geojson", buttons),
            db_url=f"sqlite:///{tmp}/map-{run}.sqlite3",
            mqtt_url=mqtt_url,
            port=0,
            topic_root=self.topics.root,
            client_id=f"qorgau-bench-map-{run}",
            stale_after_s=600,
        )
        ctx = mp.get_context("spawn")
        self._out, self._stop = ctx.Queue(), ctx.Event()
        self._child = ctx.Process(
            target=_service_process,
            args=(settings.model_dump_json(), nodes, seed, preload, self._out, self._stop),
            daemon=True,
        )
        self._child.start()
        info = self._out.get(timeout=600)
        self.base_url: str = info["base_url"]
        self.preload_s: float = info["preload_s"]

        address = parse_mqtt_url(mqtt_url)
        self.client = new_client(address, client_id=f"bench-map-{run}")
        self.acks: dict[str, tuple[int, float]] = {}
        ready = threading.Event()
        self.client.on_connect = lambda *a: ready.set()
        self.client.on_message = self._on_ack
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        if not ready.wait(10):
            msg = f"no CONNACK from {mqtt_url}"
            raise ConnectionError(msg)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.subscribe(f"{self.topics.root}/sos/+/ack", qos=1)
        subscribed.wait(10)

        self.context = browser.new_context(viewport={"width": 1600, "height": 1000})
        self.page = self.context.new_page()
        self.signed_in_ms = self._sign_in()
        self.page.evaluate(_OBSERVER)
        self.offset_ms = self._clock_offset()
        self.published: dict[str, float] = {}
        self._moving = threading.Event()
        self._mover: threading.Thread | None = None

    def _on_ack(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        if body.get("alert_id") is not None:
            self.acks[body["event_id"]] = (int(body["alert_id"]), time.time() * 1000)

    def _sign_in(self) -> float:
        page = self.page
        page.goto(f"{self.base_url}/map?lang=en")
        page.fill("#q-username", "bench")
        page.fill("#q-password", PASSWORD)
        started = time.perf_counter()
        page.click("button[type=submit]")
        # The page's status badge (what window.qorgau.connection reads), through a selector: a string
        # wait_for_function is evaluated with eval, which the page's CSP (no 'unsafe-eval') refuses.
        page.wait_for_selector("#q-conn[data-state=live]", state="attached", timeout=120_000)
        return (time.perf_counter() - started) * 1000

    def _clock_offset(self) -> float:
        """Browser clock minus this process's clock (ms), from the tightest of 15 round trips."""
        best = None
        for _ in range(15):
            t0 = time.time() * 1000
            b = self.page.evaluate("performance.timeOrigin + performance.now()")
            t1 = time.time() * 1000
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, b - (t0 + t1) / 2)
        assert best is not None
        return best[1]

    def press(self, i: int) -> None:
        device = self.devices[i % len(self.devices)]
        event_id = f"bench-{uuid.uuid4().hex[:12]}"
        payload = json.dumps({"event_id": event_id, "ts": _now_rfc3339(), "kind": "press"}).encode()
        self.published[event_id] = time.time() * 1000
        self.client.publish(self.topics.sos_alert(device), payload, qos=1)

    def start_moving(self, patrols: int, rate_hz: float = 1.0) -> None:
        """Every patrol reports a position ``rate_hz`` times a second, wandering near its seed point."""
        movers = self.patrols[:patrols]
        rng = random.Random(5)
        spots = {u.id: [u.lat, u.lon, u.lat, u.lon] for u in movers}
        self._moving.set()

        def run() -> None:
            period = 1.0 / (rate_hz * len(movers))
            due = time.perf_counter()
            i = 0
            while self._moving.is_set():
                u = movers[i % len(movers)]
                s = spots[u.id]
                s[0] += rng.uniform(-1, 1) * 1e-4
                s[1] += rng.uniform(-1, 1) * 1.3e-4
                if math.hypot(s[0] - s[2], (s[1] - s[3]) * 0.73) > 0.002:  # stay within ~200 m of its beat
                    s[0], s[1] = s[2], s[3]
                body = json.dumps({"ts": _now_rfc3339(), "lat": s[0], "lon": s[1]}).encode()
                self.client.publish(self.topics.unit_position(u.id), body, qos=1)
                i += 1
                due += period
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)

        self._mover = threading.Thread(target=run, name="bench-movers", daemon=True)
        self._mover.start()

    def stop_moving(self) -> None:
        self._moving.clear()
        if self._mover is not None:
            self._mover.join(5)

    def presses(self, n: int, interval_s: float) -> dict[str, Any]:
        """Publish ``n`` presses ``interval_s`` apart; publish -> marker and publish -> ack times."""
        before = set(self.published)
        start = time.perf_counter()
        for i in range(n):
            due = start + i * interval_s
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.press(i)
        mine = [e for e in self.published if e not in before]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ids = [self.acks[e][0] for e in mine if e in self.acks]
            seen = self.page.evaluate("Object.keys(window.__seen).length")
            if len(ids) == len(mine) and seen >= len(ids):
                seen_at = self.page.evaluate("window.__seen")
                if all(str(i) in seen_at for i in ids):
                    break
            time.sleep(0.2)
        seen_at = self.page.evaluate("window.__seen")
        to_marker, to_ack, ack_to_marker, missing = [], [], [], 0
        for e in mine:
            if e not in self.acks:
                missing += 1
                continue
            alert_id, acked = self.acks[e]
            to_ack.append(acked - self.published[e])
            t = seen_at.get(str(alert_id))
            if t is None:
                missing += 1
            else:
                to_marker.append(t - self.offset_ms - self.published[e])
                ack_to_marker.append(t - self.offset_ms - acked)
        return {
            "publish_to_marker": _stats(to_marker),
            "publish_to_ack": _stats(to_ack),
            "ack_to_marker": _stats(ack_to_marker),
            "missing": missing,
            "sent": n,
        }

    def close(self) -> None:
        self.stop_moving()
        self.context.close()
        self.client.loop_stop()
        self.client.disconnect()
        self._stop.set()
        self._child.join(30)


def _latency(browser: Any, mqtt_url: str, tmp: Path, quick: bool) -> dict[str, Any]:
    nodes = 2_000 if quick else 20_000
    b = _Bench(browser, mqtt_url, tmp, nodes=nodes, seed=11, booths=8, foot=12, cars=8, devices=60)
    try:
        b.start_moving(20)
        time.sleep(1 if quick else 2)
        result = b.presses(10 if quick else 150, 0.15)
        b.stop_moving()
        stats = b.page.evaluate("window.qorgau.stats")
        result.update(
            city_nodes=nodes,
            moving_units=20,
            position_rate_hz=20.0,
            press_interval_s=0.15,
            clock_offset_ms=round(b.offset_ms, 2),
            update=_stats(stats["updateMs"]),
            events=stats["events"],
        )
        return result
    finally:
        b.close()


def _scale(browser: Any, mqtt_url: str, tmp: Path, quick: bool) -> dict[str, Any]:
    nodes = 2_000 if quick else 20_000
    alerts, booths, foot, cars = (30, 4, 8, 4) if quick else (1000, 100, 250, 150)
    b = _Bench(
        browser, mqtt_url, tmp, nodes=nodes, seed=12, booths=booths, foot=foot, cars=cars, devices=200, preload=alerts
    )
    try:
        page = b.page
        loaded = page.evaluate(
            "({alerts: window.qorgau.alerts.size, units: window.qorgau.units.size,"
            " listed: document.querySelectorAll('#q-alerts li').length,"
            " snapshotMs: window.qorgau.stats.snapshotMs, applyMs: window.qorgau.stats.snapshotApplyMs})"
        )
        movers = foot + cars
        rate_hz = 0.25
        b.start_moving(movers, rate_hz)
        time.sleep(2)
        first_update = len(page.evaluate("window.qorgau.stats.updateMs"))
        page.evaluate(_FRAMES)
        result = b.presses(5 if quick else 30, 0.5)
        m = "window[window.QORGAU_CONFIG.map]"
        for zoom in (1, -1, 1, -1, 2, -2):  # the dispatcher zooms in and out while everything moves
            page.evaluate(f"void {m}.setZoom({m}.getZoom() + {zoom})")
            time.sleep(0.8)
        frames = page.evaluate("window.__framesLoop = 0, window.__frames")
        updates = page.evaluate("window.qorgau.stats.updateMs")[first_update:]
        events = page.evaluate("window.qorgau.stats.events")
        b.stop_moving()
        filter_ms = page.evaluate(
            """() => {
                const box = document.querySelector('input[data-filter="priority"][value="3"]');
                const t0 = performance.now();
                box.checked = !box.checked; box.dispatchEvent(new Event('change'));
                const t1 = performance.now();
                box.checked = !box.checked; box.dispatchEvent(new Event('change'));
                return [t1 - t0, performance.now() - t1];
            }"""
        )
        heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null")
        long_frames = sum(1 for f in frames if f > 50)
        result.update(
            city_nodes=nodes,
            open_alerts=loaded["alerts"],
            listed=loaded["listed"],
            units=loaded["units"],
            moving_units=movers,
            position_rate_hz=movers * rate_hz,
            preload_s=round(b.preload_s, 1),
            sign_in_to_live_ms=round(b.signed_in_ms, 1),
            snapshot_ms=round(loaded["snapshotMs"], 1),
            snapshot_apply_ms=round(loaded["applyMs"], 1),
            frames=_stats(frames),
            long_frames=long_frames,
            long_frame_share=round(long_frames / max(1, len(frames)), 4),
            update=_stats(updates),
            events=events,
            filter_ms=[round(x, 1) for x in filter_ms],
            heap_mib=None if heap is None else round(heap, 1),
        )
        return result
    finally:
        b.close()


def run(mqtt_url: str, quick: bool) -> dict:
    """Both scenarios, through the broker at ``mqtt_url`` (``--mqtt``, as every other part)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            log.info("map: latency with 20 patrols moving")
            latency = _latency(browser, mqtt_url, Path(tmp), quick)
            log.info("map: 1,000 open alerts and 500 units")
            scale = _scale(browser, mqtt_url, Path(tmp), quick)
            version = browser.version
        finally:
            browser.close()
    return {"browser": f"Chromium {version} (headless)", "broker": mqtt_url, "latency": latency, "scale": scale}


def _row(name: str, s: dict[str, Any]) -> str:
    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1f}"

    return f"| {name} | {s['n']} | {f(s['p50_ms'])} | {f(s['p95_ms'])} | {f(s['max_ms'])} |"


def render(figures: dict) -> list[str]:
    """Markdown lines for BENCHMARKS.md (the first line is the heading)."""
    lat, sc = figures["latency"], figures["scale"]
    p95 = lat["publish_to_marker"]["p95_ms"]
    p95_scale = sc["publish_to_marker"]["p95_ms"]
    n = lat["publish_to_marker"]["n"]
    met = p95 is not None and p95 < TARGET_P95_MS and lat["missing"] == 0 and n >= 100
    return [
        "## Dispatcher's live map: MQTT publish -> marker in the browser",
        "",
        f"{figures['browser']} driven by Playwright; the service in its own process (SQLite), broker {figures['broker']}.",
        "",
        "| what | n | p50 (ms) | p95 (ms) | max (ms) |",
        "|---|---|---|---|---|",
        _row(
            f"publish -> marker in the DOM, {lat['moving_units']} patrols moving ({lat['city_nodes']:,}-node city)",
            lat["publish_to_marker"],
        ),
        _row("publish -> ack (the service alone, same presses)", lat["publish_to_ack"]),
        _row(
            "ack sent -> marker in the DOM (event stream and page; the ack is published after the commit, like the event)",
            lat["ack_to_marker"],
        ),
        _row("applying one batch of events to map and list (per frame)", lat["update"]),
        _row(
            f"publish -> marker with {sc['open_alerts']:,} open alerts, {sc['units']} units, {sc['moving_units']} moving "
            f"({sc['position_rate_hz']:.0f} positions/s)",
            sc["publish_to_marker"],
        ),
        _row("frame interval, same load, zooming in and out", sc["frames"]),
        _row(f"applying one batch of events (same load, {sc['position_rate_hz']:.0f} positions/s)", sc["update"]),
        "",
        f"Target (issue 4): p95 publish -> marker under {TARGET_P95_MS:.0f} ms over at least 100 alerts while 20 units move: "
        f"{n} alerts, p95 {p95:.0f} ms, missing {lat['missing']}: **{'met' if met else 'not met'}**"
        f"{'' if n >= 100 else ' (a --quick run: too few alerts to count)'}; "
        f"with {sc['open_alerts']:,} open alerts and {sc['units']} units, p95 {p95_scale:.0f} ms (missing {sc['missing']}).",
        "",
        f"With {sc['open_alerts']:,} open alerts and {sc['units']} units the page loaded its snapshot in {sc['snapshot_ms']:.0f} ms "
        f"(drawing it: {sc['snapshot_apply_ms']:.0f} ms), a filter change over all alerts took {sc['filter_ms'][0]:.0f} ms, "
        f"{sc['long_frames']} of {sc['frames']['n']} frames took longer than 50 ms ({sc['long_frame_share']:.1%}); "
        f"JS heap {sc['heap_mib']} MiB. Headless Chromium draws in software (no GPU) on 2 shared cores, beside the service and the broker.",
        "",
    ]
