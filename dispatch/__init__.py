"""dispatch: the store, the service and the API of the dispatch room.

The room that turns an SOS press or a 102 report into a committed alert with the nearest units by
travel time, answers the sender, and shows alerts and units to the dispatcher over HTTP. Transports
sit outside it: ``mqtt_bridge`` implements :class:`Notifier` and feeds payloads to
:class:`DispatchService`. Dispatch imports ``geo`` and nothing else of Qorgau.

Public names::

    store = Store("sqlite:///var/qorgau.sqlite3").create_schema()
    service = DispatchService(store, router, devices=load_devices(p), units=load_units(q)).open()
    ack = service.ingest_sos("btn-1", payload)      # -> Ack(event_id, alert_id, status, reason)
    app = create_app(service, checks={"mqtt": bridge.is_connected})
"""

from __future__ import annotations

from dispatch.api import create_app
from dispatch.domain import Alert, AlertSource, AlertStatus, Device, DeviceSite, Unit, UnitKind, UnitStatus
from dispatch.ports import Ack, AckStatus, Notifier, RejectReason
from dispatch.registry import load_devices, load_units, write_devices, write_units
from dispatch.service import DispatchService
from dispatch.store import Store, StoreError

__all__ = [
    "Ack",
    "AckStatus",
    "Alert",
    "AlertSource",
    "AlertStatus",
    "Device",
    "DeviceSite",
    "DispatchService",
    "Notifier",
    "RejectReason",
    "Store",
    "StoreError",
    "Unit",
    "UnitKind",
    "UnitStatus",
    "create_app",
    "load_devices",
    "load_units",
    "write_devices",
    "write_units",
]
