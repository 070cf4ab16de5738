"""Helpers for tests that talk to the real broker and the real HTTP API."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqtt_bridge import Topics, new_client, parse_mqtt_url

T = TypeVar("T")


def now_rfc3339(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat().replace("+00:00", "Z")


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
