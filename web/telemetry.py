"""``/metrics`` in the Prometheus text format, read from each room's own counters at scrape time.

Every room keeps plain counters under its own lock (:meth:`DispatchService.metrics`,
:meth:`DeviceSupervisor.metrics`, the bridge's ``stats()``); a scrape turns them into metric
families with ``prometheus_client``'s custom-collector API. Nothing is registered globally, so
several services in one process (the tests) never share or clash over metrics.

Metrics (all prefixed ``qorgau_``)::

    alerts_accepted_total{source}          new alerts committed
    alerts_duplicate_total{source}         redeliveries answered with the first alert's ack
    messages_rejected_total{reason}        rejected messages, by reason (dispatch and supervision)
    unit_positions_total                   unit positions taken (applied or superseded)
    unit_positions_flagged_total           handheld fixes less accurate than the limit (not used)
    store_errors_total                     failed commits (the message waits and is retried)
    escalations_total                      missed acknowledgements escalated
    ingest_found_stored_total              presses and reports already stored (another replica's, a
                                           redelivery): answered from the store before ranking
    ingest_lost_races_total                ranked here, but committed first by another replica
    device_heartbeats_total                heartbeats of SOS buttons
    device_events_opened_total             device-offline events raised
    devices{state}                         SOS buttons by supervision state

Every sample carries the ``replica`` label when the app was given a replica name (``qorgau serve``
always gives one). The MQTT bridge adds its own (``mqtt_bridge.telemetry``): messages in by route, acks, queue depth
per lane, the receive -> acknowledged latency histogram, the connection per lane.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ServiceCollector", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of the Prometheus text format."""


class ServiceCollector(Collector):
    """The dispatch service's (and optionally the supervisor's) counters as metric families.

    Parameters
    ----------
    service_metrics
        :meth:`DispatchService.metrics`.
    supervisor_metrics
        :meth:`DeviceSupervisor.metrics`, if buttons are supervised.
    """

    def __init__(
        self,
        service_metrics: Callable[[], dict[str, Any]],
        supervisor_metrics: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._service = service_metrics
        self._supervisor = supervisor_metrics

    def collect(self) -> Iterator[Metric]:
        m = self._service()
        yield _by_label("qorgau_alerts_accepted", "New alerts committed.", "source", m["accepted"])
        yield _by_label(
            "qorgau_alerts_duplicate", "Redelivered alerts answered with the first ack.", "source", m["duplicates"]
        )
        rejected = dict(m["rejected"])
        s = self._supervisor() if self._supervisor is not None else None
        if s is not None:
            for reason, n in s["rejected"].items():
                rejected[reason] = rejected.get(reason, 0) + n
        yield _by_label("qorgau_messages_rejected", "Rejected messages by reason.", "reason", rejected)
        yield _counter("qorgau_unit_positions", "Unit positions taken (applied or superseded).", m["positions"])
        yield _counter(
            "qorgau_unit_positions_flagged",
            "Handheld position fixes less accurate than QORGAU_LOCATION_ACCURACY_MAX_M (not used for ranking).",
            m["positions_flagged"],
        )
        yield _counter("qorgau_store_errors", "Commits that failed; the message is retried.", m["store_errors"])
        yield _counter("qorgau_escalations", "Missed acknowledgements escalated.", m["escalations"])
        yield _counter(
            "qorgau_ingest_found_stored",
            "Alert messages already stored (by another replica, or redelivered): answered before ranking.",
            m["ingest_found_stored"],
        )
        yield _counter(
            "qorgau_ingest_lost_races",
            "Alert messages ranked here but committed first by another replica (work in vain).",
            m["ingest_lost_races"],
        )
        if s is not None:
            yield _counter("qorgau_device_heartbeats", "Heartbeats of SOS buttons.", s["heartbeats"])
            yield _counter("qorgau_device_events_opened", "Device-offline events raised.", s["events_opened"])
            states = GaugeMetricFamily("qorgau_devices", "SOS buttons by supervision state.", labels=["state"])
            for state, n in s["devices"].items():
                states.add_metric([state], n)
            yield states


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _by_label(name: str, documentation: str, label: str, values: dict[str, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class _Labelled(Collector):
    """``collector``'s samples with ``labels`` added to each (e.g. ``replica``)."""

    def __init__(self, collector: Collector, labels: Mapping[str, str]) -> None:
        self._collector = collector
        self._labels = dict(labels)

    def collect(self) -> Iterator[Metric]:
        for family in self._collector.collect():
            family.samples = [s._replace(labels={**s.labels, **self._labels}) for s in family.samples]
            yield family


def render(collectors: Iterable[Collector], *, labels: Mapping[str, str] | None = None) -> bytes:
    """The Prometheus text exposition of ``collectors``, each sample also labelled with ``labels``.

    Replicas behind one balancer scrape alike; the ``replica`` label tells their samples apart.
    """
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(_Labelled(collector, labels) if labels else collector)
    return generate_latest(registry)
