"""Schema migrations: Alembic scripts in :mod:`dispatch.migrations`, run from code or the CLI.

``qorgau db upgrade --db URL`` and every service start call :func:`upgrade`. A database made by
the issue-2 ``create_all`` (tables but no ``alembic_version``) is recognised and stamped with the
initial revision first, so it is upgraded in place rather than re-created.

A database already at the newest revision (every restart of a replica) is recognised with plain
SQL (``SELECT version_num FROM alembic_version``) against the revisions read from the migration
files' headers: Alembic (about a third of a second of imports) is loaded only when there is
something to migrate, or to stamp.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["INITIAL_REVISION", "current_revision", "head_revision", "upgrade"]

log = logging.getLogger(__name__)

INITIAL_REVISION = "0001"
"""The revision that reproduces the issue-2 schema."""

MIGRATION_LOCK_KEY = 7_240_330
"""PostgreSQL advisory lock held by the transaction that migrates (next to the audit chain's 7_240_331)."""

_MIGRATIONS = Path(__file__).with_name("migrations")
_VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)
_LITERAL = re.compile(r"""^(?:"([^"]+)"|'([^']+)')$""")


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration shipped with this code."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


@functools.cache
def _shipped_head() -> str | None:
    """The head read from the migration files' ``revision = "..."`` / ``down_revision = ...`` lines.

    None unless they make one plain chain (one head, literal strings): then only Alembic decides.
    tests/dispatch/test_migrations.py checks that this is :func:`head_revision`.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((_MIGRATIONS / "versions").glob("*.py")):
        found = {m.group(1): m.group(2) for m in _ASSIGNMENT.finditer(path.read_text(encoding="utf-8"))}
        if "revision" not in found:
            continue  # __init__.py
        rev = _LITERAL.match(found["revision"])
        down = found.get("down_revision", "None")
        parent = _LITERAL.match(down)
        if rev is None or (parent is None and down != "None"):
            return None  # a tuple (a merge), a computed value: not a plain chain
        revisions.add(rev.group(1) or rev.group(2))
        if parent is not None:
            parents.add(parent.group(1) or parent.group(2))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def _stored_revision(conn: Connection) -> str | None:
    """``alembic_version``'s row by plain SQL (what Alembic reads), None without the table or a row."""
    if not inspect(conn).has_table(_VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    return str(rows[0]) if len(rows) == 1 else None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, None when it was never migrated."""
    with engine.connect() as conn:
        return _stored_revision(conn)


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate the database behind ``engine`` to ``revision`` (default: the newest); return it.

    Runs in one transaction on PostgreSQL; on SQLite each migration is committed as it runs.
    Replicas starting together on one PostgreSQL database migrate one at a time: each takes a
    transaction-scoped advisory lock first, so the second waits for the first's commit and then
    finds the database at head (two concurrent ``CREATE TABLE`` would fail one start). A database
    already at the head is left as it is, without the lock and without loading Alembic.
    """
    head = _shipped_head()
    if revision in ("head", head) and head is not None:
        with engine.connect() as conn:
            if _stored_revision(conn) == head:
                return head
    from alembic import command
    from alembic.runtime.migration import MigrationContext

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
