"""Issue 3, the control room: lifecycle and response-time columns, unit registry, orders, audit trail, users.

Existing alerts keep their status; their priority is recomputed by the service only for new alerts
(old rows get P3 unless they are SOS presses, which are set from the site here).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatch.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ALERT_TIMES = ("recommended_at", "assigned_at", "acknowledged_at", "en_route_at", "on_scene_at", "closed_at")


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="3"))
        batch.add_column(sa.Column("duplicate_of", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("location_unverified", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("escalations", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("assigned_unit_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("proposed_unit_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("close_reason", sa.Text(), nullable=True))
        for name in _ALERT_TIMES:
            batch.add_column(sa.Column(name, UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE alerts SET priority = CASE WHEN site IN ('school', 'hospital') THEN 1 ELSE 2 END WHERE source = 'sos'"
    )
    with op.batch_alter_table("units") as batch:
        batch.add_column(sa.Column("retired", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("staff_from", sa.String(5), nullable=True))
        batch.add_column(sa.Column("staff_to", sa.String(5), nullable=True))
        batch.add_column(sa.Column("alert_id", sa.Integer(), nullable=True))
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("assigned_at", UTCDateTime(), nullable=False),
        sa.Column("assigned_by", sa.String(128), nullable=False),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.Column("auto", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("ack_due_at", UTCDateTime(), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("missed_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_assignments_alert_id", "assignments", ["alert_id"])
    op.create_index("ix_assignments_pending", "assignments", ["acknowledged_at", "missed_at", "ack_due_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.String(128), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("hash", name="uq_audit_log_hash"),
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index("ix_audit_log_alert_id", "audit_log", ["alert_id"])
    op.create_index("ix_audit_log_unit_id", "audit_log", ["unit_id"])
    op.create_table(
        "users",
        sa.Column("username", sa.String(128), primary_key=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_table("audit_log")
    op.drop_table("assignments")
    with op.batch_alter_table("units") as batch:
        for name in ("alert_id", "staff_to", "staff_from", "retired"):
            batch.drop_column(name)
    with op.batch_alter_table("alerts") as batch:
        for name in (*reversed(_ALERT_TIMES), "close_reason", "proposed_unit_id", "assigned_unit_id",
                     "escalations", "location_unverified", "duplicate_of", "priority"):
            batch.drop_column(name)
