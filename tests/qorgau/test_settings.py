"""Settings: QORGAU_* environment variables, overridden by flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from qorgau.cli import _settings, build_parser
from qorgau.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"QORGAU_{name.upper()}", raising=False)


def test_defaults() -> None:
    s = Settings()
    assert (s.db_url, s.mqtt_url, s.host, s.port) == (
        "sqlite:///var/qorgau.sqlite3",
        "mqtt://127.0.0.1:1883",
        "127.0.0.1",
        8000,
    )
    assert (s.topic_root, s.client_id, s.network, s.units, s.devices) == (
        "qorgau/v1",
        "qorgau-dispatch",
        None,
        None,
        None,
    )


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QORGAU_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/qorgau")
    monkeypatch.setenv("QORGAU_MQTT_URL", "mqtt://10.0.0.5:1884")
    monkeypatch.setenv("QORGAU_PORT", "9001")
    monkeypatch.setenv("QORGAU_NETWORK", "/data/almaty.osm.pbf")
    s = Settings()
    assert s.db_url.startswith("postgresql+psycopg://")
    assert (s.mqtt_url, s.port, s.network) == ("mqtt://10.0.0.5:1884", 9001, Path("/data/almaty.osm.pbf"))


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QORGAU_DB_URL", "sqlite:///from-env.sqlite3")
    monkeypatch.setenv("QORGAU_PORT", "9001")
    monkeypatch.setenv("QORGAU_TOPIC_ROOT", "env/v1")
    args = build_parser().parse_args(
        ["serve", "--db", "sqlite:///from-flag.sqlite3", "--mqtt", "mqtt://127.0.0.1:1999", "--units", "u.geojson"]
    )
    s = _settings(args)
    assert s.db_url == "sqlite:///from-flag.sqlite3"  # flag wins
    assert s.mqtt_url == "mqtt://127.0.0.1:1999"
    assert s.port == 9001  # no flag: environment
    assert s.topic_root == "env/v1"
    assert s.units == Path("u.geojson")


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("QORGAU_MQTT_URL", "http://broker:1883", "MQTT URL must start with mqtt:// or mqtts://"),
        ("QORGAU_TOPIC_ROOT", "qorgau/#", "topic root must be"),
        ("QORGAU_DB_URL", "not a url", "not a SQLAlchemy database URL: 'not a url'"),
        ("QORGAU_PORT", "70000", "less than or equal to 65535"),
        ("QORGAU_LOG_LEVEL", "loud", "log_level must be DEBUG, INFO, WARNING or ERROR, got 'loud'"),
    ],
)
def test_bad_settings_say_what_is_wrong(monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_empty_and_unrelated_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QORGAU_UNITS", "")  # docker-compose passes unset variables as empty strings
    monkeypatch.setenv("QORGAU_DEVICES", "")
    monkeypatch.setenv("QORGAU_MQTT_PORT", "18830")  # the Makefile's, not a setting
    monkeypatch.setenv("QORGAU_TEST_MQTT_URL", "mqtt://127.0.0.1:18830")
    s = Settings()
    assert (s.units, s.devices) == (None, None)
