"""``python -m bench.mqtt_findings``: what Mosquitto does to QoS 1 messages when a subscriber goes away.

The ingest design of replicas (README "Replicas", docs/scaling.md) rests on these measurements, made
on a Mosquitto of the script's own (rendered from ``deploy/mosquitto.conf``, a free port) with
paho-mqtt 2.x MQTT 5 clients, manual acknowledgement, QoS 1 publishes and subscriptions:

``share_close`` (mosquitto#2662)
    Three members of ``$share/g/...`` with non-persistent sessions (``clean_start``, Session Expiry 0).
    One member receives its share but never sends PUBACK, then disconnects. Are its in-flight messages
    handed to the two others?
``share_persistent`` (mosquitto#1747)
    Three members with persistent sessions (Session Expiry 300 s); two disconnect (their sessions stay).
    What share of new messages does the survivor get, and are the rest delivered when the absent
    members reconnect with their client ids?
``share_sigkill`` / ``share_sigkill_persistent``
    A member process holding unacknowledged messages is SIGKILLed. Do the others get them? Does a
    restart with the same client id (``clean_start=False``) get them again?
``fanout_sigkill``
    No sharing: every member subscribes to the plain filter with its own persistent session (every
    replica sees every press; the database decides who commits). A member holding unacknowledged
    messages is SIGKILLed: the survivors have them anyway; does its restart get them again?

Each scenario prints and returns its counts (``--json`` for the whole record). ``--quick`` uses fewer
messages and shorter waits (tests/bench/test_mqtt_findings.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bench.chaos import Broker

__all__ = ["SCENARIOS", "Member", "main", "run"]

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Member:
    """One subscriber: records what it received; acknowledges it unless ``hold``."""

    url_port: int
    client_id: str
    filter: str
    persistent: bool
    hold: bool = False
    received: list[str] = field(default_factory=list)
    duplicates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe([(self.filter, SubscribeOptions(qos=1))])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = msg.payload.decode()
        with self.lock:
            if body in self.received:
                self.duplicates += 1
            else:
                self.received.append(body)
        if not self.hold:
            client.ack(msg.mid, msg.qos)

    def connect(self) -> Member:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300 if self.persistent else 0
        self.client.connect("127.0.0.1", self.url_port, clean_start=not self.persistent, properties=props)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            msg = f"{self.client_id} was not subscribed within 10 s"
            raise TimeoutError(msg)
        return self

    def close(self) -> None:
        """DISCONNECT (the session stays if persistent) and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def got(self) -> set[str]:
        with self.lock:
            return set(self.received)


def _publish(port: int, topic: str, n: int, tag: str) -> list[str]:
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    bodies = [f"{tag}-{i}" for i in range(n)]
    for body in bodies:
        pub.publish(topic, body, qos=1).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    return bodies


