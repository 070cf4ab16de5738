"""MQTT topic names under a configurable root (default ``qorgau/v1``).

In::

    {root}/sos/{device_id}/alert       {"event_id", "ts", "kind": "press" | "test"}
    {root}/sos/{device_id}/heartbeat   {"ts", "seq"?}: the button is alive (supervision)
    {root}/sos/{device_id}/status      {"state": "online" | "offline", "ts"?}: published (retained) on
                                       connect; "offline" is the button's MQTT last will
    {root}/app102/report               {"event_id", "ts", "lat", "lon", "accuracy_m", "category", "text"}
    {root}/units/{unit_id}/position    {"ts", "lat", "lon"}
    {root}/units/{unit_id}/status      {"ts", "status": available | en_route | on_scene | off_duty | offline, "alert_id"?}
    {root}/units/{unit_id}/ack         {"ts", "alert_id"}: the unit confirms its order

Out::

    {root}/sos/{device_id}/ack         {"event_id", "alert_id", "status", "reason", "detail"}
    {root}/app102/ack/...              the same ack, when a 102 report names it as its MQTT 5
                                       Response Topic (with Correlation Data echoed)
    {root}/units/{unit_id}/orders      an order: alert, location, route (GeoJSON LineString), deadline
    {root}/units/{unit_id}/plan        the unit's patrol plan for a shift (retained: the newest replaces
                                       the one before): stops with their times, route (GeoJSON LineString)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DEFAULT_TOPIC_ROOT", "LANE_OF", "Lane", "Route", "Topics"]

DEFAULT_TOPIC_ROOT = "qorgau/v1"


class Route(StrEnum):
    """What an incoming topic carries."""

    SOS_ALERT = "sos_alert"
    SOS_HEARTBEAT = "sos_heartbeat"
    SOS_STATUS = "sos_status"
    APP102_REPORT = "app102_report"
    UNIT_POSITION = "unit_position"
    UNIT_STATUS = "unit_status"
    UNIT_ACK = "unit_ack"


class Lane(StrEnum):
    """The bridge's ingest lanes, in priority order: an SOS press never waits behind the others.

    Each lane has its own MQTT connection (so its own in-flight window at the broker) and its
    own queue; the bridge's worker always serves the SOS lane first.
    """

    SOS = "sos"
    UNITS = "units"
    APP102 = "app102"
    DEVICES = "devices"
    """Buttons' heartbeats and statuses (supervision)."""


LANE_OF: dict[Route, Lane] = {
    Route.SOS_ALERT: Lane.SOS,
    Route.SOS_HEARTBEAT: Lane.DEVICES,
    Route.SOS_STATUS: Lane.DEVICES,
    Route.APP102_REPORT: Lane.APP102,
    Route.UNIT_POSITION: Lane.UNITS,
    Route.UNIT_STATUS: Lane.UNITS,
    Route.UNIT_ACK: Lane.UNITS,
}
"""The lane each route is served in."""


_SOS_ROUTES = {"alert": Route.SOS_ALERT, "heartbeat": Route.SOS_HEARTBEAT, "status": Route.SOS_STATUS}
_UNIT_ROUTES = {"position": Route.UNIT_POSITION, "status": Route.UNIT_STATUS, "ack": Route.UNIT_ACK}


