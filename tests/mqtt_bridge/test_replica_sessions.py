"""A named replica's MQTT sessions are its own; an unnamed one keeps the group's (docs/scaling.md)."""

from __future__ import annotations

import pytest

from mqtt_bridge import MqttBridge
from mqtt_bridge.topics import Lane


def _ids(bridge: MqttBridge) -> dict[Lane, str]:
    return dict(bridge.lanes())


def test_a_named_replica_has_a_session_per_lane_of_its_own() -> None:
    bridge = MqttBridge(None, client_id="qorgau-dispatch", replica="r2")  # type: ignore[arg-type]
    assert _ids(bridge) == {
        Lane.SOS: "qorgau-dispatch-r2",
        Lane.UNITS: "qorgau-dispatch-r2-units",
        Lane.APP102: "qorgau-dispatch-r2-app102",
        Lane.DEVICES: "qorgau-dispatch-r2-devices",
    }


def test_without_a_replica_name_the_ids_are_the_groups() -> None:
    bridge = MqttBridge(None, client_id="qorgau-dispatch")  # type: ignore[arg-type]
    assert _ids(bridge)[Lane.SOS] == "qorgau-dispatch"
    assert _ids(bridge)[Lane.UNITS] == "qorgau-dispatch-units"


@pytest.mark.parametrize("bad", ["", "r 1", "r/1", "x" * 65, "r+"])
def test_a_replica_name_that_cannot_be_part_of_a_client_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="replica must be"):
        MqttBridge(None, client_id="qorgau-dispatch", replica=bad)  # type: ignore[arg-type]
