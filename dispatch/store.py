"""The alert store: SQLAlchemy 2 over SQLite (default, WAL mode) or PostgreSQL.

Every write commits before it returns, so a caller may acknowledge what it stored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import socket
import threading
import typing
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, joinedload, sessionmaker

from dispatch import schema
from dispatch.audit import GENESIS_HASH, AuditEntry, ChainReport, canonical_json, entry_hash, verify_chain
from dispatch.domain import (
    Alert,
    AlertSource,
    AlertStatus,
    Assignment,
    Role,
    Unit,
    UnitKind,
    User,
)
from dispatch.models import (
    AlertRow,
    AssignmentRow,
    AuditRow,
    Base,
    ChangeRow,
    RecommendationRow,
    UnitPositionRow,
    UnitRow,
    UserRow,
)
from dispatch.ports import Change, ChangeKind
from geo import Recommendation

__all__ = [
    "CounterReplayed",
    "EventKey",
    "Store",
    "StoreError",
    "Tx",
    "alert_snapshot",
    "deadlocked",
    "unit_snapshot",
]

log = logging.getLogger(__name__)

_D = TypeVar("_D")

EventKey = tuple[AlertSource, str, str]
"""An event: ``(source, sender, event_id)``, unique among the stored alerts."""

_IN_CHUNK = 500
"""Keys per look-up query (a batch of presses is 128 at most; a longer list is split)."""


class StoreError(RuntimeError):
    """The database could not be reached or refused a write; nothing was stored."""


def deadlocked(error: BaseException) -> bool:
    """Whether ``error`` (a :class:`StoreError` or a driver error) is PostgreSQL breaking a deadlock (40P01)."""
    while error is not None:
        if getattr(error, "sqlstate", None) == "40P01":
            return True
        error = getattr(error, "orig", None) or error.__cause__  # type: ignore[assignment]
    return False


class _AlreadyStored(Exception):
    """The event or counter of an alert to add is stored already (rolls its transaction back)."""


class CounterReplayed(ValueError):
    """A signed press's counter is already stored with another event of its device (a replay)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL skips the fsync of every commit (3.8 ms on these disks, the largest
        # single cost of an alert) but a commit still survives a crash or kill of Qorgau; only a
        # power cut or kernel crash may lose the last commits. Production runs PostgreSQL.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


_ALERT_FIELDS = (
    "status",
    "priority",
    "duplicate_of",
    "location_unverified",
    "escalations",
    "assigned_unit_id",
    "proposed_unit_id",
    "close_reason",
    "recommended_at",
    "assigned_at",
    "acknowledged_at",
    "en_route_at",
    "on_scene_at",
    "closed_at",
    "outcome",
    "close_note",
)
"""Alert fields that change after ingest (the rest never do)."""

_AUDIT_LOCK_KEY = 7_240_331
"""PostgreSQL advisory lock that serialises appends to the audit chain and the change stream across processes."""

CHANGES_CHANNEL = "qorgau_changes"
"""The PostgreSQL ``NOTIFY`` channel of the change stream (the payload is the newest ``seq``)."""


def default_replica() -> str:
    """The replica name when none is given: ``hostname-pid``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _rec_rows(recommendations: Iterable[Recommendation]) -> list[RecommendationRow]:
    return [
        RecommendationRow(
            rank=rank, unit_id=r.unit_id, unit_kind=r.unit_kind, eta_s=float(r.eta_s), distance_m=float(r.distance_m)
        )
        for rank, r in enumerate(recommendations)
    ]


def _alert_value(alert: Alert, name: str) -> Any:
    value = getattr(alert, name)
    return value.value if isinstance(value, Enum) else value


# -- rows <-> domain: one generic mapping over the fields and columns of the same name ---------


def _converter(hint: Any) -> Callable[[Any], Any] | None:
    """How a column value becomes a field of type ``hint``: enums by value, booleans; else as it is."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = len(args) < len(typing.get_args(hint))
    target = args[0] if optional and len(args) == 1 else hint
    if isinstance(target, type) and issubclass(target, Enum):
        return (lambda v: None if v is None else target(v)) if optional else target
    if target is bool and not optional:
        return bool
    return None


_Shared = tuple[tuple[str, Callable[[Any], Any] | None], ...]
_SHARED: dict[tuple[type, type], _Shared] = {}


def _table(row_type: type[Base]) -> Table:
    """The table of a row class (SQLAlchemy types ``__table__`` as a ``FromClause``; here it is always a ``Table``)."""
    return cast(Table, row_type.__table__)


def _shared(cls: type, row_type: type) -> _Shared:
    """The fields of dataclass ``cls`` that ``row_type`` has a column for, with their converters."""
    shared = _SHARED.get((cls, row_type))
    if shared is None:
        columns = set(row_type.__table__.columns.keys())  # type: ignore[attr-defined]
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        shared = tuple((f.name, _converter(hints[f.name])) for f in fields if f.name in columns)
        _SHARED[(cls, row_type)] = shared
    return shared


def _from_row(cls: type[_D], row: Any, *, row_type: type | None = None, **explicit: Any) -> _D:
    """A ``cls`` from an ORM row, or from a Core row of ``row_type``'s table: each field from its
    column of the same name, unless in ``explicit``."""
    values = {
        name: getattr(row, name) if convert is None else convert(getattr(row, name))
        for name, convert in _shared(cls, row_type or type(row))
        if name not in explicit
    }
    return cls(**values, **explicit)


def _alerts_by_id(session: Session | Connection, ids: Collection[int]) -> dict[int, Alert]:
    """The alerts of ``ids`` with their recommendations, from Core rows (two queries).

    Every replica reads every change of the stream: ORM entities cost twice as much here
    (measured: 334 ms against 170 ms for 1,000 alerts, the same alerts)."""
    recommendations: dict[int, list[Recommendation]] = {}
    stmt = (
        select(RecommendationRow.__table__)
        .where(RecommendationRow.alert_id.in_(ids))
        .order_by(RecommendationRow.alert_id, RecommendationRow.rank)
    )
    for r in session.execute(stmt):
        recommendations.setdefault(r.alert_id, []).append(_recommendation(r))
    return {
        r.id: _from_row(Alert, r, row_type=AlertRow, recommendations=tuple(recommendations.get(r.id, ())))
        for r in session.execute(select(AlertRow.__table__).where(AlertRow.id.in_(ids)))
    }


