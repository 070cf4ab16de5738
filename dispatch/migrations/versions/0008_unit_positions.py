"""Issue 14, dosage: the positions units reported, kept for the retention.

``unit_positions`` keeps every accepted position (``units`` only the latest), so a plan's shift
can be measured against where its patrols really were. Rows older than the retention
(``QORGAU_POSITION_RETENTION_DAYS``) are pruned by the service.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatch.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unit_positions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
    )
    op.create_index("ix_unit_positions_unit_ts", "unit_positions", ["unit_id", "ts"])
    op.create_index("ix_unit_positions_ts", "unit_positions", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_unit_positions_ts", table_name="unit_positions")
    op.drop_index("ix_unit_positions_unit_ts", table_name="unit_positions")
    op.drop_table("unit_positions")
