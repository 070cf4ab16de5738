"""The ``qorgau`` command: ``serve``, ``simulate`` and ``demo``.

Settings come from ``QORGAU_*`` environment variables; flags override them (see
:class:`qorgau.settings.Settings`).

Building the parser imports nothing but the standard library, so ``qorgau --help`` (and every
subcommand's ``--help``) answers at once: each command imports what it uses when it runs
(tests/qorgau/test_cli_startup.py checks that the heavy stack stays unloaded).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qorgau.plan_cli import add_plan_commands
from qorgau.replica import ReplicaConflict
from qorgau.sites_cli import add_sites_command

if TYPE_CHECKING:
    from qorgau.runtime import QorgauService
    from qorgau.settings import Settings

__all__ = ["build_parser", "main"]

log = logging.getLogger("qorgau")

_STARTED = time.monotonic()
"""When this module was imported: the command's start, for ``serve``'s "up in" log line."""

# flag dest -> Settings field
_SETTING_OF = {"db": "db_url", "mqtt": "mqtt_url"}

DEMO_TOPIC_ROOT = "qorgau-demo/v1"
DEMO_CLIENT_ID = "qorgau-demo"

_ROLES: tuple[str, ...] = ("dispatcher", "commander", "admin", "unit", "viewer")
"""The values of :class:`dispatch.Role`, for ``users add --role`` without importing dispatch (a test checks)."""


def _settings(args: argparse.Namespace) -> Settings:
    from qorgau.settings import Settings

    flags = {_SETTING_OF.get(k, k): v for k, v in vars(args).items()}
    return Settings.from_flags(flags)


def _add_broker_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mqtt", metavar="URL", help="MQTT broker URL [QORGAU_MQTT_URL; mqtt://127.0.0.1:1883]")
    p.add_argument("--topic-root", metavar="ROOT", help="MQTT topic root [QORGAU_TOPIC_ROOT; qorgau/v1]")
    p.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR [QORGAU_LOG_LEVEL; INFO]")


def _add_registry_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--network",
        type=Path,
        metavar="FILE",
        help="street network .osm/.osm.gz/.osm.pbf/.graphml[.gz] [QORGAU_NETWORK]",
    )
    p.add_argument("--units", type=Path, metavar="FILE", help="units GeoJSON [QORGAU_UNITS]")
    p.add_argument("--devices", type=Path, metavar="FILE", help="SOS devices GeoJSON [QORGAU_DEVICES]")


def _add_service_flags(p: argparse.ArgumentParser) -> None:
    _add_registry_flags(p)
    p.add_argument("--db", metavar="URL", help="SQLAlchemy database URL [QORGAU_DB_URL; sqlite:///var/qorgau.sqlite3]")
    p.add_argument("--host", help="HTTP bind address [QORGAU_HOST; 127.0.0.1]")
    p.add_argument("--port", type=int, help="HTTP port, 0 for any free one [QORGAU_PORT; 8000]")
    p.add_argument(
        "--client-id",
        metavar="ID",
        help="fixed MQTT client id of the persistent session [QORGAU_CLIENT_ID; qorgau-dispatch]",
    )
    p.add_argument(
        "--replica",
        metavar="NAME",
        help="this replica's name in logs, /healthz and /metrics [QORGAU_REPLICA; hostname-pid]",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="compiled street networks and numba's cache, 'none' for no cache [QORGAU_CACHE_DIR; var/cache]",
    )
    _add_broker_flags(p)


def _add_simulation_flags(p: argparse.ArgumentParser, *, rate: float) -> None:
    p.add_argument("--rate", type=float, default=rate, help=f"alerts per second [{rate}]")
    p.add_argument("--sos-share", type=float, default=0.5, help="fraction of alerts that are SOS presses [0.5]")
    p.add_argument("--seed", type=int, default=None, help="random seed")


def _range(text: str) -> tuple[float, float]:
    """``"5-25"`` (or one number) -> (5.0, 25.0), for the responders' delay ranges."""
    low, _, high = text.partition("-")
    try:
        pair = (float(low), float(high or low))
    except ValueError:
        msg = f"expected seconds as LOW-HIGH (e.g. 5-25), got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 <= pair[0] <= pair[1]:
        msg = f"expected 0 <= LOW <= HIGH, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return pair


