"""Broker identities: per-device and per-unit credentials, the Mosquitto password file and ACL.

A device's identity is its broker login, never the topic it publishes on: the ACL lets an
account publish only under topics whose id level equals its username (``pattern ... %u``), so
button ``btn-7`` cannot publish as ``btn-8``. ``qorgau devices provision`` (:func:`provision`)
writes, into one folder:

``passwd``
    Mosquitto 2 password file (``user:$7$<iterations>$<salt>$<hash>``, PBKDF2-HMAC-SHA512),
    mode 0600.
``acl``
    Mosquitto ACL (:func:`acl_text`).
``credentials.json``
    For installers, mode 0600: every account's username and password, and each button's
    signing key (hex). Re-running keeps what is there unless ``rotate``.
``device-keys.json``
    The buttons' signing keys encrypted under ``QORGAU_DEVICE_KEY_SECRET``
    (:mod:`dispatch.device_keys`), for the service (``QORGAU_DEVICE_KEYS``), mode 0600.

Every file is written atomically (temporary file, fsync, rename). Passwords and keys are never
logged and never shown in reprs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dispatch import Device, Unit
from dispatch.device_keys import write_device_keys, write_private
from dispatch.signing import KEY_BYTES, DeviceKey
from mqtt_bridge.broker import BrokerAddress
from mqtt_bridge.topics import DEFAULT_TOPIC_ROOT, Topics

__all__ = [
    "Account",
    "Credentials",
    "ProvisionReport",
    "acl_text",
    "load_credentials",
    "mosquitto_password_hash",
    "provision",
]

log = logging.getLogger(__name__)

CREDENTIALS_FORMAT = "qorgau-credentials/1"
DEFAULT_SERVICE_USER = "qorgau-service"
DEFAULT_APP102_USER = "qorgau-app102"
PBKDF2_ITERATIONS = 101
"""Mosquitto 2's own default (``mosquitto_passwd``). Passwords here are 192 random bits, so the
iteration count does not protect them; a low count keeps each CONNECT cheap for the broker."""
_SALT_BYTES = 12  # what Mosquitto 2 uses

Role = Literal["device", "unit", "service", "app102"]


def mosquitto_password_hash(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A Mosquitto 2 password hash: ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>``.

    Examples
    --------
    >>> mosquitto_password_hash("secret", salt=bytes(12))
    '$7$101$AAAAAAAAAAAAAAAA$...'  # doctest: +SKIP
    """
    if iterations < 1:
        msg = f"iterations must be positive, got {iterations!r}"
        raise ValueError(msg)
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass(frozen=True, slots=True)
class Account:
    """One broker login. ``password`` and ``key`` never appear in the repr."""

    username: str
    password: str = field(repr=False)
    role: Role
    key: DeviceKey | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        signing = ", signing" if self.key is not None else ""
        return f"Account({self.username!r}, role={self.role!r}{signing})"

    def address(self, broker: BrokerAddress) -> BrokerAddress:
        """``broker`` with this account's login."""
        return dataclasses.replace(broker, username=self.username, password=self.password)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.key is not None:
            out["key"] = self.key.secret.hex()
        return out


@dataclass(frozen=True)
class Credentials:
    """Every account of one deployment (the content of ``credentials.json``)."""

    topic_root: str
    service: Account
    app102: Account
    devices: dict[str, Account]
    units: dict[str, Account]

    def __repr__(self) -> str:
        return (
            f"Credentials(topic_root={self.topic_root!r}, service={self.service.username!r}, "
            f"{len(self.devices)} devices, {len(self.units)} units)"
        )

    def accounts(self) -> list[Account]:
        return [self.service, self.app102, *self.devices.values(), *self.units.values()]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CREDENTIALS_FORMAT,
            "topic_root": self.topic_root,
            "service": self.service.to_json(),
            "app102": self.app102.to_json(),
            "devices": {k: a.to_json() for k, a in sorted(self.devices.items())},
            "units": {k: a.to_json() for k, a in sorted(self.units.items())},
        }


def _account(entry: Any, *, role: Role, where: str) -> Account:
    if (
        not isinstance(entry, Mapping)
        or not isinstance(entry.get("username"), str)
        or not isinstance(entry.get("password"), str)
    ):
        msg = f"credentials file: {where} needs string 'username' and 'password'"
        raise ValueError(msg)
    key = entry.get("key")
    try:
        device_key = None if key is None else DeviceKey.from_hex(key)
    except ValueError as e:
        msg = f"credentials file: {where}: {e}"
        raise ValueError(msg) from e
    return Account(entry["username"], entry["password"], role, device_key)