def _check_id(value: str, *, what: str) -> str:
    if not value or any(c in value for c in "/+#\0"):
        msg = f"{what} must be a non-empty MQTT topic level without '/', '+', '#', got {value!r}"
        raise ValueError(msg)
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names and filters under ``root``.

    Examples
    --------
    >>> t = Topics("qorgau/v1")
    >>> t.sos_ack("btn-7")
    'qorgau/v1/sos/btn-7/ack'
    >>> t.route("qorgau/v1/units/car-3/position")
    (<Route.UNIT_POSITION: 'unit_position'>, 'car-3')
    """

    root: str = DEFAULT_TOPIC_ROOT

    def __post_init__(self) -> None:
        levels = self.root.split("/")
        if not self.root or any(not level or level in ("+", "#") or "#" in level or "+" in level for level in levels):
            msg = (
                f"topic root must be one or more non-empty topic levels without wildcards and without "
                f"a leading or trailing '/', got {self.root!r}"
            )
            raise ValueError(msg)
        if self.root.startswith("$"):
            msg = f"topic root must not start with '$' (reserved for the broker), got {self.root!r}"
            raise ValueError(msg)

    # filters the bridge subscribes to
    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Every filter the bridge subscribes to (all lanes)."""
        return tuple(f for lane in Lane for f in self.lane_subscriptions(lane))

    def lane_subscriptions(self, lane: Lane) -> tuple[str, ...]:
        """The filters of one lane: each lane has its own MQTT connection and in-flight window."""
        if lane is Lane.SOS:
            return (f"{self.root}/sos/+/alert",)
        if lane is Lane.APP102:
            return (f"{self.root}/app102/report",)
        if lane is Lane.DEVICES:
            return (f"{self.root}/sos/+/heartbeat", f"{self.root}/sos/+/status")
        return (f"{self.root}/units/+/position", f"{self.root}/units/+/status", f"{self.root}/units/+/ack")

    # concrete topics
    def sos_alert(self, device_id: str) -> str:
        return f"{self.root}/sos/{_check_id(device_id, what='device id')}/alert"

    def sos_heartbeat(self, device_id: str) -> str:
        return f"{self.root}/sos/{_check_id(device_id, what='device id')}/heartbeat"

    def sos_status(self, device_id: str) -> str:
        return f"{self.root}/sos/{_check_id(device_id, what='device id')}/status"

    def sos_ack(self, device_id: str) -> str:
        return f"{self.root}/sos/{_check_id(device_id, what='device id')}/ack"

    @property
    def app102_report(self) -> str:
        return f"{self.root}/app102/report"

    @property
    def app102_ack_prefix(self) -> str:
        """Response Topics of 102 reports must start with this (the bridge publishes nowhere else)."""
        return f"{self.root}/app102/ack/"

    def unit_position(self, unit_id: str) -> str:
        return f"{self.root}/units/{_check_id(unit_id, what='unit id')}/position"

    def unit_status(self, unit_id: str) -> str:
        return f"{self.root}/units/{_check_id(unit_id, what='unit id')}/status"

    def unit_ack(self, unit_id: str) -> str:
        return f"{self.root}/units/{_check_id(unit_id, what='unit id')}/ack"

    def unit_orders(self, unit_id: str) -> str:
        return f"{self.root}/units/{_check_id(unit_id, what='unit id')}/orders"

    def unit_plan(self, unit_id: str) -> str:
        return f"{self.root}/units/{_check_id(unit_id, what='unit id')}/plan"

    def route(self, topic: str) -> tuple[Route, str | None] | None:
        """What ``topic`` carries and the device or unit id in it; None for any other topic."""
        prefix = self.root + "/"
        if not topic.startswith(prefix):
            return None
        levels = topic[len(prefix) :].split("/")
        if levels == ["app102", "report"]:
            return Route.APP102_REPORT, None
        if len(levels) == 3 and levels[1]:
            if levels[0] == "sos" and levels[2] in _SOS_ROUTES:
                return _SOS_ROUTES[levels[2]], levels[1]
            if levels[0] == "units" and levels[2] in _UNIT_ROUTES:
                return _UNIT_ROUTES[levels[2]], levels[1]
        return None

    def is_app102_response_topic(self, topic: str) -> bool:
        """Whether a 102 report may ask for its ack on ``topic``."""
        rest = topic[len(self.app102_ack_prefix) :]
        return topic.startswith(self.app102_ack_prefix) and bool(rest) and not any(c in rest for c in "+#\0")