def _add_responder_flags(
    p: argparse.ArgumentParser,
    *,
    default_on: bool = False,
    close_after: tuple[float, float] = (120.0, 300.0),
    time_scale: float = 1.0,
) -> None:
    """Simulated responders (qorgau/responders.py): officers who act on their orders."""
    g = p.add_argument_group("simulated responders")
    if default_on:
        g.add_argument("--no-respond", dest="respond", action="store_false", help="no simulated officers answer orders")
    else:
        g.add_argument(
            "--respond",
            action="store_true",
            help="simulated officers act on their orders through the units' own API, as the handheld does: "
            "acknowledge, drive, arrive, close (needs --units and the service's admin token in QORGAU_ADMIN_TOKEN, "
            "to make each unit's officer a unit user)",
        )
    g.add_argument("--ack-delay", type=_range, default=(5.0, 25.0), metavar="S-S", help="acknowledge after [5-25] s")
    g.add_argument(
        "--close-after",
        type=_range,
        default=close_after,
        metavar="S-S",
        help=f"close this long on scene [{close_after[0]:g}-{close_after[1]:g}] s",
    )
    g.add_argument("--miss-share", type=float, default=0.1, help="share of orders never acknowledged [0.1]")
    g.add_argument("--false-alarm-share", type=float, default=0.2, help="share of alerts closed as false alarms [0.2]")
    g.add_argument(
        "--time-scale", type=float, default=time_scale, help=f"travel this many times faster than real [{time_scale:g}]"
    )
    if not default_on:
        g.add_argument(
            "--api",
            metavar="URL",
            default="http://127.0.0.1:8000",
            help="the service's HTTP API [http://127.0.0.1:8000]",
        )
        g.add_argument(
            "--dispatch",
            action="store_true",
            help="also a simulated dispatcher: assign every waiting alert to the proposed or recommended unit "
            "(needs a dispatcher token in QORGAU_API_TOKEN)",
        )


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        msg = f"expected a share between 0 and 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return share


def _add_walker_flags(p: argparse.ArgumentParser, *, default_on: bool = False) -> None:
    """Simulated patrols (qorgau/patrols.py): foot units that walk the plans issued to them."""
    g = p.add_argument_group("simulated patrols")
    if default_on:
        g.add_argument(
            "--no-walk-plans", dest="walk_plans", action="store_false", help="no simulated patrol walks an issued plan"
        )
    else:
        g.add_argument(
            "--walk-plans",
            action="store_true",
            help="simulated foot patrols walk the plans a commander issues (MQTT units/+/plan), reporting their "
            "positions over MQTT every 5 s during the shift (needs --units; with --respond an order comes first)",
        )
    g.add_argument(
        "--late-share", type=_share, default=0.25, help="share of a plan's patrols that leave their booth late [0.25]"
    )
    g.add_argument("--late-by", type=float, default=20.0, metavar="MIN", help="how late, minutes [20]")
    g.add_argument(
        "--skip-share", type=_share, default=0.25, help="share of a plan's patrols that skip every second stop [0.25]"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qorgau", description="SOS-button dispatch for city police.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the MQTT bridge and the HTTP API in one process")
    _add_service_flags(serve)
    serve.set_defaults(func=cmd_serve)

    sim = sub.add_parser("simulate", help="publish simulated SOS presses, 102 reports and unit moves")
    _add_registry_flags(sim)
    _add_broker_flags(sim)
    _add_simulation_flags(sim, rate=1.0)
    sim.add_argument("--count", type=int, default=10, help="alerts to publish, 0 for until Ctrl-C [10]")
    sim.add_argument(
        "--kind",
        choices=("test", "press"),
        default="test",
        help="kind of SOS press; 'test' presses are recorded but nobody is sent [test]",
    )
    sim.add_argument("--move-units", action="store_true", help="also move cars and foot patrols (needs --units)")
    sim.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help="credentials.json from `qorgau devices provision`: log in as each device/unit and sign presses",
    )
    sim.add_argument(
        "--no-heartbeats",
        action="store_true",
        help="buttons share one connection and send no heartbeats (default: each button connects with a "
        "last will and sends heartbeats every QORGAU_HEARTBEAT_INTERVAL_S)",
    )
    _add_responder_flags(sim)
    _add_walker_flags(sim)
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser(
        "demo", help="serve Almaty's real streets (or a generated city) with units, simulated presses and responders"
    )
    _add_service_flags(demo)
    _add_simulation_flags(demo, rate=0.03)
    demo.add_argument(
        "--city",
        choices=("almaty", "generated"),
        default="almaty",
        help="almaty: the packaged OSM extract of March 2012, buttons at its schools and hospitals, booths at its "
        "police points; generated: a synthetic grid [almaty] (--network overrides both)",
    )
    # a demo is watched: officers stay 30-90 s on scene and travel three times as fast as real, so
    # that a newcomer sees alerts reach 'closed' within minutes and the open ones level off at about
    # seven (README, "Ten minutes of the demo"); the flags give the real pace back
    _add_responder_flags(demo, default_on=True, close_after=(30.0, 90.0), time_scale=3.0)
    _add_walker_flags(demo, default_on=True)  # a plan issued on /plans is walked at its shift's real times
    demo.add_argument(
        "--data-dir", type=Path, default=Path("var/demo"), help="where seed GeoJSON and the demo database go [var/demo]"
    )
    demo.add_argument("--nodes", type=int, default=10_000, help="intersections of the generated city [10000]")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds [until Ctrl-C]")
    demo.set_defaults(func=cmd_demo, seed=1)

    db = sub.add_parser("db", help="database schema: migrate to the newest revision")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="apply the Alembic migrations (also runs on every service start)")
    upgrade.add_argument("--db", metavar="URL", help="SQLAlchemy database URL [QORGAU_DB_URL]")
    upgrade.add_argument("--revision", default="head", help="target revision [head]")
    upgrade.set_defaults(func=cmd_db_upgrade)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="recompute the hash chain; exit 1 if an entry was edited or deleted")
    verify.add_argument("--db", metavar="URL", help="SQLAlchemy database URL [QORGAU_DB_URL]")
    verify.add_argument(
        "--head", metavar="HASH", help="also require this head hash (published earlier) to be in the chain"
    )
    verify.set_defaults(func=cmd_audit_verify)

    report = sub.add_parser("report", help="the quarterly public report on response times (no personal data)")
    report.add_argument("--quarter", required=True, help="e.g. 2026Q4 (in the city's local time)")
    report.add_argument("--db", metavar="URL", help="SQLAlchemy database URL [QORGAU_DB_URL]")
    report.add_argument("--lang", choices=("kk", "ru", "en"), default="ru", help="language of the report [ru]")
    report.add_argument("--format", choices=("html", "md"), default="html", help="HTML or Markdown [html]")
    report.add_argument("--districts", type=Path, metavar="FILE", help="district polygons GeoJSON [QORGAU_DISTRICTS]")
    report.add_argument(
        "--plans-dir",
        type=Path,
        metavar="DIR",
        help="the plans of POST /api/plans, for the patrol minutes at hot spots by district [QORGAU_PLANS_DIR]",
    )
    report.add_argument(
        "--out", type=Path, metavar="FILE", help="where to write it [response-times-QUARTER.LANG.FORMAT]"
    )
    report.set_defaults(func=cmd_report)

    users = sub.add_parser("users", help="API users")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", help="create or replace a user; the password is read from stdin")
    add.add_argument("--db", metavar="URL", help="SQLAlchemy database URL [QORGAU_DB_URL]")
    add.add_argument("--username", required=True)
    add.add_argument("--role", required=True, choices=list(_ROLES))
    add.add_argument("--unit-id", help="the unit a 'unit' user acts for")
    add.set_defaults(func=cmd_users_add)
    for action, text in (
        ("disable", "disable a user: its sign-in and its tokens stop at once"),
        ("enable", "enable a user again"),
    ):
        toggle = users_sub.add_parser(action, help=text)
        toggle.add_argument("--db", metavar="URL", help="SQLAlchemy database URL [QORGAU_DB_URL]")
        toggle.add_argument("--username", required=True)
        toggle.set_defaults(func=cmd_users_toggle, disabled=action == "disable")
    _add_devices_commands(sub)  # issue 6: qorgau devices provision
    add_plan_commands(sub)  # qorgau plan, qorgau plan evaluate: the patrol planner (qorgau/plan_cli.py)
    add_sites_command(sub)  # qorgau sites: where new booths should go (qorgau/sites_cli.py)
    return parser