def _wait(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def _union(members: list[Member]) -> set[str]:
    out: set[str] = set()
    for m in members:
        out |= m.got()
    return out


def share_close(port: int, n: int, wait_s: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    topic = f"f/{tag}/alert"
    flt = f"$share/g{tag}/{topic}"
    a, b = (Member(port, f"{tag}-{x}", flt, persistent=False).connect() for x in "ab")
    c = Member(port, f"{tag}-c", flt, persistent=False, hold=True).connect()
    sent = _publish(port, topic, n, tag)
    _wait(lambda: len(_union([a, b, c])) >= n, wait_s)
    held = c.got()
    c.close()
    _wait(lambda: held <= _union([a, b]), wait_s)
    survivors = _union([a, b])
    for m in (a, b):
        m.close()
    return {
        "sent": len(sent),
        "held_by_closed_member": len(held),
        "of_those_redelivered_to_others": len(held & survivors),
        "lost": len(set(sent) - survivors),
    }


def share_persistent(port: int, n: int, wait_s: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    topic = f"f/{tag}/alert"
    flt = f"$share/g{tag}/{topic}"
    members = [Member(port, f"{tag}-{x}", flt, persistent=True).connect() for x in "abc"]
    members[1].close()
    members[2].close()
    sent = _publish(port, topic, n, tag)
    _wait(lambda: len(members[0].got()) >= n, wait_s)
    survivor = members[0].got()
    back = [Member(port, f"{tag}-{x}", flt, persistent=True).connect() for x in "bc"]
    _wait(lambda: len(_union([members[0], *back])) >= n, wait_s)
    total = _union([members[0], *back])
    for m in (members[0], *back):
        m.close()
    return {
        "sent": len(sent),
        "members": 3,
        "absent_members": 2,
        "survivor_received": len(survivor),
        "delivered_on_reconnect_of_absent": len(total - survivor),
        "lost": len(set(sent) - total),
    }


def _member_process(port: int, client_id: str, flt: str, persistent: bool) -> subprocess.Popen[str]:
    """A member in a process of its own that receives and never acknowledges (printing each body)."""
    cmd = [sys.executable, "-m", "bench.mqtt_findings", "--member", str(port), client_id, flt, str(int(persistent))]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _read_lines(proc: subprocess.Popen[str], into: list[str]) -> threading.Thread:
    def run() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            into.append(line.strip())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _sigkill_scenario(port: int, n: int, wait_s: float, *, share: bool, persistent: bool) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    topic = f"f/{tag}/alert"
    flt = f"$share/g{tag}/{topic}" if share else topic
    others = [Member(port, f"{tag}-{x}", flt, persistent=persistent).connect() for x in "ab"]
    lines: list[str] = []
    proc = _member_process(port, f"{tag}-k", flt, persistent)
    _read_lines(proc, lines)
    if not _wait(lambda: "ready" in lines, 20):
        proc.kill()
        msg = "member process did not subscribe within 20 s"
        raise TimeoutError(msg)
    sent = _publish(port, topic, n, tag)
    if share:  # every message is with one member
        _wait(lambda: len(_union(others)) + len(lines) - 1 >= n, wait_s)
    else:  # every member has every message
        _wait(lambda: len(lines) - 1 >= n and all(len(m.got()) >= n for m in others), wait_s)
    held = {x for x in lines if x != "ready"}
    t_kill = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if share:
        _wait(lambda: held <= _union(others), wait_s)
    to_others = held & _union(others)  # fan-out: the others had them all along
    redelivery_s = time.monotonic() - t_kill if to_others and share else None
    lines2: list[str] = []
    proc2 = _member_process(port, f"{tag}-k", flt, persistent)
    _read_lines(proc2, lines2)
    _wait(lambda: held <= set(lines2), wait_s if persistent else min(wait_s, 3.0))
    on_restart = held & set(lines2)
    proc2.send_signal(signal.SIGKILL)
    proc2.wait()
    everyone = _union(others) | on_restart
    for m in others:
        m.close()
    return {
        "sent": len(sent),
        "shared": share,
        "persistent_sessions": persistent,
        "held_unacked_by_killed_member": len(held),
        "of_those_with_other_members": len(to_others),
        "seconds_kill_to_all_redelivered": None if redelivery_s is None else round(redelivery_s, 2),
        "of_those_redelivered_on_restart_same_id": len(on_restart),
        "lost": len(set(sent) - everyone),
    }


SCENARIOS: dict[str, Callable[[int, int, float], dict[str, Any]]] = {
    "share_close": share_close,
    "share_persistent": share_persistent,
    "share_sigkill": lambda p, n, w: _sigkill_scenario(p, n, w, share=True, persistent=False),
    "share_sigkill_persistent": lambda p, n, w: _sigkill_scenario(p, n, w, share=True, persistent=True),
    "fanout_sigkill": lambda p, n, w: _sigkill_scenario(p, n, w, share=False, persistent=True),
}


def run(*, n: int = 30, wait_s: float = 5.0, only: list[str] | None = None) -> dict[str, Any]:
    """Run the scenarios on a broker of our own; the counts by scenario, and the broker's version."""
    version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    out: dict[str, Any] = {"broker": version.strip(), "messages_per_scenario": n}
    with tempfile.TemporaryDirectory(prefix="qorgau-findings-") as tmp:
        broker = Broker(Path(tmp) / "mosquitto")
        broker.start()
        try:
            for name, fn in SCENARIOS.items():
                if only and name not in only:
                    continue
                out[name] = fn(broker.port, n, wait_s)
        finally:
            broker.stop()
    return out


def _member_main(port: int, client_id: str, flt: str, persistent: bool) -> None:
    m = Member(port, client_id, flt, persistent=persistent, hold=True)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        print(msg.payload.decode(), flush=True)

    m.client.on_message = on_message
    m.connect()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt_findings", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 messages, shorter waits")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--json", type=Path, help="write the record here too")
    parser.add_argument("--member", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.member:
        port, client_id, flt, persistent = args.member
        _member_main(int(port), client_id, flt, persistent == "1")
        return 0
    record = run(n=10 if args.quick else 30, wait_s=3.0 if args.quick else 6.0, only=args.only)
    print(json.dumps(record, indent=2))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
