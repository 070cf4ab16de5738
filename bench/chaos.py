"""``python -m bench.chaos`` (``make chaos``): SOS presses keep coming while everything fails.

Simulated SOS buttons (paho MQTT 5 clients, QoS 1, a unique ``event_id`` per press) publish
alerts at a steady rate to a Mosquitto of the harness's own (persistence on, a free port, the
configuration rendered from ``deploy/mosquitto.conf``), while

- the service (``python -m qorgau serve``, a real subprocess) is killed with SIGKILL every few
  seconds and started again,
- Mosquitto is stopped and started once (its persistence file carries the queues over),
- the database is made unavailable once: SQLite is locked by another writer (``BEGIN EXCLUSIVE``
  held longer than the service's busy timeout), PostgreSQL (a throwaway cluster of the harness's
  own, never the shared server) is stopped and started with ``pg_ctl``.

Afterwards the backlog drains and the harness counts from the database: **sent** (distinct
events the buttons published and the broker acknowledged), **stored** (alert rows of this run),
**acknowledged** (distinct events with an ``accepted`` ack seen by the buttons), **duplicates**
(rows beyond one per event) and **lost** (sent but not stored). The result goes to
``bench/results/chaos.json`` and ``BENCHMARKS.md``.

The harness drives the service only as a process and over MQTT, so it does not depend on how the
bridge is built inside.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

__all__ = ["ChaosConfig", "ChaosResult", "ReplicaChaosResult", "main", "run"]

log = logging.getLogger("bench.chaos")

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = Path(os.environ.get("QORGAU_MOSQUITTO", "/usr/sbin/mosquitto"))
PG_BIN = Path(os.environ.get("QORGAU_PG_BIN", "/usr/lib/postgresql/15/bin"))
TOPIC_ROOT = "qorgau/v1"
CLIENT_ID = "qorgau-chaos"


# -- configuration and result ---------------------------------------------------------------


@dataclass
class ChaosConfig:
    """What to send and which faults to inject.

    The faults are placed on the sending time line ``D = sent / rate``: kills all along, the
    broker restart at ``broker_restart_at * D``, the database outage at ``db_outage_at * D``.
    """

    sent: int = 20_000
    rate: float = 150.0
    db: str = "sqlite"
    buttons: int = 20
    kill_every_s: float = 5.0
    """Mean time between SIGKILLs, counted from the moment the restarted service is up."""
    min_kills: int = 0
    """Keep killing after the last press until this many kills (the short form needs a few)."""
    broker_restart_at: float = 0.35
    broker_down_s: float = 2.0
    db_outage_at: float = 0.6
    db_outage_s: float = 12.0
    """Long enough to outlast the service's SQLite busy timeout (10 s), so writes fail."""
    drain_timeout_s: float = 600.0
    republish_after_s: float = 60.0
    """A press without PUBACK for this long is published again (same event id), as a button would."""
    city_nodes: int = 2000
    seed: int = 1
    workdir: Path | None = None
    keep: bool = False
    replicas: int = 0
    """0: one unnamed service (the single-process run). N >= 1: N named replicas
    (``serve --replica rN``) on PostgreSQL, each its own HTTP port, killed in turn (:class:`ReplicaChaos`)."""
    ack_deadline_s: float = 3.0
    """Replicas only: the units' acknowledgement deadline. Nobody acknowledges, so every order escalates."""

    def __post_init__(self) -> None:
        if self.db not in ("sqlite", "postgres"):
            msg = f"db must be 'sqlite' or 'postgres', got {self.db!r}"
            raise ValueError(msg)
        if self.replicas < 0 or (self.replicas and self.db != "postgres"):
            msg = f"replicas need --db postgres (SQLite takes one replica per file), got {self.replicas} on {self.db}"
            raise ValueError(msg)
        if self.sent < 1 or self.rate <= 0 or self.buttons < 1:
            msg = f"sent, rate and buttons must be positive, got {self.sent}, {self.rate}, {self.buttons}"
            raise ValueError(msg)

    @property
    def send_duration_s(self) -> float:
        return self.sent / self.rate


@dataclass
class ChaosResult:
    """The figures of one run (``asdict`` goes to ``bench/results/chaos.json``)."""

    db: str
    sent: int
    stored: int
    unique_stored: int
    acknowledged: int
    duplicates: int
    lost: int
    unexpected: int
    rejected_acks: int
    ack_alert_id_mismatches: int
    publishes: int
    republishes: int
    ack_messages: int
    kills: int
    service_starts: int
    service_exits: int
    broker_restarts: int
    db_outages: int
    store_errors_logged: int
    redeliveries_logged: int
    start_failures_logged: int
    bridge_keepalive_drops: int
    send_s: float
    total_s: float
    drain_s: float
    rate_hz: float
    buttons: int
    lost_sample: list[str] = field(default_factory=list)
    duplicate_sample: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every sent press stored exactly once, nothing else stored, every one acknowledged."""
        return (
            self.lost == 0
            and self.duplicates == 0
            and self.unexpected == 0
            and self.stored == self.sent
            and self.acknowledged == self.sent
            and self.rejected_acks == 0
            and self.ack_alert_id_mismatches == 0
        )

    def summary(self) -> str:
        return (
            f"sent {self.sent} / stored {self.stored} / acknowledged {self.acknowledged} / "
            f"duplicates {self.duplicates} / lost {self.lost}"
        )


# -- small helpers --------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, *, timeout_s: float, what: str) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    msg = f"{what} did not listen on 127.0.0.1:{port} within {timeout_s} s"
    raise TimeoutError(msg)


def stop_process(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
    """Send ``sig``, wait, SIGKILL if it does not go; the exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored signal %d for %s s: SIGKILL", proc.pid, sig, timeout_s)
            proc.kill()
            proc.wait()
    return int(proc.returncode)


class Clock:
    """Seconds since the run started, for the time line."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[str] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, what: str) -> None:
        line = f"{self.now():7.1f} s  {what}"
        with self._lock:
            self.events.append(line)
        log.info("%s", what)


# -- the street network, units and buttons --------------------------------------------------


def write_city(folder: Path, *, nodes: int, buttons: int, seed: int) -> tuple[Path, Path, Path, list[str]]:
    """A generated city as OSM XML, its units and its SOS buttons; and the buttons' ids."""
    from dispatch import write_devices, write_units
    from geo import Router, generate_city, load_network
    from qorgau.demo import seed_registry

    network = generate_city(n_nodes=nodes, seed=seed)
    osm = folder / "city.osm"
    with osm.open("w") as out:
        out.write("<?xml version='1.0' encoding='UTF-8'?>\n<osm version='0.6' generator='qorgau bench.chaos'>\n")
        for i, (lat, lon) in enumerate(zip(network.node_lat, network.node_lon, strict=True), start=1):
            out.write(f"<node id='{i}' lat='{lat:.7f}' lon='{lon:.7f}'/>\n")
        segments = zip(
            network.seg_u, network.seg_v, network.seg_highway, network.seg_oneway, network.seg_speed_kmh, strict=True
        )
        for j, (u, v, highway, oneway, kmh) in enumerate(segments, start=1):
            tags = f"<tag k='highway' v='{highway}'/><tag k='maxspeed' v='{kmh:.0f}'/>"
            if oneway:
                tags += "<tag k='oneway' v='yes'/>"
            out.write(f"<way id='{j}'><nd ref='{u + 1}'/><nd ref='{v + 1}'/>{tags}</way>\n")
        out.write("</osm>\n")
    router = Router(load_network(osm))  # what the service will read, so every button snaps
    units, devices = seed_registry(router, booths=4, foot=6, cars=4, devices=buttons, seed=seed)
    units_path = write_units(folder / "units.geojson", units)
    devices_path = write_devices(folder / "devices.geojson", devices)
    return osm, units_path, devices_path, [d.id for d in devices]


# -- Mosquitto ------------------------------------------------------------------------------


