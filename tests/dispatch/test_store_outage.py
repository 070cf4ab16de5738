"""The database goes away under a running service: the alert waits in the broker, nothing is lost."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from support import FAR_DEVICE, JWT_SECRET, Probe, Registry, sos_payload, wait_for

from dispatch import Role, Store, User
from geo import StreetNetwork
from qorgau import QorgauService, Settings


@pytest.fixture
def admin(pg_admin_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _allow_connections(admin: Engine, database: str, allow: bool) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}'))
        if not allow:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"), {"db": database}
            )


def test_alert_published_while_the_database_is_down_is_committed_when_it_returns(
    pg_url: str,
    admin: Engine,
    city: StreetNetwork,
    registry: Registry,
    mqtt_url: str,
    topic_root: str,
    probe: Probe,
) -> None:
    store = Store(pg_url)
    store.drop_schema()
    store.close()
    database = make_url(pg_url).database
    assert database
    settings = Settings(
        db_url=pg_url,
        mqtt_url=mqtt_url,
        topic_root=topic_root,
        client_id=f"qorgau-test-{uuid.uuid4().hex[:12]}",
        session_expiry_s=60,
        jwt_secret=JWT_SECRET,
        units=registry.units_path,
        devices=registry.devices_path,
        port=0,
    )
    service = QorgauService(settings, network=city).start()
    service.bridge.store_retry_s = 0.1
    token = service.auth.issue(User("test-viewer", Role.VIEWER))
    device_id = next(d for d in sorted(registry.devices) if d != FAR_DEVICE)
    ack_topic = probe.topics.sos_ack(device_id)
    try:
        _allow_connections(admin, database, False)
        payload = sos_payload()
        probe.sos(device_id, payload)
        wait_for(lambda: service.service.metrics()["store_errors"] >= 1, what="the store error")
        with pytest.raises(AssertionError, match="no message"):
            probe.next_ack(ack_topic, timeout_s=0.5)  # nothing is acknowledged while nothing is committed
        health = httpx.get(f"{service.base_url}/healthz")
        assert health.status_code == 503
        assert health.json()["checks"]["database"] == "failing"
        assert health.json()["mqtt"]["waiting_for_database"] is True  # the bridge holds the press back
        assert health.json()["checks"]["mqtt"] == "failing"

        _allow_connections(admin, database, True)
        ack = probe.next_ack(ack_topic, timeout_s=5)
        assert (ack["status"], ack["event_id"]) == ("accepted", payload["event_id"])
        alert = httpx.get(
            f"{service.base_url}/api/alerts/{ack['alert_id']}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert alert["event_id"] == payload["event_id"]
        assert service.service.metrics()["rejected"]["internal_error"] == 0
    finally:
        _allow_connections(admin, database, True)
        service.stop(end_session=True)
