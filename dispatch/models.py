"""The database tables, all in this one module so migrations can be generated from it.

Times are stored as UTC: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite (see
:class:`UTCDateTime`); Python always sees timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "AlertRow",
    "AssignmentRow",
    "AuditRow",
    "Base",
    "ChangeRow",
    "DeviceEventRow",
    "IdempotentRequestRow",
    "RecommendationRow",
    "UTCDateTime",
    "UnitPositionRow",
    "UnitRow",
    "UserRow",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime column that only takes aware datetimes and always returns UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            msg = f"refusing to store the naive datetime {value.isoformat()!r}: give it a timezone"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class AlertRow(Base):
    """One alert; ``(source, sender, event_id)`` is unique so a redelivery is ingested once."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("source", "sender", "event_id", name="uq_alerts_source_sender_event"),
        Index("ix_alerts_sender_device_counter", "sender", "device_counter"),  # issue 6: replay windows at start
        Index(  # issue 11: a counter is committed once per device, whichever replica checked it
            "uq_alerts_sender_counter",
            "sender",
            "device_counter",
            unique=True,
            postgresql_where=text("device_counter IS NOT NULL"),
            sqlite_where=text("device_counter IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[str] = mapped_column(String(128))
    event_ts: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[str | None] = mapped_column(String(16))
    site: Mapped[str | None] = mapped_column(String(16))
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    category: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text)
    snap_distance_m: Mapped[float | None] = mapped_column(Float)
    # issue 3: lifecycle, priority, duplicates, location quality, escalation, response times
    priority: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    duplicate_of: Mapped[int | None] = mapped_column(Integer)
    location_unverified: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    escalations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    assigned_unit_id: Mapped[str | None] = mapped_column(String(128))
    proposed_unit_id: Mapped[str | None] = mapped_column(String(128))
    close_reason: Mapped[str | None] = mapped_column(Text)
    recommended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    en_route_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    on_scene_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # issue 6: the counter of a signed SOS press, committed with the alert (anti-replay window)
    device_counter: Mapped[int | None] = mapped_column(BigInteger)
    # issue 12: how the unit on scene closed it, from the handheld
    outcome: Mapped[str | None] = mapped_column(String(16))
    close_note: Mapped[str | None] = mapped_column(Text)

    recommendations: Mapped[list[RecommendationRow]] = relationship(
        back_populates="alert",
        order_by="RecommendationRow.rank",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class RecommendationRow(Base):
    """One unit recommended for an alert, ranked by ETA (rank 0 is the fastest)."""

    __tablename__ = "alert_recommendations"

    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[str] = mapped_column(String(128))
    unit_kind: Mapped[str] = mapped_column(String(16))
    eta_s: Mapped[float] = mapped_column(Float)
    distance_m: Mapped[float] = mapped_column(Float)

    alert: Mapped[AlertRow] = relationship(back_populates="recommendations")


class UnitRow(Base):
    """A unit's last known position and status."""

    __tablename__ = "units"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    position_ts: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # issue 3: registry through the API, booth staffing hours, current order
    retired: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    staff_from: Mapped[str | None] = mapped_column(String(5))
    staff_to: Mapped[str | None] = mapped_column(String(5))
    alert_id: Mapped[int | None] = mapped_column(Integer)


class UnitPositionRow(Base):
    """One position a unit reported: the track kept for dosage (issue 14), pruned after the retention.

    Every position the service accepted is kept, also those a newer one of the same batch
    superseded for ranking; ``units`` keeps only the latest.
    """

    __tablename__ = "unit_positions"
    __table_args__ = (Index("ix_unit_positions_unit_ts", "unit_id", "ts"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)


class AssignmentRow(Base):
    """One order given to a unit for an alert: who gave it, whether it was an override, the ack or the miss."""

    __tablename__ = "assignments"
    __table_args__ = (Index("ix_assignments_pending", "acknowledged_at", "missed_at", "ack_due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    unit_id: Mapped[str] = mapped_column(String(128))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    assigned_by: Mapped[str] = mapped_column(String(128))
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    auto: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    eta_s: Mapped[float | None] = mapped_column(Float)
    ack_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    missed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """One entry of the append-only audit trail; ``hash`` chains it to the entry before it."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32), index=True)
    alert_id: Mapped[int | None] = mapped_column(Integer, index=True)
    unit_id: Mapped[str | None] = mapped_column(String(128), index=True)
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class UserRow(Base):
    """A person or a unit terminal that may sign in to the API, with one role."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[str | None] = mapped_column(String(128))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeviceEventRow(Base):
    """One device-offline event of an SOS button (supervision, :mod:`dispatch.supervision`).

    Opened when the button falls silent or disconnects; ``back_at`` is set when it is heard again;
    it closes (``closed_at``) once the button stays online for the flap window. A drop while it is
    open (also while recovering) is counted in ``drops`` instead of opening another event.
    """

    __tablename__ = "device_events"
    __table_args__ = (Index("ix_device_events_device_open", "device_id", "closed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(128))
    cause: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    drops: Mapped[int] = mapped_column(Integer, default=1)
    last_drop_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_cause: Mapped[str] = mapped_column(String(16))
    back_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class ChangeRow(Base):
    """One committed change of an alert, a unit or a device: the global change stream of the replicas.

    Written in the same transaction as the change itself, after the PostgreSQL advisory lock that
    also serialises the audit chain, so ``seq`` order is commit order: a replica that has read every
    row up to ``seq`` has missed none before it. ``ref`` is the alert id (as text), unit id or
    device id; ``origin`` the replica that committed it; ``payload`` optional JSON (a device's view).
    """

    __tablename__ = "changes"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 - SQLAlchemy's declarative attribute

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(128))
    origin: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str | None] = mapped_column(Text)


class IdempotentRequestRow(Base):
    """A client's request id (``Idempotency-Key``) and the answer it got, so a repeat is not applied again.

    ``status_code`` 0 marks a request being applied now. Rows older than a day are pruned.
    """

    __tablename__ = "idempotent_requests"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