def _row_values(obj: Any, row_type: type, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The column values of a dataclass for ``row_type``: enums by value, the rest as they are."""
    left_out = set(skip)
    values = {}
    for name, _ in _shared(type(obj), row_type):
        if name in left_out:
            continue
        value = getattr(obj, name)
        values[name] = value.value if isinstance(value, Enum) else value
    return values


def _to_row(alert: Alert) -> AlertRow:
    """A new alert's row (its id comes from the database)."""
    return AlertRow(**_row_values(alert, AlertRow, skip=("id",)), recommendations=_rec_rows(alert.recommendations))


def _recommendation(r: Any) -> Recommendation:
    """A recommendation of its row (ORM or Core)."""
    return Recommendation(unit_id=r.unit_id, unit_kind=r.unit_kind, eta_s=r.eta_s, distance_m=r.distance_m)


def _to_alert(row: AlertRow) -> Alert:
    return _from_row(Alert, row, recommendations=tuple(_recommendation(r) for r in row.recommendations))


def _to_unit(row: UnitRow) -> Unit:
    return _from_row(Unit, row)


def _unit_row(unit: Unit) -> UnitRow:
    return UnitRow(**_row_values(unit, UnitRow))


def _to_assignment(row: AssignmentRow) -> Assignment:
    return _from_row(Assignment, row)


def _to_entry(row: AuditRow) -> AuditEntry:
    return _from_row(AuditEntry, row)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


def alert_snapshot(alert: Alert) -> dict[str, Any]:
    """The audited view of an alert: what it is and where it stands (no free text beyond the report)."""
    snap = {name: _jsonable(getattr(alert, name)) for name in _ALERT_FIELDS}
    snap["recommendations"] = [{"unit_id": r.unit_id, "eta_s": round(r.eta_s, 3)} for r in alert.recommendations]
    return snap


def unit_snapshot(unit: Unit) -> dict[str, Any]:
    """The audited view of a unit (its registry entry and status; positions are telemetry)."""
    return {
        "kind": unit.kind.value,
        "name": unit.name,
        "status": unit.status.value,
        "retired": unit.retired,
        "staff_from": unit.staff_from,
        "staff_to": unit.staff_to,
        "alert_id": unit.alert_id,
        "lat": unit.lat if unit.kind is UnitKind.BOOTH else None,
        "lon": unit.lon if unit.kind is UnitKind.BOOTH else None,
    }


def changes(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Only the keys that differ between two snapshots (all of them when one side is None)."""
    if before is None or after is None:
        return before, after
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


@dataclass
class _PendingAudit:
    ts: datetime
    actor: str
    action: str
    alert_id: int | None
    unit_id: str | None
    before: str | None
    after: str | None


class Tx:
    """One database transaction of the store: reads, writes and audit entries commit together.

    Obtained from :meth:`Store.transaction`; audit entries are chained when it commits.
    """

    def __init__(self, store: Store, session: Session, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.session = session
        self.clock = clock
        self._audit: list[_PendingAudit] = []
        self._changed: dict[tuple[ChangeKind, str], Alert | Unit | dict[str, Any]] = {}
        self._holds_commit_lock = False  # taken by serialise() (PostgreSQL), released after commit or rollback
        self.changes: list[Change] = []
        """The changes this transaction committed, with their ``seq`` (set once it has committed)."""

    # the change stream
    def note_change(self, kind: ChangeKind, ref: str, obj: Alert | Unit | dict[str, Any]) -> None:
        """Add ``obj`` (its committed state) to the change stream when this transaction commits."""
        self._changed.pop((kind, ref), None)  # the last state of an object counts, in the order of its last change
        self._changed[(kind, ref)] = obj

    def _flush_changes(self) -> None:
        if not self._changed:
            return
        at = self.clock()
        origin = self.store.replica
        items = list(self._changed.items())
        rows = [
            {
                "at": at,
                "kind": kind.value,
                "ref": ref,
                "origin": origin,
                "payload": json.dumps(obj, sort_keys=True, default=str) if isinstance(obj, dict) else None,
            }
            for (kind, ref), obj in items
        ]
        table = _table(ChangeRow)
        result = self.session.connection().execute(
            insert(table).returning(table.c.seq, sort_by_parameter_order=True), rows
        )
        seqs = [int(r[0]) for r in result]
        if self.store.engine.dialect.name == "postgresql":
            self.session.execute(text("SELECT pg_notify(:c, :s)"), {"c": CHANGES_CHANNEL, "s": str(seqs[-1])})
        self.changes = [_change(seq, at, origin, kind, obj) for seq, ((kind, _), obj) in zip(seqs, items, strict=True)]
        self._changed.clear()

    # alerts
    def alert(self, alert_id: int) -> Alert | None:
        """The alert, locked against concurrent changes until commit (on PostgreSQL)."""
        row = self.session.get(AlertRow, alert_id, with_for_update=self.store._lock_rows)  # noqa: SLF001 - Store and Tx are one unit of this module
        return None if row is None else _to_alert(row)

    def save_alert(self, alert: Alert) -> None:
        if alert.id is None:
            msg = f"alert {alert.event_id!r} was never committed: use Store.add_alert"
            raise ValueError(msg)
        self.note_change(ChangeKind.ALERT, str(alert.id), alert.copy())
        row = self.session.get(AlertRow, alert.id)
        if row is None:
            msg = f"alert {alert.id} does not exist"
            raise KeyError(msg)
        for name in _ALERT_FIELDS:
            setattr(row, name, _alert_value(alert, name))
        current = [(r.unit_id, r.eta_s) for r in row.recommendations]
        if current != [(r.unit_id, float(r.eta_s)) for r in alert.recommendations]:
            row.recommendations.clear()
            self.session.flush()
            row.recommendations.extend(_rec_rows(alert.recommendations))

    # units
    def unit(self, unit_id: str) -> Unit | None:
        row = self.session.get(UnitRow, unit_id, with_for_update=self.store._lock_rows)  # noqa: SLF001 - Store and Tx are one unit of this module
        return None if row is None else _to_unit(row)

    def save_unit(self, unit: Unit) -> None:
        self.session.merge(_unit_row(unit))
        self.note_change(ChangeKind.UNIT, unit.id, unit.copy())

    # assignments
    def assignments(self, alert_id: int) -> list[Assignment]:
        stmt = select(AssignmentRow).where(AssignmentRow.alert_id == alert_id).order_by(AssignmentRow.id)
        return [_to_assignment(r) for r in self.session.scalars(stmt)]

    def save_assignment(self, a: Assignment) -> Assignment:
        if a.id is None:
            row = AssignmentRow()
            self.session.add(row)
        else:
            found = self.session.get(AssignmentRow, a.id)
            if found is None:
                msg = f"assignment {a.id} does not exist"
                raise KeyError(msg)
            row = found
        for name, value in _row_values(a, AssignmentRow, skip=("id",)).items():
            setattr(row, name, value)
        self.session.flush()
        return _to_assignment(row)

    # audit
    def audit(
        self,
        action: str,
        *,
        actor: str,
        alert_id: int | None = None,
        unit_id: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        only_changes: bool = True,
    ) -> None:
        """Append an entry when the transaction commits (``before``/``after`` reduced to what changed)."""
        if only_changes:
            before, after = changes(before, after)
        self._audit.append(
            _PendingAudit(self.clock(), actor, action, alert_id, unit_id, canonical_json(before), canonical_json(after))
        )

    def serialise(self) -> None:
        """PostgreSQL: take now the lock that orders commits (held until commit): transactions that
        insert rows another replica may insert at the same moment (the unit registry's merge at
        start) run one after the other."""
        if self.store.engine.dialect.name != "postgresql":
            return  # SQLite: the transaction holds the process's commit lock from its start
        if not self._holds_commit_lock:
            # This process's commit lock first, as every commit takes it before the advisory lock
            # (Store.transaction): taken the other way round, a transaction of another thread
            # holding the commit lock while it waits for the advisory lock held here would wait for
            # this one, and this one for it at its commit.
            self.store.commit_lock.acquire()
            self._holds_commit_lock = True
        self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})

    def _flush(self) -> None:
        """Append the audit entries and the change-stream rows, under one lock held until commit."""
        if not self._audit and not self._changed:
            return
        if self.store.engine.dialect.name == "postgresql":
            self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
        self._flush_audit()
        self._flush_changes()

    def _flush_audit(self) -> None:
        if not self._audit:
            return
        last = self.session.execute(select(AuditRow.id, AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)).first()
        last_id, prev = (last[0], last[1]) if last else (0, GENESIS_HASH)
        rows = []
        for offset, p in enumerate(self._audit, start=1):
            entry_id = last_id + offset
            digest = entry_hash(
                id=entry_id,
                ts=p.ts,
                actor=p.actor,
                action=p.action,
                alert_id=p.alert_id,
                unit_id=p.unit_id,
                before=p.before,
                after=p.after,
                prev_hash=prev,
            )
            rows.append(
                {
                    "id": entry_id,
                    "ts": p.ts,
                    "actor": p.actor,
                    "action": p.action,
                    "alert_id": p.alert_id,
                    "unit_id": p.unit_id,
                    "before": p.before,
                    "after": p.after,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        self.session.flush()  # ORM changes of this transaction first, as an ORM add would order them
        self.session.connection().execute(insert(_table(AuditRow)), rows)
        self._audit.clear()


class Store:
    """Alerts and units in a SQL database.

    Parameters
    ----------
    url
        A SQLAlchemy URL: ``sqlite:///var/qorgau.sqlite3`` (the parent folder is created) or
        ``postgresql+psycopg://postgres@127.0.0.1:5432/qorgau``.
    replica
        This process's replica name, the ``origin`` of the changes it commits (default ``hostname-pid``).

    Examples
    --------
    >>> store = Store("sqlite:///:memory:").create_schema()
    >>> store.list_alerts()
    []
    """

    def __init__(self, url: str, *, replica: str | None = None) -> None:
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
        self._lock_rows = self.engine.dialect.name == "postgresql"
        self._audit_lock = threading.RLock()  # one chain writer per process (PostgreSQL adds an advisory lock)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.replica = replica or default_replica()
        self._stats_lock = threading.Lock()
        self.batch_fallbacks = 0
        """Batches of alerts that failed a constraint and were stored one by one (none is expected:
        events and counters committed by another replica are skipped by ``ON CONFLICT``)."""
        self.on_commit: Callable[[list[Change]], None] | None = None
        """Called with each transaction's changes right after it commits, inside :attr:`commit_lock`
        (so in ``seq`` order within this process): the change stream hooks in here."""

    @property
    def commit_lock(self) -> threading.RLock:
        """Held around every commit that writes audit entries or changes (and :attr:`on_commit`)."""
        return self._audit_lock

    def _committed(self, changes: list[Change]) -> None:
        if changes and self.on_commit is not None:
            try:
                self.on_commit(changes)
            except Exception:  # committed is committed: a failing hook must not look like a failed write
                log.exception("change-stream hook failed after commit of %d changes", len(changes))

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

    @contextmanager
    def session(self, action: str) -> Iterator[Session]:
        """A read-only session for queries the store has no method for (supervision, signed presses).

        Nothing is committed: writes go through :meth:`transaction`.

        Raises
        ------
        StoreError
            If the database could not be reached; the message names ``action``.
        """
        with self._reachable(action), self._sessions() as session:
            yield session

    @contextmanager
    def transaction(self, action: str = "write") -> Iterator[Tx]:
        """A transaction whose reads, writes and audit entries commit together, or not at all.

        Raises
        ------
        StoreError
            If the database could not be reached; nothing was written.
        """
        sqlite = self.engine.dialect.name == "sqlite"
        with self._reachable(action), self._audit_lock if sqlite else _nolock(), self._sessions() as session:
            tx = Tx(self, session, self.clock)
            try:
                yield tx
                if sqlite:
                    tx._flush()  # noqa: SLF001 - Store and Tx are one unit of this module
                    session.commit()
                    self._committed(tx.changes)
                else:
                    with self._audit_lock:
                        tx._flush()  # noqa: SLF001 - Store and Tx are one unit of this module
                        session.commit()
                        self._committed(tx.changes)
            except BaseException:
                session.rollback()
                raise
            finally:
                if tx._holds_commit_lock:  # noqa: SLF001 - Store and Tx are one unit of this module
                    tx._holds_commit_lock = False  # noqa: SLF001
                    self._audit_lock.release()

    # alerts -------------------------------------------------------------------------------

    def add_alert(self, alert: Alert, *, actor: str = "system") -> tuple[Alert, bool]:
        """Commit ``alert`` unless its ``(source, sender, event_id)`` is already stored.

        The audit trail gets an ``ingest`` entry (and ``recommend`` when the alert arrives
        recommended) in the same transaction.

        Returns
        -------
        The stored alert (with ``id``) and whether it was created now (False: a redelivery, the
        alert stored the first time is returned).

        Raises
        ------
        StoreError
            If the database could not be reached; nothing was stored.
        """
        # As add_alerts: the lock first, then what is stored, then the insert of what is not (an
        # insert meeting a stored row that another transaction updates would wait for it).
        try:
            with self.transaction(f"store alert {alert.event_id!r} from {alert.sender!r}") as tx:
                tx.serialise()
                counters = [] if alert.device_counter is None else [(alert.sender, alert.device_counter)]
                if _stored(tx.session, [(alert.source, alert.sender, alert.event_id)], counters):
                    raise _AlreadyStored
                row = _to_row(alert)
                tx.session.add(row)
                tx.session.flush()
                stored = _to_alert(row)
                tx.note_change(ChangeKind.ALERT, str(stored.id), stored)
                self._audit_ingest(tx, stored, actor=actor)
            return stored, True
        except (IntegrityError, _AlreadyStored):  # the same event (or counter) committed before
            pass
        existing = self.find_alert(alert.source, alert.sender, alert.event_id)
        if existing is None and alert.device_counter is not None:
            msg = f"counter {alert.device_counter} of device {alert.sender!r} is already stored with another event"
            raise CounterReplayed(msg)
        if existing is None:
            msg = f"alert {alert.event_id!r} from {alert.sender!r} violated a constraint but is not stored"
            raise StoreError(msg)
        return existing, False

    def add_alerts(self, alerts: Sequence[Alert], *, actor: str = "system") -> list[tuple[Alert, bool]]:
        """Commit many new alerts in ONE transaction (group commit); as :meth:`add_alert` for each.

        One commit, one audit-chain read and Core inserts instead of an ORM flush per alert: the
        ingest path of a burst pays the transaction once per batch, not per alert. Under the lock
        that orders commits (:meth:`Tx.serialise`) one query reads which of the batch's events and
        counters another replica committed a moment ago; the rest is inserted with ``INSERT ... ON
        CONFLICT DO NOTHING RETURNING`` (which also skips a counter twice in the batch) and commits
        as it is: no rollback, no alert stored one by one.

        A negative ``duplicate_of`` links an alert to another alert of the same batch: ``-1`` is
        ``alerts[0]``, ``-2`` is ``alerts[1]`` (that alert must come earlier in ``alerts``). When
        that alert was committed meanwhile by another replica, the link goes to the stored one
        (to its original, if it is itself a duplicate).

        Returns
        -------
        ``(stored alert, created)`` per alert, in order; ``created`` is False for an event that was
        already stored (its first alert is returned, without recommendations), e.g. committed
        meanwhile by another process. A signed press whose counter another event already carries
        (committed by another replica a moment ago) comes back uncreated with ``id`` None: a
        replay, nothing stored.

        Raises
        ------
        StoreError
            If the database could not be reached; nothing was stored.
        """
        if not alerts:
            return []
        try:
            with self.transaction(f"store {len(alerts)} alerts") as tx:
                tx.serialise()  # a concurrent batch of another replica commits wholly before or after this one
                return self._insert_alerts(tx, alerts, actor=actor)
        except IntegrityError as e:  # no unique constraint can raise here (ON CONFLICT): a bug, not a race
            with self._stats_lock:
                self.batch_fallbacks += 1
            log.warning("a batch of %d alerts failed a constraint, storing them one by one: %s", len(alerts), e)
        out: list[tuple[Alert, bool]] = []
        for alert in alerts:
            if alert.duplicate_of is not None and alert.duplicate_of < 0:
                ids = [a.id for a, _ in out]
                link = -alert.duplicate_of - 1
                alert = replace(alert, duplicate_of=_resolve_link(alert.duplicate_of, ids) if ids[link] else None)
            try:
                out.append(self.add_alert(alert, actor=actor))
            except CounterReplayed as e:
                log.warning("%s: a replay, not stored", e)
                out.append((replace(alert, id=None), False))
        return out

    def _insert_alerts(self, tx: Tx, alerts: Sequence[Alert], *, actor: str) -> list[tuple[Alert, bool]]:
        """Read what of a batch is stored, insert the rest with one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``.

        Links to alerts of the same batch are set by one UPDATE once their ids are known. Only the
        alerts inserted here get recommendations, audit entries and change-stream rows.
        """
        table, recs = _table(AlertRow), _table(RecommendationRow)
        keys = [(a.source, a.sender, a.event_id) for a in alerts]
        rows = []
        for alert in alerts:
            values = _row_values(alert, AlertRow, skip=("id",))
            if alert.duplicate_of is not None and alert.duplicate_of < 0:
                values["duplicate_of"] = None  # set below, once the batch's ids are known
            rows.append(values)
        conn = tx.session.connection()
        first: dict[EventKey, int] = {}  # the batch's own repeats of an event get its first alert
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        # What another replica committed is read first, under the commit lock, and not inserted
        # again: an INSERT that meets a stored row another transaction is updating waits for that
        # transaction, which (an assignment of that alert) waits for the lock held here: deadlock.
        counters = [(a.sender, a.device_counter) for a in alerts if a.device_counter is not None]
        stored = _stored(tx.session, list(first), counters)
        found = {(a.source, a.sender, a.event_id): a for a in stored}
        used = {(a.sender, a.device_counter) for a in stored if a.device_counter is not None}
        todo = [
            i
            for i, (alert, key) in enumerate(zip(alerts, keys, strict=True))
            if first[key] == i and key not in found and (alert.sender, alert.device_counter) not in used
        ]
        stmt = self._insert_new(table).returning(table.c.id, table.c.source, table.c.sender, table.c.event_id)
        inserted: dict[EventKey, int] = {}
        if todo:
            for r in conn.execute(stmt, [rows[i] for i in todo]):
                inserted[(AlertSource(r.source), r.sender, r.event_id)] = int(r.id)
        # ON CONFLICT skipped only a counter twice in the batch; anything else (none expected) is read back
        missed = [keys[i] for i in todo if keys[i] not in inserted and alerts[i].device_counter is None]
        if missed:
            found.update(_stored_by_key(tx.session, missed))
        out: list[tuple[Alert, bool]] = []
        for i, (alert, key) in enumerate(zip(alerts, keys, strict=True)):
            if key in inserted and first[key] == i:
                out.append((replace(alert, id=inserted[key]), True))
            elif key in inserted:  # twice in the batch: the first one's alert
                out.append((out[first[key]][0], False))
            elif key in found:  # committed meanwhile by another replica (or thread)
                out.append((found[key], False))
            elif alert.device_counter is not None:  # its counter is stored with another event: a replay
                log.warning(
                    "counter %d of device %r is already stored with another event: a replay, not stored",
                    alert.device_counter,
                    alert.sender,
                )
                out.append((replace(alert, id=None), False))
            else:
                msg = f"alert {alert.event_id!r} from {alert.sender!r} violated a constraint but is not stored"
                raise StoreError(msg)
        links = []
        for i, (alert, created) in enumerate(out):
            if not created or alert.duplicate_of is None or alert.duplicate_of >= 0:
                continue
            target = -alert.duplicate_of - 1
            if not 0 <= target < len(out):
                msg = f"duplicate_of={alert.duplicate_of} must name an earlier alert of the same batch"
                raise ValueError(msg)
            original = out[target][0]
            link = None if original.id is None else original.duplicate_of or original.id
            links.append({"b_id": alert.id, "b_link": link})
            out[i] = (replace(alert, duplicate_of=link), True)
        if links:
            conn.execute(
                update(table).where(table.c.id == bindparam("b_id")).values(duplicate_of=bindparam("b_link")), links
            )
        stored = [alert for alert, created in out if created]
        for alert in stored:
            tx.note_change(ChangeKind.ALERT, str(alert.id), alert)
        rec_rows = [
            {
                "alert_id": a.id,
                "rank": rank,
                "unit_id": r.unit_id,
                "unit_kind": r.unit_kind,
                "eta_s": float(r.eta_s),
                "distance_m": float(r.distance_m),
            }
            for a in stored
            for rank, r in enumerate(a.recommendations)
        ]
        if rec_rows:
            conn.execute(insert(recs), rec_rows)
        for alert in stored:
            self._audit_ingest(tx, alert, actor=actor)
        return out

    def _insert_new(self, table: Table) -> Any:
        """``INSERT INTO table ... ON CONFLICT DO NOTHING`` in this database's dialect (any unique constraint)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    @staticmethod
    def _audit_ingest(tx: Tx, stored: Alert, *, actor: str) -> None:
        """The ``ingest`` (and ``recommend``, ``link_duplicate``) audit entries of a new alert."""
        ingest = alert_snapshot(stored)
        ingest["status"] = AlertStatus.TEST.value if stored.status is AlertStatus.TEST else AlertStatus.NEW.value
        ingest["recommendations"] = []
        ingest.update(
            source=stored.source.value,
            sender=stored.sender,
            event_id=stored.event_id,
            received_at=stored.received_at.isoformat(),
            lat=stored.lat,
            lon=stored.lon,
        )
        tx.audit("ingest", actor=actor, alert_id=stored.id, after=ingest, only_changes=False)
        if stored.recommended_at is not None or (stored.status is AlertStatus.TEST and stored.recommendations):
            tx.audit(
                "recommend",
                actor=actor,
                alert_id=stored.id,
                before={"status": ingest["status"], "recommendations": []},
                after={"status": stored.status.value, "recommendations": alert_snapshot(stored)["recommendations"]},
            )
        if stored.duplicate_of is not None:
            tx.audit(
                "link_duplicate",
                actor=actor,
                alert_id=stored.id,
                before={"duplicate_of": None},
                after={"duplicate_of": stored.duplicate_of},
            )

    def find_alerts(self, keys: Iterable[EventKey]) -> dict[EventKey, Alert]:
        """The stored alerts among ``(source, sender, event_id)`` keys, whole, by key (one query per 500 keys)."""
        wanted = sorted(set(keys), key=lambda k: (k[0].value, k[1], k[2]))
        found: dict[EventKey, Alert] = {}
        with self._reachable(f"look up {len(wanted)} events"), self._sessions() as session:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = [(s.value, sender, e) for s, sender, e in wanted[start : start + _IN_CHUNK]]
                stmt = (
                    select(AlertRow)
                    .options(joinedload(AlertRow.recommendations))
                    .where(tuple_(AlertRow.source, AlertRow.sender, AlertRow.event_id).in_(chunk))
                )
                for row in session.scalars(stmt).unique():
                    found[(AlertSource(row.source), row.sender, row.event_id)] = _to_alert(row)
        return found

    def stored_events(
        self, keys: Iterable[EventKey], counters: Iterable[tuple[str, int]] = ()
    ) -> tuple[dict[EventKey, Alert], dict[tuple[str, int], Alert]]:
        """Which of a batch's events, and of its signed presses' ``(sender, counter)``, are stored already.

        One query (per 500 of each): the ingest path asks it before it ranks a batch, so an event
        another replica committed is answered from the stored alert and never ranked again, and a
        counter another event carries is a replay. The alerts come with what an ack and duplicate
        linking need (no recommendations, texts or times of the lifecycle).

        Returns
        -------
        The stored alerts by event key, and by ``(sender, counter)`` the stored alerts that carry
        one of ``counters`` (the same event or another).
        """
        wanted = sorted(set(keys), key=lambda k: (k[0].value, k[1], k[2]))
        wanted_set = set(wanted)
        pairs = sorted(set(counters))
        by_key: dict[EventKey, Alert] = {}
        by_counter: dict[tuple[str, int], Alert] = {}
        if not wanted and not pairs:
            return by_key, by_counter
        with self._reachable(f"look up {len(wanted)} events"), self._sessions() as session:
            for start in range(0, max(len(wanted), len(pairs)), _IN_CHUNK):
                key_chunk = wanted[start : start + _IN_CHUNK]
                counter_chunk = pairs[start : start + _IN_CHUNK]
                for alert in _stored(session, key_chunk, counter_chunk):
                    key = (alert.source, alert.sender, alert.event_id)
                    if key in wanted_set:
                        by_key[key] = alert
                    if alert.device_counter is not None:
                        by_counter[(alert.sender, alert.device_counter)] = alert
        return by_key, {pair: by_counter[pair] for pair in pairs if pair in by_counter}

    def find_alert(self, source: AlertSource, sender: str, event_id: str) -> Alert | None:
        """The alert stored for this sender's event, if any."""
        # Every alert pays this look-up and almost every answer is "none": ask for the id only,
        # and load the whole alert just for a redelivery.
        key = (AlertRow.source == source.value, AlertRow.sender == sender, AlertRow.event_id == event_id)
        with self._reachable(f"look up event {event_id!r} from {sender!r}"), self._sessions() as session:
            alert_id = session.execute(select(AlertRow.id).where(*key)).scalar_one_or_none()
            if alert_id is None:
                return None
            return _to_alert(session.get_one(AlertRow, alert_id))

    def get_alert(self, alert_id: int) -> Alert | None:
        """The alert with this id, or None."""
        with self._reachable(f"read alert {alert_id}"), self._sessions() as session:
            row = session.get(AlertRow, alert_id)
            return None if row is None else _to_alert(row)

    def list_alerts(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        order: str = "newest",
        statuses: Iterable[AlertStatus] | None = None,
    ) -> list[Alert]:
        """Alerts newest first, or (``order="priority"``) by priority, then oldest first.

        ``statuses`` keeps only alerts in those states.
        """
        stmt = select(AlertRow)
        if statuses is not None:
            stmt = stmt.where(AlertRow.status.in_([s.value for s in statuses]))
        if order == "priority":
            stmt = stmt.order_by(AlertRow.priority, AlertRow.received_at, AlertRow.id)
        elif order == "newest":
            stmt = stmt.order_by(AlertRow.id.desc())
        else:
            msg = f"order must be 'newest' or 'priority', got {order!r}"
            raise ValueError(msg)
        with self._reachable("list alerts"), self._sessions() as session:
            return [_to_alert(row) for row in session.scalars(stmt.limit(limit).offset(offset))]

    def recent_alerts(
        self,
        source: AlertSource,
        since: datetime,
        statuses: Iterable[AlertStatus],
        *,
        near: tuple[float, float] | None = None,
        radius_m: float | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        """Alerts from ``source`` received since ``since`` in ``statuses`` (duplicate candidates).

        With ``near`` and ``radius_m``, only alerts inside the bounding box of that circle: on the
        ingest path of every alert, the candidates must not grow with the alert rate. The alerts
        come with only what duplicate linking needs (no recommendations, texts or times); ``limit``
        keeps the earliest ones (a button pressed again and again must not slow its own ingest).
        """
        stmt = (
            select(*_STORED_COLUMNS)
            .where(AlertRow.source == source.value, AlertRow.received_at >= since)
            .where(AlertRow.status.in_([s.value for s in statuses]))
            .order_by(AlertRow.received_at, AlertRow.id)
        )
        if near is not None and radius_m is not None:
            lat, lon = near
            dlat = radius_m / 111_320.0 * 1.01  # a hair wider than the circle, never narrower
            dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
            stmt = stmt.where(
                AlertRow.lat.between(lat - dlat, lat + dlat), AlertRow.lon.between(lon - dlon, lon + dlon)
            )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._reachable("look up recent alerts"), self._sessions() as session:
            return [_slim_alert(r) for r in session.execute(stmt)]

    def alerts_received_between(self, start: datetime, end: datetime) -> list[Alert]:
        """Alerts received in ``[start, end)``, test presses left out (for response-time reports)."""
        stmt = (
            select(AlertRow)
            .where(AlertRow.received_at >= start, AlertRow.received_at < end)
            .where(AlertRow.status != AlertStatus.TEST.value)
            .order_by(AlertRow.id)
        )
        with self._reachable("read alerts for a report"), self._sessions() as session:
            return [_to_alert(row) for row in session.scalars(stmt)]

    def count_alerts(self) -> int:
        with self._reachable("count alerts"), self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(AlertRow)) or 0)

    # assignments --------------------------------------------------------------------------

    def assignments(self, alert_id: int) -> list[Assignment]:
        with self.transaction(f"read assignments of alert {alert_id}") as tx:
            return tx.assignments(alert_id)

    def assignments_of_unit(self, unit_id: str) -> list[Assignment]:
        stmt = select(AssignmentRow).where(AssignmentRow.unit_id == unit_id).order_by(AssignmentRow.id)
        with self._reachable(f"read orders of unit {unit_id!r}"), self._sessions() as session:
            return [_to_assignment(r) for r in session.scalars(stmt)]

    def overdue_assignments(self, now: datetime) -> list[Assignment]:
        """Orders neither acknowledged nor marked missed whose deadline has passed."""
        stmt = (
            select(AssignmentRow)
            .where(AssignmentRow.acknowledged_at.is_(None), AssignmentRow.missed_at.is_(None))
            .where(AssignmentRow.ack_due_at <= now)
            .order_by(AssignmentRow.ack_due_at)
        )
        with self._reachable("look up overdue orders"), self._sessions() as session:
            return [_to_assignment(r) for r in session.scalars(stmt)]

    # units --------------------------------------------------------------------------------

    def save_unit(self, unit: Unit) -> None:
        """Insert or update one unit (position, status, name) without an audit entry (telemetry)."""
        self.save_units([unit])

    def save_units(self, units: Iterable[Unit]) -> None:
        """Insert or update units in one transaction (seed sync at start: not audited)."""
        with self.transaction("store units") as tx:
            for unit in units:
                tx.save_unit(unit)

    def save_positions(
        self, units: Sequence[Unit], *, track: Mapping[str, Sequence[tuple[datetime, float, float]]] | None = None
    ) -> None:
        """Write the positions of ``units`` (lat, lon, position_ts only), in one transaction.

        Only the position columns change, and only where the stored position is not newer: a
        status another replica committed meanwhile is never written back, and a position another
        replica stored after this one stays. The position history (``unit_positions``) gains, per
        unit, its ``track`` (``(ts, lat, lon)`` of every position of the batch) or else the new
        position.
        """
        if not units:
            return
        history = [
            {"unit_id": u.id, "ts": ts, "lat": lat, "lon": lon}
            for u in units
            for ts, lat, lon in (track or {}).get(u.id, ((u.position_ts, u.lat, u.lon),))
            if ts is not None
        ]
        table = _table(UnitRow)
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .where(or_(table.c.position_ts.is_(None), table.c.position_ts <= bindparam("b_ts")))
            .values(lat=bindparam("b_lat"), lon=bindparam("b_lon"), position_ts=bindparam("b_ts"))
        )
        rows = [{"b_id": u.id, "b_lat": u.lat, "b_lon": u.lon, "b_ts": u.position_ts} for u in units]
        with self.transaction(f"store {len(units)} unit positions") as tx:
            tx.session.connection().execute(stmt, rows)
            if history:
                tx.session.connection().execute(insert(_table(UnitPositionRow)), history)
            for unit in units:
                tx.note_change(ChangeKind.UNIT, unit.id, unit.copy())

    def positions_between(
        self, start: datetime, end: datetime, *, units: Iterable[str] | None = None
    ) -> list[tuple[str, datetime, float, float]]:
        """Kept positions ``(unit_id, ts, lat, lon)`` with ``start <= ts < end``, by unit and time.

        ``units`` keeps to those units (all when None).
        """
        stmt = (
            select(UnitPositionRow.unit_id, UnitPositionRow.ts, UnitPositionRow.lat, UnitPositionRow.lon)
            .where(UnitPositionRow.ts >= start, UnitPositionRow.ts < end)
            .order_by(UnitPositionRow.unit_id, UnitPositionRow.ts, UnitPositionRow.id)
        )
        if units is not None:
            stmt = stmt.where(UnitPositionRow.unit_id.in_(sorted(set(units))))
        with self._reachable("read unit positions"), self._sessions() as session:
            return [(str(u), ts, float(lat), float(lon)) for u, ts, lat, lon in session.execute(stmt)]

    def prune_positions(self, before: datetime) -> int:
        """Delete kept positions older than ``before``; how many went."""
        with self.transaction("prune unit positions") as tx:
            result = tx.session.execute(delete(UnitPositionRow).where(UnitPositionRow.ts < before))
        removed = int(getattr(result, "rowcount", 0) or 0)
        if removed:
            log.info("pruned %d unit positions older than %s", removed, before.isoformat())
        return removed

    # the change stream --------------------------------------------------------------------

    def prune_changes(self, before: datetime) -> int:
        """Delete the change stream's rows committed before ``before``; how many went.

        Only a prefix of the stream goes (every row up to the newest ``seq`` committed before
        ``before``, even one a replica with a slow clock stamped later), so the oldest ``seq`` left
        tells a replay what it can rely on (:meth:`change_bounds`): a client that saw less is reset.
        """
        with self.transaction("prune the change stream") as tx:
            upto = tx.session.scalar(select(func.max(ChangeRow.seq)).where(ChangeRow.at < before))
            if upto is None:
                return 0
            result = tx.session.execute(delete(ChangeRow).where(ChangeRow.seq <= upto))
        removed = int(getattr(result, "rowcount", 0) or 0)
        if removed:
            log.info("pruned %d changes committed before %s (seq <= %d)", removed, before.isoformat(), upto)
        return removed

    def read_changes(
        self, after: int, *, limit: int = 1000, skip_origin: str | None = None, until: int | None = None
    ) -> tuple[list[Change], int]:
        """Changes with ``seq > after`` (and ``<= until``; at most ``limit`` rows read), objects in their current state.

        Rows of ``skip_origin`` are read but not returned. Returns the changes and the last
        ``seq`` read (``after`` when there was none).
        """
        # Core rows on a plain connection, not ORM entities in a session, here and for the objects:
        # every replica reads every change (ORM entities were a fifth of a follower's samples at
        # 150 presses/s; a session's overhead is 0.4-0.7 ms of CPU per poll of three queries).
        stmt = select(ChangeRow.__table__).where(ChangeRow.seq > after)
        if until is not None:
            stmt = stmt.where(ChangeRow.seq <= until)
        stmt = stmt.order_by(ChangeRow.seq).limit(limit)
        with self._reachable(f"read the changes after {after}"), self.engine.connect() as session:
            rows = list(session.execute(stmt))
            last = rows[-1].seq if rows else after
            rows = [r for r in rows if r.origin != skip_origin]
            alert_ids = {int(r.ref) for r in rows if r.kind == ChangeKind.ALERT.value}
            unit_ids = {r.ref for r in rows if r.kind == ChangeKind.UNIT.value}
            alerts = _alerts_by_id(session, alert_ids) if alert_ids else {}
            units = (
                {
                    u.id: _from_row(Unit, u, row_type=UnitRow)
                    for u in session.execute(select(UnitRow.__table__).where(UnitRow.id.in_(unit_ids)))
                }
                if unit_ids
                else {}
            )
        out = []
        for r in rows:
            obj: Alert | Unit | dict[str, Any] | None
            if r.kind == ChangeKind.ALERT.value:
                obj = alerts.get(int(r.ref))
            elif r.kind == ChangeKind.UNIT.value:
                obj = units.get(r.ref)
            else:
                obj = json.loads(r.payload) if r.payload else {"id": r.ref}
            if obj is not None:
                out.append(_change(r.seq, r.at, r.origin, ChangeKind(r.kind), obj))
        return out, last

    def changes_since(self, seq: int, limit: int = 1000, *, until: int | None = None) -> list[Change]:
        """The changes after ``seq`` (up to ``until``), oldest first, each object in its current state (replay)."""
        return self.read_changes(seq, limit=limit, until=until)[0]

    def last_change_seq(self) -> int:
        """The highest ``seq`` of the change stream (0 when empty)."""
        with self._reachable("read the newest change"), self._sessions() as session:
            return int(session.scalar(select(func.max(ChangeRow.seq))) or 0)

    def change_bounds(self, after: int, until: int) -> tuple[int | None, int, int]:
        """The oldest ``seq`` the table keeps (None when empty), its newest (0 when empty), and how
        many rows lie in ``(after, until]``: what a replay after ``after`` can rely on."""
        with self._reachable("read the change stream's bounds"), self._sessions() as session:
            oldest, newest = session.execute(select(func.min(ChangeRow.seq), func.max(ChangeRow.seq))).one()
            count = session.scalar(
                select(func.count()).select_from(ChangeRow).where(ChangeRow.seq > after, ChangeRow.seq <= until)
            )
        return (None if oldest is None else int(oldest)), int(newest or 0), int(count or 0)

    def list_units(self) -> list[Unit]:
        """All units ever registered, by id."""
        with self._reachable("list units"), self._sessions() as session:
            return [_to_unit(row) for row in session.scalars(select(UnitRow).order_by(UnitRow.id))]

    def get_unit(self, unit_id: str) -> Unit | None:
        with self._reachable(f"read unit {unit_id!r}"), self._sessions() as session:
            row = session.get(UnitRow, unit_id)
            return None if row is None else _to_unit(row)

    # audit --------------------------------------------------------------------------------

    def audit_entries(self, *, alert_id: int | None = None, unit_id: str | None = None) -> list[AuditEntry]:
        """Audit entries in order, all or those of one alert or unit."""
        stmt = select(AuditRow).order_by(AuditRow.id)
        if alert_id is not None:
            stmt = stmt.where(AuditRow.alert_id == alert_id)
        if unit_id is not None:
            stmt = stmt.where(AuditRow.unit_id == unit_id)
        with self._reachable("read the audit trail"), self._sessions() as session:
            return [_to_entry(r) for r in session.scalars(stmt)]

    def audit(self, action: str, *, actor: str, **kw: Any) -> None:
        """Append one audit entry in a transaction of its own (logins and other events without a change)."""
        with self.transaction(f"append {action!r} to the audit trail") as tx:
            tx.audit(action, actor=actor, only_changes=False, **kw)

    def verify_audit(self) -> ChainReport:
        """Recompute the audit chain; see :func:`dispatch.audit.verify_chain`."""
        with self._reachable("verify the audit trail"), self._sessions() as session:
            rows = session.scalars(select(AuditRow).order_by(AuditRow.id).execution_options(yield_per=1000))
            return verify_chain(_to_entry(r) for r in rows)

    # users --------------------------------------------------------------------------------

    def add_user(self, user: User, password_hash: str, *, actor: str) -> None:
        """Create or replace a user (audited without the hash)."""
        with self.transaction(f"store user {user.username!r}") as tx:
            old = tx.session.get(UserRow, user.username)
            before = None if old is None else {"role": old.role, "unit_id": old.unit_id, "disabled": old.disabled}
            tx.session.merge(
                UserRow(
                    username=user.username,
                    password_hash=password_hash,
                    role=user.role.value,
                    unit_id=user.unit_id,
                    disabled=user.disabled,
                    created_at=self.clock() if old is None else old.created_at,
                )
            )
            after = {"role": user.role.value, "unit_id": user.unit_id, "disabled": user.disabled, "password": "changed"}
            tx.audit(
                "user_change",
                actor=actor,
                before=before,
                after={"username": user.username, **after},
                only_changes=False,
            )

    def set_user_disabled(self, username: str, disabled: bool, *, actor: str) -> User | None:
        """Disable (or enable again) a user; None if there is none. Its tokens stop working at once (:mod:`web.deps`)."""
        with self.transaction(f"{'disable' if disabled else 'enable'} user {username!r}") as tx:
            row = tx.session.get(UserRow, username)
            if row is None:
                return None
            before = bool(row.disabled)
            row.disabled = disabled
            tx.audit(
                "user_change",
                actor=actor,
                before={"username": username, "disabled": before},
                after={"username": username, "disabled": disabled},
                only_changes=False,
            )
            return User(row.username, Role(row.role), row.unit_id, disabled)

    def get_user(self, username: str) -> tuple[User, str] | None:
        """The user and its password hash."""
        with self._reachable(f"read user {username!r}"), self._sessions() as session:
            row = session.get(UserRow, username)
            if row is None:
                return None
            return User(row.username, Role(row.role), row.unit_id, bool(row.disabled)), row.password_hash

    def list_users(self) -> list[User]:
        with self._reachable("list users"), self._sessions() as session:
            rows = session.scalars(select(UserRow).order_by(UserRow.username))
            return [User(r.username, Role(r.role), r.unit_id, bool(r.disabled)) for r in rows]


