"""Alembic migrations on SQLite and PostgreSQL: they build exactly the models' schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from dispatch import Store, schema
from dispatch.models import Base
from dispatch.schema import INITIAL_REVISION, head_revision
from qorgau.cli import main

ROOT = Path(__file__).resolve().parents[2]

_UPGRADE_PROBE = """
import sys
from dispatch import Store
store = Store(sys.argv[1])
print(store.upgrade_schema().schema_revision(), "alembic" in sys.modules)
store.close()
"""


def test_migrations_build_the_models_schema(db_url: str) -> None:
    store = Store(db_url).upgrade_schema()
    try:
        assert store.schema_revision() == head_revision()
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        store.upgrade_schema()  # a second run is a no-op
        assert store.schema_revision() == head_revision()
    finally:
        store.close()


def test_issue2_database_made_by_create_all_is_stamped_and_upgraded(db_url: str) -> None:
    store = Store(db_url).upgrade_schema(INITIAL_REVISION)
    with store.engine.begin() as conn:  # what issue 2's create_all left: tables, no history
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(
            text(
                "INSERT INTO units (id, kind, name, lat, lon, status) VALUES ('car-1', 'car', 'Car 1', 43.2, 76.9, 'available')"
            )
        )
    assert store.schema_revision() is None
    store.upgrade_schema()
    assert store.schema_revision() == head_revision()
    assert [u.id for u in store.list_units()] == ["car-1"]
    store.close()


def test_db_upgrade_command(db_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["db", "upgrade", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert f": empty -> {head_revision()}" in out
    engine = create_engine(db_url)
    assert {"alerts", "alert_recommendations", "units", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()
    assert main(["db", "upgrade", "--db", db_url]) == 0
    assert f"{head_revision()} -> {head_revision()}" in capsys.readouterr().out


def test_db_upgrade_command_reports_an_unreachable_database(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["db", "upgrade", "--db", "postgresql+psycopg://postgres@127.0.0.1:9/nothing"]) == 1
    assert "could not read the schema revision" in capsys.readouterr().err


def test_replicas_starting_together_on_one_empty_database_migrate_once_and_all_start(pg_url: str) -> None:
    """Issue 11: three replicas' first starts race on one empty PostgreSQL database: all succeed."""
    import threading

    barrier = threading.Barrier(3)
    results: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        store = Store(pg_url)
        try:
            barrier.wait(timeout=30)
            store.upgrade_schema()
            results.append(store.schema_revision() or "")
        except BaseException as e:  # collected and asserted below
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert results == [head_revision()] * 3
    with create_engine(pg_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_the_head_read_from_the_migration_files_is_alembics() -> None:
    # the start's check without Alembic reads the files' headers: they must name Alembic's head
    assert schema._shipped_head() == head_revision()


@pytest.mark.parametrize("at", ["head", INITIAL_REVISION])
def test_a_database_at_the_head_is_checked_without_alembic_and_one_behind_is_migrated(db_url: str, at: str) -> None:
    Store(db_url).upgrade_schema(at).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", _UPGRADE_PROBE, db_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    revision, loaded_alembic = done.stdout.split()
    assert revision == head_revision()  # either way the database ends at the head
    assert loaded_alembic == str(at != "head")  # and Alembic is loaded only when there is something to migrate
