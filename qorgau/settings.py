"""One typed settings class for the service, read from ``QORGAU_*`` environment variables.

Command-line flags override the environment: the CLI passes the flags it was given as keyword
arguments, and pydantic-settings lets init arguments win over the environment.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Only pydantic at import time: `qorgau --help` must not load SQLAlchemy, the broker client or the
# dispatch stack. The methods and validators that need them import them when they run.
if TYPE_CHECKING:
    from dispatch import DispatchPolicy
    from dispatch.supervision import SupervisionPolicy
    from web.hardening import HttpHardening

__all__ = ["DEFAULT_PRIORITY_BY_CATEGORY", "MIN_SECRET_CHARS", "Settings", "WeakSecret", "check_jwt_secret"]

MIN_SECRET_CHARS = 32
"""The shortest JWT secret accepted."""

KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "secret",
        "secretkey",
        "secret-key",
        "secret_key",
        "jwt-secret",
        "jwtsecret",
        "password",
        "qorgau",
        "qorgau-secret",
        "default",
        "development",
        "dev",
        "test",
        "your-secret-here",
        "your-256-bit-secret",
        "supersecret",
        "supersecretkey",
        "notasecret",
        "insecure",
    }
)
"""Secrets copied from examples and tutorials (compared without case, after stripping digits and padding)."""


class WeakSecret(ValueError):
    """The JWT secret is missing, short, a known default or too repetitive."""


def check_jwt_secret(secret: str | None) -> str:
    """Return ``secret`` if it is fit to sign API tokens.

    Raises
    ------
    WeakSecret
        Unset, shorter than :data:`MIN_SECRET_CHARS`, a known example value (possibly repeated
        or with digits appended), or fewer than 8 distinct characters.
    """
    if secret is None or not secret.strip():
        msg = (
            "QORGAU_JWT_SECRET is not set: API tokens need a signing key of at least "
            f"{MIN_SECRET_CHARS} characters from the environment, e.g. export QORGAU_JWT_SECRET=$(openssl rand -hex 32)"
        )
        raise WeakSecret(msg)
    if len(secret) < MIN_SECRET_CHARS:
        msg = f"QORGAU_JWT_SECRET has {len(secret)} characters, at least {MIN_SECRET_CHARS} are needed"
        raise WeakSecret(msg)
    core = secret.lower().strip("0123456789-_.!= ")
    if any(core and core == (known * (len(core) // len(known) + 1))[: len(core)] for known in KNOWN_DEFAULT_SECRETS):
        msg = "QORGAU_JWT_SECRET is a well-known example value: generate one, e.g. $(openssl rand -hex 32)"
        raise WeakSecret(msg)
    if len(set(secret)) < 8:
        msg = f"QORGAU_JWT_SECRET uses only {len(set(secret))} distinct characters: generate a random one"
        raise WeakSecret(msg)
    return secret


DEFAULT_PRIORITY_BY_CATEGORY: dict[str, int] = {
    "assault": 1,
    "domestic_violence": 1,
    "robbery": 1,
    "missing_child": 1,
    "burglary": 2,
    "theft": 3,
    "fraud": 4,
    "vandalism": 4,
    "public_order": 4,
    "noise": 5,
}
"""Priorities of 102 report categories when QORGAU_PRIORITY_BY_CATEGORY does not say otherwise."""


def _default_replica_name() -> str:
    from qorgau.replica import default_replica_name

    return default_replica_name()


class Settings(BaseSettings):
    """Settings of ``qorgau serve`` / ``demo`` / ``simulate``.

    Every field ``name`` is read from the environment variable ``QORGAU_<NAME>`` (e.g.
    ``QORGAU_DB_URL``, ``QORGAU_MQTT_URL``, ``QORGAU_NETWORK``) unless given as an argument.
    """

    model_config = SettingsConfigDict(
        env_prefix="QORGAU_", env_ignore_empty=True, extra="forbid", validate_default=True
    )

    network: Path | None = Field(None, description="street network file (.osm, .osm.gz, .osm.pbf, .graphml[.gz])")
    units: Path | None = Field(None, description="units GeoJSON (Point features: id, kind, name)")
    devices: Path | None = Field(None, description="SOS devices GeoJSON (Point features: id, site)")
    db_url: str = Field("sqlite:///var/qorgau.sqlite3", description="SQLAlchemy database URL")
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker URL")
    host: str = Field("127.0.0.1", description="HTTP bind address")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port (0 picks a free one)")
    topic_root: str = Field(
        "qorgau/v1", description="MQTT topic root"
    )  # mqtt_bridge.DEFAULT_TOPIC_ROOT (a test checks)
    client_id: str = Field("qorgau-dispatch", min_length=1, description="fixed MQTT client id (persistent session)")
    session_expiry_s: int = Field(7 * 24 * 3600, gt=0, description="how long the broker queues alerts for us")
    max_payload_bytes: int = Field(16 * 1024, gt=0, description="larger MQTT payloads are rejected unread")
    max_clock_skew_s: float = Field(300.0, ge=0, description="how far in the future a message ts may lie")
    max_snap_m: float = Field(500.0, gt=0, description="farther from every street is outside the service area")
    walk_speed_mps: float = Field(1.4, gt=0, description="walking speed of foot officers")
    recommend_k: int = Field(3, ge=1, description="units recommended per alert")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    # issue 3: the control room
    ack_deadline_s: float = Field(30.0, gt=0, description="a unit must acknowledge its order within this")
    auto_assign_p1: bool = Field(False, description="assign P1 SOS alerts to the top recommendation at once")
    follower_hold_s: float = Field(
        2.0,
        ge=0,
        le=10,
        description="replicas: a replica that is not the leader waits at most this long from receipt, while the "
        "leader lives, for the leader to commit a press before it ranks and commits the press itself "
        "(0: every replica ranks every press at once)",
    )
    stale_after_s: float = Field(120.0, gt=0, description="a patrol whose last position is older is stale")
    stale_policy: Literal["penalty", "exclude"] = Field(
        "penalty", description="rank stale patrols with a penalty or not at all"
    )
    stale_penalty_s: float = Field(300.0, ge=0, description="seconds added to a stale patrol's ETA")
    location_accuracy_max_m: float = Field(
        50.0,
        gt=0,
        description="a position less accurate is not trusted: a 102 report is 'location unverified', "
        "a handheld's fix is flagged and not used for ranking",
    )
    position_retention_days: float = Field(
        120.0,
        ge=0,
        description="how long every unit position is kept for dosage reports (0 keeps them forever); "
        "the quarterly report measures a quarter's plans from them",
    )
    changes_retention_h: float = Field(
        24.0,
        ge=0,
        description="how long the change stream (the live map's replay after a reconnect, the replicas' feed) "
        "is kept; the leader prunes it every ten minutes (0 keeps it forever)",
    )
    duplicate_radius_m: float = Field(100.0, ge=0, description="a new alert this close to an open one is linked to it")
    duplicate_window_s: float = Field(600.0, ge=0, description="... if it came within this many seconds")
    priority_by_category: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_BY_CATEGORY),
        description="102 category -> priority 1..5 (JSON in QORGAU_PRIORITY_BY_CATEGORY); others are P3",
    )
    districts: Path | None = Field(None, description="district polygons GeoJSON for response-time reports")
    timezone: str = Field("Asia/Almaty", description="the city's time zone (staffing hours, quarters)")
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 key of API tokens (>= 32 chars, random); `serve` refuses to start without one"
    )
    admin_token: SecretStr | None = Field(None, description="bootstrap admin bearer token for scripted set-up")
    token_ttl_s: int = Field(12 * 3600, gt=0, description="how long an API token is valid")
    # issue 4: the dispatcher's live map
    map_lang: Literal["kk", "ru", "en"] = Field("ru", description="language of the live map (/map?lang= overrides)")
    map_tiles: str | None = Field(
        None, description="raster tile URL template for the live map; unset: the city's own streets (offline)"
    )
    map_tiles_attribution: str = Field("", description="attribution shown with map_tiles")
    map_streets_attribution: str = Field(
        "",
        description="credit shown with the city's own streets (`qorgau demo` on Almaty: © OpenStreetMap contributors)",
    )
    # issue 6: signed presses (dispatch/signing.py, written by `qorgau devices provision`)
    device_keys: Path | None = Field(
        None, description="encrypted device signing keys (device-keys.json); devices in it must sign"
    )
    device_key_secret: SecretStr | None = Field(None, description="master key of the device key file (>= 32 chars)")
    signed_press_max_age_s: float = Field(3600.0, gt=0, description="a signed press whose ts is older is rejected")
    replay_window: int = Field(
        64, ge=1, le=4096, description="counters behind a device's highest that may still arrive late"
    )
    # issue 6: supervision of SOS buttons
    heartbeat_interval_s: float = Field(
        30.0, gt=0, description="SOS buttons send a heartbeat this often; 3 missed: offline"
    )
    flap_window_s: float = Field(
        120.0, ge=0, description="a button must stay online this long for its offline event to close"
    )
    self_test_max_age_s: float = Field(
        24 * 3600.0, gt=0, description="buttons whose last self-test is older are reported"
    )
    # issue 6: API hardening
    max_request_bytes: int = Field(1024 * 1024, gt=0, description="larger HTTP request bodies get 413")
    max_plan_request_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="the same for POST /api/plans (inline incidents)"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed to call the API from a browser (comma-separated); none by default",
    )
    login_max_failures: int = Field(10, ge=1, description="failed sign-ins per client address and username before 429")
    login_window_s: float = Field(300.0, gt=0, description="... within this many seconds")
    # issue 5: patrol plans through the HTTP API
    plans_dir: Path = Field(Path("var/plans"), description="where POST /api/plans keeps its plans, one folder each")
    # issue 13: booth sitings through the HTTP API
    sites_dir: Path = Field(Path("var/sites"), description="where POST /api/sites keeps its sitings, one folder each")
    sites_inputs_dir: Path | None = Field(
        None, description="the one directory whose files POST /api/sites may name by path; unset: inline inputs only"
    )
    # issue 11: replicas and fast start
    replica: str = Field(
        default_factory=_default_replica_name,
        description="this replica's name (metric labels, logs, /healthz, the change stream); default hostname-pid",
    )

    cache_dir: Path | None = Field(
        Path("var/cache"),
        description="compiled street networks and numba's cache; empty (QORGAU_CACHE_DIR=none) for no cache",
    )

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _no_cache(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() in ("none", "off") else value

    @field_validator("replica")
    @classmethod
    def _check_replica(cls, value: str) -> str:
        from qorgau.replica import REPLICA_NAME

        if not REPLICA_NAME.fullmatch(value):
            msg = f"a replica name is 1-63 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _check_jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_jwt_secret(value.get_secret_value())
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        from web.hardening import origin_of

        if isinstance(value, str):
            value = [o.strip() for o in value.split(",") if o.strip()]
        for origin in value:
            if origin != "*" and origin_of(origin) != origin.rstrip("/"):
                msg = f"a CORS origin is scheme://host[:port] without a path, got {origin!r}"
                raise ValueError(msg)
        return [o.rstrip("/") for o in value]

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except ArgumentError as e:
            msg = f"not a SQLAlchemy database URL: {value!r} ({e})"
            raise ValueError(msg) from e
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        from mqtt_bridge import parse_mqtt_url

        parse_mqtt_url(value)
        return value

    @field_validator("topic_root")
    @classmethod
    def _check_topic_root(cls, value: str) -> str:
        from mqtt_bridge import Topics

        Topics(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if not isinstance(logging.getLevelName(level), int):
            msg = f"log_level must be DEBUG, INFO, WARNING or ERROR, got {value!r}"
            raise ValueError(msg)
        return level

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            msg = f"timezone must be an IANA zone such as Asia/Almaty, got {value!r}"
            raise ValueError(msg) from e
        return value

    def policy(self) -> DispatchPolicy:
        """The dispatch rules these settings ask for."""
        from dispatch import DispatchPolicy, StalePolicy

        return DispatchPolicy(
            priority_by_category=self.priority_by_category,
            location_accuracy_max_m=self.location_accuracy_max_m,
            duplicate_radius_m=self.duplicate_radius_m,
            duplicate_window=timedelta(seconds=self.duplicate_window_s),
            stale_after=timedelta(seconds=self.stale_after_s),
            stale_policy=StalePolicy(self.stale_policy),
            stale_penalty_s=self.stale_penalty_s,
            ack_deadline=timedelta(seconds=self.ack_deadline_s),
            auto_assign_p1=self.auto_assign_p1,
            follower_hold=timedelta(seconds=self.follower_hold_s),
            timezone=self.timezone,
            position_retention=timedelta(days=self.position_retention_days) if self.position_retention_days else None,
            changes_retention=timedelta(hours=self.changes_retention_h) if self.changes_retention_h else None,
        )

    def supervision_policy(self) -> SupervisionPolicy:
        """How SOS buttons are supervised."""
        from dispatch.supervision import SupervisionPolicy

        return SupervisionPolicy(
            heartbeat_interval=timedelta(seconds=self.heartbeat_interval_s),
            flap_window=timedelta(seconds=self.flap_window_s),
            self_test_max_age=timedelta(seconds=self.self_test_max_age_s),
        )

    def http_hardening(self) -> HttpHardening:
        """What the HTTP API enforces (:mod:`web.hardening`)."""
        from web.hardening import HttpHardening, origin_of

        tiles = origin_of(self.map_tiles) if self.map_tiles else None
        return HttpHardening(
            max_request_bytes=self.max_request_bytes,
            max_request_bytes_by_prefix={
                "/api/plans": self.max_plan_request_bytes,
                "/api/sites": self.max_plan_request_bytes,
            },
            cors_origins=tuple(self.cors_origins),
            login_max_failures=self.login_max_failures,
            login_window_s=self.login_window_s,
            tile_origins=(tiles,) if tiles else (),
        )

    def public_view(self) -> dict[str, Any]:
        """The settings without secrets (``GET /api/settings``)."""
        from sqlalchemy.engine import make_url

        from mqtt_bridge import parse_mqtt_url

        view = self.model_dump(mode="json", exclude={"jwt_secret", "admin_token", "device_key_secret"})
        view["mqtt_url"] = str(parse_mqtt_url(self.mqtt_url))  # no password
        view["db_url"] = make_url(self.db_url).render_as_string(hide_password=True)
        return view

    @classmethod
    def from_flags(cls, flags: dict[str, Any]) -> Settings:
        """Settings from the environment, overridden by the flags that were given (not None)."""
        given = {k: v for k, v in flags.items() if v is not None and k in cls.model_fields}
        return cls(**given)
