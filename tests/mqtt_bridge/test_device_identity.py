"""Device identity on a real Mosquitto: provisioned passwords and ACL, and signed presses end to end.

Each test provisions the registry's devices and units (``qorgau devices provision``) and starts its
own ``/usr/sbin/mosquitto`` on a free port with the generated password file and ACL (no
anonymous clients), then talks to it as devices, units and the service account. The service
under test (``start_service``) logs in with the service account: ``mqtt_url`` is overridden here.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import queue
import shutil
import socket
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import select
from support import FAR_DEVICE, Registry, Running, new_event_id, now_rfc3339, wait_for

from dispatch import DeviceKey, load_devices, sign_press, write_devices
from dispatch.device_keys import load_device_keys
from dispatch.models import AlertRow
from mqtt_bridge import BrokerAddress, Topics, new_client
from mqtt_bridge.provision import Account, Credentials, load_credentials, provision
from qorgau.cli import main

MOSQUITTO = "/usr/sbin/mosquitto"
SECRET = "test-device-key-secret-0123456789abcdef"
NOT_AUTHORIZED = 0x87
NO_SUBSCRIBERS = 0x10
"""MQTT 5 PUBACK 'No matching subscribers': accepted, nobody listens (a success code)."""


# -- a broker of our own with the provisioned files -----------------------------------------


@dataclass
class Broker:
    port: int
    creds: Credentials
    folder: Path
    topics: Topics

    def url(self, account: Account) -> str:
        return f"mqtt://{account.username}:{account.password}@127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous false",
                f"password_file {folder / 'passwd'}",
                f"acl_file {folder / 'acl'}",
                "persistence false",
                f"log_dest file {folder / 'mosquitto.log'}",
                f"user {getpass.getuser()}",
                "",
            ]
        )
    )
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                err = proc.stderr.read().decode() if proc.stderr else ""
                log = (folder / "mosquitto.log").read_text() if (folder / "mosquitto.log").exists() else ""
                raise AssertionError(f"mosquitto did not start with the provisioned files: {err} {log}") from None
            time.sleep(0.02)


@pytest.fixture
def broker(registry: Registry, topic_root: str, tmp_path: Path) -> Iterator[Broker]:
    assert shutil.which(MOSQUITTO) or Path(MOSQUITTO).exists(), f"{MOSQUITTO} is needed for these tests"
    folder = tmp_path / "identity"
    provision(
        devices=registry.devices.values(),
        units=registry.units,
        out_dir=folder,
        topic_root=topic_root,
        key_secret=SECRET,
    )
    proc, port = _start_mosquitto(folder)
    try:
        yield Broker(port, load_credentials(folder / "credentials.json"), folder, Topics(topic_root))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def mqtt_url(broker: Broker) -> str:
    """The service under test logs in to our broker with the service account."""
    return broker.url(broker.creds.service)


# -- a client that reports the broker's reason codes ----------------------------------------


class Client:
    """A paho MQTT 5 client logged in as ``account`` (or anonymous) that records PUBACK/SUBACK codes."""

    def __init__(self, broker: Broker, account: Account | None) -> None:
        address = BrokerAddress("127.0.0.1", broker.port)
        if account is not None:
            address = account.address(address)
        self.client = new_client(address, client_id=f"test-{uuid.uuid4().hex[:10]}")
        self.messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.connack: ReasonCode | None = None
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, msg: self.messages.put((msg.topic, json.loads(msg.payload)))
        self.client.connect(address.host, address.port, keepalive=30)
        self.client.loop_start()
        with self._cond:
            assert self._cond.wait_for(lambda: self.connack is not None, timeout=5), "no CONNACK"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            self.connack = rc
            self._cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            self.pubacks[mid] = rc
            self._cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        with self._cond:
            self.subacks[mid] = rcs
            self._cond.notify_all()

    @property
    def refused(self) -> bool:
        return self.connack is not None and self.connack.is_failure

    def publish(self, topic: str, payload: dict[str, Any]) -> int:
        """Publish at QoS 1; the PUBACK's reason code: 0 (0x10 with no subscriber) = accepted, 0x87 = not authorized."""
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self.pubacks, timeout=5), f"no PUBACK for {topic}"
            code = int(self.pubacks[info.mid].value)
        return 0 if code == NO_SUBSCRIBERS else code

    def subscribe(self, topic_filter: str) -> int:
        """Subscribe at QoS 1; the SUBACK's reason code (1 = granted QoS 1, 0x87 = not authorized)."""
        _, mid = self.client.subscribe([(topic_filter, SubscribeOptions(qos=1))])
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self.subacks, timeout=5), f"no SUBACK for {topic_filter}"
            return int(self.subacks[mid][0].value)

    def next_message(
        self, topic: str, *, timeout_s: float = 3.0, match: Callable[[dict], bool] = lambda m: True
    ) -> dict:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, body = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if got == topic and match(body):
                return body
        raise AssertionError(f"no message on {topic} within {timeout_s} s")

    def drain(self, *, wait_s: float = 0.5) -> list[tuple[str, dict]]:
        """Every message that arrives within ``wait_s``."""
        got = []
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return got

    def nothing_on(self, topic: str, *, wait_s: float = 0.5) -> bool:
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, _ = self.messages.get(timeout=left)
            except queue.Empty:
                return True
            if got == topic:
                return False
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def connect(broker: Broker) -> Iterator[Callable[[Account | None], Client]]:
    made: list[Client] = []

    def make(account: Account | None) -> Client:
        client = Client(broker, account)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _devices(registry: Registry) -> list[str]:
    return [d for d in sorted(registry.devices) if d != FAR_DEVICE]