def load_credentials(path: str | Path) -> Credentials:
    """Read a ``credentials.json`` written by :func:`provision`.

    Raises
    ------
    FileNotFoundError, ValueError
        If it is missing or not a credentials file (the message never quotes a secret).
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        msg = f"credentials file {str(path)!r} does not exist (qorgau devices provision writes it)"
        raise FileNotFoundError(msg) from e
    except json.JSONDecodeError as e:
        msg = f"credentials file {str(path)!r} is not valid JSON (line {e.lineno})"
        raise ValueError(msg) from None
    if not isinstance(doc, dict) or doc.get("format") != CREDENTIALS_FORMAT:
        msg = f"{str(path)!r} is not a Qorgau credentials file (format {CREDENTIALS_FORMAT!r})"
        raise ValueError(msg)
    groups = {name: doc.get(name) or {} for name in ("devices", "units")}
    for name, group in groups.items():
        if not isinstance(group, dict):
            msg = f"credentials file: {name!r} must be an object"
            raise ValueError(msg)
    return Credentials(
        topic_root=str(doc.get("topic_root") or DEFAULT_TOPIC_ROOT),
        service=_account(doc.get("service"), role="service", where="'service'"),
        app102=_account(doc.get("app102"), role="app102", where="'app102'"),
        devices={k: _account(v, role="device", where=f"device {k!r}") for k, v in groups["devices"].items()},
        units={k: _account(v, role="unit", where=f"unit {k!r}") for k, v in groups["units"].items()},
    )


def acl_text(
    topic_root: str = DEFAULT_TOPIC_ROOT,
    *,
    service_user: str = DEFAULT_SERVICE_USER,
    app102_user: str = DEFAULT_APP102_USER,
) -> str:
    """The Mosquitto ACL: who may publish (``write``) and subscribe (``read``) to what.

    Buttons and units get ``pattern`` lines: ``%u`` is the login's username, so an account reaches
    only the topics whose id level is its own username. Device, unit and service usernames are
    distinct (:func:`provision` checks), so a unit's pattern can only name a device topic that no
    registered device owns; the service rejects that as ``unknown_device``.
    """
    root = Topics(topic_root).root
    return "\n".join(
        [
            "# Mosquitto ACL written by `qorgau devices provision`; do not edit by hand, re-run it.",
            f"# Topic root {root}. 'write' = publish, 'read' = subscribe and receive.",
            "",
            "# The dispatch service (the MQTT bridge): reads what devices, units and the 102 app send,",
            "# writes acks, orders and patrol plans.",
            f"user {service_user}",
            f"topic read {root}/sos/+/alert",
            f"topic read {root}/sos/+/heartbeat",
            f"topic read {root}/sos/+/status",
            f"topic write {root}/sos/+/ack",
            f"topic read {root}/app102/report",
            f"topic write {root}/app102/ack/#",
            f"topic read {root}/units/+/position",
            f"topic read {root}/units/+/status",
            f"topic read {root}/units/+/ack",
            f"topic write {root}/units/+/orders",
            f"topic write {root}/units/+/plan",
            "",
            "# The Police 102 app's gateway: reports in, its acks (MQTT 5 Response Topic) back.",
            f"user {app102_user}",
            f"topic write {root}/app102/report",
            f"topic read {root}/app102/ack/#",
            "",
            "# SOS buttons (username = device id): their own alert, heartbeat and status; their own acks.",
            f"pattern write {root}/sos/%u/alert",
            f"pattern write {root}/sos/%u/heartbeat",
            f"pattern write {root}/sos/%u/status",
            f"pattern read {root}/sos/%u/ack",
            "",
            "# Units (username = unit id): their own position, status and acks; their own orders and plan.",
            f"pattern write {root}/units/%u/position",
            f"pattern write {root}/units/%u/status",
            f"pattern write {root}/units/%u/ack",
            f"pattern read {root}/units/%u/orders",
            f"pattern read {root}/units/%u/plan",
            "",
        ]
    )


def _check_username(name: str, *, what: str) -> str:
    if not name or any(c in name for c in ":/+#") or any(c.isspace() or ord(c) < 32 for c in name):
        msg = f"{what} {name!r} cannot be a broker username: it must be non-empty, without ':', '/', '+', '#' or spaces"
        raise ValueError(msg)
    return name


@dataclass
class ProvisionReport:
    """What :func:`provision` did (counts and paths only: no secret)."""

    out_dir: Path
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    signing_devices: int = 0
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        files = ", ".join(f"{name} {path}" for name, path in self.files.items())
        return (
            f"{len(self.created)} accounts created, {len(self.kept)} kept, {len(self.rotated)} rotated, "
            f"{len(self.removed)} removed; {self.signing_devices} devices sign their presses; wrote {files}"
        )


def _new_password() -> str:
    return secrets.token_urlsafe(24)


def _reuse(
    old: Account | None, username: str, role: Role, *, rotate: bool, signing: bool, report: ProvisionReport
) -> Account:
    """The account for ``username``: the old one kept (a key added or dropped as ``signing`` says), or a new one."""
    if old is None or rotate:
        (report.rotated if old is not None else report.created).append(username)
        key = DeviceKey(secrets.token_bytes(KEY_BYTES)) if signing else None
        return Account(username, _new_password(), role, key)
    report.kept.append(username)
    key = old.key if signing else None
    if signing and key is None:
        key = DeviceKey(secrets.token_bytes(KEY_BYTES))
    return Account(username, old.password, role, key)


def provision(
    *,
    devices: Iterable[Device],
    units: Iterable[Unit],
    out_dir: str | Path,
    topic_root: str = DEFAULT_TOPIC_ROOT,
    rotate: bool = False,
    signing: bool = True,
    key_secret: str | None = None,
    service_user: str = DEFAULT_SERVICE_USER,
    app102_user: str = DEFAULT_APP102_USER,
) -> ProvisionReport:
    """Write the password file, ACL, installers' credentials and encrypted device keys into ``out_dir``.

    Parameters
    ----------
    devices, units
        The registries (:func:`dispatch.load_devices`, :func:`dispatch.load_units`).
    out_dir
        Where the four files go; an existing ``credentials.json`` there is reused.
    topic_root
        Root of the topics in the ACL.
    rotate
        New passwords and keys for every account, even those that have some.
    signing
        Give every button a signing key (and write ``device-keys.json``); False: no button signs.
    key_secret
        The master key that encrypts ``device-keys.json`` (``QORGAU_DEVICE_KEY_SECRET``); required
        when ``signing``.
    service_user, app102_user
        Usernames of the dispatch service and of the 102 app's gateway.

    Raises
    ------
    ValueError
        An id that cannot be a username, two accounts with one username, or no ``key_secret``
        while signing.
    """
    out = Path(out_dir)
    devices = list(devices)
    units = list(units)
    names: dict[str, str] = {}
    for name, what in (
        [(service_user, "service user"), (app102_user, "102 app user")]
        + [(d.id, "device") for d in devices]
        + [(u.id, "unit") for u in units]
    ):
        _check_username(name, what=what)
        if name in names:
            msg = f"username {name!r} would belong to both the {names[name]} and the {what}: ids must be distinct"
            raise ValueError(msg)
        names[name] = what
    if signing and not key_secret:
        msg = "signing keys are encrypted under QORGAU_DEVICE_KEY_SECRET: set it, or provision with --no-signing"
        raise ValueError(msg)
    Topics(topic_root)  # refuse a bad root before writing anything

    creds_path = out / "credentials.json"
    old = load_credentials(creds_path) if creds_path.exists() else None
    report = ProvisionReport(out_dir=out)
    service = _reuse(old.service if old else None, service_user, "service", rotate=rotate, signing=False, report=report)
    app102 = _reuse(old.app102 if old else None, app102_user, "app102", rotate=rotate, signing=False, report=report)
    old_devices = old.devices if old else {}
    old_units = old.units if old else {}
    creds = Credentials(
        topic_root=topic_root,
        service=service,
        app102=app102,
        devices={
            d.id: _reuse(old_devices.get(d.id), d.id, "device", rotate=rotate, signing=signing, report=report)
            for d in devices
        },
        units={
            u.id: _reuse(old_units.get(u.id), u.id, "unit", rotate=rotate, signing=False, report=report) for u in units
        },
    )
    if old is not None:
        gone = (set(old.devices) - set(creds.devices)) | (set(old.units) - set(creds.units))
        gone |= {a.username for a in (old.service, old.app102)} - {service_user, app102_user}
        report.removed = sorted(gone)

    passwd = "".join(f"{a.username}:{mosquitto_password_hash(a.password)}\n" for a in creds.accounts())
    report.files["passwd"] = write_private(out / "passwd", passwd)
    report.files["acl"] = write_private(
        out / "acl", acl_text(topic_root, service_user=service_user, app102_user=app102_user), mode=0o644
    )
    report.files["credentials"] = write_private(creds_path, json.dumps(creds.to_json(), indent=1) + "\n")
    keys = {device_id: a.key for device_id, a in creds.devices.items() if a.key is not None}
    report.signing_devices = len(keys)
    keys_path = out / "device-keys.json"
    if signing:
        assert key_secret is not None
        report.files["device_keys"] = write_device_keys(keys_path, keys, key_secret)
    elif keys_path.exists():
        keys_path.unlink()  # nobody signs: a stale key file would make the service demand signatures
    log.info("provisioned broker accounts in %s: %s", out, report.summary())
    return report
