"""Issue 12, the handheld: how a unit closed an alert, and the requests a client may repeat.

``alerts.outcome`` and ``alerts.close_note`` keep the Close button's outcome and note;
``idempotent_requests`` keeps each ``Idempotency-Key`` with the answer it got, so a request that
a phone repeats after a lost answer is applied once (across replicas and restarts). Rows older
than a day are pruned by the service.

Revision ID: 0005_handheld
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatch.models import UTCDateTime

revision = "0005_handheld"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("outcome", sa.String(16), nullable=True))
        batch.add_column(sa.Column("close_note", sa.Text(), nullable=True))
    op.create_table(
        "idempotent_requests",
        sa.Column("username", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_idempotent_requests_created_at", "idempotent_requests", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotent_requests_created_at", table_name="idempotent_requests")
    op.drop_table("idempotent_requests")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("close_note")
        batch.drop_column("outcome")
