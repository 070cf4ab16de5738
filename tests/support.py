"""Everything the tests share; tests/conftest.py's fixtures and every test module import from here.

Sections (in this order):

- **Shared data files** (formerly ``shared_data.py``): :data:`SHARED_DATA`, :func:`shared`, and the
  paths ``ALMATY_PBF``, ``ALMATY_CLEAN_XML``, ``ALMATY_DRIVE_GRAPHML``, ``TORONTO_XML``,
  ``TORONTO_WALK_GRAPHML``, ``TORONTO_CRIME`` (resolved on first import of the name, so a missing
  file fails the modules that use it, loudly, and not the whole session).
- **The test service** (formerly in ``conftest.py``): :data:`ADMIN_TOKEN`, :data:`JWT_SECRET`,
  :data:`FAR_DEVICE`, :class:`Registry` (the seeded units and buttons), :class:`Running` (a started
  service with a dispatcher's HTTP client).
- **Payloads and polling**: :func:`now_rfc3339`, :func:`new_event_id`, :func:`sos_payload`,
  :func:`report_payload`, :func:`wait_for`.
- **MQTT probe**: :class:`Probe`, a test's own client that publishes like a device and collects acks.
- **Roles** (formerly ``test_auth._guard``): :func:`route_guard`.
- **The live map** (formerly ``map_support.py`` and ``test_map_browser._sign_in`` / ``_shot``):
  :data:`CHROMIUM`, :data:`CHROMIUM_ARGS`, :data:`ARTIFACTS`, :data:`PASSWORD`, :func:`add_user`,
  :func:`sign_in` (HTTP, cookie), :func:`read_events` (Server-Sent Events), :func:`sign_in_page`
  (the browser's login form), :func:`screenshot`.
- **The control room on a pinned clock** (formerly ``test_control_room``): :data:`T0`,
  :class:`Clock`, :func:`ingest_press`, :func:`ingest_report`.
- **Planner data** (formerly ``planner_data.py``): cached Toronto incidents and streets:
  :data:`TORONTO_TZ`, :func:`toronto_all`, :func:`toronto_network`, :func:`toronto_graph`,
  :func:`toronto_extract`, :data:`TORONTO_BOOTHS`, :data:`NIGHT`, :func:`toronto_night`, :func:`toronto_risk`.
- **Brute-force reference** (formerly ``bruteforce.py``): :data:`UNIT_MODES`, :func:`mode_edges`,
  :class:`BruteForce`: an independent, slow reference for unit ranking (scan snapping + networkx
  Dijkstra) that shares no code with :mod:`geo.routing` but the :class:`~geo.network.StreetNetwork`
  it reads. It rebuilds each mode's graph from the network's segments and the documented rules
  (walk: every walkable segment both ways at the walking speed; drive: drivable segments, one-ways
  respected, at their speed; each restricted to its largest (strongly) connected component), snaps
  by scanning every segment, splits segments at the snapped points, and runs networkx's full Dijkstra.

Test modules never import one another nor ``conftest``: what two of them need lives here.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import networkx as nx
import numpy as np
import paho.mqtt.client as mqtt
import shapely
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from dispatch import Authenticator, Device, DispatchService, Role, Store, Unit, User
from dispatch.auth import hash_password
from geo import Router, StreetNetwork, load_network
from mqtt_bridge import Topics, new_client, parse_mqtt_url
from patrol_planner import Booth, Incidents, LoadReport, WalkGraph, read_incidents, read_osm_bounds, within_area
from patrol_planner.shift import RiskMap, Shift, risk_map
from qorgau import QorgauService
from web.deps import RoleGuard

if TYPE_CHECKING:
    from fastapi.routing import APIRoute, RouteContext
    from playwright.sync_api import Page

T = TypeVar("T")


# -- shared data files ------------------------------------------------------------------------


SHARED_DATA = Path(os.environ.get("QORGAU_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
"""The shared, read-only data sets: ``../shared/data`` beside the checkout, or ``QORGAU_SHARED_DATA``."""

SHARED_FILES = {
    "ALMATY_PBF": "osm/almaty_2012-03.osm.pbf",
    "ALMATY_CLEAN_XML": "osm/almaty_2012-03_clean.osm.gz",
    "ALMATY_DRIVE_GRAPHML": "osm/almaty_2012-03_drive.graphml.gz",
    "TORONTO_XML": "osm/toronto_uoft_2020-11.osm.gz",
    "TORONTO_WALK_GRAPHML": "osm/toronto_uoft_2020-11_walk.graphml.gz",
    "TORONTO_CRIME": "crime/toronto_mci_2014_2021.csv.gz",
}
"""The shared data files by the name tests import them as (``from support import TORONTO_XML``)."""


def shared(relative: str) -> Path:
    """The path of a shared data file; raises if it is missing (tests never skip for data)."""
    path = SHARED_DATA / relative
    if not path.is_file():
        msg = (
            f"shared data file missing: {path}. Tests read real data from ../shared/data beside the "
            "checkout (or QORGAU_SHARED_DATA); it is never copied into the repository."
        )
        raise FileNotFoundError(msg)
    return path


def __getattr__(name: str) -> Path:
    """``support.TORONTO_XML`` and the other :data:`SHARED_FILES`: checked when first imported (PEP 562)."""
    if name in SHARED_FILES:
        path = shared(SHARED_FILES[name])
        globals()[name] = path
        return path
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the test service: secrets, registry, a running service -----------------------------------


HTTP_TIMEOUT_S = 30.0
"""Test clients' HTTP timeout: a guard against a hung service, not a speed check (CI machines are loaded)."""