def _change(seq: int, at: datetime, origin: str, kind: ChangeKind, obj: Alert | Unit | dict[str, Any]) -> Change:
    """One change of the stream, its object in the field of its kind."""
    if kind is ChangeKind.ALERT:
        assert isinstance(obj, Alert)
        return Change(seq, at, origin, alerts=(obj,))
    if kind is ChangeKind.UNIT:
        assert isinstance(obj, Unit)
        return Change(seq, at, origin, units=(obj,))
    assert isinstance(obj, dict)
    if kind is ChangeKind.PLAN:
        return Change(seq, at, origin, plans=(obj,))
    return Change(seq, at, origin, devices=(obj,))


_STORED_COLUMNS = (
    AlertRow.id,
    AlertRow.source,
    AlertRow.sender,
    AlertRow.event_id,
    AlertRow.event_ts,
    AlertRow.received_at,
    AlertRow.lat,
    AlertRow.lon,
    AlertRow.status,
    AlertRow.priority,
    AlertRow.duplicate_of,
    AlertRow.device_counter,
)
"""What an ack of a stored event and duplicate linking need of an alert (:func:`_slim_alert`)."""


def _stored(session: Session, keys: Sequence[EventKey], counters: Sequence[tuple[str, int]] = ()) -> list[Alert]:
    """The stored alerts of ``keys`` or carrying one of ``counters`` (``(sender, counter)``), in one query,
    with :data:`_STORED_COLUMNS` only."""
    where = []
    if keys:
        triples = [(s.value, sender, e) for s, sender, e in keys]
        where.append(tuple_(AlertRow.source, AlertRow.sender, AlertRow.event_id).in_(triples))
    if counters:
        where.append(tuple_(AlertRow.sender, AlertRow.device_counter).in_(list(counters)))
    if not where:
        return []
    return [_slim_alert(r) for r in session.execute(select(*_STORED_COLUMNS).where(or_(*where)))]