# -- the broker enforces the identities ------------------------------------------------------


def test_broker_refuses_anonymous_and_wrong_passwords(broker: Broker, connect: Callable) -> None:
    assert connect(None).refused
    device = next(iter(broker.creds.devices.values()))
    wrong = Account(device.username, device.password + "x", "device")
    assert connect(wrong).refused
    assert not connect(device).refused  # the generated $7$ hash is accepted by the real broker


def test_a_device_publishes_its_own_alert_and_the_service_account_receives_it(
    broker: Broker, connect: Callable, registry: Registry
) -> None:
    a, b = _devices(registry)[:2]
    service = connect(broker.creds.service)
    assert service.subscribe(f"{broker.topics.root}/sos/+/alert") == 1
    device_a = connect(broker.creds.devices[a])
    body = {"event_id": new_event_id(), "ts": now_rfc3339(), "kind": "test"}
    assert device_a.publish(broker.topics.sos_alert(a), body) == 0
    assert service.next_message(broker.topics.sos_alert(a)) == body

    # A on B's topic: not authorized (MQTT 5 PUBACK 0x87) and not delivered.
    assert device_a.publish(broker.topics.sos_alert(b), {**body, "event_id": new_event_id()}) == NOT_AUTHORIZED
    assert service.nothing_on(broker.topics.sos_alert(b))
    # A may send its own heartbeat and status, not B's.
    assert device_a.publish(f"{broker.topics.root}/sos/{a}/heartbeat", {"ts": now_rfc3339()}) == 0
    assert device_a.publish(f"{broker.topics.root}/sos/{b}/status", {"ts": now_rfc3339()}) == NOT_AUTHORIZED
    # A device cannot play the service: it may not publish acks, not even its own.
    assert device_a.publish(broker.topics.sos_ack(a), {"status": "accepted"}) == NOT_AUTHORIZED


def test_a_device_reads_only_its_own_acks(broker: Broker, connect: Callable, registry: Registry) -> None:
    a, b = _devices(registry)[:2]
    device_a = connect(broker.creds.devices[a])
    # Mosquitto 2.0 grants the SUBSCRIBE and checks 'read' on every message it would deliver:
    # A may ask for B's acks, or for everything, and still gets only its own.
    for topic_filter in (broker.topics.sos_ack(a), broker.topics.sos_ack(b), f"{broker.topics.root}/sos/+/ack", "#"):
        assert device_a.subscribe(topic_filter) in (1, NOT_AUTHORIZED)
    service = connect(broker.creds.service)
    assert service.publish(broker.topics.sos_ack(b), {"event_id": "for-b"}) == 0
    assert service.publish(broker.topics.sos_ack(a), {"event_id": "for-a"}) == 0
    got = device_a.drain(wait_s=0.7)
    assert got and {topic for topic, _ in got} == {broker.topics.sos_ack(a)}
    assert {body["event_id"] for _, body in got} == {"for-a"}


