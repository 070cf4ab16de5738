"""The MQTT side of dispatch: alerts in, acknowledgements out, nothing lost.

Delivery guarantees
-------------------
- MQTT 5, QoS 1, a fixed client id and ``clean_start=False`` with a Session Expiry Interval: while
  the service is down the broker keeps the subscriptions and queues the alerts.
- Manual acknowledgement: the PUBACK for an incoming message is sent only after the dispatch service
  has committed the alert (and queued the device's ack). If the store is down the bridge keeps
  retrying that message and acknowledges nothing, so the broker keeps the rest.
- A redelivered message carries the same ``event_id``; the service ingests it once and the bridge
  re-sends the same accepted ack.
- Bad input is answered with a ``rejected`` ack (where the sender has an ack topic), logged and
  counted by reason; the bridge acknowledges it so it is not redelivered, and goes on.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from dispatch import Ack, DispatchService, Order, StoreError
from dispatch.supervision import DeviceSupervisor
from mqtt_bridge.broker import BrokerAddress, new_client, parse_mqtt_url
from mqtt_bridge.topics import DEFAULT_TOPIC_ROOT, Route, Topics

__all__ = ["MqttBridge"]

log = logging.getLogger(__name__)

QOS = 1


class MqttBridge:
    """Feeds MQTT messages to a :class:`~dispatch.DispatchService` and publishes its acks.

    Implements :class:`dispatch.Notifier`; :meth:`start` attaches the bridge to the service.

    Parameters
    ----------
    service
        Where payloads go.
    url
        The broker, ``mqtt://host:port`` or ``mqtts://user:password@host:port``.
    topic_root
        Prefix of every topic (tests use a unique root each).
    client_id
        Fixed client id: the broker keys the persistent session by it.
    session_expiry_s
        How long the broker keeps the session (and queues alerts) while the bridge is away.
    keepalive_s
        MQTT keep-alive.
    store_retry_s
        Wait between attempts when the store is down (doubles up to 10x this).
    supervisor
        Takes SOS buttons' heartbeats and statuses (supervision); None: they are acknowledged and dropped.

    Examples
    --------
    >>> bridge = MqttBridge(service, url="mqtt://127.0.0.1:1883").start()  # doctest: +SKIP
    >>> bridge.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        service: DispatchService,
        *,
        url: str = "mqtt://127.0.0.1:1883",
        topic_root: str = DEFAULT_TOPIC_ROOT,
        client_id: str = "qorgau-dispatch",
        session_expiry_s: int = 7 * 24 * 3600,
        keepalive_s: int = 30,
        store_retry_s: float = 0.5,
        supervisor: DeviceSupervisor | None = None,
    ) -> None:
        if session_expiry_s <= 0:
            msg = f"session_expiry_s must be positive for a persistent session, got {session_expiry_s!r}"
            raise ValueError(msg)
        if not client_id:
            msg = "client_id must be a fixed non-empty string: the broker keys the persistent session by it"
            raise ValueError(msg)
        self.service = service
        self.address: BrokerAddress = parse_mqtt_url(url)
        self.topics = Topics(topic_root)
        self.client_id = client_id
        self.session_expiry_s = int(session_expiry_s)
        self.keepalive_s = keepalive_s
        self.store_retry_s = store_retry_s
        self.supervisor = supervisor
        self._client = new_client(self.address, client_id=client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        # paho lets 20 QoS 1 publishes wait for their PUBACK at once. Our acks' PUBACKs queue
        # behind every alert the broker has already pushed to us, so under a burst 20 in flight
        # starved the acks (274 of 6,000 in time at 100 presses/s): allow many more.
        self._client.max_inflight_messages_set(1000)
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._connect_error: str | None = None
        self._sub_mid: int | None = None

    def __repr__(self) -> str:
        return f"MqttBridge({str(self.address)!r}, topic_root={self.topics.root!r}, client_id={self.client_id!r})"

    # life cycle ---------------------------------------------------------------------------

    def start(self, *, timeout_s: float = 10.0) -> MqttBridge:
        """Connect, resume the persistent session, subscribe and run paho's loop in its thread.

        Raises
        ------
        ConnectionError
            If the broker cannot be reached or refuses the connection or the subscriptions.
        """
        self.service.attach_notifier(self)
        self._stopping.clear()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        try:
            self._client.connect(
                self.address.host,
                self.address.port,
                keepalive=self.keepalive_s,
                clean_start=False,
                properties=props,
            )
        except OSError as e:
            msg = f"cannot reach the MQTT broker at {self.address}: {e}"
            raise ConnectionError(msg) from e
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s) or self._connect_error:
            reason = self._connect_error or f"no subscription acknowledgement within {timeout_s} s"
            self._client.loop_stop()
            msg = f"MQTT broker at {self.address} did not accept {self!r}: {reason}"
            raise ConnectionError(msg)
        log.info("MQTT bridge up: %r subscribed to %s", self, ", ".join(self.topics.subscriptions))
        return self

    def stop(self, *, end_session: bool = False) -> None:
        """Disconnect and stop paho's loop.

        Parameters
        ----------
        end_session
            Ask the broker to discard the session now (Session Expiry Interval 0 on DISCONNECT).
            By default the session survives, and alerts published meanwhile wait for the restart.
        """
        self._stopping.set()
        props = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._client.loop_stop()
        self._connected.clear()
        self._subscribed.clear()
        log.info("MQTT bridge stopped%s", " and its session ended" if end_session else "")

    def is_connected(self) -> bool:
        """Whether the bridge is connected and subscribed (for ``/healthz``)."""
        return self._connected.is_set() and self._subscribed.is_set()

    def socket(self) -> Any:
        """paho's current socket (to check its options), None when disconnected."""
        return self._client.socket()

    # Notifier -----------------------------------------------------------------------------

    def send_ack(self, device_id: str, ack: Ack) -> None:
        """Publish ``ack`` to ``{root}/sos/{device_id}/ack`` at QoS 1."""
        self._publish(self.topics.sos_ack(device_id), ack)

    def send_order(self, unit_id: str, order: Order) -> None:
        """Publish ``order`` to ``{root}/units/{unit_id}/orders`` at QoS 1.

        paho queues it while the connection is down; if it never arrives, the acknowledgement
        deadline escalates the alert.
        """
        self._publish(self.topics.unit_orders(unit_id), order)

    def _publish(self, topic: str, message: Ack | Order, *, properties: Properties | None = None) -> None:
        info = self._client.publish(topic, json.dumps(message.to_json()), qos=QOS, properties=properties)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("publishing to %s failed: %s", topic, mqtt.error_string(info.rc))

    # paho callbacks (paho's loop thread) --------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self._connect_error = f"CONNACK {reason_code}"
            log.error("MQTT broker %s refused the connection: %s", self.address, reason_code)
            self._subscribed.set()  # wake start() to report the error
            return
        self._connect_error = None
        self._connected.set()
        log.info(
            "connected to %s as %r (session %s)",
            self.address,
            self.client_id,
            "resumed" if flags.session_present else "new",
        )
        result, mid = client.subscribe([(f, SubscribeOptions(qos=QOS)) for f in self.topics.subscriptions])
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.error("subscribing failed: %s", mqtt.error_string(result))
        self._sub_mid = mid

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        if mid != self._sub_mid:
            return
        refused = [
            f"{topic}: {rc}"
            for topic, rc in zip(self.topics.subscriptions, reason_codes, strict=False)
            if rc.is_failure
        ]
        if refused:
            self._connect_error = "subscriptions refused: " + "; ".join(refused)
            log.error("MQTT broker refused subscriptions: %s", "; ".join(refused))
        self._subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        self._connected.clear()
        self._subscribed.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from %s (%s); paho reconnects", self.address, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            handled = self._handle(msg)
        except Exception:  # never let input or a bug kill paho's loop
            log.exception("unexpected error on a message on %r; acknowledging it to go on", msg.topic)
            handled = True
        if handled:
            client.ack(msg.mid, msg.qos)

    # routing ------------------------------------------------------------------------------

    def _handle(self, msg: mqtt.MQTTMessage) -> bool:
        """Process one message; True when it may be acknowledged (False: stopping before commit)."""
        route = self.topics.route(msg.topic)
        if route is None:
            log.warning("ignoring a message on unexpected topic %r", msg.topic)
            return True
        kind, ident = route
        payload = bytes(msg.payload)
        while True:
            try:
                if kind is Route.SOS_ALERT:
                    assert ident is not None
                    self.service.ingest_sos(ident, payload)  # the service sends the ack itself
                # -- supervision (issue 6): one call per route, dispatch.supervision does the rest
                elif kind is Route.SOS_HEARTBEAT:
                    assert ident is not None
                    if self.supervisor is not None:
                        self.supervisor.heartbeat(ident, payload)
                elif kind is Route.SOS_STATUS:
                    assert ident is not None
                    if self.supervisor is not None:
                        self.supervisor.report_status(ident, payload)
                # -- end supervision
                elif kind is Route.APP102_REPORT:
                    ack = self.service.ingest_app102(payload)
                    self._reply(msg, ack)
                elif kind is Route.UNIT_STATUS:
                    assert ident is not None
                    self.service.report_unit_status(ident, payload)
                elif kind is Route.UNIT_ACK:
                    assert ident is not None
                    self.service.report_unit_ack(ident, payload)
                else:
                    assert ident is not None
                    self.service.update_unit_position(ident, payload)
                return True
            except StoreError as e:
                if self._wait_for_store(e, msg):
                    continue
                return False

    def _wait_for_store(self, error: StoreError, msg: mqtt.MQTTMessage) -> bool:
        """Back off while the store is down; False if the bridge is stopping (leave unacknowledged)."""
        delay = self.store_retry_s
        log.error("store unavailable, message on %r not acknowledged; retrying: %s", msg.topic, error)
        while not self._stopping.is_set():
            if self._stopping.wait(delay):
                break
            if self.service.store.ping():
                return True
            delay = min(delay * 2, self.store_retry_s * 10)
        return False

    def _reply(self, msg: mqtt.MQTTMessage, ack: Ack) -> None:
        """Send a 102 report's ack to its MQTT 5 Response Topic, if it named an allowed one."""
        props = getattr(msg, "properties", None)
        topic = getattr(props, "ResponseTopic", None)
        if not topic:
            return
        if not self.topics.is_app102_response_topic(topic):
            log.warning(
                "ignoring Response Topic %r of a 102 report: it must start with %r",
                topic,
                self.topics.app102_ack_prefix,
            )
            return
        reply = Properties(PacketTypes.PUBLISH)
        correlation = getattr(props, "CorrelationData", None)
        if correlation:
            reply.CorrelationData = correlation
        self._publish(topic, ack, properties=reply)
