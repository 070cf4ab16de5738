"""Issue 6, device supervision: device-offline events of SOS buttons.

Heartbeats are kept in memory; only state changes (a button goes offline, comes back, its event
closes) are written here, and audited.

Revision ID: 0004
Revises: 0002 (to be chained after 0003 when the branches are merged)
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatch.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("drops", sa.Integer(), nullable=False),
        sa.Column("last_drop_at", UTCDateTime(), nullable=False),
        sa.Column("last_cause", sa.String(16), nullable=False),
        sa.Column("back_at", UTCDateTime(), nullable=True),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_device_events_device_open", "device_events", ["device_id", "closed_at"])
    op.create_index("ix_device_events_closed_at", "device_events", ["closed_at"])


def downgrade() -> None:
    op.drop_index("ix_device_events_closed_at", table_name="device_events")
    op.drop_index("ix_device_events_device_open", table_name="device_events")
    op.drop_table("device_events")
