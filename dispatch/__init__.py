"""dispatch: the store, the service and the API of the dispatch room.

The room that turns an SOS press or a 102 report into a committed alert with the nearest units by
travel time, answers the sender, and shows alerts and units to the dispatcher over HTTP. Transports
sit outside it: ``mqtt_bridge`` implements :class:`Notifier` and feeds payloads to
:class:`DispatchService`. Dispatch imports ``geo`` and ``maps`` (the live map's page) and nothing
else of Qorgau. The dispatcher's live map (``/map``, :mod:`dispatch.live`) hears every committed
change through the :class:`ChangeListener` port.

Public names::

    store = Store("sqlite:///var/qorgau.sqlite3").upgrade_schema()   # Alembic migrations
    service = DispatchService(store, router, devices=load_devices(p), units=load_units(q),
                              policy=DispatchPolicy(ack_deadline=timedelta(seconds=30))).open()
    ack = service.ingest_sos("btn-1", payload)      # -> Ack(event_id, alert_id, status, reason)
    service.assign(ack.alert_id, "car-3", actor="dispatcher-1")   # order sent via Notifier.send_order
    app = create_app(service, checks={"mqtt": bridge.is_connected}, auth=Authenticator(secret, admin_token=t))
    router.dependencies = [Depends(require_role("commander"))]    # other rooms' routes, same roles

The alert lifecycle, duplicates, freshness and escalation rules are plain functions in
:mod:`dispatch.lifecycle`; the audit hash chain in :mod:`dispatch.audit`; response-time reports
in :mod:`dispatch.reports`.
"""

from __future__ import annotations

from dispatch.api import create_app
from dispatch.domain import APP102_SENDER, Alert, AlertSource, AlertStatus, Device, DeviceSite, Role, Unit, UnitKind, UnitStatus, User
from dispatch.auth import Authenticator, Principal, require_role
from dispatch.lifecycle import DispatchPolicy, StalePolicy
from dispatch.ports import Ack, AckStatus, ChangeListener, Notifier, Order, RejectReason
from dispatch.registry import load_devices, load_units, write_devices, write_units
from dispatch.service import Conflict, DispatchService, Inbound, NotFound
from dispatch.signing import DeviceKey, PressVerifier, sign_press
from dispatch.store import Store, StoreError

__all__ = [
    "APP102_SENDER",
    "Ack",
    "AckStatus",
    "Alert",
    "AlertSource",
    "AlertStatus",
    "Authenticator",
    "ChangeListener",
    "Conflict",
    "Device",
    "DeviceSite",
    "DispatchPolicy",
    "DispatchService",
    "Inbound",
    "NotFound",
    "Notifier",
    "Order",
    "Principal",
    "RejectReason",
    "Role",
    "StalePolicy",
    "User",
    "require_role",
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