def _add_devices_commands(sub: Any) -> None:
    devices = sub.add_parser("devices", help="SOS devices and units on the broker: identities")
    devices_sub = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    prov = devices_sub.add_parser(
        "provision",
        help="write a Mosquitto password file, ACL, installers' credentials and encrypted signing keys",
        description=(
            "Per-device and per-unit broker accounts, a service account and a 102 app account. Re-running "
            "keeps existing credentials (new devices get new ones) unless --rotate. The signing keys are "
            "encrypted under QORGAU_DEVICE_KEY_SECRET."
        ),
    )
    prov.add_argument("--devices", type=Path, metavar="FILE", help="SOS devices GeoJSON [QORGAU_DEVICES]")
    prov.add_argument("--units", type=Path, metavar="FILE", help="units GeoJSON [QORGAU_UNITS]")
    prov.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="where passwd, acl, credentials.json, device-keys.json go",
    )
    prov.add_argument("--topic-root", metavar="ROOT", help="MQTT topic root [QORGAU_TOPIC_ROOT; qorgau/v1]")
    prov.add_argument("--rotate", action="store_true", help="new passwords and keys for every account")
    prov.add_argument("--no-signing", dest="signing", action="store_false", help="give buttons no signing keys")
    prov.add_argument(
        "--service-user", default="qorgau-service", help="username of the dispatch service [qorgau-service]"
    )
    prov.add_argument("--app102-user", default="qorgau-app102", help="username of the 102 app gateway [qorgau-app102]")
    prov.set_defaults(func=cmd_devices_provision)