ADMIN_TOKEN = "test-bootstrap-admin-token-0123456789"
"""The bootstrap admin token every test service accepts (QORGAU_ADMIN_TOKEN)."""

JWT_SECRET = "k3Xq9vN2-tests-only-7hPz4Lw8Rb6Ym1Tc"
"""The token signing key of test services (``qorgau serve`` refuses to start without one)."""

FAR_DEVICE = "far-1"
"""A registered SOS button about 5 km outside the generated city: outside the service area."""


@dataclass(frozen=True)
class Registry:
    """The seeded units and SOS buttons (read back from their GeoJSON files) and those files' paths."""

    units: list[Unit]
    devices: dict[str, Device]
    units_path: Path
    devices_path: Path

    def router(self, city: StreetNetwork) -> Router:
        """An independent router with every unit placed where the registry puts it."""
        router = Router(city)
        for unit in self.units:
            router.place_unit(unit.id, unit.kind.value, unit.lat, unit.lon)
        return router


@dataclass
class Running:
    """A started service and an HTTP client for its API, signed in as a dispatcher."""

    service: QorgauService
    http: httpx.Client

    def client(self, role: Role | str, *, unit_id: str | None = None, username: str | None = None) -> httpx.Client:
        """An HTTP client with a token for ``role`` (closed with the service)."""
        role = Role(role)
        user = User(username or f"test-{role.value}{'-' + unit_id if unit_id else ''}", role, unit_id)
        token = self.service.auth.issue(user)
        client = httpx.Client(
            base_url=self.service.base_url, timeout=HTTP_TIMEOUT_S, headers={"Authorization": f"Bearer {token}"}
        )
        self._clients.append(client)
        return client

    def __post_init__(self) -> None:
        self._clients: list[httpx.Client] = []

    def rejected(self, reason: str) -> int:
        return int(self.http.get("/api/metrics").json()["rejected"][reason])

    def alerts(self) -> list[dict]:
        response = self.http.get("/api/alerts")
        response.raise_for_status()
        return list(response.json())


# -- payloads and polling ---------------------------------------------------------------------