def test_a_unit_reports_only_its_own_position_and_reads_only_its_own_orders(
    broker: Broker, connect: Callable, registry: Registry
) -> None:
    cars = sorted(u.id for u in registry.units if u.kind.value != "booth")
    mine, other = cars[:2]
    unit = connect(broker.creds.units[mine])
    position = {"ts": now_rfc3339(), "lat": 43.2, "lon": 76.9}
    assert unit.publish(broker.topics.unit_position(mine), position) == 0
    assert unit.publish(broker.topics.unit_position(other), position) == NOT_AUTHORIZED
    assert unit.publish(broker.topics.unit_status(other), {"ts": now_rfc3339(), "status": "off_duty"}) == NOT_AUTHORIZED
    unit.subscribe(broker.topics.unit_orders(mine))
    unit.subscribe(broker.topics.unit_orders(other))
    service = connect(broker.creds.service)
    for unit_id in (other, mine):
        assert service.publish(broker.topics.unit_orders(unit_id), {"unit_id": unit_id}) == 0
    got = unit.drain(wait_s=0.7)
    assert [body["unit_id"] for _, body in got] == [mine]
    # its patrol plan too (issue 14): the service may send every unit's, a unit reads only its own
    unit.subscribe(broker.topics.unit_plan(mine))
    unit.subscribe(broker.topics.unit_plan(other))
    for unit_id in (other, mine):
        assert service.publish(broker.topics.unit_plan(unit_id), {"unit_id": unit_id, "plan_id": "p"}) == 0
    got = unit.drain(wait_s=0.7)
    assert [(topic, body["unit_id"]) for topic, body in got] == [(broker.topics.unit_plan(mine), mine)]
    # a unit is not a button: no SOS device has its id, and it cannot post as one that exists
    assert unit.publish(broker.topics.sos_alert(_devices(registry)[0]), {"kind": "press"}) == NOT_AUTHORIZED


def test_the_102_account_posts_reports_and_reads_its_acks_only(
    broker: Broker, connect: Callable, registry: Registry
) -> None:
    app = connect(broker.creds.app102)
    assert app.publish(broker.topics.app102_report, {"event_id": "r"}) == 0
    assert app.publish(broker.topics.sos_alert(_devices(registry)[0]), {"kind": "press"}) == NOT_AUTHORIZED
    assert app.publish(f"{broker.topics.app102_ack_prefix}x", {"event_id": "fake ack"}) == NOT_AUTHORIZED
    app.subscribe(f"{broker.topics.app102_ack_prefix}#")
    app.subscribe(f"{broker.topics.root}/sos/+/ack")
    service = connect(broker.creds.service)
    assert service.publish(broker.topics.sos_ack(_devices(registry)[0]), {"event_id": "device ack"}) == 0
    assert service.publish(f"{broker.topics.app102_ack_prefix}r-1", {"event_id": "app ack"}) == 0
    assert [body["event_id"] for _, body in app.drain(wait_s=0.7)] == ["app ack"]


def test_the_real_bridge_works_with_the_service_account(
    running: Running, broker: Broker, connect: Callable, registry: Registry
) -> None:
    assert running.service.bridge.address.username == broker.creds.service.username
    assert running.service.bridge.is_connected()
    # the service's signing keys are not configured in this test: press unsigned from a device
    # that the service does not require to sign
    device_id = _devices(registry)[0]
    device = connect(broker.creds.devices[device_id])
    assert device.subscribe(broker.topics.sos_ack(device_id)) == 1
    event_id = new_event_id()
    assert (
        device.publish(broker.topics.sos_alert(device_id), {"event_id": event_id, "ts": now_rfc3339(), "kind": "press"})
        == 0
    )
    ack = device.next_message(broker.topics.sos_ack(device_id), match=lambda m: m["event_id"] == event_id)
    assert ack["status"] == "accepted"
    stored = running.http.get(f"/api/alerts/{ack['alert_id']}").json()
    assert (stored["event_id"], stored["sender"]) == (event_id, device_id)


