"""Issue 6, signed presses: the counter of a signed SOS press is stored with its alert.

The service rebuilds each device's anti-replay window from these counters when it opens, so a
restart cannot be used to replay a press. Existing alerts were unsigned: NULL.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("device_counter", sa.BigInteger(), nullable=True))
    op.create_index("ix_alerts_sender_device_counter", "alerts", ["sender", "device_counter"])


def downgrade() -> None:
    op.drop_index("ix_alerts_sender_device_counter", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("device_counter")