def _slim_alert(r: Any) -> Alert:
    """An alert of a :data:`_STORED_COLUMNS` row (no recommendations, texts or later times)."""
    return Alert(
        id=r.id,
        source=AlertSource(r.source),
        sender=r.sender,
        event_id=r.event_id,
        event_ts=r.event_ts,
        received_at=r.received_at,
        lat=r.lat,
        lon=r.lon,
        status=AlertStatus(r.status),
        priority=r.priority,
        duplicate_of=r.duplicate_of,
        device_counter=r.device_counter,
    )


def _stored_by_key(session: Session, keys: Sequence[EventKey]) -> dict[EventKey, Alert]:
    """The stored alerts of ``keys`` (see :func:`_stored`), by key."""
    wanted = set(keys)
    found: dict[EventKey, Alert] = {}
    ordered = sorted(wanted, key=lambda k: (k[0].value, k[1], k[2]))
    for start in range(0, len(ordered), _IN_CHUNK):
        for alert in _stored(session, ordered[start : start + _IN_CHUNK]):
            key = (alert.source, alert.sender, alert.event_id)
            if key in wanted:
                found[key] = alert
    return found


def _resolve_link(link: int, ids: Sequence[int | None]) -> int:
    """The stored id of batch alert ``-link - 1`` (see :meth:`Store.add_alerts`)."""
    index = -link - 1
    if not 0 <= index < len(ids) or ids[index] is None:
        msg = f"duplicate_of={link} must name an earlier alert of the same batch"
        raise ValueError(msg)
    return int(ids[index])  # type: ignore[arg-type]


@contextmanager
def _nolock() -> Iterator[None]:
    yield