def now_rfc3339(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def new_event_id() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


def sos_payload(event_id: str | None = None, *, kind: str = "press", **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id or new_event_id(), "ts": now_rfc3339(), "kind": kind, **extra}


def report_payload(lat: float, lon: float, event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id or new_event_id(),
        "ts": now_rfc3339(),
        "lat": lat,
        "lon": lon,
        "accuracy_m": 12.5,
        "category": "theft",
        "text": "a bag was snatched",
        **extra,
    }


def wait_for(check: Callable[[], T | None], *, timeout_s: float = 2.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def together(calls: Sequence[Callable[[], object]]) -> list[object]:
    """Run ``calls`` on threads of their own, released at the same moment; each one's result or exception."""
    results: list[object] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as e:  # collected for the caller's assertions
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def page_until(page: Any, expression: str, *, timeout_s: float = 10.0) -> Any:
    """Poll a page until JavaScript ``expression`` is truthy (``page.evaluate``: no string is eval'd
    inside the page, so it works under the page's CSP); its value."""
    return wait_for(lambda: page.evaluate(expression), timeout_s=timeout_s, what=expression)


# -- MQTT probe -------------------------------------------------------------------------------


class Probe:
    """A test's own MQTT client: publishes like a device and collects the acks the service sends."""

    def __init__(self, url: str, topic_root: str) -> None:
        self.topics = Topics(topic_root)
        self.address = parse_mqtt_url(url)
        self.client = new_client(self.address, client_id=f"qorgau-probe-{uuid.uuid4().hex[:12]}")
        self.messages: queue.Queue[tuple[str, dict[str, Any], Any]] = queue.Queue()
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(self.address.host, self.address.port, keepalive=30, clean_start=True)
        self.client.loop_start()
        filters = [f"{topic_root}/sos/+/ack", f"{topic_root}/app102/ack/#"]
        result, _ = self.client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert subscribed.wait(5), "the broker did not acknowledge the probe's subscription"

    def listen(self, topic_filter: str) -> None:
        """Also collect messages on ``topic_filter`` (e.g. a unit's orders)."""
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        result, _ = self.client.subscribe([(topic_filter, SubscribeOptions(qos=1))])
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert done.wait(5), f"the broker did not acknowledge the subscription to {topic_filter}"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, json.loads(msg.payload), msg.properties))

    def publish(self, topic: str, payload: dict[str, Any] | bytes, *, properties: Properties | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, data, qos=1, properties=properties)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"broker did not acknowledge the publish on {topic}"

    def sos(self, device_id: str, payload: dict[str, Any] | bytes) -> None:
        self.publish(self.topics.sos_alert(device_id), payload)

    def next_ack(self, topic: str, *, timeout_s: float = 2.0) -> dict[str, Any]:
        """The next message on ``topic`` (others are kept for later calls)."""
        deadline = time.monotonic() + timeout_s
        kept = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no message on {topic} within {timeout_s} s")
                try:
                    got_topic, body, _ = self.messages.get(timeout=left)
                except queue.Empty:
                    continue
                if got_topic == topic:
                    return body
                kept.append((got_topic, body, _))
        finally:
            for item in kept:
                self.messages.put(item)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- roles ------------------------------------------------------------------------------------


def route_guard(route: APIRoute | RouteContext) -> RoleGuard | None:
    """The role guard (``require_role``) among a route's dependencies, however deep; None if it has none."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, RoleGuard):
            return dep.call
        stack.extend(dep.dependencies)
    return None


# -- the live map: users, sign-in, Server-Sent Events, Chromium -------------------------------


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PASSWORD = "correct horse battery"


def add_user(service: Any, username: str, role: Role | str, *, unit_id: str | None = None) -> str:
    """Register a user with :data:`PASSWORD` in the running service's store; returns the username."""
    service.store.add_user(User(username, Role(role), unit_id), hash_password(PASSWORD), actor="test")
    return username


def sign_in(base_url: str, username: str, password: str = PASSWORD) -> httpx.Client:
    """A client signed in through the map's login form (it holds the session cookie)."""
    client = httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S)
    response = client.post("/login", data={"username": username, "password": password, "next": "/map"})
    assert response.status_code == 303, response.text
    return client