class Broker:
    """A Mosquitto of the harness's own, from ``deploy/mosquitto.conf`` (persistence on)."""

    def __init__(self, folder: Path) -> None:
        if not MOSQUITTO.is_file():
            msg = f"{MOSQUITTO} not found: apt-get install mosquitto (or set QORGAU_MOSQUITTO)"
            raise FileNotFoundError(msg)
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        rendered = subprocess.run(
            [str(ROOT / "scripts" / "render-mosquitto-conf.sh"), "--data", str(folder), "--port", str(self.port)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.conf.write_text(rendered)
        if "persistence true" not in rendered:
            msg = f"{self.conf} has no 'persistence true': the broker restart would lose queued alerts"
            raise RuntimeError(msg)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf)], stdin=subprocess.DEVNULL)
        wait_port(self.port, timeout_s=10, what="mosquitto")

    def stop(self) -> None:
        """Stop cleanly (SIGTERM): Mosquitto writes its persistence file on the way out."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def keepalive_drops(self, client_id: str) -> int:
        """How often the broker's log says it dropped ``client_id`` (or its per-lane ids) for silence."""
        log_file = self.folder / "mosquitto.log"
        if not log_file.is_file():
            return 0
        pattern = re.compile(rf"Client {re.escape(client_id)}\S* has exceeded timeout")  # one client per lane
        with log_file.open(errors="replace") as f:
            return sum(bool(pattern.search(line)) for line in f)

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


# -- databases ------------------------------------------------------------------------------


class Database(Protocol):
    url: str

    def outage(self, seconds: float, *, noticed: Callable[[], bool]) -> None: ...

    def close(self) -> None: ...


OUTAGE_MAX_S = 60.0


def _hold(seconds: float, noticed: Callable[[], bool]) -> None:
    """Sleep ``seconds``, then on until ``noticed()`` (at most ``OUTAGE_MAX_S`` in all).

    A busy service notices an outage at its next write; on a loaded machine that write can start
    late enough that a fixed outage just beyond the busy timeout ends before the write gives up.
    """
    deadline = time.monotonic() + max(seconds, OUTAGE_MAX_S)
    time.sleep(seconds)
    while not noticed() and time.monotonic() < deadline:
        time.sleep(0.2)


