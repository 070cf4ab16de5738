"""The MQTT side of dispatch: alerts in, acknowledgements out, nothing lost.

Delivery guarantees
-------------------
- MQTT 5, QoS 1, fixed client ids and ``clean_start=False`` with a Session Expiry Interval: while
  the service is down the broker keeps the subscriptions and queues the alerts.
- Manual acknowledgement: the PUBACK for an incoming message is sent only after the dispatch service
  has committed the alert (and queued the device's ack). If the store is down the bridge stops
  acknowledging, keeps the batch and retries it with backoff; the broker keeps the rest.
- A redelivered message carries the same ``event_id``; the service ingests it once and the bridge
  re-sends the same accepted ack.
- Bad input is answered with a ``rejected`` ack (where the sender has an ack topic), logged and
  counted by reason; the bridge acknowledges it so it is not redelivered, and goes on.

Lanes, batches and bounded memory
---------------------------------
paho's network thread only files each message into the queue of its lane (:class:`Lane`); one
worker thread serves the queues, the SOS lane always first, and hands each batch of alerts to
:meth:`dispatch.DispatchService.ingest_many`, which commits it in one transaction (group commit).
So paho keeps reading and writing (acks are never starved by ingest), a burst costs one commit per
batch instead of one per alert, and a flood of 102 reports or unit positions never holds an SOS
press back. Each lane has its own MQTT connection whose Receive Maximum caps how many unacknowledged
messages the broker hands it, which leaves the backlog at the broker and keeps a full 102 window
from blocking the SOS connection. Mosquitto 2.0 honours that window only at first (measured: with
a window of 8 it later handed over 312 of 400 unacknowledged messages), so each queue also has a
hard cap of its own. While a lane's queue is at its cap, its connection stops reading the socket
(TCP flow control: the broker keeps the backlog and nothing is parsed for nothing), for at most a
third of the keep-alive; after that a message beyond the cap is read but left unacknowledged (the
broker keeps it), and once the queue has drained the lane reconnects, which makes the broker send
every unacknowledged message again. Memory stays bounded whatever the burst, and nothing is lost.

A PUBACK is only sent on the connection (and connection attempt, the *epoch*) that delivered the
message: after a reconnect, the broker redelivers what was not acknowledged, and an old packet id
must never acknowledge a new message.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from dispatch import APP102_SENDER, Ack, AlertSource, DispatchService, Inbound, Order, PatrolPlan, StoreError
from dispatch.supervision import DeviceSupervisor
from mqtt_bridge.broker import BrokerAddress, new_client, parse_mqtt_url
from mqtt_bridge.topics import DEFAULT_TOPIC_ROOT, LANE_OF, Lane, Route, Topics

__all__ = ["LATENCY_BUCKETS_S", "BridgeStats", "MqttBridge"]

log = logging.getLogger(__name__)

QOS = 1

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds of the receive -> acknowledged latency histogram (seconds)."""

_DEFAULT_RECEIVE_MAXIMUM = {Lane.SOS: 256, Lane.UNITS: 512, Lane.APP102: 256, Lane.DEVICES: 512}
_REPLICA_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_RESTART_RETRY_S = 0.5
_RESTART_RETRY_MAX_S = 5.0
"""A shed lane whose reconnect failed tries again after 0.5 s, doubling up to 5 s."""

_RECONNECT_MIN_S = 0.25
_RECONNECT_MAX_S = 0.5
"""paho's reconnect after a lost connection: 0.25 s, then every 0.5 s until the broker answers."""

_DEFAULT_BATCH = {Lane.SOS: 128, Lane.UNITS: 256, Lane.APP102: 8, Lane.DEVICES: 256}
"""A 102 batch is small: an SOS press arriving meanwhile waits for at most one such batch."""


@dataclass(slots=True)
class _Item:
    """One received message waiting in its lane."""

    route: Route
    ident: str | None
    payload: bytes
    mid: int
    qos: int
    conn: _Connection
    epoch: int
    received: float  # time.monotonic() when paho handed it over
    props: Any


