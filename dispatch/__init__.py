"""dispatch: the domain, rules, store and application services of the dispatch room.

The room that turns an SOS press or a 102 report into a committed alert with the nearest units by
travel time, answers the sender and keeps alerts and units for the dispatcher. Transports sit
outside it: ``mqtt_bridge`` implements :class:`Notifier` and feeds payloads to
:class:`DispatchService`; the HTTP API and the live map are the ``web`` room, which hears every
committed change through the :class:`ChangeListener` port. Dispatch imports ``geo`` and nothing
else of Qorgau (no web framework, no map rendering).

Public names::

    store = Store("sqlite:///var/qorgau.sqlite3").upgrade_schema()   # Alembic migrations
    service = DispatchService(store, router, devices=load_devices(p), units=load_units(q),
                              policy=DispatchPolicy(ack_deadline=timedelta(seconds=30))).open()
    ack = service.ingest_sos("btn-1", payload)      # -> Ack(event_id, alert_id, status, reason)
    service.assign(ack.alert_id, "car-3", actor="dispatcher-1")   # order sent via Notifier.send_order
    auth = Authenticator(secret, admin_token=t)                   # tokens of the web room's API

The alert lifecycle, duplicates, freshness and escalation rules are plain functions in
:mod:`dispatch.lifecycle`; the audit hash chain in :mod:`dispatch.audit`; response-time reports
in :mod:`dispatch.reports`.
"""

from __future__ import annotations

from dispatch.auth import Authenticator, Principal
from dispatch.domain import (
    APP102_SENDER,
    Alert,
    AlertSource,
    AlertStatus,
    Device,
    DeviceSite,
    Role,
    Unit,
    UnitKind,
    UnitStatus,
    User,
)
from dispatch.lifecycle import DispatchPolicy, StalePolicy
from dispatch.ports import (
    Ack,
    AckStatus,
    ChangeListener,
    Notifier,
    Order,
    PatrolPlan,
    PlanSender,
    PlanStop,
    RejectReason,
)
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
    "DeviceKey",
    "DeviceSite",
    "DispatchPolicy",
    "DispatchService",
    "Inbound",
    "NotFound",
    "Notifier",
    "Order",
    "PatrolPlan",
    "PlanSender",
    "PlanStop",
    "PressVerifier",
    "Principal",
    "RejectReason",
    "Role",
    "StalePolicy",
    "Store",
    "StoreError",
    "Unit",
    "UnitKind",
    "UnitStatus",
    "User",
    "load_devices",
    "load_units",
    "sign_press",
    "write_devices",
    "write_units",
]
