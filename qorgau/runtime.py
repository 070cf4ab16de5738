"""The running service: store, router, dispatch, MQTT bridge and HTTP API in one process (the wiring).

A start does only what a press and the API need before ``/healthz`` may say healthy: the street
network (from its cache), the router with its compiled searches, the store at the schema's head,
the MQTT lanes and the HTTP listener. What only later requests use is loaded by :func:`preload`
in a background thread once HTTP is up and the SOS backlog the replica came back to is worked off
(:func:`wait_until_idle`), and, if a request comes first, by that request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from dispatch import Authenticator, DispatchService, PressVerifier, Store, UnitKind, load_devices, load_units
from dispatch import auth as dispatch_auth
from dispatch.reports import Districts
from dispatch.service import utc_now
from dispatch.supervision import DeviceSupervisor
from geo import Router, StreetNetwork, load_network
from mqtt_bridge import Lane, MqttBridge
from mqtt_bridge.telemetry import BridgeCollector
from mqtt_bridge.telemetry import health as bridge_health
from qorgau.replica import SqliteReplicaLock, sqlite_file_of
from qorgau.settings import Settings, check_jwt_secret
from web import MapOptions, PlanJobs, SiteJobs, context_of, create_app, preload_renderers, warm_routes

if TYPE_CHECKING:
    from patrol_planner import Booth, WalkGraph

__all__ = ["QorgauService", "wait_until_idle"]

log = logging.getLogger(__name__)


def preload(app: FastAPI) -> None:
    """What serve leaves out of its start, loaded once HTTP is up (a background thread runs it).

    The live map's renderer (Folium), PyJWT and argon2 (the first sign-in and token), and the
    FastAPI routes' request models, which FastAPI builds at each route's first request (the
    first /healthz would otherwise build most of them). A request arriving meanwhile does the
    same work itself (Python's import lock, FastAPI's own lock), so nothing waits for this.
    """
    for step in (lambda: warm_routes(app), dispatch_auth.preload, preload_renderers):
        try:
            step()
        except Exception:  # an optimisation: whatever failed here is done again by its first request
            log.exception("preloading after the start failed")


def wait_until_idle(
    backlog: Callable[[], int],
    *,
    quiet_s: float = 1.0,
    max_s: float = 60.0,
    tick_s: float = 0.1,
    stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Wait until ``backlog()`` has answered 0 at every tick for ``quiet_s``; False after ``max_s`` (or ``stop()``).

    A replica restarted under load comes back to the presses the broker kept for it; the page
    renderers' imports (about 1.5 CPU-s) wait until those are answered, or ``max_s`` at most.

    Examples
    --------
    >>> wait_until_idle(lambda: 0, quiet_s=0.02, tick_s=0.01)
    True
    >>> wait_until_idle(lambda: 3, quiet_s=0.02, max_s=0.05, tick_s=0.01)
    False
    """
    deadline = time.monotonic() + max_s
    quiet_since: float | None = None
    while not stop():
        now = time.monotonic()
        if backlog() > 0:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            return True
        if now >= deadline:
            return False
        time.sleep(tick_s)
    return False


class _Phases:
    """Seconds spent in each step of a start, for its log line and :attr:`QorgauService.startup`."""

    def __init__(self) -> None:
        self.took: dict[str, float] = {}
        self._at = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.took[step] = self.took.get(step, 0.0) + now - self._at
        self._at = now


def _press_verifier(settings: Settings, devices: dict) -> PressVerifier:
    """The signed-press checker: keys from ``settings.device_keys`` (decrypted), or none."""
    keys = {}
    if settings.device_keys is not None:
        from dispatch.device_keys import load_device_keys  # cryptography: only where presses are signed

        if settings.device_key_secret is None:
            msg = "QORGAU_DEVICE_KEYS is set but QORGAU_DEVICE_KEY_SECRET is not: the device keys cannot be read"
            raise ValueError(msg)
        keys = load_device_keys(settings.device_keys, settings.device_key_secret.get_secret_value())
        unknown = sorted(set(keys) - set(devices))
        if unknown:
            log.warning("device key file has keys of %d devices not in the registry: %s", len(unknown), unknown[:10])
        log.info("signed presses: %d of %d devices must sign", len(set(keys) & set(devices)), len(devices))
    return PressVerifier(
        keys,
        window=settings.replay_window,
        max_age=timedelta(seconds=settings.signed_press_max_age_s),
    )


