"""Issue 11, replicas: the global change stream (``changes``), one row per committed change.

Every replica reads it (PostgreSQL: ``LISTEN qorgau_changes`` and a polling fallback) to apply the
changes other replicas committed to its memory, and the live feed replays it by ``seq``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatch.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        # BIGINT identity on PostgreSQL; SQLite's INTEGER PRIMARY KEY AUTOINCREMENT never reuses a seq
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.Column("origin", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("changes")
