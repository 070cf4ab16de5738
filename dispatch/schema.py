"""Schema migrations: Alembic scripts in :mod:`dispatch.migrations`, run from code or the CLI.

``qorgau db upgrade --db URL`` and every service start call :func:`upgrade`. A database made by
the issue-2 ``create_all`` (tables but no ``alembic_version``) is recognised and stamped with the
initial revision first, so it is upgraded in place rather than re-created.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

__all__ = ["INITIAL_REVISION", "current_revision", "head_revision", "upgrade"]

log = logging.getLogger(__name__)

INITIAL_REVISION = "0001"
"""The revision that reproduces the issue-2 schema."""

MIGRATION_LOCK_KEY = 7_240_330
"""PostgreSQL advisory lock held by the transaction that migrates (next to the audit chain's 7_240_331)."""

_MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration shipped with this code."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate the database behind ``engine`` to ``revision`` (default: the newest); return it.

    Runs in one transaction on PostgreSQL; on SQLite each migration is committed as it runs.
    Replicas starting together on one PostgreSQL database migrate one at a time: each takes a
    transaction-scoped advisory lock first, so the second waits for the first's commit and then
    finds the database at head (two concurrent ``CREATE TABLE`` would fail one start).
    """
    config = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = conn
        before = MigrationContext.configure(conn).get_current_revision()
        if before is None and inspect(conn).has_table("alerts"):
            log.info("database has the issue-2 tables but no migration history: stamping %s", INITIAL_REVISION)
            command.stamp(config, INITIAL_REVISION)
            before = INITIAL_REVISION
        command.upgrade(config, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        log.info("database migrated from %s to %s", before or "empty", after)
    return str(after)