def cmd_devices_provision(args: argparse.Namespace) -> int:
    from dispatch import load_devices, load_units
    from mqtt_bridge.provision import provision
    from qorgau.settings import Settings

    settings = Settings.from_flags({"devices": args.devices, "units": args.units, "topic_root": args.topic_root})
    _configure_logging(settings.log_level)
    if settings.devices is None and settings.units is None:
        print("qorgau devices provision: give --devices and/or --units", file=sys.stderr)
        return 2
    secret = settings.device_key_secret.get_secret_value() if settings.device_key_secret else None
    report = provision(
        devices=load_devices(settings.devices).values() if settings.devices else (),
        units=load_units(settings.units) if settings.units else (),
        out_dir=args.out,
        topic_root=settings.topic_root,
        rotate=args.rotate,
        signing=args.signing,
        key_secret=secret,
        service_user=args.service_user,
        app102_user=args.app102_user,
    )
    print(report.summary(), flush=True)
    return 0


def _configure_logging(level: str, *, replica: str | None = None) -> None:
    where = "" if replica is None else f" [{replica.replace('%', '%%')}]"
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s")


def _use_numba_cache(args: argparse.Namespace) -> None:
    """Point numba's cache at ``<cache dir>/numba`` (QORGAU_CACHE_DIR, --cache-dir) before numba loads.

    numba reads NUMBA_CACHE_DIR once, at import; the default (``__pycache__`` beside the sources)
    may be read-only where the service is installed, and then every start would compile again.
    """
    import os

    given = getattr(args, "cache_dir", None) or os.environ.get("QORGAU_CACHE_DIR") or "var/cache"
    if str(given).strip().lower() not in ("none", "off"):
        os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(given).resolve() / "numba"))


def cmd_serve(args: argparse.Namespace) -> int:
    _use_numba_cache(args)
    from qorgau.runtime import QorgauService

    settings = _settings(args)
    _configure_logging(settings.log_level, replica=settings.replica)
    service = QorgauService(settings)
    print(
        f"Qorgau dispatch (replica {settings.replica}) on {service.network.label}; "
        f"API at http://{settings.host}:{settings.port}/api/alerts",
        flush=True,
    )
    service.serve_forever(started_at=lambda: time.monotonic() - _STARTED)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from dispatch import load_devices, load_units
    from geo import Router, load_network
    from mqtt_bridge import parse_mqtt_url
    from mqtt_bridge.provision import load_credentials
    from qorgau.simulate import Simulator

    settings = _settings(args)
    _configure_logging(settings.log_level)
    router = Router(load_network(settings.network)) if settings.network else None
    devices = list(load_devices(settings.devices).values()) if settings.devices else []
    units = load_units(settings.units) if settings.units else []
    if args.move_units and not units:
        print("qorgau simulate: --move-units needs --units", file=sys.stderr)
        return 2
    responders = dispatcher = None
    if args.respond:
        from qorgau.responders import ApiClient, ApiError, SimulatedDispatcher, sign_in_officers

        admin_token = os.environ.get("QORGAU_ADMIN_TOKEN")
        token = os.environ.get("QORGAU_API_TOKEN")
        if not units or not admin_token:
            print(
                "qorgau simulate: --respond needs --units and the service's admin token in QORGAU_ADMIN_TOKEN "
                "(each simulated officer becomes a unit user, sim-officer-<unit id>, and signs in as one)",
                file=sys.stderr,
            )
            return 2
        if args.dispatch and not token:
            print("qorgau simulate: --dispatch needs a dispatcher token in QORGAU_API_TOKEN", file=sys.stderr)
            return 2
        try:
            officers = sign_in_officers(args.api, units, admin_token)
        except (ApiError, OSError) as e:
            print(f"qorgau simulate: cannot sign the officers in at {args.api}: {e}", file=sys.stderr)
            return 2
        responders = _responders(args, settings.mqtt_url, settings.topic_root, units, officers).start()
        dispatcher = SimulatedDispatcher(ApiClient(args.api, token)).start() if args.dispatch and token else None
        if args.kind == "test":
            print("note: 'test' presses get no orders; pass --kind press for responders to act", flush=True)
    walkers = None
    if args.walk_plans:
        if not units:
            print("qorgau simulate: --walk-plans needs --units (the foot units walk their plans)", file=sys.stderr)
            return 2
        credentials = load_credentials(args.credentials) if args.credentials else None
        logins = None
        if credentials is not None:  # each tracker on its own broker login, subscribed to its own plan
            base = parse_mqtt_url(settings.mqtt_url)
            logins = {uid: a.address(base) for uid, a in credentials.units.items()}
        walkers = _walkers(args, settings.mqtt_url, settings.topic_root, units, responders, logins).start()
        print(f"simulated patrols: {len(walkers.foot)} foot units walk the plans issued to them", flush=True)
    if router is None:
        print("no --network: publishing SOS presses only (102 reports are drawn on streets)", flush=True)
    sim = Simulator(
        url=settings.mqtt_url,
        topic_root=settings.topic_root,
        devices=devices,
        router=router,
        units=units,
        rate_per_s=args.rate,
        sos_share=args.sos_share,
        kind=args.kind,
        move_units=args.move_units,
        seed=args.seed,
        credentials=load_credentials(args.credentials) if args.credentials else None,
        heartbeat_s=None if args.no_heartbeats else settings.heartbeat_interval_s,
    )
    try:
        report = sim.run(args.count or None)
        if (responders is not None or walkers is not None) and args.count:  # let them finish their work
            print("presses sent; responders and patrols keep going until Ctrl-C", flush=True)
            while True:
                time.sleep(1.0)
    except KeyboardInterrupt:
        return 130
    finally:
        if walkers is not None:
            walkers.stop()
            print(_walkers_summary(walkers), flush=True)
        if dispatcher is not None:
            dispatcher.stop()
        if responders is not None:
            responders.stop()
            print(_responders_summary(responders), flush=True)
    if report.heartbeats:
        print(f"the buttons sent {report.heartbeats} heartbeats and said 'offline' when they stopped", flush=True)
    print(
        f"published {report.sos} SOS alerts, {report.app102} 102 reports, {report.positions} unit positions "
        f"to {settings.mqtt_url} under {settings.topic_root}/",
        flush=True,
    )
    return 0