@dataclass(frozen=True, slots=True)
class BridgeStats:
    """A snapshot of the bridge's counters (for ``/healthz`` and ``/metrics``).

    Attributes
    ----------
    received
        Messages received, by route (``"other"`` for unexpected topics).
    acknowledged
        PUBACKs sent (the message is done with).
    unacknowledged_reconnect
        Messages processed after their connection had dropped: not acknowledged, the broker
        redelivers them and the service answers the redelivery idempotently.
    queue_depth
        Messages waiting per lane.
    connected
        Whether each lane's connection is up and subscribed.
    batches, store_retries
        Batches served; attempts again after a store error.
    holds, shed, restarts
        Times a lane stopped reading because its queue was full; messages left unacknowledged
        (kept by the broker) because their lane's queue was full; lane reconnects that had the
        broker send them again.
    latency_buckets, latency_count, latency_sum_s
        Receive -> acknowledged latency histogram (cumulative counts per bound of
        :data:`LATENCY_BUCKETS_S`, then +Inf).
    last_processed_age_s
        Seconds since a message was last done with, None before the first.
    store_waiting
        Whether the worker is waiting for the database to come back.
    """

    received: dict[str, int]
    acknowledged: int
    unacknowledged_reconnect: int
    queue_depth: dict[str, int]
    connected: dict[str, bool]
    batches: int
    store_retries: int
    holds: int
    shed: int
    restarts: int
    latency_buckets: tuple[int, ...]
    latency_count: int
    latency_sum_s: float
    last_processed_age_s: float | None
    store_waiting: bool


class _HoldingClient(mqtt.Client):
    """A paho client whose network thread can stop reading while its lane's queue is full.

    Writing (PUBACKs, acks, pings) goes on; only reading waits, so TCP flow control holds the
    broker back. ``hold`` is asked before every read.
    """

    hold: Callable[[], bool] | None = None

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self.hold is not None and self.hold():
            time.sleep(0.002)  # the socket stays readable: do not spin
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super().loop_read(max_packets)


