"""Alembic migrations of the dispatch store (run by :func:`dispatch.schema.upgrade`)."""
