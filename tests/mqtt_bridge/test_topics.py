"""Topic names, routing and broker URLs."""

from __future__ import annotations

import pytest

from mqtt_bridge import Lane, Route, Topics, parse_mqtt_url
from mqtt_bridge.topics import LANE_OF


def test_topics_under_default_root() -> None:
    t = Topics()
    assert set(t.subscriptions) == {
        "qorgau/v1/sos/+/alert",
        "qorgau/v1/sos/+/heartbeat",
        "qorgau/v1/sos/+/status",
        "qorgau/v1/app102/report",
        "qorgau/v1/units/+/position",
        "qorgau/v1/units/+/status",
        "qorgau/v1/units/+/ack",
    }
    assert t.unit_orders("car-1") == "qorgau/v1/units/car-1/orders"
    assert t.unit_status("car-1") == "qorgau/v1/units/car-1/status"
    assert t.unit_ack("car-1") == "qorgau/v1/units/car-1/ack"
    assert t.sos_alert("b1") == "qorgau/v1/sos/b1/alert"
    assert t.sos_ack("b1") == "qorgau/v1/sos/b1/ack"
    assert t.sos_heartbeat("b1") == "qorgau/v1/sos/b1/heartbeat"
    assert t.sos_status("b1") == "qorgau/v1/sos/b1/status"
    assert t.unit_position("car-1") == "qorgau/v1/units/car-1/position"
    assert t.app102_report == "qorgau/v1/app102/report"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("city/x/sos/b1/alert", (Route.SOS_ALERT, "b1")),
        ("city/x/sos/b1/heartbeat", (Route.SOS_HEARTBEAT, "b1")),
        ("city/x/sos/b1/status", (Route.SOS_STATUS, "b1")),
        ("city/x/sos//heartbeat", None),
        ("city/x/app102/report", (Route.APP102_REPORT, None)),
        ("city/x/units/u-9/position", (Route.UNIT_POSITION, "u-9")),
        ("city/x/units/u-9/status", (Route.UNIT_STATUS, "u-9")),
        ("city/x/units/u-9/ack", (Route.UNIT_ACK, "u-9")),
        ("city/x/units/u-9/orders", None),
        ("city/x/sos/b1/ack", None),
        ("city/x/sos//alert", None),
        ("city/y/sos/b1/alert", None),
        ("city/x/sos/b1/alert/more", None),
    ],
)
def test_route(topic: str, expected: tuple | None) -> None:
    assert Topics("city/x").route(topic) == expected


@pytest.mark.parametrize("root", ["", "/qorgau", "qorgau/", "qorgau/+/v1", "qorgau/#", "$SYS/x", "a//b"])
def test_bad_topic_roots_are_refused(root: str) -> None:
    with pytest.raises(ValueError, match="topic root"):
        Topics(root)


@pytest.mark.parametrize("device", ["", "a/b", "+", "#"])
def test_bad_ids_in_topics_are_refused(device: str) -> None:
    with pytest.raises(ValueError, match="device id must be a non-empty MQTT topic level"):
        Topics().sos_ack(device)


def test_response_topics_are_confined_to_app102_acks() -> None:
    t = Topics("r")
    assert t.is_app102_response_topic("r/app102/ack/phone-1")
    assert not t.is_app102_response_topic("r/app102/ack/")
    assert not t.is_app102_response_topic("r/sos/b1/ack")
    assert not t.is_app102_response_topic("r/app102/ack/#")


def test_parse_mqtt_url() -> None:
    a = parse_mqtt_url("mqtt://127.0.0.1:1883")
    assert (a.host, a.port, a.tls, a.username) == ("127.0.0.1", 1883, False, None)
    b = parse_mqtt_url("mqtts://user:p%40ss@broker.example")
    assert (b.host, b.port, b.tls, b.username, b.password) == ("broker.example", 8883, True, "user", "p@ss")
    assert str(b) == "mqtts://user@broker.example:8883"


@pytest.mark.parametrize(
    ("url", "message"),
    [("http://x:1883", "must start with mqtt://"), ("mqtt://", "has no host"), ("mqtt://h:99999", "bad port")],
)
def test_bad_mqtt_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mqtt_url(url)


def test_each_route_is_served_in_one_lane_whose_filters_match_it() -> None:
    t = Topics("city/v2")
    examples = {
        Route.SOS_ALERT: t.sos_alert("b1"),
        Route.SOS_HEARTBEAT: t.sos_heartbeat("b1"),
        Route.SOS_STATUS: t.sos_status("b1"),
        Route.APP102_REPORT: t.app102_report,
        Route.UNIT_POSITION: t.unit_position("u1"),
        Route.UNIT_STATUS: t.unit_status("u1"),
        Route.UNIT_ACK: t.unit_ack("u1"),
    }
    assert set(LANE_OF) == set(Route)
    for route, topic in examples.items():
        lane = LANE_OF[route]
        assert t.route(topic)[0] is route
        matching = [lane for lane in Lane if any(_matches(f, topic) for f in t.lane_subscriptions(lane))]
        assert matching == [lane], (route, matching)
    assert t.lane_subscriptions(Lane.SOS) == ("city/v2/sos/+/alert",)


def _matches(topic_filter: str, topic: str) -> bool:
    f, t = topic_filter.split("/"), topic.split("/")
    return len(f) == len(t) and all(a in ("+", b) for a, b in zip(f, t, strict=True))