class SqliteDb:
    """The service's SQLite file; an outage is another process's exclusive write lock."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "qorgau.sqlite3"
        self.url = f"sqlite:///{self.path}"

    def outage(self, seconds: float, *, noticed: Callable[[], bool]) -> None:
        """Hold ``BEGIN EXCLUSIVE`` for ``seconds`` and until the service ``noticed`` (waits for its current write first)."""
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            _hold(seconds, noticed)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def close(self) -> None:
        pass


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a free port (never the shared server); an outage is a stop."""

    def __init__(self, folder: Path) -> None:
        if not (PG_BIN / "initdb").is_file():
            msg = f"{PG_BIN}/initdb not found: install postgresql-15 (or set QORGAU_PG_BIN)"
            raise FileNotFoundError(msg)
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
            shutil.chown(folder, "postgres")
            os.chmod(folder.parent, 0o755)
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def _pg(self, tool: str, *args: str) -> None:
        cmd = [str(PG_BIN / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=self.folder)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def outage(self, seconds: float, *, noticed: Callable[[], bool]) -> None:
        self.stop()
        _hold(seconds, noticed)
        self.start()

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError as e:
            log.warning("stopping the throwaway PostgreSQL cluster: %s", e.stderr)


# -- the service ----------------------------------------------------------------------------


_LOG_COUNTERS = {
    "ready": re.compile(r"MQTT bridge up"),
    "store_errors": re.compile(r"store unavailable"),
    "redeliveries": re.compile(r"redelivery of event"),
    "rejections": re.compile(r"rejected message on"),
    "start_failures": re.compile(r"qorgau serve: error"),
    "leader": re.compile(r"is now the leader"),
}


class Service:
    """``python -m qorgau serve`` as a subprocess, killed and started again at will."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.ready = threading.Event()
        self.counts: Counter[str] = Counter()
        self._log = log_path.open("a")
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.ready.clear()
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.counts["starts"] += 1
        self._reader = threading.Thread(target=self._read, args=(self.proc,), name="chaos-service-log", daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                if not self._log.closed:  # close() may have come first: the process is gone, its last lines too
                    self._log.write(line)
            for name, pattern in _LOG_COUNTERS.items():
                if pattern.search(line):
                    self.counts[name] += 1
                    if name == "ready" and proc is self.proc:
                        self.ready.set()
        with self._lock:
            if not self._log.closed:
                self._log.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no disconnect, whatever was in flight stays unacknowledged."""
        assert self.proc is not None
        self.ready.clear()
        self.proc.kill()
        self.proc.wait()
        self.counts["kills"] += 1

    def stop(self) -> None:
        if self.proc is not None:
            self.ready.clear()
            stop_process(self.proc, timeout_s=20)
        with self._lock:
            if not self._log.closed:
                self._log.flush()

    def close(self) -> None:
        """Stop the process, let its reader write the last lines, then close the log."""
        self.stop()
        if self._reader is not None:
            self._reader.join(timeout=5)
        with self._lock:
            self._log.close()


# -- the buttons ----------------------------------------------------------------------------


@dataclass
class Press:
    event_id: str
    device_id: str
    payload: bytes
    infos: list[mqtt.MQTTMessageInfo]
    first_sent: float
    last_sent: float


def confirmed(press: Press) -> bool:
    """Whether the broker acknowledged (PUBACK) any publish of ``press``.

    Reads paho's flag directly: ``MQTTMessageInfo.is_published()`` raises for a message published
    while disconnected (``rc`` stays ``MQTT_ERR_NO_CONN``) even after paho sent it on reconnect and
    the broker acknowledged it.
    """
    return any(info._published for info in press.infos)  # noqa: SLF001 - see above: the public call raises


class Buttons:
    """SOS buttons: one paho MQTT 5 client each, persistent sessions, QoS 1 both ways.

    paho keeps every unacknowledged QoS 1 press and sends it again after a reconnect (the broker
    restart); a press still without PUBACK after ``republish_after_s`` is published once more
    with the same event id, as a button's firmware would.
    """

    def __init__(self, url: str, device_ids: list[str], run_id: str, *, republish_after_s: float) -> None:
        from mqtt_bridge import Topics, new_client, parse_mqtt_url

        self.topics = Topics(TOPIC_ROOT)
        self.address = parse_mqtt_url(url)
        self.republish_after_s = republish_after_s
        self.device_ids = device_ids
        self.presses: dict[str, Press] = {}
        self.acks: dict[str, tuple[str, int | None]] = {}  # event id -> first (status, alert id)
        self.acked_at: dict[str, float] = {}  # event id -> monotonic time of its first accepted ack
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.clients: dict[str, mqtt.Client] = {}
        for device_id in device_ids:
            client = new_client(self.address, client_id=f"chaos-{run_id}-{device_id}")
            client.on_message = self._on_message
            client.on_connect = self._on_connect
            client.reconnect_delay_set(min_delay=0.25, max_delay=0.5)  # type: ignore[arg-type]  # as the bridge's lanes
            client.max_inflight_messages_set(0)  # a button never holds a press back
            client.max_queued_messages_set(0)
            client.user_data_set(device_id)
            self.clients[device_id] = client

    def connect(self, timeout_s: float = 10.0) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # acks published while the broker restarts are kept
        for client in self.clients.values():
            client.connect(self.address.host, self.address.port, keepalive=10, clean_start=False, properties=props)
            client.loop_start()
        deadline = time.monotonic() + timeout_s
        while self.counts["subscribed"] < len(self.clients):
            if time.monotonic() > deadline:
                msg = f"only {self.counts['subscribed']} of {len(self.clients)} buttons subscribed"
                raise TimeoutError(msg)
            time.sleep(0.05)

    def _on_connect(self, client: mqtt.Client, device_id: str, flags: Any, reason_code: Any, props: Any) -> None:
        if reason_code.is_failure:
            log.error("button %s refused by the broker: %s", device_id, reason_code)
            return
        if flags.session_present:
            return
        client.subscribe([(self.topics.sos_ack(device_id), SubscribeOptions(qos=1))])
        with self._lock:
            self.counts["subscribed"] += 1

    def _on_message(self, client: mqtt.Client, device_id: str, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            body = json.loads(msg.payload)
            event_id, status, alert_id = body["event_id"], body["status"], body.get("alert_id")
        except (ValueError, KeyError, TypeError) as e:
            log.error("unreadable ack on %s: %r (%s)", msg.topic, msg.payload[:200], e)
            with self._lock:
                self.counts["bad_ack"] += 1
            return
        with self._lock:
            self.counts["ack_messages"] += 1
            first = self.acks.setdefault(event_id, (status, alert_id))
            if status == "accepted":
                self.acked_at.setdefault(event_id, now)
            if status != "accepted":
                self.counts["rejected_acks"] += 1
                log.error("press %s rejected: %s", event_id, body)
            elif first != (status, alert_id):
                self.counts["ack_alert_id_mismatches"] += 1
                log.error("press %s acknowledged twice with different alerts: %s then %s", event_id, first, body)

    def press(self, device_id: str, event_id: str) -> None:
        ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        payload = json.dumps({"event_id": event_id, "ts": ts, "kind": "press"}).encode()
        now = time.monotonic()
        press = Press(event_id, device_id, payload, [], now, now)
        with self._lock:
            self.presses[event_id] = press
        self._publish(press)

    def _publish(self, press: Press) -> None:
        info = self.clients[press.device_id].publish(self.topics.sos_alert(press.device_id), press.payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: kept, sent on reconnect
            log.warning("publishing %s: %s", press.event_id, mqtt.error_string(info.rc))
        with self._lock:
            press.infos.append(info)
            press.last_sent = time.monotonic()
            self.counts["publishes"] += 1

    def unconfirmed(self) -> list[Press]:
        """Presses the broker has not acknowledged (PUBACK) yet."""
        with self._lock:
            presses = list(self.presses.values())
        return [p for p in presses if not confirmed(p)]

    def republish_overdue(self) -> int:
        """Publish again every press without PUBACK for ``republish_after_s``; how many."""
        now = time.monotonic()
        overdue = [p for p in self.unconfirmed() if now - p.last_sent > self.republish_after_s]
        for press in overdue:
            log.warning(
                "press %s has no PUBACK after %.0f s: publishing it again", press.event_id, now - press.last_sent
            )
            self._publish(press)
            with self._lock:
                self.counts["republishes"] += 1
        return len(overdue)

    def accepted(self) -> set[str]:
        with self._lock:
            return {e for e, (status, _) in self.acks.items() if status == "accepted"}

    def ack_alert_ids(self) -> dict[str, int | None]:
        with self._lock:
            return {e: alert_id for e, (status, alert_id) in self.acks.items() if status == "accepted"}

    def close(self) -> None:
        for client in self.clients.values():
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            client.disconnect(properties=props)
            client.loop_stop()


# -- counting -------------------------------------------------------------------------------


def stored_events(db_url: str, prefix: str) -> list[tuple[str, int]]:
    """``(event_id, alert id)`` of every SOS alert row of this run, one per row."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event_id, id FROM alerts WHERE source = 'sos' AND event_id LIKE :p"), {"p": f"{prefix}%"}
            ).all()
    finally:
        engine.dispose()
    return [(str(e), int(i)) for e, i in rows]


def count_stored(db_url: str, prefix: str) -> int | None:
    """Distinct events of this run stored so far; None while the database cannot be read."""
    try:
        return len({e for e, _ in stored_events(db_url, prefix)})
    except Exception as e:  # a locked or stopped database during the drain: ask again later
        log.info("cannot count stored alerts yet: %s", e)
        return None


@dataclass
class Tally:
    """What the database and the buttons' acks say about the presses that were sent."""

    stored: int
    unique_stored: int
    acknowledged: int
    duplicates: int
    lost: list[str]
    duplicated: list[str]
    unexpected: int
    ack_alert_id_mismatches: int

    @classmethod
    def of(cls, sent: set[str], rows: list[tuple[str, int]], acks: dict[str, int | None]) -> Tally:
        """Count ``rows`` (``(event_id, alert id)`` per stored alert) against ``sent`` and ``acks``.

        ``acks`` maps each event with an ``accepted`` ack to the alert id the ack named.
        """
        per_event = Counter(e for e, _ in rows)
        alerts_of: dict[str, set[int]] = {}
        for event_id, alert_id in rows:
            alerts_of.setdefault(event_id, set()).add(alert_id)
        return cls(
            stored=len(rows),
            unique_stored=len(per_event),
            acknowledged=len(acks.keys() & sent),
            duplicates=sum(n - 1 for n in per_event.values()),
            lost=sorted(sent - per_event.keys()),
            duplicated=sorted(e for e, n in per_event.items() if n > 1),
            unexpected=len(per_event.keys() - sent),
            ack_alert_id_mismatches=sum(1 for e, a in acks.items() if e in alerts_of and a not in alerts_of[e]),
        )


# -- the run --------------------------------------------------------------------------------


@contextmanager
def _workdir(config: ChaosConfig) -> Iterator[Path]:
    if config.workdir is not None:
        config.workdir.mkdir(parents=True, exist_ok=True)
        yield config.workdir
        return
    folder = Path(tempfile.mkdtemp(prefix="qorgau-chaos-"))
    try:
        yield folder
    finally:
        if config.keep:
            log.info("kept %s", folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _service_env() -> dict[str, str]:
    """The caller's environment without QORGAU_* (flags say everything), plus what serve needs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QORGAU_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env["QORGAU_JWT_SECRET"] = uuid.uuid4().hex + uuid.uuid4().hex
    env["QORGAU_SESSION_EXPIRY_S"] = "3600"
    return env


class Chaos:
    """One run: set up, stream presses, inject faults, drain, count."""

    def __init__(self, config: ChaosConfig, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.rng = random.Random(config.seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.prefix = f"chaos-{self.run_id}-"
        self.clock = Clock()
        self.stop_killing = threading.Event()
        self.pause_killing = threading.Event()
        self.counts: Counter[str] = Counter()
        self.errors: list[BaseException] = []

    # set-up ---------------------------------------------------------------------------------

    def set_up(self) -> None:
        c = self.config
        osm, units, devices, self.device_ids = write_city(
            self.folder, nodes=c.city_nodes, buttons=c.buttons, seed=c.seed
        )
        self.broker = Broker(self.folder / "mosquitto")
        self.broker.start()
        self.db: Database = SqliteDb(self.folder) if c.db == "sqlite" else PostgresCluster(self.folder / "pg")
        self.inputs = (osm, units, devices)
        self.service = Service(self.serve_args(), _service_env(), self.folder / "service.log")
        self.service.start()
        if not self.service.ready.wait(120):
            msg = f"the service did not come up within 120 s; see {self.service.log_path}"
            raise RuntimeError(msg)
        self.clock.mark(f"service up (pid {self.service.proc.pid if self.service.proc else '?'})")
        self.buttons = Buttons(self.broker.url, self.device_ids, self.run_id, republish_after_s=c.republish_after_s)
        self.buttons.connect()

    def serve_args(self, *, port: int = 0) -> list[str]:
        """``python -m qorgau serve`` on this run's city, database and broker."""
        osm, units, devices = self.inputs
        return [
            sys.executable,
            "-m",
            "qorgau",
            "serve",
            "--network",
            str(osm),
            "--units",
            str(units),
            "--devices",
            str(devices),
            "--db",
            self.db.url,
            "--mqtt",
            self.broker.url,
            "--topic-root",
            TOPIC_ROOT,
            "--client-id",
            CLIENT_ID,
            "--port",
            str(port),
            "--log-level",
            "INFO",
        ]

    def tear_down(self) -> None:
        for step in (
            lambda: self.buttons.close(),
            lambda: self.service.close(),
            lambda: self.broker.stop(),
            lambda: self.db.close(),
        ):
            try:
                step()
            except Exception:  # tear down the rest anyway
                log.exception("tear-down step failed")

    # threads --------------------------------------------------------------------------------

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as e:
                log.exception("chaos thread failed")
                self.errors.append(e)

        return run

    def send(self) -> None:
        """Publish ``sent`` presses at ``rate``, each from a random button."""
        c = self.config
        start = time.monotonic()
        for n in range(c.sent):
            due = start + n / c.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.buttons.press(self.rng.choice(self.device_ids), f"{self.prefix}{n:06d}")
        self.clock.mark(f"all {c.sent} presses published")

    def kill_loop(self) -> None:
        """SIGKILL the service a random 0.5-1.5 x ``kill_every_s`` after each start is up; start it again."""
        while not self.stop_killing.is_set():
            self.service.ready.wait(1.0)
            if not self.service.alive():
                self.supervise()
                continue
            if not self.service.ready.is_set():
                continue
            if self.stop_killing.wait(self.rng.uniform(0.5, 1.5) * self.config.kill_every_s):
                return
            if self.pause_killing.is_set() or not self.service.alive():
                continue
            self.service.kill()
            self.clock.mark(f"SIGKILL service (kill {self.service.counts['kills']})")
            self.service.start()

    def supervise(self) -> None:
        """Start the service again if it exited by itself (not by our SIGKILL)."""
        if not self.service.alive():
            self._restart_after_exit()

    def _restart_after_exit(self) -> None:
        code = self.service.proc.returncode if self.service.proc else None
        self.service.counts["exits"] += 1
        self.clock.mark(f"service exited by itself (status {code}); starting it again")
        time.sleep(1.0)
        self.service.start()

    def faults(self) -> None:
        """The broker restart and the database outage, at their places on the time line."""
        c = self.config
        plan = sorted(
            [
                (c.broker_restart_at * c.send_duration_s, self._restart_broker),
                (c.db_outage_at * c.send_duration_s, self._db_outage),
            ],
            key=lambda x: x[0],
        )
        for at, action in plan:
            delay = at - self.clock.now()
            if delay > 0:
                time.sleep(delay)
            action()

    def _restart_broker(self) -> None:
        self.clock.mark("broker: SIGTERM (persistence saved), down")
        self.broker.restart(self.config.broker_down_s)
        self.counts["broker_restarts"] += 1
        self.clock.mark("broker: up again")

    def _db_outage(self) -> None:
        self.pause_killing.set()  # keep one service alive through the outage: it must back off, not drop
        try:
            if not self.service.ready.wait(120):
                log.warning("the service is not up at the database outage; injecting it anyway")
            self.clock.mark(f"database: unavailable for at least {self.config.db_outage_s:g} s")
            errors_before = self.service.counts["store_errors"]
            self.db.outage(self.config.db_outage_s, noticed=lambda: self.service.counts["store_errors"] > errors_before)
            self.counts["db_outages"] += 1
            self.clock.mark("database: available again")
        finally:
            self.pause_killing.clear()

    def _await_kills(self, n: int, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.service_counts()["kills"] < n and not self.errors and time.monotonic() < deadline:
            time.sleep(0.2)

    def service_counts(self) -> Counter[str]:
        """What the service's log and the harness counted (starts, kills, exits, store errors, ...)."""
        return self.service.counts

    def stop_services(self) -> None:
        """A clean stop, so the last acks and PUBACKs go out."""
        self.service.stop()

    # drain and count -------------------------------------------------------------------------

    def drain(self) -> float:
        """Wait until every press is stored and acknowledged, or nothing moves for a minute."""
        start = time.monotonic()
        last_progress, last = time.monotonic(), (-1, -1)
        while time.monotonic() - start < self.config.drain_timeout_s:
            self.supervise()
            self.buttons.republish_overdue()
            stored = count_stored(self.db.url, self.prefix)
            acked = len(self.buttons.accepted())
            now = (stored or 0, acked)
            if stored == self.config.sent and acked == self.config.sent and not self.buttons.unconfirmed():
                break
            if now != last:
                last, last_progress = now, time.monotonic()
            elif time.monotonic() - last_progress > 60:
                log.warning("no progress for 60 s: stored %s, acknowledged %s of %s", stored, acked, self.config.sent)
                break
            time.sleep(1.0)
        self.clock.mark("drained")
        return time.monotonic() - start

    def count(self, send_s: float, drain_s: float) -> ChaosResult:
        sent = {p.event_id for p in self.buttons.presses.values() if confirmed(p)}
        tally = Tally.of(sent, stored_events(self.db.url, self.prefix), self.buttons.ack_alert_ids())
        counts = self.service_counts()
        return ChaosResult(
            db=self.config.db,
            sent=len(sent),
            stored=tally.stored,
            unique_stored=tally.unique_stored,
            acknowledged=tally.acknowledged,
            duplicates=tally.duplicates,
            lost=len(tally.lost),
            unexpected=tally.unexpected,
            rejected_acks=self.buttons.counts["rejected_acks"],
            ack_alert_id_mismatches=self.buttons.counts["ack_alert_id_mismatches"] + tally.ack_alert_id_mismatches,
            publishes=self.buttons.counts["publishes"],
            republishes=self.buttons.counts["republishes"],
            ack_messages=self.buttons.counts["ack_messages"],
            kills=counts["kills"],
            service_starts=counts["starts"],
            service_exits=counts["exits"],
            broker_restarts=self.counts["broker_restarts"],
            db_outages=self.counts["db_outages"],
            store_errors_logged=counts["store_errors"],
            redeliveries_logged=counts["redeliveries"],
            start_failures_logged=counts["start_failures"],
            bridge_keepalive_drops=self.broker.keepalive_drops(CLIENT_ID),
            send_s=round(send_s, 1),
            total_s=round(self.clock.now(), 1),
            drain_s=round(drain_s, 1),
            rate_hz=self.config.rate,
            buttons=self.config.buttons,
            lost_sample=tally.lost[:20],
            duplicate_sample=tally.duplicated[:20],
            timeline=list(self.clock.events),
        )

    def run(self) -> ChaosResult:
        threads = [
            threading.Thread(target=self._guard(self.send), name="chaos-send"),
            threading.Thread(target=self._guard(self.faults), name="chaos-faults"),
        ]
        killer = threading.Thread(target=self._guard(self.kill_loop), name="chaos-killer")
        setup_s = self.clock.now()
        t0 = self.clock.t0 = time.monotonic()  # the faults' places are on the sending time line
        self.clock.events.clear()
        self.clock.mark(f"sending starts (set-up took {setup_s:.1f} s)")
        for t in (*threads, killer):
            t.start()
        threads[0].join()
        send_s = time.monotonic() - t0
        threads[1].join()
        self._await_kills(self.config.min_kills)
        self.stop_killing.set()
        killer.join()
        if self.errors:
            raise RuntimeError(f"a chaos thread failed: {self.errors[0]!r}") from self.errors[0]
        self.clock.mark("faults over: draining")
        drain_s = self.drain()
        self.stop_services()
        time.sleep(1.0)
        return self.count(send_s, drain_s)


# -- replicas -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method; None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _machine_ticks() -> tuple[int, int]:
    """``(busy, total)`` CPU ticks of the whole machine so far (``/proc/stat``; idle and iowait are not busy)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


class CpuMeter:
    """CPU seconds of the run's processes by role, and how busy the machine was, from ``/proc``.

    A daemon thread reads every process's ``utime + stime`` each ``interval_s`` (less what it had
    spent when :meth:`start` was called); a process counts for a role when it, or its nearest
    ancestor among the roots, is one of that role's root pids (PostgreSQL's backends under its
    postmaster, a killed replica under its pid at the time). A process that exits loses at most
    its last interval. What the machine spent beyond that went to other processes (on a shared
    machine, other people's work).
    """

    def __init__(self, roots: Callable[[], dict[str, list[int]]], *, interval_s: float = 1.0) -> None:
        self.roots = roots
        self.interval_s = interval_s
        self.hz = os.sysconf("SC_CLK_TCK")
        self.ticks: dict[tuple[str, int, int], int] = {}  # (role, pid, start time) -> utime + stime
        self.before: dict[tuple[str, int, int], int] = {}  # the same at the start: spent before the run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-cpu", daemon=True)
        self._t0 = self._t1 = time.monotonic()
        self._machine0 = self._machine1 = _machine_ticks()
        self.load_start = self.load_end = os.getloadavg()

    def start(self) -> CpuMeter:
        self.sample()
        self.before = dict(self.ticks)
        self._t0, self._machine0 = self._t1, self._machine1
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling (after a last sample); the figures."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        return self.summary()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # a broken sample must not end the run
                log.exception("CPU sample failed")

    def sample(self) -> None:
        procs: dict[int, tuple[int, int, int]] = {}  # pid -> (ppid, start time, utime + stime)
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                raw = Path(entry.path, "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            f = raw[raw.rindex(")") + 2 :].split()  # from field 3 (state) on: ppid is f[1], utime f[11], stime f[12]
            procs[int(entry.name)] = (int(f[1]), int(f[19]), int(f[11]) + int(f[12]))
        role_of = {pid: role for role, pids in self.roots().items() for pid in pids}
        for pid, (_, start, ticks) in procs.items():
            p, hops = pid, 0
            while p not in role_of and p in procs and hops < 32:
                p, hops = procs[p][0], hops + 1
            if p in role_of:
                self.ticks[(role_of[p], pid, start)] = ticks
        self._t1, self._machine1, self.load_end = time.monotonic(), _machine_ticks(), os.getloadavg()

    def summary(self) -> dict[str, Any]:
        wall = max(self._t1 - self._t0, 1e-9)
        cores = os.cpu_count() or 1
        by_role: Counter[str] = Counter()
        for key, ticks in self.ticks.items():
            by_role[key[0]] += ticks - self.before.get(key, 0)
        busy = self._machine1[0] - self._machine0[0]
        total = max(self._machine1[1] - self._machine0[1], 1)
        return {
            "wall_s": round(wall, 1),
            "cores": cores,
            "cpu_s": {role: round(t / self.hz, 1) for role, t in sorted(by_role.items())},
            "machine_busy": round(busy / total, 3),
            "ours_of_machine": round(sum(by_role.values()) / self.hz / (wall * cores), 3),
            "others_of_machine": round(max(0.0, busy / total - sum(by_role.values()) / self.hz / (wall * cores)), 3),
            "load_start": [round(x, 2) for x in self.load_start],
            "load_end": [round(x, 2) for x in self.load_end],
        }


def dispatch_checks(db_url: str) -> dict[str, int]:
    """Orders and escalations issued once, from the database (the whole database is this run's).

    ``orders`` rows in ``assignments``; ``*_twice`` and ``*_duplicated`` count repeats (0 is right):
    an order for the same unit and alert twice, an alert with two orders unanswered at once, two
    order (``auto_assign``/``assign``/``override``) or ``escalation`` audit entries for one order, two
    ``ingest`` entries for one alert, a unit held by two alerts; ``*_mismatch`` compare counts that
    must agree (escalation entries vs the alerts' ``escalations`` counters; orders marked missed vs
    escalation + ``order_lapsed`` entries; orders vs their audit entries).
    """
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            orders = conn.execute(
                text(
                    "SELECT id, alert_id, unit_id, missed_at IS NOT NULL, acknowledged_at IS NOT NULL FROM assignments"
                )
            ).all()
            audits = conn.execute(
                text(
                    "SELECT action, alert_id, after FROM audit_log WHERE action IN "
                    "('ingest', 'auto_assign', 'assign', 'override', 'escalation', 'order_lapsed')"
                )
            ).all()
            escalation_counters = int(conn.execute(text("SELECT COALESCE(SUM(escalations), 0) FROM alerts")).scalar())
            held = conn.execute(
                text("SELECT assigned_unit_id FROM alerts WHERE assigned_unit_id IS NOT NULL AND closed_at IS NULL")
            ).all()
    finally:
        engine.dispose()

    def repeats(keys: list[Any]) -> int:
        return sum(n - 1 for n in Counter(keys).values())

    def order_id(after: str | None) -> Any:
        return None if after is None else json.loads(after).get("order_id")

    by_action: dict[str, list[tuple[Any, Any]]] = {}
    for action, alert_id, after in audits:
        by_action.setdefault(action, []).append((alert_id, after))
    order_entries = [
        order_id(after) for action in ("auto_assign", "assign", "override") for _, after in by_action.get(action, [])
    ]
    escalation_entries = [order_id(after) for _, after in by_action.get("escalation", [])]
    lapsed = len(by_action.get("order_lapsed", []))
    unanswered = Counter(alert_id for _, alert_id, _, missed, acked in orders if not missed and not acked)
    return {
        "orders": len(orders),
        "auto_orders": len(by_action.get("auto_assign", [])),
        "escalations": len(escalation_entries),
        "orders_lapsed": lapsed,
        "orders_same_unit_twice": repeats([(a, u) for _, a, u, _, _ in orders]),
        "orders_unanswered_twice": sum(n - 1 for n in unanswered.values() if n > 1),
        "order_audits_duplicated": repeats(order_entries),
        "order_audit_mismatch": len({i for i, *_ in orders} ^ set(order_entries)),
        "escalations_duplicated": repeats(escalation_entries),
        "escalation_counter_mismatch": abs(escalation_counters - len(escalation_entries)),
        "missed_mismatch": abs(sum(1 for *_, missed, _ in orders if missed) - len(escalation_entries) - lapsed),
        "ingest_audits_duplicated": repeats([alert_id for alert_id, _ in by_action.get("ingest", [])]),
        "units_double_booked": repeats([u for (u,) in held]),
    }


_CHECKS_THAT_MUST_BE_ZERO = (
    "orders_same_unit_twice",
    "orders_unanswered_twice",
    "order_audits_duplicated",
    "order_audit_mismatch",
    "escalations_duplicated",
    "escalation_counter_mismatch",
    "missed_mismatch",
    "ingest_audits_duplicated",
    "units_double_booked",
)


def audit_verify(db_url: str) -> tuple[bool, str]:
    """``qorgau audit verify`` as an operator runs it: whether it passed, and what it said."""
    proc = subprocess.run(
        [sys.executable, "-m", "qorgau", "audit", "verify", "--db", db_url],
        env=_service_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    said = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return proc.returncode == 0, said[-1] if said else f"exit status {proc.returncode}"


FAULT_WINDOW_S = 2.0
"""Presses sent this long before a fault began until this long after it ended are 'around' it."""


@dataclass
class ReplicaChaosResult(ChaosResult):
    """A replicas run's figures (``bench/results/chaos_replicas.json``): the single run's and these."""

    replicas: int = 0
    kills_by_replica: dict[str, int] = field(default_factory=dict)
    kills_delayed: int = 0
    """Kill slots that waited because no other replica was up (a kill never leaves none)."""
    leader_takeovers: int = 0
    kill_every_s: float = 0.0
    ack_deadline_s: float = 0.0
    ack_latency_ms: dict[str, Any] = field(default_factory=dict)
    """Press (first publish) -> first accepted ack: n, p50, p99, max (ms)."""
    fault_windows: list[dict[str, Any]] = field(default_factory=list)
    """Per kill, broker restart and database restart: the largest press -> ack of the presses around it."""
    checks: dict[str, int] = field(default_factory=dict)
    audit_ok: bool = False
    audit_output: str = ""
    cpu: dict[str, Any] = field(default_factory=dict)

    @property
    def dispatch_ok(self) -> bool:
        """Orders and escalations happened, each once; the audit chain verifies."""
        c = self.checks
        return (
            self.audit_ok
            and c.get("orders", 0) > 0
            and c.get("escalations", 0) > 0
            and all(c.get(k, 1) == 0 for k in _CHECKS_THAT_MUST_BE_ZERO)
        )

    @property
    def ok(self) -> bool:
        return super().ok and self.dispatch_ok

    def largest(self, what: str) -> float | None:
        """The largest press -> ack (ms) around the faults whose name starts with ``what``."""
        values = [w["max_ack_ms"] for w in self.fault_windows if w["what"].startswith(what) and w["max_ack_ms"]]
        return max(values) if values else None

    def summary(self) -> str:
        lat = self.ack_latency_ms
        c = self.checks
        return "\n".join(
            [
                super().summary(),
                f"press -> ack (first ack per press): p50 {lat.get('p50')} ms / p99 {lat.get('p99')} ms / "
                f"max {lat.get('max')} ms over {lat.get('n')} presses",
                *(
                    [
                        f"  not made while the broker was down: p50 {up.get('p50')} ms / p99 {up.get('p99')} ms / "
                        f"max {up.get('max')} ms over {up.get('n')} presses"
                    ]
                    if (up := lat.get("broker_up"))
                    else []
                ),
                *(
                    f"  around {w['what']} at {w['at_s']:.1f} s: largest ack {w['max_ack_ms']} ms "
                    f"({w['presses']} presses, {w['unacked']} never acknowledged)"
                    for w in self.fault_windows
                ),
                f"orders {c.get('orders')} ({c.get('auto_orders')} automatic), escalations {c.get('escalations')}, "
                f"lapsed {c.get('orders_lapsed')}; repeats: "
                + ", ".join(f"{k} {c.get(k)}" for k in _CHECKS_THAT_MUST_BE_ZERO),
                f"audit verify: {'OK' if self.audit_ok else 'FAILED'}: {self.audit_output}",
                f"CPU: {self.cpu}",
            ]
        )


class ReplicaChaos(Chaos):
    """``replicas`` named replicas on one PostgreSQL: one is SIGKILLed every ``kill_every_s``.

    The replicas share ``--db``, ``--mqtt``, ``--topic-root`` and ``--client-id`` and each has its
    own ``--replica rN`` (so its own persistent MQTT sessions: every replica receives every press,
    the database decides who commits, docs/scaling.md) and HTTP port. Kills go round robin, on the
    fixed slots ``k * kill_every_s`` of the sending time line, to the next replica that is up, and
    only while another one is up too. The broker restart and the PostgreSQL restart (stop, then
    start: what a failover does to a press in flight) fall midway between two kill slots, and no
    replica is killed while the database is down. P1 presses are assigned automatically and
    nobody acknowledges an order, so every order escalates after ``ack_deadline_s``; with no
    duplicate window every press is an alert of its own, so orders and escalations go on all
    through the run.
    """

    def __init__(self, config: ChaosConfig, folder: Path) -> None:
        super().__init__(config, folder)
        self.replicas: dict[str, Service] = {}
        self.fault_marks: list[tuple[str, float, float]] = []  # what, began, ended (monotonic)
        self._victim = 0

    def set_up(self) -> None:
        from dispatch import Store

        c = self.config
        osm, units, devices, self.device_ids = write_city(
            self.folder, nodes=c.city_nodes, buttons=c.buttons, seed=c.seed
        )
        self.inputs = (osm, units, devices)
        self.broker = Broker(self.folder / "mosquitto")
        self.broker.start()
        self.db = PostgresCluster(self.folder / "pg")
        Store(self.db.url).upgrade_schema().close()  # once, before the replicas race for it
        env = _service_env()
        env.update(
            QORGAU_AUTO_ASSIGN_P1="true",
            QORGAU_ACK_DEADLINE_S=f"{c.ack_deadline_s:g}",
            QORGAU_DUPLICATE_WINDOW_S="0",
        )
        for i in range(1, c.replicas + 1):
            name = f"r{i}"
            args = [*self.serve_args(port=free_port()), "--replica", name]
            self.replicas[name] = Service(args, env, self.folder / f"service-{name}.log")
        for replica in self.replicas.values():
            replica.start()
        deadline = time.monotonic() + 300
        while not all(r.ready.is_set() for r in self.replicas.values()):
            if time.monotonic() > deadline:
                late = [n for n, r in self.replicas.items() if not r.ready.is_set()]
                msg = f"replicas {late} did not come up within 300 s; see {self.folder}/service-*.log"
                raise RuntimeError(msg)
            self.supervise()  # a start that exits by itself (e.g. no SUBACK in time on a busy machine) again
            time.sleep(0.2)
        self.clock.mark(
            "replicas up: " + ", ".join(f"{n} (pid {r.proc.pid if r.proc else '?'})" for n, r in self.replicas.items())
        )
        self.service = next(iter(self.replicas.values()))  # for code that wants one; counts come from all
        self.buttons = Buttons(self.broker.url, self.device_ids, self.run_id, republish_after_s=c.republish_after_s)
        self.buttons.connect()

    def tear_down(self) -> None:
        for step in (
            lambda: getattr(self, "buttons", None) and self.buttons.close(),
            self._stop_all,
            lambda: [r.close() for r in self.replicas.values()],
            lambda: getattr(self, "broker", None) and self.broker.stop(),
            lambda: getattr(self, "db", None) and self.db.close(),
        ):
            try:
                step()
            except Exception:  # tear down the rest anyway
                log.exception("tear-down step failed")

    def _stop_all(self) -> None:
        """SIGTERM every replica at once and wait for all (a clean stop each)."""
        threads = [threading.Thread(target=r.stop, name=f"chaos-stop-{n}") for n, r in self.replicas.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def stop_services(self) -> None:
        self._stop_all()

    def service_counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for replica in self.replicas.values():
            total.update(replica.counts)
        return total

    def _up(self) -> list[str]:
        return [n for n, r in self.replicas.items() if r.alive() and r.ready.is_set()]

    def supervise(self) -> None:
        """Start again every replica that exited by itself (e.g. started while the broker or database was down)."""
        for name, replica in self.replicas.items():
            if replica.proc is not None and not replica.alive():
                replica.counts["exits"] += 1
                self.clock.mark(
                    f"replica {name} exited by itself (status {replica.proc.returncode}); starting it again"
                )
                replica.start()

    def kill_loop(self) -> None:
        """SIGKILL one replica on each slot ``k * kill_every_s``: the next one up, round robin, if another is up."""
        period = self.config.kill_every_s
        names = list(self.replicas)
        slot = self.clock.t0 + period
        delayed = False
        while not self.stop_killing.is_set():
            self.supervise()
            if self.stop_killing.wait(min(0.2, max(0.0, slot - time.monotonic()))):
                return
            if time.monotonic() < slot:
                continue
            up = self._up()
            order = [names[(self._victim + i) % len(names)] for i in range(len(names))]
            victim = next((n for n in order if n in up), None)
            if self.pause_killing.is_set() or victim is None or len(up) < 2:
                if not delayed:
                    self.counts["kills_delayed"] += 1
                    delayed = True
                continue
            replica = self.replicas[victim]
            replica.kill()
            now = time.monotonic()
            self.fault_marks.append((f"kill {victim}", now, now))
            self.clock.mark(f"SIGKILL replica {victim} (kill {self.service_counts()['kills']}; up: {', '.join(up)})")
            replica.start()
            self._victim = names.index(victim) + 1
            delayed = False
            while slot <= time.monotonic():
                slot += period

    def faults(self) -> None:
        """The broker restart and the database restart, each midway between two kill slots."""
        c = self.config
        period = c.kill_every_s

        def midway(fraction: float) -> float:
            return (math.floor(fraction * c.send_duration_s / period) + 0.5) * period

        plan = sorted(
            [(midway(c.broker_restart_at), self._restart_broker), (midway(c.db_outage_at), self._db_outage)],
            key=lambda x: x[0],
        )
        for at, action in plan:
            delay = at - self.clock.now()
            if delay > 0:
                time.sleep(delay)
            action()

    def _restart_broker(self) -> None:
        began = time.monotonic()
        super()._restart_broker()
        self.fault_marks.append(("broker restart", began, time.monotonic()))

    def _db_outage(self) -> None:
        """PostgreSQL stopped (fast: sessions cut) and started again, with no kill meanwhile."""
        self.pause_killing.set()
        try:
            deadline = time.monotonic() + 120
            while not self._up() and time.monotonic() < deadline:
                time.sleep(0.2)
            errors_before = self.service_counts()["store_errors"]
            began = time.monotonic()
            self.clock.mark(f"PostgreSQL: stop (down for at least {self.config.db_outage_s:g} s), then start")
            self.db.outage(
                self.config.db_outage_s, noticed=lambda: self.service_counts()["store_errors"] > errors_before
            )
            self.counts["db_outages"] += 1
            self.fault_marks.append(("database restart", began, time.monotonic()))
            self.clock.mark(f"PostgreSQL: up again after {time.monotonic() - began:.1f} s")
        finally:
            self.pause_killing.clear()

    def run(self) -> ChaosResult:
        self.cpu = CpuMeter(self._cpu_roots).start()
        return super().run()

    def _cpu_roots(self) -> dict[str, list[int]]:
        roots: dict[str, list[int]] = {"harness": [os.getpid()]}
        roots["replicas"] = [r.proc.pid for r in self.replicas.values() if r.proc is not None]
        if self.broker.proc is not None:
            roots["broker"] = [self.broker.proc.pid]
        pid_file = getattr(self.db, "data", Path("/nonexistent")) / "postmaster.pid"
        with suppress(OSError, ValueError, IndexError):  # stopped just now: no postmaster
            roots["postgres"] = [int(pid_file.read_text().split()[0])]
        return roots

    def latencies(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Press -> first accepted ack over the run, and around each fault."""
        presses = list(self.buttons.presses.values())
        acked = self.buttons.acked_at
        delay = {p.event_id: (acked[p.event_id] - p.first_sent) * 1000 for p in presses if p.event_id in acked}
        delays = list(delay.values())

        def ms(x: float | None) -> float | None:
            return None if x is None else round(x, 1)

        def stats(values: list[float]) -> dict[str, Any]:
            return {
                "n": len(values),
                "p50": ms(percentile(values, 0.5)),
                "p99": ms(percentile(values, 0.99)),
                "max": ms(max(values, default=None)),
            }

        overall = stats(delays)
        # A press made while the broker is down reaches no replica until it is back: what is left
        # once those are set aside is the replicas' own part (kills, the database restart, load).
        outages = [(began, ended) for what, began, ended in self.fault_marks if what.startswith("broker")]
        overall["broker_up"] = stats(
            [
                delay[p.event_id]
                for p in presses
                if p.event_id in delay and not any(began <= p.first_sent <= ended for began, ended in outages)
            ]
        )
        windows = []
        for what, began, ended in self.fault_marks:
            around = [p for p in presses if began - FAULT_WINDOW_S <= p.first_sent <= ended + FAULT_WINDOW_S]
            waits = [delay[p.event_id] for p in around if p.event_id in delay]
            windows.append(
                {
                    "what": what,
                    "at_s": round(began - self.clock.t0, 1),
                    "down_s": round(ended - began, 1),
                    "presses": len(around),
                    "unacked": len(around) - len(waits),
                    "max_ack_ms": ms(max(waits, default=None)),
                }
            )
        return overall, windows

    def count(self, send_s: float, drain_s: float) -> ReplicaChaosResult:
        base = super().count(send_s, drain_s)
        cpu = self.cpu.stop()
        overall, windows = self.latencies()
        checks = dispatch_checks(self.db.url)
        audit_ok, audit_output = audit_verify(self.db.url)
        return ReplicaChaosResult(
            **asdict(base),
            replicas=len(self.replicas),
            kills_by_replica={n: r.counts["kills"] for n, r in self.replicas.items()},
            kills_delayed=self.counts["kills_delayed"],
            leader_takeovers=self.service_counts()["leader"],
            kill_every_s=self.config.kill_every_s,
            ack_deadline_s=self.config.ack_deadline_s,
            ack_latency_ms=overall,
            fault_windows=windows,
            checks=checks,
            audit_ok=audit_ok,
            audit_output=audit_output,
            cpu=cpu,
        )


def run(config: ChaosConfig) -> ChaosResult:
    """Set up, run and tear down one chaos run."""
    with _workdir(config) as folder:
        chaos = ReplicaChaos(config, folder) if config.replicas else Chaos(config, folder)
        try:
            chaos.set_up()
            result = chaos.run()
        except BaseException:
            log.error("chaos run failed; service log: %s", folder / "service.log")
            raise
        finally:
            chaos.tear_down()
    return result


# -- command line ---------------------------------------------------------------------------


def render(figures: dict[str, Any]) -> list[str]:
    """BENCHMARKS.md lines for a stored run (the first line is the heading)."""
    f = figures
    verdict = (
        "met"
        if f["sent"] == f["stored"] == f["unique_stored"] and f["lost"] == 0 and f["duplicates"] == 0
        else "not met"
    )
    return [
        "## Faults: nothing lost, nothing doubled (`make chaos`)",
        "",
        "| db | sent | stored | acknowledged | duplicates | lost |",
        "|---|---|---|---|---|---|",
        f"| {f['db']} | {f['sent']:,} | {f['stored']:,} | {f['acknowledged']:,} | {f['duplicates']} | {f['lost']} |",
        "",
        f"{f['buttons']} buttons at {f['rate_hz']:g} presses/s for {f['send_s']:.0f} s; meanwhile the service was "
        f"killed with SIGKILL {f['kills']} times ({f['service_starts']} starts, {f['service_exits']} of them ended by "
        f"themselves, e.g. started while the broker was down), Mosquitto restarted "
        f"{f['broker_restarts']} time(s) and the database made unavailable {f['db_outages']} time(s) "
        f"({f['store_errors_logged']} store errors logged by the service, which backed off and acknowledged nothing "
        f"meanwhile). {f['redeliveries_logged']} redelivered presses were recognised by event id and acknowledged "
        f"again (the broker dropped the bridge {f.get('bridge_keepalive_drops', 'n/a')} times for keepalive); the buttons published {f['publishes']:,} times ({f['republishes']} republished after "
        f"no PUBACK), received {f['ack_messages']:,} acks, {f['rejected_acks']} rejected, "
        f"{f['ack_alert_id_mismatches']} naming another alert than the stored one. Drained "
        f"{f['drain_s']:.0f} s after the last fault; {f['total_s']:.0f} s in all.",
        "",
        f"Target (issue 6): every press stored exactly once, none lost: **{verdict}**.",
        "",
    ]


REPLICA_KILL_EVERY_S = 10.0
"""With ``--replicas``: one replica is SIGKILLed every this many seconds."""


def render_replicas(figures: dict[str, Any]) -> list[str]:
    """BENCHMARKS.md lines for a stored replicas run (the first line is the heading)."""
    f = figures
    lat, c, cpu = f["ack_latency_ms"], f["checks"], f["cpu"]
    stored_ok = (
        f["sent"] == f["stored"] == f["unique_stored"] == f["acknowledged"] and f["lost"] == f["duplicates"] == 0
    )
    repeats = sum(c.get(k, 1) for k in _CHECKS_THAT_MUST_BE_ZERO)
    once_ok = repeats == 0 and c.get("orders", 0) > 0 and c.get("escalations", 0) > 0
    kills = [w for w in f["fault_windows"] if w["what"].startswith("kill")]
    others = [w for w in f["fault_windows"] if not w["what"].startswith("kill")]
    kill_max = [w["max_ack_ms"] for w in kills if w["max_ack_ms"] is not None]

    def s(ms: float | None) -> str:
        return "n/a" if ms is None else f"{ms / 1000:.2f}"

    p99, mx = lat.get("p99"), lat.get("max")
    up = lat.get("broker_up")  # the presses not made while the broker was down: shown when some were
    up = up if up and up.get("n") != lat.get("n") else None
    cpu_s = cpu.get("cpu_s", {})
    return [
        f"## Faults with {f['replicas']} replicas: nothing lost, nothing doubled, orders once (`make chaos`, `--replicas`)",
        "",
        "| db | replicas | sent | stored | acknowledged | duplicates | lost |",
        "|---|---|---|---|---|---|---|",
        f"| {f['db']} | {f['replicas']} | {f['sent']:,} | {f['stored']:,} | {f['acknowledged']:,} | {f['duplicates']} "
        f"| {f['lost']} |",
        "",
        "| press -> first ack | p50 (s) | p99 (s) | max (s) |",
        "|---|---|---|---|",
        f"| all {lat.get('n', 0):,} presses | {s(lat.get('p50'))} | {s(p99)} | {s(mx)} |",
        *(
            [
                f"| the {up['n']:,} not made while the broker was down | {s(up.get('p50'))} | {s(up.get('p99'))} "
                f"| {s(up.get('max'))} |"
            ]
            if up
            else []
        ),
        f"| around the {len(kills)} kills (largest of each: {', '.join(s(x) for x in kill_max) or 'n/a'}) | | | "
        f"{s(max(kill_max, default=None))} |",
        *(f"| around the {w['what']} (down {w['down_s']:.1f} s) | | | {s(w['max_ack_ms'])} |" for w in others),
        "",
        f"{f['buttons']} buttons at {f['rate_hz']:g} presses/s for {f['send_s']:.0f} s through {f['replicas']} "
        f"replicas (`serve --replica rN`, one PostgreSQL, one Mosquitto; every replica subscribes with its own "
        f"persistent session, docs/scaling.md). One replica was SIGKILLed every "
        f"{f['kill_every_s']:g} s, round robin among those up and only while another "
        f"was up ({f['kills']} kills: {', '.join(f'{n} {k}' for n, k in f['kills_by_replica'].items())}; "
        f"{f['kills_delayed']} slots waited for a replica to come back; {f['service_starts']} starts, "
        f"{f['service_exits']} ended by themselves), Mosquitto restarted {f['broker_restarts']} time(s), PostgreSQL "
        f"stopped and started {f['db_outages']} time(s) ({f['store_errors_logged']} store errors logged, "
        f"{f['leader_takeovers']} times a replica became the leader). The buttons published {f['publishes']:,} "
        f"times ({f['republishes']} republished after no PUBACK) and received {f['ack_messages']:,} acks "
        f"({f['ack_messages'] / max(f['sent'], 1):.2f} per press), {f['rejected_acks']} rejected, "
        f"{f['ack_alert_id_mismatches']} naming another alert than the stored one. 'Around' a fault: the presses "
        f"sent from {FAULT_WINDOW_S:g} s before it to {FAULT_WINDOW_S:g} s after it. Drained {f['drain_s']:.0f} s "
        f"after the last fault; {f['total_s']:.0f} s in all.",
        "",
        f"Orders and escalations (P1 presses assigned automatically, nobody acknowledges, deadline "
        f"{f['ack_deadline_s']:g} s, no duplicate window): {c.get('orders', 0):,} orders "
        f"({c.get('auto_orders', 0):,} automatic), {c.get('escalations', 0):,} escalations, "
        f"{c.get('orders_lapsed', 0)} lapsed; repeated in the database (the same unit ordered to an alert twice, "
        f"two unanswered orders of one alert, two order, escalation or ingest audit entries for one thing, a "
        f"unit held by two alerts, counters that disagree): {repeats}. `qorgau audit verify`: "
        f"**{'passed' if f['audit_ok'] else 'FAILED'}** ({f['audit_output']}).",
        "",
        f"CPU over {cpu.get('wall_s', 0):.0f} s on {cpu.get('cores')} cores: the machine was "
        f"{cpu.get('machine_busy', 0):.0%} busy: this run's processes {cpu.get('ours_of_machine', 0):.0%} of its "
        f"capacity, other people's work on the shared machine {cpu.get('others_of_machine', 0):.0%} ("
        + ", ".join(f"{role} {v:.0f} s" for role, v in cpu_s.items())
        + f"; load average {cpu.get('load_start', ['?'])[0]} at the start, {cpu.get('load_end', ['?'])[0]} at the "
        "end): the replicas, the broker, PostgreSQL and the buttons share two cores.",
        "",
        f"Targets (issue 11): every press stored once and acknowledged: **{'met' if stored_ok else 'not met'}**; "
        f"orders and escalations once, audit chain intact: "
        f"**{'met' if once_ok and f['audit_ok'] else 'not met'}**; press -> ack p99 under 1 s: "
        f"**{'met' if p99 is not None and p99 < 1000 else 'not met'}** ({s(p99)} s); max under 5 s: "
        f"**{'met' if mx is not None and mx < 5000 else 'not met'}** ({s(mx)} s)"
        + (
            f"; without the presses made while the broker was down: p99 "
            f"**{'met' if (q := up.get('p99')) is not None and q < 1000 else 'not met'}** ({s(up.get('p99'))} s), "
            f"max **{'met' if (m := up.get('max')) is not None and m < 5000 else 'not met'}** ({s(up.get('max'))} s)."
            if up
            else "."
        ),
        "",
    ]


def _parser() -> argparse.ArgumentParser:
    d = ChaosConfig()
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    p.add_argument("--sent", type=int, default=d.sent, help=f"presses to send [{d.sent}]")
    p.add_argument("--rate", type=float, default=d.rate, help=f"presses per second [{d.rate:g}]")
    p.add_argument("--db", choices=("sqlite", "postgres"), default=d.db, help="database [sqlite]")
    p.add_argument("--buttons", type=int, default=d.buttons, help=f"simulated buttons [{d.buttons}]")
    p.add_argument(
        "--replicas",
        type=int,
        default=0,
        metavar="N",
        help="run N named replicas (serve --replica rN) on PostgreSQL instead of one service; "
        "one is SIGKILLed every --kill-every seconds, PostgreSQL is restarted once [0: one service]",
    )
    p.add_argument(
        "--kill-every",
        type=float,
        default=None,
        help=f"mean seconds between SIGKILLs; with --replicas the fixed period [{d.kill_every_s:g}; "
        f"{REPLICA_KILL_EVERY_S:g} with --replicas]",
    )
    p.add_argument(
        "--db-outage",
        type=float,
        default=None,
        help=f"seconds the database is away at least (and until the service notices) [{d.db_outage_s:g}; "
        "0 with --replicas: a restart]",
    )
    p.add_argument(
        "--ack-deadline",
        type=float,
        default=d.ack_deadline_s,
        help=f"with --replicas: the units' acknowledgement deadline; every order escalates [{d.ack_deadline_s:g}]",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=d.drain_timeout_s,
        help=f"seconds the backlog may take to drain after the last fault [{d.drain_timeout_s:g}]",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/chaos.json and BENCHMARKS.md")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` tears the broker and service down too
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    d = ChaosConfig()
    replicas = args.replicas > 0
    if args.kill_every is None:
        args.kill_every = REPLICA_KILL_EVERY_S if replicas else d.kill_every_s
    if args.db_outage is None:
        args.db_outage = 0.0 if replicas else d.db_outage_s
    if replicas and args.db != "postgres":
        _parser().error("--replicas needs --db postgres")
    config = ChaosConfig(
        sent=args.sent,
        rate=args.rate,
        db=args.db,
        buttons=args.buttons,
        kill_every_s=args.kill_every,
        db_outage_s=args.db_outage,
        seed=args.seed,
        keep=args.keep,
        replicas=args.replicas,
        ack_deadline_s=args.ack_deadline,
        drain_timeout_s=args.drain_timeout,
    )
    result = run(config)
    print("\n".join(result.timeline))
    print(result.summary())
    if result.lost_sample:
        print(f"lost (first {len(result.lost_sample)}): {', '.join(result.lost_sample)}")
    if result.duplicate_sample:
        print(f"stored more than once (first {len(result.duplicate_sample)}): {', '.join(result.duplicate_sample)}")
    if not args.no_save:
        from bench.__main__ import RESULTS, save
        from bench.__main__ import render as render_all

        command = "python -m bench.chaos " + shlex.join(sys.argv[1:] if argv is None else argv)
        part = "chaos_replicas" if replicas else "chaos"
        save(part, asdict(result), command)
        (ROOT / "BENCHMARKS.md").write_text(render_all())
        log.info("wrote %s and BENCHMARKS.md", RESULTS / f"{part}.json")
    if result.ok:
        print("OK: every press stored exactly once" + (", orders and escalations issued once" if replicas else ""))
    else:
        print("FAILED: see the figures above")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
