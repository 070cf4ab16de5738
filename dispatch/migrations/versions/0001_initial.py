"""The schema of issue 2 (alerts, their recommendations, units), as create_all made it.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatch.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("event_ts", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("site", sa.String(16), nullable=True),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("snap_distance_m", sa.Float(), nullable=True),
        sa.UniqueConstraint("source", "sender", "event_id", name="uq_alerts_source_sender_event"),
    )
    op.create_index("ix_alerts_received_at", "alerts", ["received_at"])
    op.create_index("ix_alerts_status", "alerts", ["status"])
    op.create_table(
        "alert_recommendations",
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rank", sa.Integer(), primary_key=True),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("unit_kind", sa.String(16), nullable=False),
        sa.Column("eta_s", sa.Float(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
    )
    op.create_table(
        "units",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("position_ts", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("units")
    op.drop_table("alert_recommendations")
    op.drop_index("ix_alerts_status", table_name="alerts")
    op.drop_index("ix_alerts_received_at", table_name="alerts")
    op.drop_table("alerts")