def read_events(response: httpx.Response, count: int, *, timeout_s: float = 3.0) -> list[dict[str, str]]:
    """The next ``count`` named events (``{"id", "event", "data"}``) from an open SSE response."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    lines = response.iter_lines()
    while len(events) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(events)} of {count} events within {timeout_s} s: {events}")
        line = next(lines)
        if line == "":
            if "event" in current:
                events.append(current)
            current = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        current[field] = value[1:] if value.startswith(" ") else value
    return events


def sign_in_page(page: Page, base_url: str, username: str, *, lang: str = "ru") -> None:
    """Sign ``username`` in through the map's login form in ``page``; returns once the feed is live."""
    page.goto(f"{base_url}/map?lang={lang}")
    assert "/login" in page.url  # not signed in yet
    page.fill("#q-username", username)
    page.fill("#q-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/map?lang=*")
    page.wait_for_function("window.qorgau && window.qorgau.connection === 'live'", timeout=5000)
    page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads


def screenshot(page: Page, name: str) -> None:
    """Save a screenshot of ``page`` as ``test-artifacts/<name>``."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


# -- the control room on a pinned clock -------------------------------------------------------


T0 = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # 09:00 in Almaty


class Clock:
    """A clock the test moves by hand (``tick``); starts at :data:`T0`."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@contextmanager
def replica_services(
    db_url: str,
    city: StreetNetwork,
    registry: Registry,
    clock: Clock,
    *,
    names: Sequence[str] = ("replica-a", "replica-b"),
) -> Iterator[list[DispatchService]]:
    """One open dispatch service per replica name, each with its own store on ``db_url``; closed after."""
    made: list[DispatchService] = []
    try:
        for name in names:
            store = Store(db_url, replica=name).upgrade_schema()
            svc = DispatchService(store, Router(city), devices=registry.devices, units=registry.units, clock=clock)
            made.append(svc.open())
        yield made
    finally:
        for svc in made:
            svc.close()
            svc.store.close()


def device_of(registry: Registry, i: int = 0) -> str:
    """The ``i``-th button of the test registry inside the city (never :data:`FAR_DEVICE`)."""
    return [d for d in sorted(registry.devices) if d != FAR_DEVICE][i]


def ingest_press(service: DispatchService, device_id: str, clock: Clock, event: str) -> int:
    """An accepted SOS press from ``device_id`` at the clock's time; returns its alert id."""
    payload = json.dumps({"event_id": event, "ts": clock.now.isoformat(), "kind": "press"}).encode()
    ack = service.ingest_sos(device_id, payload)
    assert ack.accepted, ack
    return int(ack.alert_id)


def ingest_report(service: DispatchService, lat: float, lon: float, clock: Clock, event: str, **kw: object) -> int:
    """An accepted 102 report at (lat, lon) at the clock's time; returns its alert id."""
    body = {
        "event_id": event,
        "ts": clock.now.isoformat(),
        "lat": lat,
        "lon": lon,
        "accuracy_m": 10.0,
        "category": "theft",
        "text": "bag",
        **kw,
    }
    ack = service.ingest_app102(json.dumps(body).encode())
    assert ack.accepted, ack
    return int(ack.alert_id)


# -- planner data: the real Toronto incidents and the U of T street extract -------------------


TORONTO_TZ = "America/Toronto"


@lru_cache(maxsize=1)
def toronto_all() -> tuple[Incidents, LoadReport]:
    """All 210,992 Toronto MCI incidents (local Toronto time)."""
    return read_incidents(shared(SHARED_FILES["TORONTO_CRIME"]), timezone=TORONTO_TZ)


@lru_cache(maxsize=1)
def toronto_network() -> StreetNetwork:
    return load_network(shared(SHARED_FILES["TORONTO_XML"]))


@lru_cache(maxsize=1)
def toronto_graph() -> WalkGraph:
    return WalkGraph(Router(toronto_network()))


@lru_cache(maxsize=1)
def toronto_extract() -> tuple[Incidents, LoadReport]:
    """The incidents within 100 m of the street extract's <bounds> and near its walkable streets."""
    inc, report = toronto_all()
    return within_area(inc, toronto_graph(), bounds=read_osm_bounds(shared(SHARED_FILES["TORONTO_XML"])), report=report)


