"""Simulated SOS buttons, 102 reporters and moving patrols, publishing to a real broker."""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from dispatch import Device, Unit, UnitKind, sign_press
from geo import OutsideServiceArea, Router
from mqtt_bridge import BrokerAddress, Topics, new_client, parse_mqtt_url
from mqtt_bridge.provision import Account, Credentials

__all__ = ["SimulatedButtons", "SimulationReport", "Simulator", "random_street_point"]

log = logging.getLogger(__name__)

REPORT_CATEGORIES = ("theft", "assault", "disorder", "traffic", "domestic_violence", "vandalism", "other")
_M_PER_DEG = 111_320.0


def _offset(lat: float, lon: float, distance_m: float, bearing_rad: float) -> tuple[float, float]:
    dlat = distance_m * math.cos(bearing_rad) / _M_PER_DEG
    dlon = distance_m * math.sin(bearing_rad) / (_M_PER_DEG * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


def random_street_point(
    router: Router,
    rng: random.Random,
    *,
    mode: Literal["walk", "drive"] = "walk",
    near: tuple[float, float] | None = None,
    radius_m: float | None = None,
    max_street_m: float = 60.0,
    tries: int = 200,
) -> tuple[float, float]:
    """A random point on a street of ``mode``: in the network's bounds, or within ``radius_m`` of ``near``.

    Raises
    ------
    ValueError
        If no street point was found in ``tries`` draws.
    """
    min_lat, min_lon, max_lat, max_lon = router.network.bounds
    for _ in range(tries):
        if near is not None and radius_m is not None:
            lat, lon = _offset(*near, rng.uniform(0, radius_m), rng.uniform(0, 2 * math.pi))
        else:
            lat, lon = rng.uniform(min_lat, max_lat), rng.uniform(min_lon, max_lon)
        try:
            snap = router.snap(lat, lon, mode)
        except OutsideServiceArea:
            continue
        if snap.distance_m <= max_street_m:
            return float(snap.lat), float(snap.lon)
    msg = f"found no {mode} street point within {max_street_m} m in {tries} draws on {router.network.label!r}"
    raise ValueError(msg)


@dataclass(slots=True)
class SimulationReport:
    """What a simulation published."""

    sos: int = 0
    app102: int = 0
    positions: int = 0
    heartbeats: int = 0

    @property
    def alerts(self) -> int:
        return self.sos + self.app102


def _utc_now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SimulatedButtons:
    """SOS buttons as a real one connects: one MQTT connection each, a last will, heartbeats.

    Each button connects with the last will ``{"state": "offline"}`` (retained, QoS 1) on
    ``{root}/sos/{id}/status``, publishes ``{"state": "online", "ts"}`` there (retained) on every
    connect, and ``{"ts", "seq"}`` on ``{root}/sos/{id}/heartbeat`` every ``heartbeat_s``. On
    :meth:`stop` it says ``offline`` itself and disconnects (a clean DISCONNECT sends no will).

    Parameters
    ----------
    url, topics
        The broker and the service's topics.
    devices
        The buttons.
    heartbeat_s
        Seconds between heartbeats.
    logins
        Each button's own broker login (from ``qorgau devices provision``); None: the URL's.
    """

    def __init__(
        self,
        *,
        url: str | BrokerAddress,
        topics: Topics,
        devices: Sequence[Device],
        heartbeat_s: float,
        logins: dict[str, BrokerAddress] | None = None,
    ) -> None:
        if heartbeat_s <= 0:
            msg = f"heartbeat_s must be positive, got {heartbeat_s!r}"
            raise ValueError(msg)
        self.address = url if isinstance(url, BrokerAddress) else parse_mqtt_url(url)
        self.topics = topics
        self.heartbeat_s = heartbeat_s
        self.clients: dict[str, Any] = {}
        self._devices = list(devices)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeats = 0
        self._logins = dict(logins or {})

    def start(self) -> SimulatedButtons:
        """Connect every button and start sending heartbeats.

        Raises
        ------
        ConnectionError
            If the broker cannot be reached.
        """
        for device in self._devices:
            address = self._logins.get(device.id, self.address)
            client = new_client(address, client_id=f"qorgau-btn-{device.id}-{uuid.uuid4().hex[:8]}")
            status = self.topics.sos_status(device.id)
            client.will_set(status, json.dumps({"state": "offline"}), qos=1, retain=True)
            connected, outcome = threading.Event(), []

            def on_connect(
                c: Any,
                _u: Any,
                _f: Any,
                reason: Any,
                _p: Any,
                topic: str = status,
                outcome: list = outcome,
                connected: threading.Event = connected,
            ) -> None:
                outcome[:] = [reason]
                connected.set()
                if not reason.is_failure:
                    c.publish(topic, json.dumps({"state": "online", "ts": _utc_now_text()}), qos=1, retain=True)

            client.on_connect = on_connect
            try:
                client.connect(address.host, address.port, keepalive=max(5, int(3 * self.heartbeat_s)))
            except OSError as e:
                self.stop()
                msg = f"cannot reach the MQTT broker at {self.address}: {e}"
                raise ConnectionError(msg) from e
            client.loop_start()
            self.clients[device.id] = client
            if not connected.wait(10) or outcome[0].is_failure:
                why = "no CONNACK within 10 s" if not connected.is_set() else str(outcome[0])
                self.stop()
                msg = f"MQTT broker at {address} refused the simulator's connection: {why}"
                raise ConnectionError(msg)
        self._thread = threading.Thread(target=self._beat, name="qorgau-sim-heartbeats", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        seq = 0
        while not self._stop.is_set():
            for device_id, client in list(self.clients.items()):
                payload = {"ts": _utc_now_text(), "seq": seq}
                client.publish(self.topics.sos_heartbeat(device_id), json.dumps(payload), qos=1)
                self.heartbeats += 1
            seq += 1
            self._stop.wait(self.heartbeat_s)

    def stop(self) -> None:
        """Say offline, disconnect every button and stop the heartbeats."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for device_id, client in self.clients.items():
            if client.is_connected():
                info = client.publish(
                    self.topics.sos_status(device_id), json.dumps({"state": "offline"}), qos=1, retain=True
                )
                try:
                    info.wait_for_publish(timeout=2)
                except (RuntimeError, ValueError) as e:  # the connection dropped meanwhile: the will says it
                    log.warning("button %r could not say offline: %s", device_id, e)
            client.disconnect()
            client.loop_stop()
        self.clients.clear()


class Simulator:
    """Publish SOS presses, 102 reports and unit positions at a steady rate.

    Parameters
    ----------
    url
        The broker.
    topic_root
        Topic root of the service to feed.
    devices
        SOS buttons to press (from the device registry).
    router
        The city's router, to draw 102 reports and unit moves on streets; without it only SOS
        presses are sent.
    units
        Units to move (booths stay put) when ``move_units``.
    rate_per_s
        Alerts per second.
    sos_share
        Fraction of alerts that are SOS presses (the rest are 102 reports).
    kind
        ``"test"`` (default: safe against a real service) or ``"press"``.
    move_units
        Also move one car or foot patrol along the streets with every alert.
    seed
        Random seed, for reproducible runs.
    credentials
        From ``qorgau devices provision``: each device, unit and the 102 app publish with their
        own login, and buttons with a key sign their presses (counter: milliseconds since the
        epoch, strictly increasing per device). None: one anonymous (or URL) login, unsigned.
    heartbeat_s
        Connect each button on its own with a last will and send heartbeats this often
        (:class:`SimulatedButtons`); None: presses go out on one shared connection, no heartbeats.
    report_area
        ``((lat, lon), radius_m)``: 102 reports come from street points this close to that point;
        None: from anywhere in the network's bounds.
    """

    def __init__(
        self,
        *,
        url: str,
        topic_root: str,
        devices: Sequence[Device] = (),
        router: Router | None = None,
        units: Sequence[Unit] = (),
        rate_per_s: float = 1.0,
        sos_share: float = 0.5,
        kind: Literal["press", "test"] = "test",
        move_units: bool = False,
        seed: int | None = None,
        credentials: Credentials | None = None,
        heartbeat_s: float | None = None,
        report_area: tuple[tuple[float, float], float] | None = None,
    ) -> None:
        if rate_per_s <= 0:
            msg = f"rate_per_s must be positive, got {rate_per_s!r}"
            raise ValueError(msg)
        if not 0.0 <= sos_share <= 1.0:
            msg = f"sos_share must lie in [0, 1], got {sos_share!r}"
            raise ValueError(msg)
        if kind not in ("press", "test"):
            msg = f"kind must be 'press' or 'test', got {kind!r}"
            raise ValueError(msg)
        if router is None:
            sos_share = 1.0
        if sos_share > 0 and not devices:
            msg = "SOS presses need devices (--devices); give a network (--network) and --sos-share 0 for 102 only"
            raise ValueError(msg)
        if move_units and router is None:
            msg = "moving units needs the street network (--network)"
            raise ValueError(msg)
        self.address = parse_mqtt_url(url)
        self.topics = Topics(topic_root)
        self.devices = list(devices)
        self.router = router
        self.rate_per_s = rate_per_s
        self.sos_share = sos_share
        self.kind = kind
        self.move_units = move_units
        self.rng = random.Random(seed)
        self._mobile = {u.id: u.copy() for u in units if u.kind is not UnitKind.BOOTH}
        self.credentials = credentials
        if credentials is not None:
            missing = sorted({d.id for d in self.devices} - set(credentials.devices))
            if missing:
                msg = f"the credentials file has no account for devices {missing[:5]}: provision them first"
                raise ValueError(msg)
        self._clients: dict[str | None, Any] = {}
        self._counters: dict[str, int] = {}
        self.heartbeat_s = heartbeat_s
        self.report_area = report_area
        self._buttons: SimulatedButtons | None = None

    def run(self, count: int | None = 10, *, stop: threading.Event | None = None) -> SimulationReport:
        """Publish ``count`` alerts (None: until ``stop`` is set) and return what was sent.

        Raises
        ------
        ConnectionError
            If the broker cannot be reached.
        """
        stop = stop or threading.Event()
        if self.heartbeat_s is not None and self.devices:
            logins = None
            if self.credentials is not None:
                logins = {d.id: self._account("device", d.id).address(self.address) for d in self.devices}  # type: ignore[union-attr]
            self._buttons = SimulatedButtons(
                url=self.address, topics=self.topics, devices=self.devices, heartbeat_s=self.heartbeat_s, logins=logins
            )
            self._buttons.start()
        report = SimulationReport()
        interval = 1.0 / self.rate_per_s
        next_at = time.monotonic()
        try:
            while (count is None or report.alerts < count) and not stop.is_set():
                if self.rng.random() < self.sos_share:
                    account, topic, payload = self._sos()
                    device_id = topic.split("/")[-2]
                    own = self._buttons.clients.get(device_id) if self._buttons is not None else None
                    if own is not None:  # a button presses on its own connection
                        self._publish_on(own, topic, payload)
                    else:
                        self._publish(account, topic, payload)
                    report.sos += 1
                else:
                    self._publish(*self._report())
                    report.app102 += 1
                if self.move_units and self._mobile:
                    self._publish(*self._move())
                    report.positions += 1
                next_at += interval
                stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            if self._buttons is not None:
                report.heartbeats = self._buttons.heartbeats
                self._buttons.stop()
                self._buttons = None
            for client in self._clients.values():
                client.disconnect()
                client.loop_stop()
            self._clients.clear()
        log.info("simulation sent %d SOS, %d 102 reports, %d positions", report.sos, report.app102, report.positions)
        return report

    def _account(self, kind: Literal["device", "unit", "app102"], ident: str | None = None) -> Account | None:
        """The login to publish with (None: the URL's)."""
        if self.credentials is None:
            return None
        if kind == "app102":
            return self.credentials.app102
        group = self.credentials.devices if kind == "device" else self.credentials.units
        account = group.get(ident or "")
        if account is None:
            msg = f"the credentials file has no account for {kind} {ident!r}: provision it first"
            raise ValueError(msg)
        return account

    def _client(self, account: Account | None) -> Any:
        """A connected client for ``account``, made on first use."""
        key = None if account is None else account.username
        client = self._clients.get(key)
        if client is not None:
            return client
        address: BrokerAddress = self.address if account is None else account.address(self.address)
        client = new_client(address, client_id=f"qorgau-sim-{uuid.uuid4().hex[:12]}")
        connected, outcome = threading.Event(), []

        def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
            outcome[:] = [reason_code]
            connected.set()

        client.on_connect = on_connect
        try:
            client.connect(address.host, address.port, keepalive=30)
        except OSError as e:
            msg = f"cannot reach the MQTT broker at {address}: {e}"
            raise ConnectionError(msg) from e
        client.loop_start()
        self._clients[key] = client
        if not connected.wait(10) or outcome[0].is_failure:
            why = "no CONNACK within 10 s" if not connected.is_set() else str(outcome[0])
            msg = f"MQTT broker at {address} refused the simulator's connection: {why}"
            raise ConnectionError(msg)
        return client

    def _publish(self, account: Account | None, topic: str, payload: dict[str, Any]) -> None:
        self._publish_on(self._client(account), topic, payload)

    def _publish_on(self, client: Any, topic: str, payload: dict[str, Any]) -> None:
        info = client.publish(topic, json.dumps(payload), qos=1)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            msg = f"broker at {self.address} did not acknowledge a message on {topic!r} within 10 s"
            raise ConnectionError(msg)

    @staticmethod
    def _now() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _sos(self) -> tuple[Account | None, str, dict[str, Any]]:
        device = self.rng.choice(self.devices)
        payload: dict[str, Any] = {"event_id": f"sim-{uuid.uuid4()}", "ts": self._now(), "kind": self.kind}
        account = self._account("device", device.id)
        if account is not None and account.key is not None:
            counter = max(self._counters.get(device.id, -1) + 1, time.time_ns() // 1_000_000)
            self._counters[device.id] = counter
            payload = sign_press({**payload, "ctr": counter}, account.key)
        return account, self.topics.sos_alert(device.id), payload

    def _report(self) -> tuple[Account | None, str, dict[str, Any]]:
        assert self.router is not None
        near, radius_m = self.report_area or (None, None)
        lat, lon = random_street_point(self.router, self.rng, near=near, radius_m=radius_m)
        accuracy_m = round(self.rng.uniform(5.0, 30.0), 1)
        lat, lon = _offset(lat, lon, self.rng.uniform(0, accuracy_m), self.rng.uniform(0, 2 * math.pi))
        payload = {
            "event_id": f"sim-{uuid.uuid4()}",
            "ts": self._now(),
            "lat": round(lat, 7),
            "lon": round(lon, 7),
            "accuracy_m": accuracy_m,
            "category": self.rng.choice(REPORT_CATEGORIES),
            "text": "[simulated report]",
        }
        return self._account("app102"), self.topics.app102_report, payload

    def _move(self) -> tuple[Account | None, str, dict[str, Any]]:
        assert self.router is not None
        unit = self._mobile[self.rng.choice(sorted(self._mobile))]
        car = unit.kind is UnitKind.CAR
        unit.lat, unit.lon = random_street_point(
            self.router,
            self.rng,
            mode="drive" if car else "walk",
            near=(unit.lat, unit.lon),
            radius_m=400.0 if car else 100.0,
        )
        payload = {"ts": self._now(), "lat": round(unit.lat, 7), "lon": round(unit.lon, 7)}
        return self._account("unit", unit.id), self.topics.unit_position(unit.id), payload