def _responders(args: argparse.Namespace, url: str, topic_root: str, units: Sequence[Any], officers: Any) -> Any:
    """Simulated responders configured by the ``--ack-delay`` ... ``--time-scale`` flags."""
    from qorgau.responders import ResponderPolicy, Responders

    policy = ResponderPolicy(
        ack_delay_s=args.ack_delay,
        close_after_s=args.close_after,
        miss_share=args.miss_share,
        false_alarm_share=args.false_alarm_share,
        time_scale=args.time_scale,
    )
    return Responders(url=url, topic_root=topic_root, units=units, officers=officers, policy=policy, seed=args.seed)


def _walkers(
    args: argparse.Namespace, url: str, topic_root: str, units: Sequence[Any], duty: Any, logins: Any = None
) -> Any:
    """Simulated patrols configured by ``--late-share``, ``--late-by``, ``--skip-share``; ``duty``: the responders."""
    from qorgau.patrols import PatrolWalkers, WalkPolicy

    policy = WalkPolicy(late_share=args.late_share, skip_share=args.skip_share, late_min=args.late_by)
    return PatrolWalkers(
        url=url, topic_root=topic_root, units=units, policy=policy, seed=args.seed, duty=duty, logins=logins
    )


def _walkers_summary(walkers: Any) -> str:
    r = walkers.report
    kinds = {b: sum(v == b for v in r.behaviours.values()) for b in ("on_time", "late", "skip")}
    return (
        f"patrols: {r.plans} plans walked ({kinds['on_time']} on time, {kinds['late']} late, {kinds['skip']} "
        f"skipping stops), {r.finished} finished, {r.positions} positions, {r.held_back} held back while on an order"
    )


def _responders_summary(responders: Any) -> str:
    r = responders.report
    return (
        f"responders: {r.orders} orders, {r.missed} missed on purpose, {r.acknowledged} acknowledged, "
        f"{r.on_scene} on scene, {r.closed} closed ({r.false_alarms} false alarms), {r.positions} positions"
    )


def _demo_map_login(service: QorgauService) -> str:
    """A ``dispatcher`` user for the demo's map, with a fresh password the first time."""
    from dispatch import Role, User
    from dispatch.auth import hash_password

    if service.store.get_user("dispatcher") is not None:
        return "sign in as 'dispatcher' with the password printed by the first demo on this database"
    password = secrets.token_urlsafe(9)
    service.store.add_user(User("dispatcher", Role.DISPATCHER), hash_password(password), actor="demo")
    return f"sign in as 'dispatcher', password {password}"


def _demo_commander_login(service: QorgauService) -> str:
    """A ``commander`` user for the demo's plans console, with a fresh password the first time."""
    from dispatch import Role, User
    from dispatch.auth import hash_password

    if service.store.get_user("commander") is not None:
        return "sign in as 'commander' with the password printed by the first demo on this database"
    password = secrets.token_urlsafe(9)
    service.store.add_user(User("commander", Role.COMMANDER), hash_password(password), actor="demo")
    return f"sign in as 'commander', password {password}"


def _demo_unit_login(service: QorgauService, units: Sequence[Any]) -> str:
    """A ``unit`` user bound to the demo's first patrol car (else its first unit), fresh password the first time."""
    from dispatch import Role, UnitKind, User
    from dispatch.auth import hash_password

    unit = next((u for u in units if u.kind is UnitKind.CAR), units[0] if units else None)
    if unit is None:
        return "no units: no handheld sign-in"
    username = f"officer-{unit.id}"
    if service.store.get_user(username) is not None:
        return f"sign in as {username!r} ({unit.name}) with the password printed by the first demo on this database"
    password = secrets.token_urlsafe(9)
    service.store.add_user(User(username, Role.UNIT, unit.id), hash_password(password), actor="demo")
    return f"sign in as {username!r}, password {password}: the handheld of {unit.id} ({unit.name})"