TORONTO_BOOTHS = [
    # amenity=police in the extract (osm/PROVENANCE.md): 40 College St and 21 Sussex Ave.
    Booth("tps-hq", 43.6616, -79.3866, "Toronto Police Headquarters"),
    Booth("uoft-campus", 43.66487, -79.40098, "University of Toronto Campus Police"),
]

NIGHT = "22:00-06:00"


def toronto_night(on: date = date(2022, 1, 7)) -> Shift:
    return Shift.parse(NIGHT, on=on, timezone=TORONTO_TZ)


@lru_cache(maxsize=4)
def toronto_risk(shift_text: str = NIGHT, n_spots: int = 40) -> RiskMap:
    inc, _ = toronto_extract()
    shift = Shift.parse(shift_text, on=date(2022, 1, 7), timezone=TORONTO_TZ)
    return risk_map(inc, toronto_graph(), shift, n_spots=n_spots)


# -- brute-force reference for unit ranking ---------------------------------------------------


UNIT_MODES = {"booth": "walk", "foot": "walk", "car": "drive"}


def mode_edges(
    net: StreetNetwork, mode: str, walk_speed: float = 1.4
) -> list[tuple[int, int, float, float, bool, bool]]:
    """(u, v, time_s, length_m, forward_ok, backward_ok) for the mode's largest component."""
    g = nx.DiGraph()
    rows = []
    for i in range(net.n_segments):
        if mode == "walk" and not net.seg_walk[i]:
            continue
        if mode == "drive" and not net.seg_drive[i]:
            continue
        u, v, ln = int(net.seg_u[i]), int(net.seg_v[i]), float(net.seg_length_m[i])
        if mode == "walk":
            t, back = ln / walk_speed, True
        else:
            t, back = ln / (float(net.seg_speed_kmh[i]) / 3.6), not bool(net.seg_oneway[i])
        rows.append((u, v, t, ln, True, back))
        g.add_edge(u, v)
        if back:
            g.add_edge(v, u)
    comps = nx.weakly_connected_components(g) if mode == "walk" else nx.strongly_connected_components(g)
    biggest = max(comps, key=len)
    return [r for r in rows if r[0] in biggest and r[1] in biggest]


class BruteForce:
    """Reference ETAs for one network."""

    def __init__(self, net: StreetNetwork, walk_speed: float = 1.4) -> None:
        self.net = net
        self.walk_speed = walk_speed
        self.edges = {m: mode_edges(net, m, walk_speed) for m in ("walk", "drive")}
        self.lines = {
            m: shapely.linestrings([[(net.node_x[u], net.node_y[u]), (net.node_x[v], net.node_y[v])] for u, v, *_ in e])
            for m, e in self.edges.items()
        }

    def snap(self, lat: float, lon: float, mode: str) -> tuple[int, float, float]:
        """(edge index, fraction, distance) by scanning every segment of the mode."""
        x, y = self.net.to_xy(lat, lon)
        p = shapely.points(float(x), float(y))
        d = shapely.distance(self.lines[mode], p)
        i = int(np.argmin(d))
        line = self.lines[mode][i]
        t = float(shapely.line_locate_point(line, p, normalized=True)) if line.length > 0 else 0.0
        return i, t, float(d[i])

    def etas(
        self, units: dict[str, tuple[str, float, float]], lat: float, lon: float
    ) -> dict[str, tuple[float, float]]:
        """ETA (s) and path length (m) of every reachable unit to the point."""
        out: dict[str, tuple[float, float]] = {}
        for mode in ("walk", "drive"):
            mine = {uid: (kind, ulat, ulon) for uid, (kind, ulat, ulon) in units.items() if UNIT_MODES[kind] == mode}
            if not mine:
                continue
            alert_edge, alert_t, alert_d = self.snap(lat, lon, mode)
            # Points to insert per edge: (fraction, name)
            cuts: dict[int, list[tuple[float, object]]] = {alert_edge: [(alert_t, "ALERT")]}
            legs = {}
            for uid, (_, ulat, ulon) in mine.items():
                e, t, d = self.snap(ulat, ulon, mode)
                cuts.setdefault(e, []).append((t, ("U", uid)))
                legs[uid] = d
            g = nx.DiGraph()

            def add(a, b, t, ln, g=g):
                if g.has_edge(a, b) and g[a][b]["t"] <= t:
                    return
                g.add_edge(a, b, t=t, l=ln)

            for idx, (u, v, t, ln, fwd, back) in enumerate(self.edges[mode]):
                chain = [(0.0, u), *sorted(cuts.get(idx, []), key=lambda c: c[0]), (1.0, v)]
                for (fa, na), (fb, nb) in itertools.pairwise(chain):
                    share = fb - fa
                    if fwd:
                        add(na, nb, share * t, share * ln)
                    if back:
                        add(nb, na, share * t, share * ln)
            rev = g.reverse(copy=False)
            pred, times = nx.dijkstra_predecessor_and_distance(rev, "ALERT", weight="t")
            for uid in mine:
                node = ("U", uid)
                if node not in times:
                    continue
                length, at = 0.0, node
                while at != "ALERT":  # follow the shortest-path tree back to the alert
                    nxt = pred[at][0]
                    length += g[at][nxt]["l"]
                    at = nxt
                leg = legs[uid] + alert_d
                out[uid] = (times[node] + leg / self.walk_speed, length + leg)
        return out


