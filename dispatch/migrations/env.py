"""Alembic environment: runs on the connection :func:`dispatch.schema.upgrade` hands in.

SQLite cannot ALTER most things, so migrations run in batch mode there (copy-and-move tables).
"""

from __future__ import annotations

from alembic import context

from dispatch.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` on the command line ends here
    msg = "run migrations through `qorgau db upgrade --db URL` (dispatch.schema.upgrade), not bare alembic"
    raise RuntimeError(msg)

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
