"""Fixtures: the real Mosquitto, real databases (SQLite and PostgreSQL) and a running service.

Environment:

- ``QORGAU_TEST_MQTT_URL`` (default ``mqtt://127.0.0.1:1883``): the broker; tests fail loudly if
  nothing listens there.
- ``QORGAU_TEST_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``): an admin
  connection used to create a throwaway database for the session (dropped afterwards).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from dispatch import (
    Device,
    DeviceSite,
    DispatchService,
    Role,
    Store,
    User,
    load_devices,
    load_units,
    write_devices,
    write_units,
)
from geo import Router, StreetNetwork, generate_city
from mqtt_bridge import parse_mqtt_url
from qorgau import QorgauService, Settings
from qorgau.demo import seed_registry

# support's helpers assert as the test modules do (sign-in, accepted presses, ...): pytest rewrites
# their asserts too, as it did while they lived in conftest and the test modules.
pytest.register_assert_rewrite("support")
from support import (  # noqa: E402
    ADMIN_TOKEN,
    CHROMIUM,
    CHROMIUM_ARGS,
    FAR_DEVICE,
    HTTP_TIMEOUT_S,
    JWT_SECRET,
    Clock,
    Probe,
    Registry,
    Replicas,
    Running,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

# Property-based tests (hypothesis): bounded so the suite stays fast; `HYPOTHESIS_PROFILE=thorough`
# runs ten times as many examples.
# The default profile is derandomized, so that CI runs the same examples every time (a red CI
# always means a change broke something); `thorough` explores new random examples.
settings.register_profile(
    "qorgau",
    max_examples=200,
    deadline=1000,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
    derandomize=True,
)
settings.register_profile("thorough", parent=settings.get_profile("qorgau"), max_examples=2000, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "qorgau"))

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


# -- broker ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    url = os.environ.get("QORGAU_TEST_MQTT_URL", DEFAULT_MQTT_URL)
    address = parse_mqtt_url(url)
    try:
        socket.create_connection((address.host, address.port), timeout=2).close()
    except OSError as e:
        pytest.fail(
            f"no MQTT broker listens at {url} ({e}). These tests need a real broker: start Mosquitto "
            f"(apt-get install mosquitto; mosquitto -d) or point QORGAU_TEST_MQTT_URL at one.",
            pytrace=False,
        )
    return url


@pytest.fixture
def topic_root() -> str:
    """A topic root no other test uses, so no test sees another's messages or sessions."""
    return f"qorgau-test/{uuid.uuid4().hex[:12]}/v1"


@pytest.fixture
def probe(mqtt_url: str, topic_root: str) -> Iterator[Probe]:
    p = Probe(mqtt_url, topic_root)
    yield p
    p.close()


# -- databases ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """An admin connection to the test PostgreSQL server (creates and drops databases)."""
    return os.environ.get("QORGAU_TEST_PG_URL", DEFAULT_PG_ADMIN_URL)


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session."""
    admin_url = pg_admin_url
    name = f"qorgau_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as e:
        admin.dispose()
        pytest.fail(
            f"cannot create a test database through {admin_url} ({e}). These tests need a real PostgreSQL: "
            f"start it or point QORGAU_TEST_PG_URL at an admin connection.",
            pytrace=False,
        )
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or the session's PostgreSQL database with its tables dropped."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'qorgau.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    store = Store(url)
    store.drop_schema()
    store.close()
    return url


# -- city -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def city() -> StreetNetwork:
    return generate_city(n_nodes=2000, seed=7)


@pytest.fixture(scope="session")
def registry(city: StreetNetwork, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    units, devices = seed_registry(Router(city), booths=4, foot=4, cars=3, devices=6, seed=7)
    min_lat, min_lon, _, _ = city.bounds
    devices.append(Device(id=FAR_DEVICE, site=DeviceSite.SCHOOL, lat=min_lat - 0.045, lon=min_lon))
    folder = tmp_path_factory.mktemp("registry")
    units_path = write_units(folder / "units.geojson", units)
    devices_path = write_devices(folder / "devices.geojson", devices)
    # Read back what the service will read (coordinates are rounded to 7 decimals in the files).
    return Registry(load_units(units_path), load_devices(devices_path), units_path, devices_path)


# -- a dispatch service in this process, on a clock the test moves --------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An empty store at the schema's head (replica ``replica-a``), on each database of ``db_url``."""
    s = Store(db_url, replica="replica-a").upgrade_schema()
    yield s
    s.close()