# -- signed presses through the real broker and both databases -------------------------------


@pytest.fixture
def signed_service(start_service: Callable[..., Running], broker: Broker) -> Callable[[], Running]:
    """Start (or restart) the service with the provisioned, encrypted device keys."""

    def start() -> Running:
        return start_service(device_keys=broker.folder / "device-keys.json", device_key_secret=SECRET)

    return start


class Button:
    """A signing SOS button on the broker: its login, key, ack subscription and counter."""

    def __init__(self, broker: Broker, connect: Callable, device_id: str) -> None:
        self.id = device_id
        self.account = broker.creds.devices[device_id]
        assert self.account.key is not None
        self.key: DeviceKey = self.account.key
        self.topics = broker.topics
        self.client = connect(self.account)
        assert self.client.subscribe(self.topics.sos_ack(device_id)) == 1

    def body(self, ctr: int | None, *, event_id: str | None = None, ts: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"event_id": event_id or new_event_id(), "ts": ts or now_rfc3339(), "kind": "press"}
        return body if ctr is None else {**body, "ctr": ctr}

    def signed(self, ctr: int, **kw: Any) -> dict[str, Any]:
        return sign_press(self.body(ctr, **kw), self.key)

    def send(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Publish and return the service's ack for this event."""
        assert self.client.publish(self.topics.sos_alert(self.id), payload) == 0
        return self.client.next_message(
            self.topics.sos_ack(self.id), timeout_s=5, match=lambda m: m["event_id"] == payload["event_id"]
        )


def _rejected(ack: dict[str, Any], reason: str) -> None:
    assert (ack["status"], ack["reason"], ack["alert_id"]) == ("rejected", reason, None), ack


def test_signed_presses_forgeries_and_replays(
    signed_service: Callable[[], Running],
    broker: Broker,
    connect: Callable,
    registry: Registry,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    running = signed_service()
    button = Button(broker, connect, _devices(registry)[0])

    good = button.signed(100)
    ack = button.send(good)
    assert ack["status"] == "accepted" and ack["alert_id"]
    with running.service.store.engine.connect() as conn:
        counter = conn.execute(select(AlertRow.device_counter).where(AlertRow.id == ack["alert_id"])).scalar_one()
    assert counter == 100  # committed with the alert

    # a redelivery of the stored event (crash before the MQTT ack): accepted again, same alert
    again = button.send(good)
    assert (again["status"], again["alert_id"]) == ("accepted", ack["alert_id"])

    # forged: another key; tampered: a field changed after signing
    forged = sign_press(button.body(101), DeviceKey(os.urandom(32)))
    _rejected(button.send(forged), "bad_signature")
    tampered = {**button.signed(102), "kind": "test"}
    _rejected(button.send(tampered), "bad_signature")
    _rejected(button.send({**button.signed(103), "sig": "zz"}), "bad_signature")

    # replay: a used counter under a new event id (a captured press re-signed is impossible
    # without the key; the attacker can only resend what it saw, or the device misbehaves)
    _rejected(button.send(button.signed(100)), "replayed")
    # slightly reordered: 110 arrives before 105 and 109: all accepted, once each
    for ctr in (110, 105, 109):
        assert button.send(button.signed(ctr))["status"] == "accepted"
    _rejected(button.send(button.signed(105)), "replayed")
    # too old: more than 64 counters behind the newest
    _rejected(button.send(button.signed(110 - 64)), "counter_too_old")
    # no downgrade: an unsigned press from a signing device
    _rejected(button.send(button.body(111)), "missing_signature")
    _rejected(button.send(button.body(None)), "missing_signature")
    # a signed press whose ts is older than the allowed age
    _rejected(button.send(button.signed(112, ts=now_rfc3339(-timedelta(hours=2)))), "press_too_old")

    metrics = running.http.get("/api/metrics").json()
    assert metrics["rejected"]["bad_signature"] == 3
    assert metrics["rejected"]["replayed"] == 2
    assert metrics["rejected"]["counter_too_old"] == 1
    assert metrics["rejected"]["missing_signature"] == 2
    assert metrics["rejected"]["press_too_old"] == 1
    assert metrics["accepted"]["sos"] == 4 and metrics["duplicates"]["sos"] == 1

    # nothing secret reached the logs: no key, no password
    text = caplog.text
    for account in broker.creds.accounts():
        assert account.password not in text
        if account.key is not None:
            assert account.key.secret.hex() not in text
    assert SECRET not in text
    assert "rejected message on sos/" in text and "bad_signature" in text  # rejections are logged with a reason


def test_replay_after_a_restart_is_still_rejected(
    signed_service: Callable[[], Running], broker: Broker, connect: Callable, registry: Registry, db_url: str
) -> None:
    running = signed_service()
    button = Button(broker, connect, _devices(registry)[1])
    first = button.signed(500)
    for ctr in (500, 498, 520):
        assert button.send(first if ctr == 500 else button.signed(ctr))["status"] == "accepted"
    running.service.stop()

    running = signed_service()  # the windows are rebuilt from the stored counters
    assert running.service.service.press_verifier.highest(button.id) == 520
    _rejected(button.send(button.signed(500)), "replayed")
    _rejected(button.send(button.signed(498)), "replayed")
    _rejected(button.send(button.signed(520)), "replayed")
    _rejected(button.send(button.signed(520 - 64)), "counter_too_old")
    assert button.send(button.signed(499))["status"] == "accepted"  # inside the window, never used
    again = button.send(first)  # the stored event redelivered after the restart: still accepted
    assert again["status"] == "accepted"
    assert button.send(button.signed(521))["status"] == "accepted"


# -- provisioning ---------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provision_writes_private_files_and_keeps_credentials_on_rerun(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    devices = [d for d in registry.devices.values()]
    out = tmp_path / "prov"
    report = provision(devices=devices[:-1], units=registry.units, out_dir=out, key_secret=SECRET)
    assert len(report.created) == len(devices) - 1 + len(registry.units) + 2
    for name in ("passwd", "credentials.json", "device-keys.json"):
        assert _mode(out / name) == 0o600, name
    creds = load_credentials(out / "credentials.json")
    assert set(creds.devices) == {d.id for d in devices[:-1]}
    assert all(a.key is not None for a in creds.devices.values())
    assert all(a.key is None for a in creds.units.values())
    passwd = (out / "passwd").read_text().splitlines()
    assert len(passwd) == len(creds.accounts())
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in passwd)
    # the service's copy of the keys decrypts only with the secret, to the same keys
    keys = load_device_keys(out / "device-keys.json", SECRET)
    assert {k: v.secret for k, v in keys.items()} == {k: a.key.secret for k, a in creds.devices.items() if a.key}
    assert all(
        a.key.secret.hex() not in (out / "device-keys.json").read_text() for a in creds.devices.values() if a.key
    )
    with pytest.raises(ValueError, match="wrong QORGAU_DEVICE_KEY_SECRET"):
        load_device_keys(out / "device-keys.json", "another-secret-of-at-least-32-characters!")

    # re-run with one more device: the others keep their passwords and keys
    report = provision(devices=devices, units=registry.units, out_dir=out, key_secret=SECRET)
    assert report.created == [devices[-1].id]
    again = load_credentials(out / "credentials.json")
    for device_id, account in creds.devices.items():
        assert (again.devices[device_id].password, again.devices[device_id].key) == (account.password, account.key)
    # --rotate: everything new; a device dropped from the registry loses its account
    report = provision(devices=devices[1:], units=registry.units, out_dir=out, key_secret=SECRET, rotate=True)
    assert report.removed == [devices[0].id]
    rotated = load_credentials(out / "credentials.json")
    assert devices[0].id not in rotated.devices
    assert all(rotated.devices[d].password != again.devices[d].password for d in rotated.devices)
    assert rotated.service.password != again.service.password
    assert "passwd" in report.summary()

    for account in [*creds.accounts(), *rotated.accounts()]:
        assert account.password not in caplog.text and account.password not in repr(account)
        assert account.password not in repr(rotated) and account.password not in report.summary()
        if account.key is not None:
            assert account.key.secret.hex() not in caplog.text + repr(account) + repr(account.key)


def test_provision_refuses_ambiguous_or_unsafe_usernames(registry: Registry, tmp_path: Path) -> None:
    device = next(iter(registry.devices.values()))
    unit = registry.units[0]
    clash = type(device)(id=unit.id, site=device.site, lat=device.lat, lon=device.lon)
    with pytest.raises(ValueError, match=f"username {unit.id!r} would belong to both"):
        provision(devices=[clash], units=[unit], out_dir=tmp_path / "a", key_secret=SECRET)
    with pytest.raises(ValueError, match="cannot be a broker username"):
        provision(devices=[device], units=[], out_dir=tmp_path / "b", key_secret=SECRET, service_user="bad user")
    with pytest.raises(ValueError, match="set it, or provision with --no-signing"):
        provision(devices=[device], units=[], out_dir=tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # nothing half-written
    report = provision(devices=[device], units=[], out_dir=tmp_path / "d", signing=False)
    assert report.signing_devices == 0 and not (tmp_path / "d" / "device-keys.json").exists()


def test_devices_provision_command(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QORGAU_DEVICE_KEY_SECRET", SECRET)
    out = tmp_path / "cli"
    argv = [
        "devices",
        "provision",
        "--devices",
        str(registry.devices_path),
        "--units",
        str(registry.units_path),
        "--out",
        str(out),
        "--topic-root",
        "city/v2",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{len(registry.devices)} devices sign their presses" in printed
    creds = load_credentials(out / "credentials.json")
    assert creds.topic_root == "city/v2"
    assert set(creds.devices) == set(load_devices(registry.devices_path))
    assert "pattern write city/v2/sos/%u/alert" in (out / "acl").read_text()
    assert main(argv) == 0
    assert "0 accounts created" in capsys.readouterr().out
    assert load_credentials(out / "credentials.json").service.password == creds.service.password
    monkeypatch.delenv("QORGAU_DEVICE_KEY_SECRET")
    assert main([*argv, "--rotate"]) == 1
    assert "QORGAU_DEVICE_KEY_SECRET" in capsys.readouterr().err


def test_simulate_logs_in_per_device_and_signs_with_the_credentials_file(
    signed_service: Callable[[], Running], broker: Broker, registry: Registry, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    running = signed_service()
    devices_path = write_devices(
        tmp_path / "near.geojson", [d for d in registry.devices.values() if d.id != FAR_DEVICE]
    )
    argv = [
        "simulate",
        "--devices",
        str(devices_path),
        "--mqtt",
        f"mqtt://127.0.0.1:{broker.port}",
        "--topic-root",
        broker.topics.root,
        "--count",
        "6",
        "--rate",
        "50",
        "--kind",
        "press",
        "--seed",
        "3",
        "--credentials",
        str(broker.folder / "credentials.json"),
    ]
    assert main(argv) == 0
    assert "published 6 SOS alerts" in capsys.readouterr().out
    wait_for(lambda: len(running.alerts()) == 6, timeout_s=5, what="6 signed simulated presses stored")
    assert sum(running.http.get("/api/metrics").json()["rejected"].values()) == 0
    with running.service.store.engine.connect() as conn:
        counters = conn.execute(select(AlertRow.device_counter)).scalars().all()
    assert len(counters) == 6 and all(c is not None for c in counters)
    # without the credentials file the simulator is anonymous: the broker refuses it
    assert main(argv[:-2]) == 1
    assert "refused the simulator's connection: Not authorized" in capsys.readouterr().err