class QorgauService:
    """Everything ``qorgau serve`` runs, wired together.

    Parameters
    ----------
    settings
        Where the network, registries, database and broker are.
    network
        An already loaded (or generated) street network; else ``settings.network`` is loaded.
    clock
        The service's clock (UTC, timezone-aware): what "now" is for freshness, deadlines, issued
        plans and the dosage so far. None: the real time. A test or a simulation may pass its own
        (``qorgau.patrols.ManualClock``) and share it with the simulated patrols.

    Raises
    ------
    qorgau.settings.WeakSecret
        Without a JWT secret fit to sign tokens (``QORGAU_JWT_SECRET``; ``qorgau demo`` makes one).

    Examples
    --------
    >>> with QorgauService(settings, network=generate_city(2000, seed=7)).start() as svc:  # doctest: +SKIP
    ...     print(svc.base_url)
    """

    startup: dict[str, float]
    """Seconds each step of the start took (``network``, ``router``, ... ``http``), filled as it goes."""

    def __init__(
        self,
        settings: Settings,
        *,
        network: StreetNetwork | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        phases = self._phases = _Phases()
        self.startup = phases.took
        secret = check_jwt_secret(None if settings.jwt_secret is None else settings.jwt_secret.get_secret_value())
        if network is None:
            if settings.network is None:
                msg = "no street network: give --network (or QORGAU_NETWORK), or run `qorgau demo` on a generated city"
                raise ValueError(msg)
            network = load_network(settings.network, cache_dir=settings.cache_dir)
        self.network = network
        phases.done("network")
        db_file = sqlite_file_of(settings.db_url)
        self._replica_lock = None if db_file is None else SqliteReplicaLock(db_file, settings.replica)
        self.router = Router(network, max_snap_m=settings.max_snap_m, walk_speed_mps=settings.walk_speed_mps)
        phases.done("router")
        units = load_units(settings.units) if settings.units else []
        devices = load_devices(settings.devices) if settings.devices else {}
        if not units:
            log.warning("no units registered (--units): alerts will have no recommendations")
        if not devices:
            log.warning("no SOS devices registered (--devices): every SOS alert will be rejected")
        self.store = Store(settings.db_url, replica=getattr(settings, "replica", None))  # issue 11: --replica
        self.service = DispatchService(
            self.store,
            self.router,
            devices=devices,
            units=units,
            recommend_k=settings.recommend_k,
            max_payload_bytes=settings.max_payload_bytes,
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_s),
            policy=settings.policy(),
            press_verifier=_press_verifier(settings, devices),
            clock=clock or utc_now,
        )
        self.supervisor = DeviceSupervisor(
            self.store,
            devices,
            policy=settings.supervision_policy(),
            clock=self.service.clock,
            max_payload_bytes=settings.max_payload_bytes,
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_s),
        )
        self.service.add_listener(self.supervisor)  # presses and self-tests are signs of life
        self.bridge = MqttBridge(
            self.service,
            url=settings.mqtt_url,
            topic_root=settings.topic_root,
            client_id=settings.client_id,
            # a named replica gets MQTT sessions of its own (docs/scaling.md); unnamed (hostname-pid,
            # new at every start) keeps the group's ids, so a restart resumes the same sessions
            replica=settings.replica if "replica" in settings.model_fields_set else None,
            session_expiry_s=settings.session_expiry_s,
            supervisor=self.supervisor,
        )
        phases.done("dispatch")
        self.auth = Authenticator(
            secret,
            token_ttl=timedelta(seconds=settings.token_ttl_s),
            admin_token=None if settings.admin_token is None else settings.admin_token.get_secret_value(),
        )
        self.app = create_app(
            self.service,
            probes={"mqtt": lambda: bridge_health(self.bridge)},
            collectors=[BridgeCollector(self.bridge)],
            auth=self.auth,
            districts=Districts.from_geojson(settings.districts) if settings.districts else None,
            settings_view=settings.public_view,
            map_options=MapOptions(
                lang=settings.map_lang,
                tile_url=settings.map_tiles,
                tile_attribution=settings.map_tiles_attribution,
                streets_attribution=settings.map_streets_attribution,
            ),
            supervisor=self.supervisor,
            hardening=settings.http_hardening(),
            plans=self._plan_jobs(),  # POST/GET /api/plans: patrol plans for commanders
            sites=self._site_jobs(),  # POST/GET /api/sites: where new booths should go, for commanders
            replica=settings.replica,
        )
        self.live_feed = context_of(self.app).live_feed
        phases.done("app")
        self._server: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self._running = False

    def _plan_jobs(self) -> PlanJobs:
        """Plans under ``settings.plans_dir``; the default booths are the registered units of kind ``booth``.

        The planner (pandas, scipy) is imported by the first plan, not at start: a replica must be up fast.
        """

        def booths() -> list[Booth]:
            from patrol_planner import Booth

            return [Booth(u.id, u.lat, u.lon, u.name or "") for u in self.service.units() if u.kind is UnitKind.BOOTH]

        def graph() -> WalkGraph:
            from patrol_planner import WalkGraph

            return WalkGraph(self.router)

        def bounds() -> tuple[float, float, float, float] | None:
            from patrol_planner import read_osm_bounds

            return read_osm_bounds(network) if network else None

        network = self.settings.network
        return PlanJobs(graph=graph, data_dir=self.settings.plans_dir, booths=booths, bounds=bounds)

    def _site_jobs(self) -> SiteJobs:
        """Sitings under ``settings.sites_dir``; the default existing booths are the registered booths."""

        def booths() -> list[tuple[str, float, float, str]]:
            return [(u.id, u.lat, u.lon, u.name or "") for u in self.service.units() if u.kind is UnitKind.BOOTH]

        return SiteJobs(
            router=self.router,
            data_dir=self.settings.sites_dir,
            network=self.settings.network,
            inputs_dir=self.settings.sites_inputs_dir,
            booths=booths,
        )

    # life cycle ---------------------------------------------------------------------------

    def _open(self) -> None:
        if self._replica_lock is not None:  # SQLite: one replica per file (qorgau.replica.ReplicaConflict)
            self._replica_lock.acquire()
        try:
            self._open_services()
        except BaseException:
            if self._replica_lock is not None:
                self._replica_lock.release()
            raise

    def _open_services(self) -> None:
        phases = self._phases
        phases.done("wait")  # between the constructor and start()
        self.store.upgrade_schema()
        phases.done("schema")
        self.service.open()
        self.supervisor.open()  # before the bridge: retained statuses meet the open events
        phases.done("open")
        self.bridge.start()
        phases.done("mqtt")
        self.service.start_change_stream()  # PostgreSQL: the other replicas' changes reach this one
        self.service.start_deadline_watcher()  # and the leader election: escalation and supervision run once
        self.supervisor.start_watcher(when=lambda: self.service.is_leader)
        self._running = True
        phases.done("watchers")

    def _after_start(self, server: uvicorn.Server, started_at: Callable[[], float] | None) -> None:
        """Once HTTP listens: log what the start took, then :func:`preload` (healthy first)."""
        while not server.started:
            if not self._running or server.should_exit:
                return
            time.sleep(0.005)
        self._phases.done("http")
        took = dict(self.startup)
        took.pop("wait", None)
        steps = ", ".join(f"{step} {s:.2f}" for step, s in took.items())
        since = "" if started_at is None else f"{started_at():.2f} s after the command started; "
        log.info("replica %s up: %sstart %.2f s (%s)", self.settings.replica, since, sum(took.values()), steps)
        if not wait_until_idle(self._backlog, stop=lambda: not self._running):
            log.info("preloading although SOS messages still wait (60 s after the start)")
        if self._running:
            preload(self.app)

    def _backlog(self) -> int:
        """Alert messages received and not yet answered (the SOS and 102 lanes' queues), or 1 while
        the database is away."""
        stats = self.bridge.stats()
        if stats.store_waiting:
            return 1
        return sum(stats.queue_depth.get(lane.value, 0) for lane in (Lane.SOS, Lane.APP102))

    def _new_server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            host=self.settings.host,
            port=self.settings.port,
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=5,  # the live map's event streams never end by themselves
        )
        return uvicorn.Server(config)

    def start(self, *, timeout_s: float = 10.0) -> QorgauService:
        """Open the store, connect the bridge and serve HTTP from a background thread.

        Raises
        ------
        ConnectionError
            If the MQTT broker cannot be reached.
        RuntimeError
            If the HTTP server does not come up within ``timeout_s`` (e.g. the port is taken).
        """
        self._open()
        self._server = self._new_server()
        self._http_thread = threading.Thread(target=self._server.run, name="qorgau-http", daemon=True)
        self._http_thread.start()
        self._start_after(self._server, None)
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._http_thread.is_alive() or time.monotonic() > deadline:
                self._running = False
                self.service.close()
                self.supervisor.close()
                self.bridge.stop()
                if self._replica_lock is not None:
                    self._replica_lock.release()
                msg = f"HTTP server did not start on {self.settings.host}:{self.settings.port} within {timeout_s} s"
                raise RuntimeError(msg)
            time.sleep(0.01)
        log.info(
            "Qorgau dispatch replica %s serving %s on %s", self.settings.replica, self.network.label, self.base_url
        )
        return self

    def _start_after(self, server: uvicorn.Server, started_at: Callable[[], float] | None) -> None:
        threading.Thread(
            target=self._after_start, args=(server, started_at), name="qorgau-preload", daemon=True
        ).start()

    def serve_forever(self, *, started_at: Callable[[], float] | None = None) -> None:
        """Open everything and serve HTTP in this thread until interrupted (Ctrl-C, SIGTERM) or :meth:`stop`.

        ``started_at`` gives the seconds since the command started, for the log line of the start.
        """
        self._open()
        self._server = self._new_server()
        self._start_after(self._server, started_at)
        try:
            self._server.run()
        finally:
            self.stop()

    def stop(self, *, end_session: bool = False) -> None:
        """Stop HTTP and the bridge; ``end_session`` also discards the broker session. Idempotent."""
        if not self._running:
            return
        self._running = False
        self.live_feed.close()  # open event streams would hold the HTTP server's shutdown
        if self._server is not None:
            self._server.should_exit = True
        if self._http_thread is not None:
            self._http_thread.join(timeout=10)
            self._http_thread = None
        self.service.close()
        self.supervisor.close()
        self.bridge.stop(end_session=end_session)
        self.store.close()
        if self._replica_lock is not None:
            self._replica_lock.release()

    def __enter__(self) -> QorgauService:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The HTTP port actually bound (differs from settings when it was 0)."""
        if self._server is None or not self._server.started:
            return self.settings.port
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"
