"""The alert store: SQLAlchemy 2 over SQLite (default, WAL mode) or PostgreSQL.

Every write commits before it returns, so a caller may acknowledge what it stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import sessionmaker

from dispatch import schema
from dispatch.domain import Alert, AlertSource, AlertStatus, DeviceSite, Unit, UnitKind, UnitStatus
from dispatch.models import AlertRow, Base, RecommendationRow, UnitRow
from geo import Recommendation

__all__ = ["Store", "StoreError"]

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The database could not be reached or refused a write; nothing was stored."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


def _to_row(alert: Alert) -> AlertRow:
    return AlertRow(
        source=alert.source.value,
        sender=alert.sender,
        event_id=alert.event_id,
        event_ts=alert.event_ts,
        received_at=alert.received_at,
        lat=alert.lat,
        lon=alert.lon,
        status=alert.status.value,
        kind=alert.kind,
        site=None if alert.site is None else alert.site.value,
        accuracy_m=alert.accuracy_m,
        category=alert.category,
        text=alert.text,
        snap_distance_m=alert.snap_distance_m,
        recommendations=[
            RecommendationRow(
                rank=rank,
                unit_id=r.unit_id,
                unit_kind=r.unit_kind,
                eta_s=float(r.eta_s),
                distance_m=float(r.distance_m),
            )
            for rank, r in enumerate(alert.recommendations)
        ],
    )


def _to_alert(row: AlertRow) -> Alert:
    return Alert(
        id=row.id,
        source=AlertSource(row.source),
        sender=row.sender,
        event_id=row.event_id,
        event_ts=row.event_ts,
        received_at=row.received_at,
        lat=row.lat,
        lon=row.lon,
        status=AlertStatus(row.status),
        kind=row.kind,
        site=None if row.site is None else DeviceSite(row.site),
        accuracy_m=row.accuracy_m,
        category=row.category,
        text=row.text,
        snap_distance_m=row.snap_distance_m,
        recommendations=tuple(
            Recommendation(unit_id=r.unit_id, unit_kind=r.unit_kind, eta_s=r.eta_s, distance_m=r.distance_m)
            for r in row.recommendations
        ),
    )


def _to_unit(row: UnitRow) -> Unit:
    return Unit(
        id=row.id,
        kind=UnitKind(row.kind),
        name=row.name,
        lat=row.lat,
        lon=row.lon,
        status=UnitStatus(row.status),
        position_ts=row.position_ts,
    )


class Store:
    """Alerts and units in a SQL database.

    Parameters
    ----------
    url
        A SQLAlchemy URL: ``sqlite:///var/qorgau.sqlite3`` (the parent folder is created) or
        ``postgresql+psycopg://postgres@127.0.0.1:5432/qorgau``.

    Examples
    --------
    >>> store = Store("sqlite:///:memory:").create_schema()
    >>> store.list_alerts()
    []
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    def upgrade_schema(self, revision: str = "head") -> Store:
        """Migrate the database to ``revision``, by default the newest (Alembic, :mod:`dispatch.schema`)."""
        with self._reachable("migrate the schema"):
            schema.upgrade(self.engine, revision)
        return self

    def schema_revision(self) -> str | None:
        """The migration the database is at, None for an empty database."""
        with self._reachable("read the schema revision"):
            return schema.current_revision(self.engine)

    create_schema = upgrade_schema
    """The schema is made by migrations only; the old name stays for callers of issue 2."""

    def drop_schema(self) -> None:
        """Drop all tables and the migration history (tests only)."""
        Base.metadata.drop_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))

    def close(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()

    def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:  # any driver error means "not healthy"
            log.warning("database ping failed for %r: %s", self, e)
            return False
        return True

    def journal_mode(self) -> str | None:
        """SQLite's journal mode (``"wal"``), None on other databases."""
        if self.engine.dialect.name != "sqlite":
            return None
        with self.engine.connect() as conn:
            return str(conn.execute(text("PRAGMA journal_mode")).scalar_one())

    @contextmanager
    def _reachable(self, action: str) -> Iterator[None]:
        """Turn "the database is unreachable or broken" into :class:`StoreError` naming ``action``."""
        try:
            yield
        except (OperationalError, InterfaceError) as e:
            msg = f"could not {action} in {self!r}: {e}"
            raise StoreError(msg) from e

    # alerts -------------------------------------------------------------------------------

    def add_alert(self, alert: Alert) -> tuple[Alert, bool]:
        """Commit ``alert`` unless its ``(source, sender, event_id)`` is already stored.

        Returns
        -------
        The stored alert (with ``id``) and whether it was created now (False: a redelivery, the
        alert stored the first time is returned).

        Raises
        ------
        StoreError
            If the database could not be reached; nothing was stored.
        """
        existing = self.find_alert(alert.source, alert.sender, alert.event_id)
        if existing is not None:
            return existing, False
        with self._reachable(f"store alert {alert.event_id!r} from {alert.sender!r}"), self._sessions() as session:
            row = _to_row(alert)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # the same event committed meanwhile by another thread or process
                session.rollback()
            else:
                return _to_alert(row), True
        existing = self.find_alert(alert.source, alert.sender, alert.event_id)
        if existing is None:
            msg = f"alert {alert.event_id!r} from {alert.sender!r} violated a constraint but is not stored"
            raise StoreError(msg)
        return existing, False

    def find_alert(self, source: AlertSource, sender: str, event_id: str) -> Alert | None:
        """The alert stored for this sender's event, if any."""
        stmt = select(AlertRow).where(
            AlertRow.source == source.value, AlertRow.sender == sender, AlertRow.event_id == event_id
        )
        with self._reachable(f"look up event {event_id!r} from {sender!r}"), self._sessions() as session:
            row = session.scalars(stmt).one_or_none()
            return None if row is None else _to_alert(row)

    def get_alert(self, alert_id: int) -> Alert | None:
        """The alert with this id, or None."""
        with self._reachable(f"read alert {alert_id}"), self._sessions() as session:
            row = session.get(AlertRow, alert_id)
            return None if row is None else _to_alert(row)

    def list_alerts(self, *, limit: int = 100, offset: int = 0) -> list[Alert]:
        """Alerts newest first."""
        stmt = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit).offset(offset)
        with self._reachable("list alerts"), self._sessions() as session:
            return [_to_alert(row) for row in session.scalars(stmt)]

    def count_alerts(self) -> int:
        with self._reachable("count alerts"), self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(AlertRow)) or 0)

    # units --------------------------------------------------------------------------------

    def save_unit(self, unit: Unit) -> None:
        """Insert or update one unit (position, status, name)."""
        self.save_units([unit])

    def save_units(self, units: Iterable[Unit]) -> None:
        """Insert or update units in one transaction."""
        with self._reachable("store units"), self._sessions() as session:
            for unit in units:
                session.merge(
                    UnitRow(
                        id=unit.id,
                        kind=unit.kind.value,
                        name=unit.name,
                        lat=unit.lat,
                        lon=unit.lon,
                        status=unit.status.value,
                        position_ts=unit.position_ts,
                    )
                )
            session.commit()

    def list_units(self) -> list[Unit]:
        """All units ever registered, by id."""
        with self._reachable("list units"), self._sessions() as session:
            return [_to_unit(row) for row in session.scalars(select(UnitRow).order_by(UnitRow.id))]

    def get_unit(self, unit_id: str) -> Unit | None:
        with self._reachable(f"read unit {unit_id!r}"), self._sessions() as session:
            row = session.get(UnitRow, unit_id)
            return None if row is None else _to_unit(row)