class _Connection:
    """One of the bridge's MQTT connections: a lane's persistent session and in-flight window."""

    def __init__(self, bridge: MqttBridge, lane: Lane, client_id: str, receive_maximum: int) -> None:
        self.bridge = bridge
        self.lane = lane
        self.client_id = client_id
        self.filters = bridge.topics.lane_subscriptions(lane)
        self.receive_maximum = receive_maximum
        self.client = new_client(bridge.address, client_id=client_id, manual_ack=True, client_class=_HoldingClient)
        self.client.hold = self._hold
        self._held_since: float | None = None
        self.holds = 0
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        # paho doubles the delay from min to max; its int annotation notwithstanding, the delays are
        # seconds in float arithmetic. 1 s doubling to 30 s turned a 2.1 s broker restart into 3 s
        # without acks; a refused connect every half second per lane costs the broker nothing.
        self.client.reconnect_delay_set(min_delay=_RECONNECT_MIN_S, max_delay=_RECONNECT_MAX_S)  # type: ignore[arg-type]
        # Acks and orders we publish wait for their PUBACK; under a burst 20 in flight (paho's
        # default) starved them: allow many more.
        self.client.max_inflight_messages_set(1000)
        self.lock = threading.Lock()  # epoch changes vs. PUBACKs
        self.epoch = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connect_error: str | None = None
        self._sub_mid: int | None = None
        self.shed = 0  # messages left unacknowledged since the last connect because the queue was full
        self._restarting = False

    def __repr__(self) -> str:
        return f"_Connection({self.lane.value!r}, client_id={self.client_id!r})"

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's Properties.__init__ is unannotated
        props.SessionExpiryInterval = self.bridge.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        try:
            self.client.connect(
                self.bridge.address.host,
                self.bridge.address.port,
                keepalive=self.bridge.keepalive_s,
                clean_start=False,
                properties=props,
            )
        except OSError as e:
            msg = f"cannot reach the MQTT broker at {self.bridge.address}: {e}"
            raise ConnectionError(msg) from e
        self.client.loop_start()

    def _hold(self) -> bool:
        """Whether to leave the socket unread now: the lane's queue is full, for a short while."""
        if len(self.bridge._queues[self.lane]) < self.bridge.queue_limit[self.lane]:  # noqa: SLF001 - a connection is part of its bridge (this module)
            self._held_since = None
            return False
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
            self.holds += 1
        # Past a third of the keep-alive, read (and leave beyond the cap to the broker) so that
        # PINGRESPs get through and neither side drops the connection.
        return now - self._held_since < self.bridge.keepalive_s / 3

    def restart(self) -> None:
        """Reconnect (same session), so the broker sends again what was left unacknowledged."""
        self._restarting = True
        try:
            self.client.disconnect()
            self.client.loop_stop()
            self.connect()
        finally:
            self._restarting = False

    def ack(self, item: _Item) -> bool:
        """PUBACK ``item`` if the connection that delivered it is still the current one."""
        with self.lock:
            if item.epoch != self.epoch or not self.connected.is_set():
                return False
            self.client.ack(item.mid, item.qos)
            return True

    def is_up(self) -> bool:
        return self.connected.is_set() and self.subscribed.is_set()

    # paho callbacks (this connection's network thread) -------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.connect_error = f"CONNACK {reason_code}"
            log.error("MQTT broker %s refused %r: %s", self.bridge.address, self, reason_code)
            self.subscribed.set()  # wake start() to report the error
            return
        with self.lock:
            self.epoch += 1
            self.connected.set()
        self.connect_error = None
        log.info(
            "connected to %s as %r (session %s)",
            self.bridge.address,
            self.client_id,
            "resumed" if flags.session_present else "new",
        )
        if flags.session_present:
            # A resumed session holds its subscriptions: they are in force now. The broker sends the
            # session's backlog before the SUBACK of the SUBSCRIBE below, and a lane whose queue is
            # full stops reading its socket, so waiting for that SUBACK could outlast start()'s
            # timeout: a replica restarted with a backlog exited and restarted in a loop
            # (chaos --replicas). The SUBSCRIBE still goes out (new filters of a new version);
            # a refusal is still reported by _on_subscribe.
            self.subscribed.set()
        result, mid = client.subscribe([(f, SubscribeOptions(qos=QOS)) for f in self.filters])
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.error("subscribing %r failed: %s", self, mqtt.error_string(result))
        self._sub_mid = mid

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        if mid != self._sub_mid:
            return
        refused = [f"{topic}: {rc}" for topic, rc in zip(self.filters, reason_codes, strict=False) if rc.is_failure]
        if refused:
            self.connect_error = "subscriptions refused: " + "; ".join(refused)
            log.error("MQTT broker refused subscriptions of %r: %s", self, "; ".join(refused))
        self.subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        with self.lock:
            self.epoch += 1  # nothing delivered before this may be acknowledged from now on
            self.connected.clear()
        self.subscribed.clear()
        if not self.bridge._stopping.is_set() and not self._restarting:  # noqa: SLF001 - a connection is part of its bridge (this module)
            log.warning("%r disconnected from %s (%s); paho reconnects", self, self.bridge.address, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.bridge._file(self, msg)  # noqa: SLF001 - a connection is part of its bridge (this module)
        except Exception:  # never let input or a bug kill paho's loop
            log.exception("unexpected error filing a message on %r; acknowledging it to go on", msg.topic)
            client.ack(msg.mid, msg.qos)


class MqttBridge:
    """Feeds MQTT messages to a :class:`~dispatch.DispatchService` and publishes its acks.

    Implements :class:`dispatch.Notifier` and :class:`dispatch.PlanSender`; :meth:`start` attaches
    the bridge to the service.

    Parameters
    ----------
    service
        Where payloads go.
    url
        The broker, ``mqtt://host:port`` or ``mqtts://user:password@host:port``.
    topic_root
        Prefix of every topic (tests use a unique root each).
    client_id
        Fixed client id of the SOS lane; the other lanes use ``{client_id}-units``,
        ``{client_id}-app102`` and ``{client_id}-devices``. The broker keys each persistent session by its id.
        With ``replica``, this is the group's name and every id gets the replica's name after it.
    replica
        This replica's name, when several replicas share ``client_id``: each has its own persistent
        sessions (``{client_id}-{replica}``, ``{client_id}-{replica}-units``, ...) on the plain topics,
        so every replica receives every message and the store's event-id uniqueness decides which
        one commits (docs/scaling.md: shared subscriptions lose or park a dead member's messages on
        Mosquitto 2.0). It must stay the same across the replica's restarts, or its queue is stranded.
    session_expiry_s
        How long the broker keeps the sessions (and queues alerts) while the bridge is away.
    keepalive_s
        MQTT keep-alive.
    store_retry_s
        Wait between attempts when the store is down (doubles up to 10x this).
    receive_maximum
        Per lane, how many unacknowledged messages the broker may hand the bridge at once (the
        bound on the bridge's queues).
    batch_size
        Per lane, the most messages served (committed) together.
    supervisor
        Takes SOS buttons' heartbeats and statuses (supervision); None: they are acknowledged and dropped.
    queue_limit
        Per lane, the most messages held (default: its ``receive_maximum``); beyond it a message
        is left to the broker (see the module's notes).

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
        replica: str | None = None,
        session_expiry_s: int = 7 * 24 * 3600,
        keepalive_s: int = 30,
        store_retry_s: float = 0.5,
        receive_maximum: dict[Lane, int] | None = None,
        batch_size: dict[Lane, int] | None = None,
        queue_limit: dict[Lane, int] | None = None,
        supervisor: DeviceSupervisor | None = None,
    ) -> None:
        if session_expiry_s <= 0:
            msg = f"session_expiry_s must be positive for a persistent session, got {session_expiry_s!r}"
            raise ValueError(msg)
        if not client_id:
            msg = "client_id must be a fixed non-empty string: the broker keys the persistent session by it"
            raise ValueError(msg)
        if replica is not None and not _REPLICA_ID.fullmatch(replica):
            msg = f"replica must be 1-64 letters, digits, '.', '_' or '-' (it is part of MQTT client ids), got {replica!r}"
            raise ValueError(msg)
        windows = {**_DEFAULT_RECEIVE_MAXIMUM, **(receive_maximum or {})}
        self.batch_size = {**_DEFAULT_BATCH, **(batch_size or {})}
        self.queue_limit = {**windows, **(queue_limit or {})}
        for name, values in (
            ("receive_maximum", windows),
            ("batch_size", self.batch_size),
            ("queue_limit", self.queue_limit),
        ):
            bad = {lane.value: n for lane, n in values.items() if not 1 <= n <= 65535}
            if bad:
                msg = f"{name} must be between 1 and 65535 per lane, got {bad}"
                raise ValueError(msg)
        self.service = service
        self.supervisor = supervisor
        self.address: BrokerAddress = parse_mqtt_url(url)
        self.topics = Topics(topic_root)
        self.client_id = client_id
        self.replica = replica
        session_id = client_id if replica is None else f"{client_id}-{replica}"
        self.session_expiry_s = int(session_expiry_s)
        self.keepalive_s = keepalive_s
        self.store_retry_s = store_retry_s
        self._stopping = threading.Event()
        self._conns = {
            lane: _Connection(
                self, lane, session_id if lane is Lane.SOS else f"{session_id}-{lane.value}", windows[lane]
            )
            for lane in Lane
        }
        self._queues: dict[Lane, deque[_Item]] = {lane: deque() for lane in Lane}
        self._wake = threading.Condition()
        self._turn = 0  # rotates the other lanes when no SOS press waits
        self._worker: threading.Thread | None = None
        self._stats_lock = threading.Lock()
        self._restart_lock = threading.Lock()  # one reconnect of a shed lane at a time (worker or retry timer)
        self._received: Counter[str] = Counter()
        self._acknowledged = 0
        self._unacked_reconnect = 0
        self._batches = 0
        self._store_retries = 0
        self._shed = 0
        self._restarts = 0
        self._latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._latency_sum = 0.0
        self._last_processed: float | None = None
        self._store_waiting = False

    def __repr__(self) -> str:
        return f"MqttBridge({str(self.address)!r}, topic_root={self.topics.root!r}, client_id={self.client_id!r})"

    # life cycle ---------------------------------------------------------------------------

    def start(self, *, timeout_s: float = 10.0) -> MqttBridge:
        """Start the worker, connect every lane, resume the persistent sessions and subscribe.

        Raises
        ------
        ConnectionError
            If the broker cannot be reached or refuses a connection or the subscriptions.
        """
        self.service.attach_notifier(self)
        self._stopping.clear()
        self._worker = threading.Thread(target=self._work, name="qorgau-bridge-worker", daemon=True)
        self._worker.start()
        deadline = time.monotonic() + timeout_s
        try:
            for conn in self._conns.values():
                conn.connect()
            for conn in self._conns.values():
                if not conn.subscribed.wait(max(0.0, deadline - time.monotonic())) or conn.connect_error:
                    reason = conn.connect_error or f"no subscription acknowledgement within {timeout_s} s"
                    msg = f"MQTT broker at {self.address} did not accept {conn!r}: {reason}"
                    raise ConnectionError(msg)
        except ConnectionError:
            self._halt(end_session=False)
            raise
        log.info("MQTT bridge up: %r subscribed to %s", self, ", ".join(self.topics.subscriptions))
        return self

    def stop(self, *, end_session: bool = False) -> None:
        """Finish the batch in hand, then disconnect every lane.

        Messages still queued are not acknowledged: the broker delivers them again next time.

        Parameters
        ----------
        end_session
            Ask the broker to discard the sessions now (Session Expiry Interval 0 on DISCONNECT).
            By default they survive, and alerts published meanwhile wait for the restart.
        """
        self._halt(end_session=end_session)
        log.info("MQTT bridge stopped%s", " and its sessions ended" if end_session else "")

    def _halt(self, *, end_session: bool) -> None:
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        for conn in self._conns.values():
            props = None
            if end_session:
                props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]  # paho's Properties.__init__ is unannotated
                props.SessionExpiryInterval = 0
            conn.client.disconnect(properties=props)
            conn.client.loop_stop()
            conn.connected.clear()
            conn.subscribed.clear()
        for queue in self._queues.values():
            queue.clear()

    def is_connected(self) -> bool:
        """Whether every lane is connected and subscribed (for ``/healthz``)."""
        return all(conn.is_up() for conn in self._conns.values())

    def socket(self) -> Any:
        """The SOS lane's current socket (to check its options), None when disconnected."""
        return self._conns[Lane.SOS].client.socket()

    def stats(self) -> BridgeStats:
        """The bridge's counters now."""
        with self._stats_lock:
            cumulative, total = [], 0
            for n in self._latency_counts:
                total += n
                cumulative.append(total)
            return BridgeStats(
                received=dict(self._received),
                acknowledged=self._acknowledged,
                unacknowledged_reconnect=self._unacked_reconnect,
                queue_depth={lane.value: len(q) for lane, q in self._queues.items()},
                connected={lane.value: conn.is_up() for lane, conn in self._conns.items()},
                batches=self._batches,
                store_retries=self._store_retries,
                holds=sum(conn.holds for conn in self._conns.values()),
                shed=self._shed,
                restarts=self._restarts,
                latency_buckets=tuple(cumulative),
                latency_count=total,
                latency_sum_s=self._latency_sum,
                last_processed_age_s=None if self._last_processed is None else time.monotonic() - self._last_processed,
                store_waiting=self._store_waiting,
            )

    # Notifier -----------------------------------------------------------------------------

    def send_ack(self, device_id: str, ack: Ack) -> None:
        """Publish ``ack`` to ``{root}/sos/{device_id}/ack`` at QoS 1."""
        self._publish(self._conns[Lane.SOS], self.topics.sos_ack(device_id), ack)

    def send_order(self, unit_id: str, order: Order) -> None:
        """Publish ``order`` to ``{root}/units/{unit_id}/orders`` at QoS 1.

        paho queues it while the connection is down; if it never arrives, the acknowledgement
        deadline escalates the alert.
        """
        self._publish(self._conns[Lane.SOS], self.topics.unit_orders(unit_id), order)

    def send_plan(self, unit_id: str, plan: PatrolPlan) -> None:
        """Publish ``plan`` to ``{root}/units/{unit_id}/plan`` at QoS 1, retained (implements
        :class:`dispatch.PlanSender`): a unit that connects later still gets its current plan, and
        the next plan issued to it replaces this one at the broker."""
        self._publish(self._conns[Lane.UNITS], self.topics.unit_plan(unit_id), plan, retain=True)

    def _publish(
        self,
        conn: _Connection,
        topic: str,
        message: Ack | Order | PatrolPlan,
        *,
        properties: Properties | None = None,
        retain: bool = False,
    ) -> None:
        info = conn.client.publish(topic, json.dumps(message.to_json()), qos=QOS, retain=retain, properties=properties)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("publishing to %s failed: %s", topic, mqtt.error_string(info.rc))

    # paho side: file the message in its lane ----------------------------------------------

    def _file(self, conn: _Connection, msg: mqtt.MQTTMessage) -> None:
        route = self.topics.route(msg.topic)
        if route is None:
            with self._stats_lock:
                self._received["other"] += 1
            log.warning("ignoring a message on unexpected topic %r", msg.topic)
            conn.client.ack(msg.mid, msg.qos)
            return
        kind, ident = route
        item = _Item(
            route=kind,
            ident=ident,
            payload=bytes(msg.payload),
            mid=msg.mid,
            qos=msg.qos,
            conn=conn,
            epoch=conn.epoch,
            received=time.monotonic(),
            props=getattr(msg, "properties", None),
        )
        lane = LANE_OF[kind]
        with self._stats_lock:
            self._received[kind.value] += 1
        with self._wake:
            if len(self._queues[lane]) >= self.queue_limit[lane]:
                conn.shed += 1  # not acknowledged: the broker keeps it and sends it again after a reconnect
                with self._stats_lock:
                    self._shed += 1
                return
            self._queues[lane].append(item)
            self._wake.notify()

    # the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            lane, items = taken
            try:
                done = self._serve(lane, items)
            except Exception:  # a bug must not stop the worker: log, acknowledge, go on
                log.exception(
                    "unexpected error serving %d messages of the %s lane; acknowledging them", len(items), lane
                )
                done = items
            self._finish(done)
            if len(done) < len(items):  # stopping while the store was down: leave the rest to the broker
                return
            self._resume_shed(lane)

    def _resume_shed(self, lane: Lane, retry_s: float = _RESTART_RETRY_S) -> None:
        """Once a lane that had to leave messages to the broker has drained, reconnect it."""
        if not self._restart_lock.acquire(blocking=False):
            return  # a reconnect is under way (the retry timer's): it takes what was shed
        try:
            reconnected = self._reconnect_shed(lane, retry_s)
        finally:
            self._restart_lock.release()
        if reconnected:
            with self._stats_lock:
                self._restarts += 1

    def _reconnect_shed(self, lane: Lane, retry_s: float) -> bool:
        conn = self._conns[lane]
        with self._wake:
            if not conn.shed or self._queues[lane] or self._stopping.is_set():
                return False
            shed, conn.shed = conn.shed, 0
        log.info(
            "%r: %d messages were left to the broker while its queue was full; reconnecting to get them", conn, shed
        )
        try:
            conn.restart()
        except ConnectionError as e:
            # paho's own loop is gone with the failed reconnect, and a lane without a connection
            # gets no batch that would try again: a timer does (chaos --replicas: an SOS lane shed
            # just before a broker restart stayed down for 17 s, until another lane's batch).
            log.error("could not reconnect %r, trying again in %.1f s: %s", conn, retry_s, e)
            with self._wake:
                conn.shed += shed
            timer = threading.Timer(retry_s, self._resume_shed, args=(lane, min(2 * retry_s, _RESTART_RETRY_MAX_S)))
            timer.daemon = True
            timer.start()
            return False
        return True

    def _take(self) -> tuple[Lane, list[_Item]] | None:
        """The next batch: SOS first; otherwise the units and 102 lanes in turn. None when stopping."""
        with self._wake:
            while not self._stopping.is_set():
                lane = self._next_lane()
                if lane is not None:
                    queue = self._queues[lane]
                    items = [queue.popleft() for _ in range(min(len(queue), self.batch_size[lane]))]
                    return lane, items
                self._wake.wait()
        return None

    def _next_lane(self) -> Lane | None:
        if self._queues[Lane.SOS]:
            return Lane.SOS
        for step in range(len(_ROTATION)):
            lane = _ROTATION[(self._turn + step) % len(_ROTATION)]
            if self._queues[lane]:
                self._turn = (self._turn + step + 1) % len(_ROTATION)
                return lane
        return None

    def _serve(self, lane: Lane, items: list[_Item]) -> list[_Item]:
        """Process a batch; the items that may be acknowledged (all, unless stopping while the store is down)."""
        with self._stats_lock:
            self._batches += 1
        if lane is Lane.UNITS:
            return self._serve_units(items)
        if lane is Lane.DEVICES:
            return self._serve_devices(items)
        while True:
            try:
                self._ingest_alerts(items)
                return items
            except StoreError as e:
                if not self._wait_for_store(e, f"{len(items)} {lane.value} messages"):
                    return []

    def _ingest_alerts(self, items: list[_Item]) -> None:
        inbound = [
            Inbound(AlertSource.SOS, item.ident or "", item.payload, item.received)
            if item.route is Route.SOS_ALERT
            else Inbound(AlertSource.APP102, APP102_SENDER, item.payload, item.received)
            for item in items
        ]
        acks = self.service.ingest_many(inbound)  # SOS acks are sent by the service itself
        for item, ack in zip(items, acks, strict=True):
            if item.route is Route.APP102_REPORT:
                self._reply(item, ack)

    def _serve_units(self, items: list[_Item]) -> list[_Item]:
        """Apply unit messages in order: each run of positions in one call (and one commit)."""
        done = 0
        for run in _runs(items):
            while True:
                try:
                    if run[0].route is Route.UNIT_POSITION:
                        self.service.update_unit_positions([(item.ident or "", item.payload) for item in run])
                    elif run[0].route is Route.UNIT_STATUS:
                        self.service.report_unit_status(run[0].ident or "", run[0].payload)
                    else:
                        self.service.report_unit_ack(run[0].ident or "", run[0].payload)
                    break
                except StoreError as e:
                    if not self._wait_for_store(e, f"{len(run)} {run[0].route.value} messages"):
                        return items[:done]
            done += len(run)
        return items

    def _serve_devices(self, items: list[_Item]) -> list[_Item]:
        """Heartbeats and statuses to the supervisor (in memory; a state change is written)."""
        for i, item in enumerate(items):
            if self.supervisor is None:
                continue
            while True:
                try:
                    if item.route is Route.SOS_HEARTBEAT:
                        self.supervisor.heartbeat(item.ident or "", item.payload)
                    else:
                        self.supervisor.report_status(item.ident or "", item.payload)
                    break
                except StoreError as e:
                    if not self._wait_for_store(e, f"a {item.route.value} of {item.ident!r}"):
                        return items[:i]
        return items

    def _finish(self, items: Sequence[_Item]) -> None:
        """Acknowledge what was done and count its latency."""
        now = time.monotonic()
        acked = stale = 0
        for item in items:
            if item.conn.ack(item):
                acked += 1
            else:
                stale += 1
        if stale:
            log.info(
                "%d processed messages arrived on a connection that has dropped since: the broker redelivers them",
                stale,
            )
        with self._stats_lock:
            self._acknowledged += acked
            self._unacked_reconnect += stale
            for item in items:
                waited = now - item.received
                self._latency_sum += waited
                self._latency_counts[_bucket(waited)] += 1
            if items:
                self._last_processed = now

    def _wait_for_store(self, error: StoreError, what: str) -> bool:
        """Back off while the store is down; False if the bridge is stopping (leave unacknowledged)."""
        delay = self.store_retry_s
        log.error("store unavailable, %s not acknowledged; retrying with backoff: %s", what, error)
        with self._stats_lock:
            self._store_waiting = True
        try:
            while not self._stopping.wait(delay):
                if self.service.store.ping():
                    with self._stats_lock:
                        self._store_retries += 1
                    return True
                delay = min(delay * 2, self.store_retry_s * 10)
            return False
        finally:
            with self._stats_lock:
                self._store_waiting = False

    def _reply(self, item: _Item, ack: Ack) -> None:
        """Send a 102 report's ack to its MQTT 5 Response Topic, if it named an allowed one."""
        topic = getattr(item.props, "ResponseTopic", None)
        if not topic:
            return
        if not self.topics.is_app102_response_topic(topic):
            log.warning(
                "ignoring Response Topic %r of a 102 report: it must start with %r",
                topic,
                self.topics.app102_ack_prefix,
            )
            return
        reply = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho's Properties.__init__ is unannotated
        correlation = getattr(item.props, "CorrelationData", None)
        if correlation:
            reply.CorrelationData = correlation
        self._publish(item.conn, topic, ack, properties=reply)

    def lanes(self) -> Iterator[tuple[Lane, str]]:
        """Each lane and its MQTT client id."""
        for lane, conn in self._conns.items():
            yield lane, conn.client_id


_ROTATION = (Lane.UNITS, Lane.APP102, Lane.DEVICES)
"""The lanes served in turn whenever no SOS press waits."""


def _runs(items: list[_Item]) -> Iterator[list[_Item]]:
    """Consecutive unit positions together; every other message alone."""
    run: list[_Item] = []
    for item in items:
        if item.route is Route.UNIT_POSITION:
            run.append(item)
            continue
        if run:
            yield run
            run = []
        yield [item]
    if run:
        yield run


def _bucket(seconds: float) -> int:
    for i, bound in enumerate(LATENCY_BUCKETS_S):
        if seconds <= bound:
            return i
    return len(LATENCY_BUCKETS_S)
