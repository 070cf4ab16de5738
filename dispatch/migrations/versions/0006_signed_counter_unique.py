"""Issue 11, replicas: a signed press's counter is stored once per device, decided by the database.

Two replicas checking the same counter against their own memory at the same moment would both
accept it; this unique index lets exactly one of them commit it (the other answers ``replayed``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WHERE = sa.text("device_counter IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "uq_alerts_sender_counter",
        "alerts",
        ["sender", "device_counter"],
        unique=True,
        postgresql_where=_WHERE,
        sqlite_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("uq_alerts_sender_counter", table_name="alerts")