# -- replicas: N `qorgau serve` processes on one database and one broker ------------------------


class Replica:
    """One ``python -m qorgau serve`` process of a :class:`Replicas` set: started, SIGKILLed, started again."""

    def __init__(self, name: str, port: int, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = port
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        # a dispatcher's token, signed with the replicas' shared key: valid on every replica
        token = Authenticator(JWT_SECRET).issue(User("test-dispatcher", Role.DISPATCHER))
        self.http = httpx.Client(
            base_url=self.base_url, timeout=HTTP_TIMEOUT_S, headers={"Authorization": f"Bearer {token}"}
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def healthy(self) -> bool:
        try:
            return self.http.get("/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout_s: float = 300.0) -> Replica:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(f"replica {self.name} exited with {self.proc.returncode}:\n{tail}")
            if self.healthy():
                return self
            time.sleep(0.2)
        raise AssertionError(f"replica {self.name} not healthy within {timeout_s} s: {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: nothing cleaned up, whatever was in flight stays unacknowledged at the broker."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.http.close()


class Replicas:
    """N replicas of one Qorgau group (``--client-id`` group, one ``--replica`` and ``--port`` each).

    Every replica shares ``db_url`` (PostgreSQL), the broker and the topic root; each gets its own
    HTTP port and log file under ``folder``. ``start()`` starts them all and waits for every
    ``/healthz``; ``replicas[i].kill()`` / ``.start().wait_healthy()`` SIGKILL and restart one.
    """

    def __init__(
        self,
        n: int,
        *,
        folder: Path,
        network: Path,
        registry: Registry,
        db_url: str,
        mqtt_url: str,
        topic_root: str,
        group: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.group = group or f"qorgau-rs-{uuid.uuid4().hex[:8]}"
        self.topic_root = topic_root
        self.db_url = db_url
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "QORGAU_JWT_SECRET": JWT_SECRET,
            "QORGAU_ADMIN_TOKEN": ADMIN_TOKEN,
            "QORGAU_SESSION_EXPIRY_S": "300",
            **(extra_env or {}),
        }
        self.replicas: list[Replica] = []
        for i in range(1, n + 1):
            name = f"r{i}"
            port = _free_port()
            args = [
                sys.executable,
                "-m",
                "qorgau",
                "serve",
                "--network",
                str(network),
                "--units",
                str(registry.units_path),
                "--devices",
                str(registry.devices_path),
                "--db",
                db_url,
                "--mqtt",
                mqtt_url,
                "--topic-root",
                topic_root,
                *replica_flags(self.group, name),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            self.replicas.append(Replica(name, port, args, env, folder / f"{name}.log"))

    def __getitem__(self, i: int) -> Replica:
        return self.replicas[i]

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    def start(self, timeout_s: float = 300.0) -> Replicas:
        env = self.replicas[0].env
        subprocess.run([sys.executable, "-m", "qorgau", "db", "upgrade", "--db", self.db_url], env=env, check=True)
        for r in self.replicas:
            r.start()
        for r in self.replicas:
            r.wait_healthy(timeout_s)
        return self

    def close(self) -> None:
        for r in self.replicas:
            r.close()


def replica_flags(group: str, name: str) -> list[str]:
    """The ``serve`` flags that make process ``name`` a replica of ``group``."""
    return ["--client-id", group, "--replica", name]


REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999): a replica binds it seconds later, and a
    port the kernel hands out to outgoing connections (to PostgreSQL, the broker) may be taken by then."""
    for port in random.sample(range(20000, 32000), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 20000-32000")


# -- plans walked by the simulated patrols (issue 14) ------------------------------------------

WALK_SHIFT = "10:00-12:00"
"""The shift of the walked plans' tests: two hours, tomorrow (local time)."""


def clustered_incidents_csv(net: StreetNetwork, on: date, *, centres: int = 6, seed: int = 14) -> str:
    """Incidents around ``centres`` nodes at least 400 m apart, in :data:`WALK_SHIFT`'s hours over the
    60 days before ``on`` (Almaty time): a plan for that shift gets hot spots there."""
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for node in rng.permutation(net.n_nodes):
        la, lo = float(net.node_lat[node]), float(net.node_lon[node])
        if all(np.hypot((la - net.node_lat[c]) * 111_000, (lo - net.node_lon[c]) * 81_000) > 400 for c in picked):
            picked.append(int(node))
        if len(picked) == centres:
            break
    rows = ["lat,lon,occurred_at,category"]
    for k, c in enumerate(picked):
        for _ in range(40 - 4 * k):
            day = on - timedelta(days=int(rng.integers(1, 60)))
            minute = int(rng.integers(0, 120))
            la, lo = net.node_lat[c] + rng.normal(0, 0.0002), net.node_lon[c] + rng.normal(0, 0.0002)
            rows.append(f"{la:.6f},{lo:.6f},{day.isoformat()}T{10 + minute // 60:02d}:{minute % 60:02d}:00+05:00,theft")
    return "\n".join(rows) + "\n"


def wait_plan_done(client: httpx.Client, plan_id: str, timeout_s: float = 180.0) -> dict[str, Any]:
    """``GET /api/plans/{id}`` until the plan is done or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body: dict[str, Any] = client.get(f"/api/plans/{plan_id}").json()
        except httpx.ReadTimeout:  # the plan's thread holds the interpreter on a loaded machine
            continue
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"plan {plan_id} did not finish in {timeout_s} s")


def clear_retained(url: str, topics: list[str]) -> None:
    """Publish an empty retained message on each topic: the broker forgets what a test left there."""
    address = parse_mqtt_url(url)
    client = new_client(address, client_id=f"cleaner-{uuid.uuid4().hex[:8]}")
    client.connect(address.host, address.port, clean_start=True)
    client.loop_start()
    try:
        for topic in topics:
            info = client.publish(topic, b"", qos=1, retain=True)
            info.wait_for_publish(timeout=5)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS, topic
    finally:
        client.disconnect()
        client.loop_stop()


def walk_until(
    clock: Any, walkers: Any, when: datetime, stored: Callable[[], list[Any]], timeout_s: float = 20.0
) -> list[Any]:
    """Move the clock shared by a service and its simulated patrols (``qorgau.patrols``) to ``when``, let the
    patrols send every fix due by then, and wait until the service kept them all (``stored()``: its rows)."""
    clock.set(when)
    assert walkers.settled(when, timeout_s=30), f"the patrols did not catch up with {when}"
    sent = walkers.report.positions
    deadline = time.monotonic() + timeout_s
    while len(rows := stored()) != sent:
        assert time.monotonic() < deadline, f"the service kept {len(rows)} of the {sent} fixes sent"
        time.sleep(0.05)
    return rows
