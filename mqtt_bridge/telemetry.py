"""The bridge's counters for ``/metrics`` (Prometheus) and ``/healthz``.

Metrics (read from :meth:`MqttBridge.stats` at scrape time)::

    qorgau_mqtt_messages_received_total{route}   messages received, by route
    qorgau_mqtt_acknowledged_total               PUBACKs sent (the message is done with)
    qorgau_mqtt_unacknowledged_reconnect_total   processed after their connection dropped (redelivered)
    qorgau_mqtt_holds_total                      times a lane stopped reading because its queue was full
    qorgau_mqtt_shed_total                       left to the broker because a lane's queue was full
    qorgau_mqtt_queue_depth{lane}                messages waiting per lane
    qorgau_mqtt_connected{lane}                  1 when the lane's connection is up and subscribed
    qorgau_mqtt_batches_total                    batches served
    qorgau_mqtt_store_retries_total              batches tried again after the database came back
    qorgau_mqtt_waiting_for_database             1 while the worker waits for the database
    qorgau_ingest_latency_seconds                receive -> acknowledged histogram
    qorgau_mqtt_last_processed_age_seconds       seconds since a message was last done with
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mqtt_bridge.bridge import LATENCY_BUCKETS_S

if TYPE_CHECKING:
    from mqtt_bridge.bridge import MqttBridge

__all__ = ["BridgeCollector", "health"]

STALL_AFTER_S = 30.0
"""A lane with messages waiting and nothing processed for this long is reported stalled."""


class BridgeCollector(Collector):
    """:meth:`MqttBridge.stats` as Prometheus metric families."""

    def __init__(self, bridge: MqttBridge) -> None:
        self.bridge = bridge

    def collect(self) -> Iterator[Metric]:
        s = self.bridge.stats()
        received = CounterMetricFamily(
            "qorgau_mqtt_messages_received", "MQTT messages received, by route.", labels=["route"]
        )
        for route, n in sorted(s.received.items()):
            received.add_metric([route], n)
        yield received
        yield CounterMetricFamily("qorgau_mqtt_acknowledged", "PUBACKs sent.", value=s.acknowledged)
        yield CounterMetricFamily(
            "qorgau_mqtt_unacknowledged_reconnect",
            "Processed after their connection dropped; the broker redelivers them.",
            value=s.unacknowledged_reconnect,
        )
        yield CounterMetricFamily(
            "qorgau_mqtt_holds", "Times a lane stopped reading because its queue was full.", value=s.holds
        )
        yield CounterMetricFamily(
            "qorgau_mqtt_shed", "Left to the broker because a lane's queue was full.", value=s.shed
        )
        depth = GaugeMetricFamily("qorgau_mqtt_queue_depth", "Messages waiting per lane.", labels=["lane"])
        connected = GaugeMetricFamily("qorgau_mqtt_connected", "1 when the lane's connection is up.", labels=["lane"])
        for lane, n in sorted(s.queue_depth.items()):
            depth.add_metric([lane], n)
            connected.add_metric([lane], 1.0 if s.connected.get(lane) else 0.0)
        yield depth
        yield connected
        yield CounterMetricFamily("qorgau_mqtt_batches", "Batches served.", value=s.batches)
        yield CounterMetricFamily(
            "qorgau_mqtt_store_retries", "Batches tried again after a database outage.", value=s.store_retries
        )
        yield GaugeMetricFamily(
            "qorgau_mqtt_waiting_for_database",
            "1 while the worker waits for the database.",
            value=1.0 if s.store_waiting else 0.0,
        )
        buckets = [(_le(bound), float(n)) for bound, n in zip(LATENCY_BUCKETS_S, s.latency_buckets, strict=False)]
        buckets.append(("+Inf", float(s.latency_count)))
        yield HistogramMetricFamily(
            "qorgau_ingest_latency_seconds",
            "MQTT message received -> acknowledged.",
            buckets=buckets,
            sum_value=s.latency_sum_s,
        )
        if s.last_processed_age_s is not None:
            yield GaugeMetricFamily(
                "qorgau_mqtt_last_processed_age_seconds",
                "Seconds since a message was done with.",
                value=s.last_processed_age_s,
            )


def _le(bound: float) -> str:
    return repr(float(bound))


def health(bridge: MqttBridge) -> dict[str, Any]:
    """What ``/healthz`` says about MQTT: the connection per lane, queues, the last message's age.

    ``ok`` is False when a lane is disconnected, when the worker waits for the database, or when
    messages wait and nothing was processed for :data:`STALL_AFTER_S`.
    """
    s = bridge.stats()
    waiting = sum(s.queue_depth.values())
    stalled = waiting > 0 and (s.last_processed_age_s is None or s.last_processed_age_s > STALL_AFTER_S)
    return {
        "ok": all(s.connected.values()) and not s.store_waiting and not stalled,
        "connected": s.connected,
        "queue_depth": s.queue_depth,
        "last_processed_age_s": None if s.last_processed_age_s is None else round(s.last_processed_age_s, 3),
        "waiting_for_database": s.store_waiting,
        "stalled": stalled,
    }