def _demo_officers(service: QorgauService, units: Sequence[Any]) -> dict[str, Any]:
    """Each unit's simulated officer: the unit user ``officer-<unit id>`` (made once, with a password
    nobody is told but car 1's), signed in by a token of the demo's own service."""
    from dispatch import Role, User
    from dispatch.auth import hash_password
    from qorgau.responders import ApiClient

    officers, unknown = {}, None
    for unit in units:
        user = User(f"officer-{unit.id}", Role.UNIT, unit.id)
        if service.store.get_user(user.username) is None:
            # one hash of a password nobody is told, for all: Argon2 takes a second or two a hash here
            unknown = unknown or hash_password(secrets.token_urlsafe(18))
            service.store.add_user(user, unknown, actor="demo")
        officers[unit.id] = ApiClient(service.base_url, service.auth.issue(user))
    return officers


def _demo_secret(data_dir: Path) -> tuple[Path, bool]:
    """The demo's JWT secret file in ``data_dir`` (owner-only), made on the first run; and whether made now.

    Kept, like the demo's database and its passwords, so that the tokens a run prints and the map's
    sign-ins still work after the demo is restarted on the same data directory.
    """
    path = data_dir / "jwt-secret"
    if path.exists():
        return path, False
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(48) + "\n")
    return path, True


