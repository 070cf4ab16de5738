"""One typed settings class for the service, read from ``QORGAU_*`` environment variables.

Command-line flags override the environment: the CLI passes the flags it was given as keyword
arguments, and pydantic-settings lets init arguments win over the environment.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mqtt_bridge import DEFAULT_TOPIC_ROOT, Topics, parse_mqtt_url

__all__ = ["Settings"]


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
    topic_root: str = Field(DEFAULT_TOPIC_ROOT, description="MQTT topic root")
    client_id: str = Field("qorgau-dispatch", min_length=1, description="fixed MQTT client id (persistent session)")
    session_expiry_s: int = Field(7 * 24 * 3600, gt=0, description="how long the broker queues alerts for us")
    max_payload_bytes: int = Field(16 * 1024, gt=0, description="larger MQTT payloads are rejected unread")
    max_clock_skew_s: float = Field(300.0, ge=0, description="how far in the future a message ts may lie")
    max_snap_m: float = Field(500.0, gt=0, description="farther from every street is outside the service area")
    walk_speed_mps: float = Field(1.4, gt=0, description="walking speed of foot officers")
    recommend_k: int = Field(3, ge=1, description="units recommended per alert")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        try:
            make_url(value)
        except ArgumentError as e:
            msg = f"not a SQLAlchemy database URL: {value!r} ({e})"
            raise ValueError(msg) from e
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @field_validator("topic_root")
    @classmethod
    def _check_topic_root(cls, value: str) -> str:
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

    @classmethod
    def from_flags(cls, flags: dict[str, Any]) -> Settings:
        """Settings from the environment, overridden by the flags that were given (not None)."""
        given = {k: v for k, v in flags.items() if v is not None and k in cls.model_fields}
        return cls(**given)
