"""mqtt_bridge: alerts in, acknowledgements out, over MQTT 5.

The room that connects SOS buttons, the Police 102 app and patrol units to the dispatch service
through an MQTT broker (QoS 1, persistent session, manual acknowledgement after commit). It turns
messages into calls on :class:`dispatch.DispatchService` and implements :class:`dispatch.Notifier`.
Arrows point one way: ``mqtt_bridge -> dispatch -> geo``.

Public names::

    bridge = MqttBridge(service, url="mqtt://127.0.0.1:1883", topic_root="qorgau/v1").start()
    Topics("qorgau/v1").sos_ack("btn-7")    # 'qorgau/v1/sos/btn-7/ack'
    bridge.stop()
"""

from __future__ import annotations

from mqtt_bridge.bridge import BridgeStats, MqttBridge
from mqtt_bridge.broker import BrokerAddress, new_client, parse_mqtt_url
from mqtt_bridge.topics import DEFAULT_TOPIC_ROOT, Lane, Route, Topics

__all__ = [
    "DEFAULT_TOPIC_ROOT",
    "BridgeStats",
    "BrokerAddress",
    "Lane",
    "MqttBridge",
    "Route",
    "Topics",
    "new_client",
    "parse_mqtt_url",
]