def cmd_demo(args: argparse.Namespace) -> int:
    _use_numba_cache(args)
    from zoneinfo import ZoneInfo

    from pydantic import SecretStr

    from dispatch import Role, UnitKind, User, load_devices, load_units
    from geo import Router, generate_city, load_network
    from qorgau.demo import write_seed_registry
    from qorgau.demo_city import ALMATY_ATTRIBUTION, ALMATY_CENTRE_BBOX, area_circle
    from qorgau.responders import ApiClient, SimulatedDispatcher
    from qorgau.runtime import QorgauService
    from qorgau.simulate import Simulator

    settings = _settings(args)
    _configure_logging(settings.log_level, replica=settings.replica)
    data_dir: Path = args.data_dir
    # The demo keeps to its own database, topics and session unless told otherwise by a flag,
    # so it never feeds simulated alerts into a real service configured through QORGAU_*.
    update: dict[str, Any] = {}
    if args.db is None:
        update["db_url"] = f"sqlite:///{data_dir / 'demo.sqlite3'}"
    if args.topic_root is None:
        update["topic_root"] = DEMO_TOPIC_ROOT
    if args.client_id is None:
        update["client_id"] = DEMO_CLIENT_ID
    if "plans_dir" not in settings.model_fields_set:  # the demo's plans beside the history they learn from
        update["plans_dir"] = data_dir / "plans"
    almaty = settings.network is None and args.city == "almaty"
    if almaty:
        from qorgau.demo_city import almaty_extract

        update["network"] = almaty_extract()
        network = load_network(update["network"], cache_dir=settings.cache_dir)
        city = f"Almaty, real streets: OpenStreetMap extract of March 2012 ({network.label}, {ALMATY_ATTRIBUTION})"
    elif settings.network is None:
        network = generate_city(n_nodes=args.nodes, seed=args.seed)
        city = f"a generated city, not a real place ({network.label})"
    else:
        network = load_network(settings.network, cache_dir=settings.cache_dir)
        city = f"{network.label} (from --network)"
    router = Router(network, max_snap_m=settings.max_snap_m, walk_speed_mps=settings.walk_speed_mps)
    if settings.units is None or settings.devices is None:
        if almaty:
            from qorgau.demo_city import almaty_registry, find_pois, write_registry

            seeded = almaty_registry(router, find_pois(update["network"]), seed=args.seed)
            units_path, devices_path = write_registry(data_dir, *seeded)
        else:
            units_path, devices_path = write_seed_registry(router, data_dir, seed=args.seed)
        update.setdefault("units", settings.units or units_path)
        update.setdefault("devices", settings.devices or devices_path)
    if almaty and not settings.map_tiles:
        update["map_streets_attribution"] = ALMATY_ATTRIBUTION
    secret_file = None
    if settings.jwt_secret is None:  # the demo only: `serve` refuses to start without QORGAU_JWT_SECRET
        secret_file, made = _demo_secret(data_dir)
        update["jwt_secret"] = SecretStr(secret_file.read_text(encoding="utf-8").strip())
    settings = settings.model_copy(update=update)
    assert settings.units is not None and settings.devices is not None
    units = load_units(settings.units)
    devices = list(load_devices(settings.devices).values())

    incidents = None
    if args.walk_plans:  # something to make a plan from at once (the demo's own alerts are minutes old)
        from qorgau.demo import DEMO_INCIDENTS, write_demo_incidents

        incidents = data_dir / DEMO_INCIDENTS
        if not incidents.exists():
            today = datetime.now(ZoneInfo(settings.timezone)).date()
            area = ALMATY_CENTRE_BBOX if almaty else None
            write_demo_incidents(network, incidents, today=today, seed=args.seed, area=area)
    service = QorgauService(settings, network=network).start()
    stop = threading.Event()
    sim = Simulator(
        url=settings.mqtt_url,
        topic_root=settings.topic_root,
        devices=devices,
        router=router,
        units=units,
        rate_per_s=args.rate,
        sos_share=args.sos_share,
        kind="press",
        # responders move the patrols along their routes instead, and the simulated patrols along their plans
        move_units=not args.respond and not args.walk_plans,
        seed=args.seed,
        heartbeat_s=settings.heartbeat_interval_s,
        report_area=area_circle(ALMATY_CENTRE_BBOX) if almaty else None,  # 102 reports where the units are
    )
    unit_login = _demo_unit_login(service, units)  # before the officers, who keep the users it made
    responders = dispatcher = None
    if args.respond:
        api = ApiClient(service.base_url, service.auth.issue(User("demo-sim-dispatcher", Role.DISPATCHER)))
        responders = _responders(
            args, settings.mqtt_url, settings.topic_root, units, _demo_officers(service, units)
        ).start()
        dispatcher = SimulatedDispatcher(api).start()
    walkers = None
    if args.walk_plans:  # an order comes first: the responders say who is on one
        walkers = _walkers(args, settings.mqtt_url, settings.topic_root, units, responders).start()
    sim_thread = threading.Thread(target=sim.run, args=(None,), kwargs={"stop": stop}, name="qorgau-sim", daemon=True)
    sim_thread.start()
    counts = {kind: sum(u.kind is kind for u in units) for kind in UnitKind}
    url = service.base_url
    print("Qorgau demo", flush=True)
    print(f"  city: {city}")
    print(
        f"  units: {settings.units} ({counts[UnitKind.BOOTH]} booths, {counts[UnitKind.FOOT]} foot patrols, "
        f"{counts[UnitKind.CAR]} patrol cars)"
    )
    print(f"  SOS buttons: {settings.devices} ({len(devices)})")
    print(f"  database: {settings.db_url}")
    print(f"  MQTT: {settings.mqtt_url}, topics under {settings.topic_root}/")
    if args.respond:
        print(
            f"  simulator: {args.rate:g} alerts/s (SOS presses and 102 reports); simulated officers acknowledge "
            f"after {args.ack_delay[0]:g}-{args.ack_delay[1]:g} s (missing {args.miss_share:.0%} on purpose), "
            f"travel their routes ({args.time_scale:g}x real speed), close after "
            f"{args.close_after[0]:g}-{args.close_after[1]:g} s on scene "
            f"({args.false_alarm_share:.0%} false alarms); a simulated dispatcher assigns what waits"
        )
    else:
        print(f"  simulator: {args.rate:g} alerts/s (SOS presses and 102 reports), patrols moving, nobody answers")
    if secret_file is not None:
        how = "made by this run" if made else "kept from an earlier run"
        print(
            f"  JWT secret: {secret_file} ({how}; tokens and sign-ins stay valid across runs on this data "
            "directory, for QORGAU_TOKEN_TTL_S)"
        )
    print(f"Open {url}/api/alerts  (units: {url}/api/units, API docs: {url}/docs, health: {url}/healthz)")
    for role in (Role.DISPATCHER, Role.COMMANDER):  # demo sign-ins, valid while this demo runs
        print(f"  {role.value} token: {service.auth.issue(User(f'demo-{role.value}', role))}")
    print(f"  e.g. curl -H 'Authorization: Bearer <dispatcher token>' {url}/api/alerts")
    print(f"Dispatcher map: {url}/map  ({_demo_map_login(service)})")
    print(f"Handheld (open on a phone or a narrow window): {url}/unit  ({unit_login})")
    print(f"Plans console (commander): {url}/plans  ({_demo_commander_login(service)}); plans in {settings.plans_dir}")
    if incidents is not None:
        hour = datetime.now(ZoneInfo(settings.timezone)).hour
        print(
            f"  to plan from: {incidents} (synthetic incidents of the last 90 days, not real): upload it as the "
            f"file on /plans, with today's date and a shift that has begun (e.g. {hour:02d}:00-{(hour + 2) % 24:02d}:00)"
        )
    if walkers is not None:
        print(
            f"  issued plans are walked by {len(walkers.foot)} simulated foot patrols during their shift (times UTC+5: "
            f"issue one for a shift that has begun to see it walked now; {args.late_share:.0%} leave "
            f"{args.late_by:g} min late, {args.skip_share:.0%} skip every second stop, an order comes first); "
            "the console shows each issued plan's dose delivered as it is walked"
        )
    else:
        print("  issued plans reach the units (MQTT, handheld, map); nobody walks them (--no-walk-plans)")
    print("Press Ctrl-C to stop." if args.duration is None else f"Stopping after {args.duration:g} s.", flush=True)
    try:
        if args.duration is None:
            while sim_thread.is_alive():
                sim_thread.join(timeout=1.0)
        else:
            deadline = time.monotonic() + args.duration
            while sim_thread.is_alive() and time.monotonic() < deadline:
                sim_thread.join(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        sim_thread.join(timeout=10)
        if walkers is not None:
            walkers.stop()
            print(_walkers_summary(walkers), flush=True)
        if dispatcher is not None:
            dispatcher.stop()
        if responders is not None:
            responders.stop()
            print(_responders_summary(responders), flush=True)
        metrics = service.service.metrics()
        service.stop(end_session=True)
    print(
        f"demo stopped: {sum(metrics['accepted'].values())} alerts accepted, "
        f"{sum(metrics['rejected'].values())} messages rejected",
        flush=True,
    )
    return 0


def _db_url(args: argparse.Namespace) -> str:
    from qorgau.settings import Settings

    return Settings.from_flags({"db_url": args.db}).db_url


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from dispatch import Store

    store = Store(_db_url(args))
    try:
        before = store.schema_revision()
        after = store.upgrade_schema(args.revision).schema_revision()
    finally:
        store.close()
    print(f"database {store.url.render_as_string(hide_password=True)}: {before or 'empty'} -> {after}", flush=True)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from dispatch import Store

    store = Store(_db_url(args))
    try:
        result = store.verify_audit()
        heads = {e.hash for e in store.audit_entries()} if args.head else set()
    finally:
        store.close()
    if not result.ok:
        print(
            f"audit trail BROKEN at entry {result.broken_at}: {result.problem} ({result.entries} entries verified before it)"
        )
        return 1
    if args.head and args.head not in heads:
        print(f"audit trail BROKEN: the published head {args.head} is no longer in the chain (entries were deleted)")
        return 1
    print(f"audit trail OK: {result.entries} entries, head {result.head_hash}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dispatch import Store
    from dispatch.reports import Districts, catalogue, quarter_bounds, render_public_report
    from qorgau.settings import Settings

    settings = Settings.from_flags({"db_url": args.db, "districts": args.districts, "plans_dir": args.plans_dir})
    start, end = quarter_bounds(args.quarter, settings.timezone)
    districts = Districts.from_geojson(settings.districts) if settings.districts else None
    store = Store(settings.db_url)
    try:
        alerts = store.alerts_received_between(start, end)
        dosage = _quarter_dosage(settings, store, start, end, districts, catalogue(args.lang)["dosage_everywhere"])
    finally:
        store.close()
    text = render_public_report(
        alerts, quarter=args.quarter.upper(), lang=args.lang, fmt=args.format, districts=districts, dosage=dosage
    )
    out: Path = args.out or Path(f"response-times-{args.quarter.upper()}.{args.lang}.{args.format}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: {len(alerts)} alerts received {start.isoformat()} .. {end.isoformat()}")
    return 0


def _quarter_dosage(
    settings: Any, store: Any, start: datetime, end: datetime, districts: Any, everywhere: str
) -> list[tuple[str, int, float, float]]:
    """The report's patrol minutes at hot spots by district, from the done plans under ``settings.plans_dir``."""
    if not Path(settings.plans_dir).is_dir():
        return []
    from web.plan_dosage import dosage_by_district
    from web.plan_jobs import PlanStore

    plans = PlanStore(settings.plans_dir)
    done = [(plans.folder(i), s) for i in plans.ids() if (s := plans.status(i)).get("status") == "done"]
    policy = settings.policy()
    rows = dosage_by_district(
        done,
        store,
        start,
        end,
        district_of=districts.name_of if districts is not None else (lambda lat, lon: everywhere),
        now=datetime.now(UTC),
        retention=policy.position_retention,
    )
    return [(r.district, r.plans, r.planned_min, r.delivered_min) for r in rows]


def cmd_users_add(args: argparse.Namespace) -> int:
    from dispatch import Role, Store, User
    from dispatch.auth import hash_password

    role = Role(args.role)
    if (role is Role.UNIT) != (args.unit_id is not None):
        print("qorgau users add: a 'unit' user needs --unit-id, and only a unit user may have one", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\n")
    store = Store(_db_url(args))
    try:
        store.upgrade_schema()
        store.add_user(User(args.username, role, args.unit_id), hash_password(password), actor="cli")
    finally:
        store.close()
    print(f"user {args.username!r} ({role.value}) saved")
    return 0


def cmd_users_toggle(args: argparse.Namespace) -> int:
    from dispatch import Store

    store = Store(_db_url(args))
    try:
        store.upgrade_schema()
        user = store.set_user_disabled(args.username, args.disabled, actor="cli")
    finally:
        store.close()
    if user is None:
        print(f"qorgau users: no user {args.username!r}", file=sys.stderr)
        return 1
    print(f"user {args.username!r} {'disabled' if user.disabled else 'enabled'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qorgau`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ReplicaConflict as e:  # a second replica on one SQLite file: a usage error, not a crash
        print(f"qorgau {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, ConnectionError, FileNotFoundError, RuntimeError) as e:
        print(f"qorgau {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