@pytest.fixture
def service(store: Store, city: StreetNetwork, registry: Registry, clock: Clock) -> Iterator[DispatchService]:
    """An open dispatch service (no HTTP, no MQTT) on ``store``, the test city and ``clock``."""
    svc = DispatchService(store, Router(city), devices=registry.devices, units=registry.units, clock=clock).open()
    yield svc
    svc.close()


# -- the running service --------------------------------------------------------------------


@pytest.fixture
def start_service(
    city: StreetNetwork, registry: Registry, db_url: str, mqtt_url: str, topic_root: str
) -> Iterator[Callable[[], Running]]:
    """Start the service (bridge + API in this process); call again after ``stop()`` to restart it.

    Every start uses the same database, topic root and MQTT client id, as a restarted process would.
    ``clock=`` gives the service a clock of the test's own (e.g. ``qorgau.patrols.ManualClock``); the
    other keywords are settings.
    """
    client_id = f"qorgau-test-{uuid.uuid4().hex[:12]}"
    started: list[Running] = []

    def start(*, clock: Callable[[], datetime] | None = None, **overrides: object) -> Running:
        settings = Settings(
            admin_token=ADMIN_TOKEN,
            db_url=db_url,
            mqtt_url=mqtt_url,
            topic_root=topic_root,
            client_id=client_id,
            session_expiry_s=60,
            host="127.0.0.1",
            # a restart may ask for the port it had; a test may bring its own unit registry
            **{"port": 0, "jwt_secret": JWT_SECRET, "units": registry.units_path, "devices": registry.devices_path}
            | overrides,
        )
        service = QorgauService(settings, network=city, clock=clock).start()
        token = service.auth.issue(User("test-dispatcher", Role.DISPATCHER))
        http = httpx.Client(
            base_url=service.base_url, timeout=HTTP_TIMEOUT_S, headers={"Authorization": f"Bearer {token}"}
        )
        running = Running(service=service, http=http)
        started.append(running)
        return running

    yield start
    for running in started:
        running.http.close()
        for client in running._clients:
            client.close()
        running.service.stop(end_session=True)


@pytest.fixture
def running(start_service: Callable[[], Running]) -> Running:
    return start_service()


# -- headless Chromium (the map's browser tests) ---------------------------------------------
# One Playwright and one browser per session, here so that every browser test module shares
# them: two sync_playwright() instances in one thread refuse to start.


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception as e:
        pytest.fail(
            f"cannot start {CHROMIUM} ({e}): install Debian's chromium and chromium-driver (make test does)",
            pytrace=False,
        )
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # Playwright's wait_for_function evaluates strings, which the service's Content-Security-Policy
    # forbids (no 'unsafe-eval'): these tests bypass it; test_the_page_works_under_its_content_security_policy does not.
    context = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


# -- replicas: several `qorgau serve` processes on one PostgreSQL database ------------------------


@pytest.fixture(scope="session")
def replica_city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Registry]:
    """A generated city written as OSM XML for ``serve`` processes, with its seeded units and buttons."""
    from bench.chaos import write_city

    folder = tmp_path_factory.mktemp("replica-city")
    osm, units_path, devices_path, _ = write_city(folder, nodes=400, buttons=12, seed=11)
    devices = dict(load_devices(devices_path))
    return osm, Registry(list(load_units(units_path)), devices, units_path, devices_path)


@pytest.fixture(scope="module")
def start_replicas(
    replica_city: tuple[Path, Registry], pg_admin_url: str, mqtt_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[int], Replicas]]:
    """Start N replicas (``r1``..``rN``) on a fresh PostgreSQL database and topic root of their own.

    Module-scoped: a replica takes seconds to start on this machine, so a module's tests share a set.
    The schema is made first by ``qorgau db upgrade``, so that the replicas' own start-up migrations
    find it at head and do not race each other creating it.
    """
    network, registry = replica_city
    made: list[Replicas] = []
    databases: list[str] = []
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")

    def start(n: int) -> Replicas:
        name = f"qorgau_rs_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        databases.append(name)
        db_url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
        replicas = Replicas(
            n,
            folder=tmp_path_factory.mktemp("replicas"),
            network=network,
            registry=registry,
            db_url=db_url,
            mqtt_url=mqtt_url,
            topic_root=f"qorgau-test/{uuid.uuid4().hex[:12]}/v1",
        )
        made.append(replicas)
        return replicas.start()

    yield start
    for replicas in made:
        replicas.close()
    with admin.connect() as conn:
        for name in databases:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
